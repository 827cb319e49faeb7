"""A small ONNX graph builder: unique names, constants, nodes, and weight accounting.

``GraphBuilder.op("Conv", [x, w], strides=[2, 2])`` appends a node and returns its output name.
Weights are read through :meth:`GraphBuilder.take`, which records every variable used; the exporter
checks at the end that each of the model's variables went into the graph exactly once, so a layer added
to the Flax model and forgotten here fails the export instead of giving a silently different network.

Convolutions carry their BatchNorm folded in (``conv_bn``): eval-mode BatchNorm is an affine map per
output channel, ``(conv(x, W) - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``, which equals
``conv(x, W * s) + (beta - mean * s)``. Folding happens in float64, then the weights are cast once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# onnx TensorProto element types for the dtypes the graph uses.
ONNX_TYPES = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.float16): TensorProto.FLOAT16,
    np.dtype(np.uint8): TensorProto.UINT8,
    np.dtype(np.int64): TensorProto.INT64,
    np.dtype(bool): TensorProto.BOOL,
}
BN_EPSILON = 1e-5  # bgm_jax.models.layers: PyTorch's eps, everywhere


class GraphBuilder:
    """Accumulates nodes and initializers for one ONNX graph.

    ``variables`` is the model's {"params": ..., "batch_stats": ...}; ``dtype`` the compute dtype of
    the network (float32 or float16); index arithmetic is int64.
    """

    def __init__(self, variables: dict[str, Any], dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = set()
        self._constants: dict[tuple, str] = {}
        self.variables = {
            "/".join(str(getattr(k, "key", k)) for k in path): np.asarray(leaf)
            for path, leaf in _leaves_with_path(variables)
        }
        self.used: set[str] = set()

    # ------------------------------------------------------------------------------------------ names

    def fresh(self, hint: str) -> str:
        name, i = hint, 1
        while name in self._names:
            i += 1
            name = f"{hint}_{i}"
        self._names.add(name)
        return name

    # ------------------------------------------------------------------------------------------ values

    def const(self, value, hint: str = "const", dtype=None) -> str:
        """An initializer; equal small constants are shared."""
        array = np.asarray(value, dtype=dtype if dtype is not None else None)
        if dtype is None and array.dtype == np.float64:
            array = array.astype(self.dtype)
        key = None
        if array.size <= 64:
            key = (array.dtype.str, array.shape, array.tobytes())
            if key in self._constants:
                return self._constants[key]
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        if key is not None:
            self._constants[key] = name
        return name

    def ints(self, values: Sequence[int], hint: str = "shape") -> str:
        return self.const(np.asarray(values, np.int64), hint)

    def scalar(self, value: float, hint: str = "scalar") -> str:
        """A scalar of the compute dtype (broadcasts in arithmetic)."""
        return self.const(np.asarray(value, self.dtype), hint)

    def op(self, op_type: str, inputs: Sequence[str], hint: str | None = None, outputs: int = 1, **attrs):
        """Append a node; returns its output name (or a list of names when ``outputs > 1``)."""
        base = hint or op_type.lower()
        names = [self.fresh(base if outputs == 1 else f"{base}_{i}") for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=self.fresh(f"n_{base}"), **attrs))
        return names[0] if outputs == 1 else names

    # ------------------------------------------------------------------------------------------ weights

    def take(self, key: str) -> np.ndarray:
        """The variable at ``key`` (e.g. ``params/backbone/conv1/kernel``), recorded as used."""
        if key not in self.variables:
            raise KeyError(f"the model has no variable {key!r}; the ONNX graph and the Flax model disagree")
        if key in self.used:
            raise KeyError(f"variable {key!r} used twice in the ONNX graph")
        self.used.add(key)
        return self.variables[key]

    def check_all_used(self) -> None:
        unused = sorted(set(self.variables) - self.used)
        if unused:
            raise RuntimeError(
                f"{len(unused)} model variables are not in the ONNX graph (e.g. {unused[:3]}); "
                "the ONNX exporter does not match the model's layers"
            )

    def conv_bn(
        self,
        x: str,
        conv: str,
        bn: str | None,
        *,
        stride: int = 1,
        pad: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = False,
        activation: str | None = None,
    ) -> str:
        """Conv (Flax HWIO kernel at ``params/{conv}/kernel``) with the BatchNorm at ``{bn}`` folded in,
        then ``activation`` (None, "relu" or "relu6")."""
        kernel = self.take(f"params/{conv}/kernel").astype(np.float64)
        weight = kernel.transpose(3, 2, 0, 1)  # HWIO -> OIHW (grouped: O, I/groups, H, W)
        shift = self.take(f"params/{conv}/bias").astype(np.float64) if bias else np.zeros(weight.shape[0])
        if bn is not None:
            gamma = self.take(f"params/{bn}/scale").astype(np.float64)
            beta = self.take(f"params/{bn}/bias").astype(np.float64)
            mean = self.take(f"batch_stats/{bn}/mean").astype(np.float64)
            var = self.take(f"batch_stats/{bn}/var").astype(np.float64)
            s = gamma / np.sqrt(var + BN_EPSILON)
            weight = weight * s[:, None, None, None]
            shift = (shift - mean) * s + beta
        hint = conv.replace("/", ".")
        w = self.const(weight.astype(self.dtype), f"{hint}.weight")
        b = self.const(shift.astype(self.dtype), f"{hint}.bias")
        kh, kw = weight.shape[2:]
        y = self.op(
            "Conv", [x, w, b], hint,
            kernel_shape=[kh, kw], strides=[stride, stride], pads=[pad, pad, pad, pad],
            dilations=[dilation, dilation], group=groups,
        )
        if activation == "relu":
            return self.op("Relu", [y])
        if activation == "relu6":
            return self.op("Clip", [y, self.scalar(0.0), self.scalar(6.0)], "relu6")
        if activation is not None:
            raise ValueError(f"unknown activation {activation!r}")
        return y

    # ------------------------------------------------------------------------------------------ model

    def model(self, inputs, outputs, *, opset: int, doc: str, metadata: dict[str, str]) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "bgm_jax", inputs, outputs, self.initializers)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="bgm-jax", doc_string=doc
        )
        model.ir_version = min(model.ir_version, 9)  # readable by older runtimes; opset 17 needs IR 8
        helper.set_model_props(model, metadata)
        return model


def value_info(name: str, dtype, shape) -> onnx.ValueInfoProto:
    """A graph input/output; ``None`` in ``shape`` is the symbolic dimension ``batch``."""
    dims = ["batch" if d is None else int(d) for d in shape]
    return helper.make_tensor_value_info(name, ONNX_TYPES[np.dtype(dtype)], dims)


def _leaves_with_path(tree):
    import jax

    return jax.tree_util.tree_leaves_with_path(tree)
