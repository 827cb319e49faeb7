"""The converter's contract around the parity tests (tests/test_parity.py): what `bgm-jax convert` and
`bgm-jax export-torch` accept, record, refuse and never leave half-written, and the partial loads
that start training from ImageNet, DeepLabV3 or earlier-stage checkpoints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("BGM_REQUIRE_TORCH") != "1":  # under CI a missing torch fails collection instead
    pytest.importorskip("torch")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402

import torch_reference as ref  # noqa: E402
from bgm_jax.checkpoint import abstract_variables, load_model, read_config  # noqa: E402
from bgm_jax.cli import main  # noqa: E402
from bgm_jax.convert.convert import convert_checkpoint, export_torch, file_sha256  # noqa: E402
from bgm_jax.convert.keys import ConversionError  # noqa: E402
from bgm_jax.convert.partial import detect_pretrained_kind  # noqa: E402
from bgm_jax.convert.pretrained import init_from_pretrained  # noqa: E402
from bgm_jax.convert.safetensors import save_safetensors  # noqa: E402
from bgm_jax.errors import InputError  # noqa: E402

MOBILENET_REFINE = {"model_type": "refine", "backbone": "mobilenetv2", "refine_kernel_size": 3}


@pytest.fixture(scope="module")
def mobilenet_state():
    return ref.random_model("refine", "mobilenetv2", seed=11).state_dict()


@pytest.fixture
def mobilenet_pth(tmp_path, mobilenet_state):
    path = tmp_path / "pytorch_mobilenetv2.pth"
    torch.save(mobilenet_state, path)
    return path


def get(tree, path: str):
    for part in path.split("/"):
        tree = tree[part]
    return np.asarray(tree)


def hwio(tensor: torch.Tensor) -> np.ndarray:
    return tensor.numpy().transpose(2, 3, 1, 0)


def leftovers(directory: Path) -> list[str]:
    """Hidden partial files or folders a failed write could have left behind."""
    return [p.name for p in directory.iterdir() if ".partial" in p.name or "orbax-checkpoint-tmp" in p.name]


# ------------------------------------------------------------------------------------- convert


def test_convert_records_the_detected_model_and_the_source_file_name_and_sha256(tmp_path, mobilenet_pth):
    report = convert_checkpoint(mobilenet_pth, tmp_path / "out")
    assert report.config == MOBILENET_REFINE
    assert report.sha256 == file_sha256(mobilenet_pth) and len(report.sha256) == 64
    config = read_config(tmp_path / "out")
    assert {k: config[k] for k in MOBILENET_REFINE} == MOBILENET_REFINE
    assert config["source"] == {"file": "pytorch_mobilenetv2.pth", "sha256": report.sha256, "format": "pth"}
    assert report.parameters["total"] == 5_006_839  # ORIGINAL.md


def test_pytorch_to_jax_to_pytorch_is_bit_exact_and_keeps_the_original_key_order(tmp_path, mobilenet_pth,
                                                                                    mobilenet_state):
    convert_checkpoint(mobilenet_pth, tmp_path / "jax")
    report = export_torch(tmp_path / "jax", tmp_path / "back.pth")
    assert report.tensors == len(mobilenet_state) == 382
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    assert list(back) == list(mobilenet_state)
    for key, value in mobilenet_state.items():
        if key.endswith("num_batches_tracked"):  # a counter Flax does not keep; exported as 0
            assert back[key].dtype == torch.int64 and back[key].shape == () and int(back[key]) == 0
        else:
            assert back[key].dtype == value.dtype and torch.equal(back[key], value), key


def test_convert_refuses_an_existing_output_and_replaces_it_only_with_overwrite(tmp_path, mobilenet_pth, capsys):
    out = tmp_path / "out"
    assert main(["convert", str(mobilenet_pth), str(out)]) == 0
    first = read_config(out)["source"]["sha256"]
    other = tmp_path / "other.pth"
    torch.save(ref.random_model("refine", "mobilenetv2", seed=12).state_dict(), other)
    capsys.readouterr()

    assert main(["convert", str(other), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err and "--overwrite" in err
    assert read_config(out)["source"]["sha256"] == first

    assert main(["convert", str(other), str(out), "--overwrite"]) == 0
    assert read_config(out)["source"] == {"file": "other.pth", "sha256": file_sha256(other), "format": "pth"}
    assert leftovers(tmp_path) == []


def test_a_checkpoint_that_does_not_fit_lists_every_problem_and_writes_nothing(tmp_path, mobilenet_state, capsys):
    state = dict(mobilenet_state)
    state["aspp.project.0.weight"] = torch.zeros(256, 1024, 1, 1)
    del state["decoder.bn1.running_var"]
    state["decoder.extra.weight"] = torch.zeros(3, 3, 1, 1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(ConversionError) as error:
        convert_checkpoint(path, tmp_path / "out")
    problems = error.value.problems
    assert len(problems) == 3
    assert any("aspp.project.0.weight" in p and "(256, 1024, 1, 1)" in p for p in problems)
    assert any("missing `decoder.bn1.running_var`" in p for p in problems)
    assert any("decoder.extra.weight" in p for p in problems)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []

    assert main(["convert", str(path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "broken.pth: does not fit the model (3 problems)" in err


def test_imagenet_and_onnx_files_are_refused_with_what_to_use_instead(tmp_path):
    imagenet = ref.random_model("base", "resnet50", seed=1).backbone.state_dict()
    imagenet["conv1.weight"] = torch.zeros(64, 3, 7, 7)
    torch.save(imagenet, tmp_path / "resnet50-imagenet.pth")
    with pytest.raises(InputError, match="ImageNet classifier, which can only initialise a backbone"):
        convert_checkpoint(tmp_path / "resnet50-imagenet.pth", tmp_path / "out")

    (tmp_path / "onnx_mobilenetv2_hd.onnx").write_bytes(b"\x08\x07\x12\x07pytorch" + bytes(64))
    with pytest.raises(InputError, match="ONNX models are not converted.*pytorch_<backbone>.pth"):
        convert_checkpoint(tmp_path / "onnx_mobilenetv2_hd.onnx", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_safetensors_and_wrapped_data_parallel_checkpoints_convert_to_the_same_weights(tmp_path, mobilenet_state,
                                                                                       capsys):
    base_state = {k: v for k, v in mobilenet_state.items() if not k.startswith("refiner.")}
    save_safetensors(tmp_path / "weights.safetensors", {k: v.numpy() for k, v in base_state.items()})
    torch.save({"state_dict": {f"module.{k}": v for k, v in base_state.items()}, "epoch": 3}, tmp_path / "run.pth")

    report = convert_checkpoint(tmp_path / "weights.safetensors", tmp_path / "a")
    assert report.file_format == "safetensors" and report.config == {"model_type": "base", "backbone": "mobilenetv2"}
    assert main(["convert", str(tmp_path / "run.pth"), str(tmp_path / "b")]) == 0
    printed = capsys.readouterr().out
    assert "took the weights from the 'state_dict' entry (ignored: epoch)" in printed
    assert "removed the 'module.' prefix" in printed and "MattingBase (no refiner)" in printed

    (_, a), (_, b) = load_model(tmp_path / "a"), load_model(tmp_path / "b")
    for (path, x), (_, y) in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes(), jax.tree_util.keystr(path)
    np.testing.assert_array_equal(get(a["params"], "decoder/conv4/kernel"), hwio(base_state["decoder.conv4.weight"]))


# --------------------------------------------------------------------------------------- export


NO_TORCH_EXPORT = r"""
import sys
sys.modules["torch"] = None
from bgm_jax.cli import main
sys.exit(main(["export-torch", sys.argv[1], sys.argv[2]]))
"""


def test_export_torch_without_torch_is_a_one_line_error_and_writes_nothing(tmp_path, mobilenet_pth):
    convert_checkpoint(mobilenet_pth, tmp_path / "ckpt")
    proc = subprocess.run([sys.executable, "-c", NO_TORCH_EXPORT, str(tmp_path / "ckpt"), str(tmp_path / "m.pth")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "needs torch, which is not installed" in proc.stderr
    assert not (tmp_path / "m.pth").exists() and leftovers(tmp_path) == []


def test_export_refuses_an_existing_file_and_a_directory_that_is_not_a_checkpoint(tmp_path, mobilenet_pth):
    with pytest.raises(InputError, match="already exists"):
        export_torch(tmp_path / "anything", mobilenet_pth)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a bgm-jax model checkpoint"):
        export_torch(tmp_path / "empty", tmp_path / "m.pth")
    assert not (tmp_path / "m.pth").exists()


# ---------------------------------------------------------------------------- partial loads


def zeros_like(config: dict, as_jax: bool = False) -> dict:
    """A stand-in for freshly initialised variables: zeros of the model's shapes (no init compile)."""
    make = (lambda s: jnp.zeros(s.shape, s.dtype)) if as_jax else (lambda s: np.zeros(s.shape, s.dtype))
    shapes = abstract_variables(config)
    return {c: jax.tree_util.tree_map(make, shapes[c]) for c in ("params", "batch_stats")}


