"""What the model accepts, as plain values: the names a user chooses from and the input size it needs.

Defined once here and imported everywhere else (models, inference, the command line, training), with no
imports of its own so the command line can offer the choices without loading jax.
"""

from __future__ import annotations

BACKBONES = ("resnet50", "resnet101", "mobilenetv2")
REFINE_MODES = ("sampling", "thresholding", "full")
# Compute precisions; parameters are always float32. ``models.layers.COMPUTE_DTYPES`` maps them to dtypes.
# "tf32" computes in float32 storage but lets NVIDIA GPUs multiply in TF32 (10-bit mantissa); "float32"
# means full float32 everywhere.
PRECISIONS = ("float32", "tf32", "bfloat16", "float16")
# The ``jax.default_matmul_precision`` each precision is compiled under. On GPUs XLA runs float32
# convolutions and matmuls in TF32 unless told "highest"; a user who asks for float32 gets float32.
# The CPU computes float32 either way. In bfloat16/float16 the operands are already narrow.
MATMUL_PRECISIONS = {"float32": "highest", "tf32": "default", "bfloat16": "default", "float16": "default"}

# MattingRefine works on 4x4 cells: its input height and width must be multiples of this.
REFINE_SIZE_MULTIPLE = 4


def pad_amounts(height: int, width: int, multiple: int = REFINE_SIZE_MULTIPLE) -> tuple[int, int]:
    """Rows and columns to add at the bottom and right to reach multiples of ``multiple``."""
    return (-height) % multiple, (-width) % multiple


def padded_size(height: int, width: int, is_refine: bool = True) -> tuple[int, int]:
    """The size the model runs at: ``bgm_jax.load`` pads a refine model's input to multiples of 4
    (a base model runs at any size)."""
    if not is_refine:
        return height, width
    pad_h, pad_w = pad_amounts(height, width)
    return height + pad_h, width + pad_w
