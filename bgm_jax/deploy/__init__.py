"""Deployment exports: StableHLO (``jax.export``) and ONNX, each runnable without bgm-jax's model code.

    from bgm_jax.deploy import export
    export("checkpoints/resnet50", "resnet50_hd.onnx", format="onnx", size=(1920, 1080))
    export("checkpoints/resnet50", "resnet50_hd", format="stablehlo", size=(1920, 1080))

See ``docs/deploy.md``. Modules: ``options`` (settings and interface shared by both), ``stablehlo``
(exporter and loader), ``onnx`` (the graph written against the ONNX opset).
"""

from __future__ import annotations