def test_imagenet_resnet_initialises_the_backbone_and_keeps_the_6_channel_conv1_and_the_heads(tmp_path):
    backbone = ref.random_model("base", "resnet50", seed=2).backbone.state_dict()
    imagenet = {**backbone, "conv1.weight": torch.randn(64, 3, 7, 7),
                "fc.weight": torch.randn(1000, 2048), "fc.bias": torch.randn(1000)}
    torch.save(imagenet, tmp_path / "resnet50-0676ba61.pth")
    target = zeros_like({"model_type": "refine", "backbone": "resnet50", "refine_kernel_size": 3})

    variables, report = init_from_pretrained(tmp_path / "resnet50-0676ba61.pth", target)
    assert report.kind == "imagenet-resnet"
    np.testing.assert_array_equal(get(variables["params"], "backbone/layer4_2/conv2/kernel"),
                                  hwio(backbone["layer4.2.conv2.weight"]))
    np.testing.assert_array_equal(get(variables["batch_stats"], "backbone/layer1_0/downsample_1/var"),
                                  backbone["layer1.0.downsample.1.running_var"].numpy())
    assert not get(variables["params"], "backbone/conv1/kernel").any()  # 3 -> 6 channels: kept
    assert "backbone.conv1.weight" in report.kept
    assert {k.split(".")[0] for k in report.kept} == {"backbone", "aspp", "decoder", "refiner"}
    assert [k for k in report.kept if k.startswith("backbone.")] == ["backbone.conv1.weight"]
    assert len(report.skipped) == 3  # conv1 (shape) and fc.weight / fc.bias
    logged = [*report]  # what a training log prints
    assert logged[0].startswith(f"imagenet-resnet: loaded {len(report.loaded)} tensors, skipped 3;")
    assert logged[1].startswith("  keeps its initialisation: backbone.conv1.weight; aspp.* (")
    assert logged[2] == ("  skipped conv1.weight (as backbone.conv1.weight): shape (64, 3, 7, 7) does not fit "
                         "params/backbone/conv1/kernel (7, 7, 6, 64)")
    assert not get(variables["params"], "decoder/conv1/kernel").any()
    assert not target["params"]["backbone"]["layer4_2"]["conv2"]["kernel"].any()  # the input is not modified


def test_deeplabv3_mobilenetv2_loads_backbone_and_aspp_through_the_split_feature_names(tmp_path):
    # VainF/DeepLabV3Plus-Pytorch: features[0:4] -> backbone.low_level_features, features[4:18] ->
    # backbone.high_level_features, ASPP -> classifier.classifier.0, weights under 'model_state'.
    base = ref.random_model("base", "mobilenetv2", seed=3).state_dict()
    deeplab = {}
    for key, value in base.items():
        if key.startswith("backbone.features."):
            index, rest = key.removeprefix("backbone.features.").split(".", 1)
            group, offset = ("low_level_features", 0) if int(index) < 4 else ("high_level_features", 4)
            deeplab[f"backbone.{group}.{int(index) - offset}.{rest}"] = value
        elif key.startswith("aspp."):
            deeplab[key.replace("aspp.", "classifier.classifier.0.", 1)] = value
    deeplab["backbone.low_level_features.0.0.weight"] = torch.randn(32, 3, 3, 3)
    deeplab.update({"classifier.classifier.1.weight": torch.randn(256, 256, 3, 3),
                    "classifier.classifier.4.weight": torch.randn(21, 256, 1, 1)})
    torch.save({"model_state": deeplab, "cur_itrs": 30000, "best_score": np.float64(0.7)}, tmp_path / "deeplab.pth")
    target = zeros_like({"model_type": "base", "backbone": "mobilenetv2"}, as_jax=True)

    variables, report = init_from_pretrained(tmp_path / "deeplab.pth", target)
    assert report.kind == "deeplabv3"
    params = variables["params"]
    np.testing.assert_array_equal(get(params, "backbone/features_4/conv_1_0/kernel"),
                                  hwio(base["backbone.features.4.conv.1.0.weight"]))
    np.testing.assert_array_equal(get(params, "backbone/features_17/conv_2/kernel"),
                                  hwio(base["backbone.features.17.conv.2.weight"]))
    np.testing.assert_array_equal(get(params, "aspp/convs_4_1/kernel"), hwio(base["aspp.convs.4.1.weight"]))
    np.testing.assert_array_equal(get(variables["batch_stats"], "aspp/project_1/mean"),
                                  base["aspp.project.1.running_mean"].numpy())
    assert [k for k in report.kept if not k.startswith("decoder.")] == ["backbone.features.0.0.weight"]
    leaf = params["backbone"]["features_4"]["conv_1_0"]["kernel"]
    assert isinstance(leaf, jax.Array) and leaf.dtype == jnp.float32


def test_a_matting_base_checkpoint_initialises_everything_but_the_refiner(tmp_path):
    base = ref.random_model("base", "mobilenetv2", seed=4).state_dict()
    torch.save(base, tmp_path / "stage1.pth")
    variables, report = init_from_pretrained(tmp_path / "stage1.pth", zeros_like(MOBILENET_REFINE))
    assert report.kind == "matting" and report.skipped == []
    assert {k.split(".")[0] for k in report.kept} == {"refiner"}
    np.testing.assert_array_equal(get(variables["params"], "decoder/conv4/bias"), base["decoder.conv4.bias"].numpy())


def test_unrelated_checkpoints_are_not_guessed_at():
    with pytest.raises(InputError, match="vit.pth: not a checkpoint training can start from"):
        detect_pretrained_kind(["blocks.0.attn.qkv.weight"], source="vit.pth")


# ----------------------------------------------------------------------------------- TorchScript


class TorchScriptWrapper(torch.nn.Module):
    """The layout of the original's TorchScript exports: MattingRefine held as the attribute `model`."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, src, bgr):
        return self.model(src, bgr)[:2]


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore:`torch.jit.*` is deprecated")
def test_the_originals_torchscript_exports_convert_through_torch_in_fp32_and_fp16(tmp_path, mobilenet_state):
    model = ref.build_model("refine", "mobilenetv2", refine_mode="full")
    model.load_state_dict(mobilenet_state)
    traced = torch.jit.trace(TorchScriptWrapper(model), ref.random_inputs(1, 32, 32), check_trace=False)
    torch.jit.save(traced, str(tmp_path / "torchscript_mobilenetv2_fp32.pth"))
    torch.jit.save(traced.half(), str(tmp_path / "torchscript_mobilenetv2_fp16.pth"))

    fp32 = convert_checkpoint(tmp_path / "torchscript_mobilenetv2_fp32.pth", tmp_path / "fp32")
    fp16 = convert_checkpoint(tmp_path / "torchscript_mobilenetv2_fp16.pth", tmp_path / "fp16")
    assert fp32.file_format == fp16.file_format == "torchscript"
    assert fp32.config == fp16.config == MOBILENET_REFINE
    assert "removed the 'model.' prefix of the original's TorchScript wrapper module" in fp32.notes
    assert fp16.dtypes == {"float16": 319}
    (_, a), (_, b) = load_model(tmp_path / "fp32"), load_model(tmp_path / "fp16")
    weight = mobilenet_state["backbone.features.5.conv.1.0.weight"]
    np.testing.assert_array_equal(get(a["params"], "backbone/features_5/conv_1_0/kernel"), hwio(weight))
    np.testing.assert_array_equal(get(b["params"], "backbone/features_5/conv_1_0/kernel"), hwio(weight.half().float()))


def test_outputs_of_the_wrong_kind_are_input_errors_even_with_overwrite(tmp_path, mobilenet_pth):
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(InputError, match="a_file: is a file; the output of a conversion is a folder"):
        convert_checkpoint(mobilenet_pth, tmp_path / "a_file", overwrite=True)
    convert_checkpoint(mobilenet_pth, tmp_path / "ckpt")
    with pytest.raises(InputError, match="ckpt: is a folder; the export is one .pth file"):
        export_torch(tmp_path / "ckpt", tmp_path / "ckpt", overwrite=True)
    assert (tmp_path / "a_file").read_text() == "not a folder" and read_config(tmp_path / "ckpt")
