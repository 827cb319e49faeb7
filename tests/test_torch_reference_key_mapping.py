"""The key table (bgm_jax/convert/keys.py) against the original's state_dict keys and shapes
(tests/data/state_dict_keys/*.tsv): every key maps, every target leaf is filled, shapes are checked,
and every problem is reported at once. No torch and no model needed: the Flax target tree is
synthesised from the .tsv by the naming convention, written out independently below."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from bgm_jax.convert import keys, partial
from bgm_jax.convert.keys import ConversionError, detect_config, flax_to_torch, torch_to_flax
from bgm_jax.convert.partial import partial_torch_to_flax
from bgm_jax.errors import InputError

TSV_DIR = Path(__file__).parent / "data" / "state_dict_keys"
BACKBONES = ("resnet50", "resnet101", "mobilenetv2")


def tsv_shapes(backbone: str) -> dict[str, tuple[int, ...]]:
    rows = (line.split("\t") for line in (TSV_DIR / f"{backbone}.tsv").read_text().splitlines())
    return {key: ast.literal_eval(shape) for key, shape, _ in rows}


def without_refiner(shapes: dict) -> dict:
    return {k: v for k, v in shapes.items() if not k.startswith("refiner.")}


def with_refiner_kernel_1(shapes: dict) -> dict:
    return {k: (v[:2] + (1, 1) if k.startswith("refiner.conv") and len(v) == 4 else v) for k, v in shapes.items()}


def synthesised_target(shapes: dict) -> dict:
    """The Flax variables tree of shapes the model is specified to have (the lead's naming convention)."""
    variables: dict = {"params": {}, "batch_stats": {}}
    for key, shape in shapes.items():
        module, leaf = key.rsplit(".", 1)
        path = re.sub(r"\.(\d+)", r"_\1", module).split(".")
        if leaf == "num_batches_tracked":
            continue
        if leaf == "weight" and len(shape) == 4:
            collection, name, shape = "params", "kernel", (shape[2], shape[3], shape[1], shape[0])
        else:
            collection, name = {"weight": ("params", "scale"), "bias": ("params", "bias"),
                                "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}[leaf]
        node = variables[collection]
        for part in path:
            node = node.setdefault(part, {})
        node[name] = shape
    return variables


def constant_state_dict(shapes: dict) -> dict[str, np.ndarray]:
    """Entry i filled with the value i (broadcast views: no memory for ResNet-101's 59M values)."""
    return {key: np.broadcast_to(np.float32(i), shape) if not key.endswith("num_batches_tracked")
            else np.array(7, dtype=np.int64) for i, (key, shape) in enumerate(shapes.items())}


def get(tree: dict, path: str):
    for part in path.split("/"):
        tree = tree[part]
    return tree


@pytest.mark.parametrize(("module", "path"), [
    ("backbone.layer1.0.conv1", ("backbone", "layer1_0", "conv1")),
    ("backbone.layer1.0.downsample.0", ("backbone", "layer1_0", "downsample_0")),
    ("backbone.features.0.0", ("backbone", "features_0_0")),
    ("backbone.features.3.conv.0.0", ("backbone", "features_3", "conv_0_0")),
    ("aspp.convs.4.1", ("aspp", "convs_4_1")),
    ("aspp.project.0", ("aspp", "project_0")),
    ("decoder.conv4", ("decoder", "conv4")),
    ("refiner.bn1", ("refiner", "bn1")),
])
def test_module_paths_map_by_joining_numeric_components(module, path):
    assert keys.torch_module_to_flax_path(module) == path
    assert keys.flax_path_to_torch_module(path) == module


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_tsv_key_lands_on_its_target_leaf_and_every_leaf_is_filled(backbone):
    shapes = tsv_shapes(backbone)
    state_dict = constant_state_dict(shapes)
    params, batch_stats = torch_to_flax(state_dict, synthesised_target(shapes))
    filled = 0
    for i, (key, shape) in enumerate(shapes.items()):
        if key.endswith("num_batches_tracked"):
            continue
        leaf = keys.torch_key_to_flax(key, shape)
        value = get(params if leaf.collection == "params" else batch_stats, "/".join(leaf.path))
        assert value.dtype == np.float32 and np.all(value == i), key
        filled += 1
    n_params = sum(1 for _ in keys._flatten(params))
    n_stats = sum(1 for _ in keys._flatten(batch_stats))
    assert n_params + n_stats == filled
    assert n_stats == 2 * sum(1 for k in shapes if k.endswith("num_batches_tracked"))


def test_conv_kernels_are_transposed_oihw_to_hwio_including_depthwise():
    shapes = tsv_shapes("mobilenetv2")
    state_dict = constant_state_dict(shapes)
    dense = np.arange(np.prod(shapes["decoder.conv4.weight"]), dtype=np.float32).reshape(shapes["decoder.conv4.weight"])
    depthwise = np.arange(32 * 9, dtype=np.float32).reshape(32, 1, 3, 3)
    state_dict["decoder.conv4.weight"] = dense
    state_dict["backbone.features.1.conv.0.0.weight"] = depthwise
    params, _ = torch_to_flax(state_dict, synthesised_target(shapes))
    kernel = get(params, "decoder/conv4/kernel")
    assert kernel.shape == (3, 3, 54, 37)
    assert kernel[1, 2, 5, 7] == dense[7, 5, 1, 2]
    np.testing.assert_array_equal(kernel, dense.transpose(2, 3, 1, 0))
    dw = get(params, "backbone/features_1/conv_0_0/kernel")
    assert dw.shape == (3, 3, 1, 32) and dw[2, 0, 0, 31] == depthwise[31, 0, 2, 0]
    assert kernel.flags.c_contiguous and dw.flags.c_contiguous


@pytest.mark.parametrize("backbone", ["mobilenetv2", "resnet50"])
def test_flax_to_torch_inverts_torch_to_flax_exactly_with_original_key_order(backbone):
    shapes = tsv_shapes(backbone)
    rng = np.random.default_rng(0)
    state_dict = {k: (rng.standard_normal(s).astype(np.float32) if not k.endswith("num_batches_tracked")
                      else np.array(0, dtype=np.int64)) for k, s in shapes.items()}
    params, batch_stats = torch_to_flax(state_dict, synthesised_target(shapes))
    back = flax_to_torch(params, batch_stats)
    assert list(back) == list(shapes)
    for key, value in state_dict.items():
        assert back[key].dtype == value.dtype and back[key].shape == value.shape, key
        np.testing.assert_array_equal(back[key], value, err_msg=key)
        assert back[key].flags.c_contiguous


def test_a_dict_with_one_wrong_shape_one_unknown_and_one_missing_key_reports_all_three_at_once():
    shapes = tsv_shapes("mobilenetv2")
    state_dict = constant_state_dict(shapes)
    del state_dict["aspp.project.1.running_var"]
    state_dict["decoder.conv2.weight"] = np.zeros((64, 151, 3, 3), np.float32)
    state_dict["decoder.conv5.weight"] = np.zeros((4, 4, 3, 3), np.float32)
    with pytest.raises(ConversionError) as info:
        torch_to_flax(state_dict, synthesised_target(shapes), source="my.pth")
    problems = info.value.problems
    assert len(problems) == 3, problems
    message = str(info.value)
    assert message.startswith("my.pth: does not fit the model (3 problems)")
    assert "`aspp.project.1.running_var` (for batch_stats/aspp/project_1/var)" in message
    assert "`decoder.conv2.weight` has shape (64, 151, 3, 3)" in message
    assert "(64, 152, 3, 3) in PyTorch layout" in message
    assert "unexpected `decoder.conv5.weight`" in message
    assert isinstance(info.value, InputError)


def test_num_batches_tracked_is_ignored_by_name_but_other_unknown_leaves_are_errors():
    shapes = tsv_shapes("mobilenetv2")
    state_dict = constant_state_dict(shapes)
    state_dict["backbone.features.0.1.num_batches_tracked"] = np.array(123456)
    torch_to_flax(state_dict, synthesised_target(shapes))  # fine
    state_dict["backbone.features.0.1.momentum"] = np.array(0.1)
    state_dict["fc.weight"] = np.zeros((10, 20), np.float32)  # rank 2: no conv/BN leaf
    with pytest.raises(ConversionError) as info:
        torch_to_flax(state_dict, synthesised_target(shapes))
    assert len(info.value.problems) == 2
    assert all(p.startswith("unexpected") for p in info.value.problems)


def test_resnet50_weights_into_a_resnet101_model_list_the_missing_blocks_in_one_error():
    target = synthesised_target(tsv_shapes("resnet101"))
    with pytest.raises(ConversionError) as info:
        torch_to_flax(constant_state_dict(tsv_shapes("resnet50")), target)
    # layer3 blocks 6..22: 17 blocks x (3 convs + 3 BNs x 4 tensors) = 255 missing tensors.
    assert len(info.value.problems) == 17 * 15
    assert "... and 230 more" in str(info.value)


def test_a_kernel_size_3_refiner_does_not_load_into_a_kernel_size_1_model():
    shapes = tsv_shapes("resnet50")
    with pytest.raises(ConversionError) as info:
        torch_to_flax(constant_state_dict(shapes), synthesised_target(with_refiner_kernel_1(shapes)))
    assert len(info.value.problems) == 4
    assert all("refiner.conv" in p for p in info.value.problems)


def test_half_precision_checkpoints_are_cast_to_the_target_dtype_and_integers_are_refused():
    import ml_dtypes

    class Leaf:  # what jax.eval_shape returns: an object with .shape and .dtype
        def __init__(self, shape, dtype):
            self.shape, self.dtype = shape, np.dtype(dtype)

    target = {"params": {"decoder": {"conv4": {"kernel": Leaf((3, 3, 54, 37), "float32"),
                                               "bias": Leaf((37,), "float32")}}}}
    weight = np.random.default_rng(0).standard_normal((37, 54, 3, 3)).astype(np.float16)
    bias = np.arange(37).astype(ml_dtypes.bfloat16)
    params, batch_stats = torch_to_flax({"decoder.conv4.weight": weight, "decoder.conv4.bias": bias}, target)
    assert params["decoder"]["conv4"]["kernel"].dtype == np.float32
    np.testing.assert_array_equal(params["decoder"]["conv4"]["kernel"], weight.astype(np.float32).transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(params["decoder"]["conv4"]["bias"], np.arange(37, dtype=np.float32))
    assert batch_stats == {}
    with pytest.raises(ConversionError, match="int64 data"):
        torch_to_flax({"decoder.conv4.weight": weight, "decoder.conv4.bias": np.arange(37)}, target)


def test_targets_from_jax_eval_shape_are_accepted():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    shapes = without_refiner(tsv_shapes("mobilenetv2"))
    tuples = synthesised_target(shapes)
    as_structs = jax.eval_shape(lambda: jax.tree.map(lambda s: jnp.zeros(s, jnp.float32), tuples,
                                                     is_leaf=lambda x: isinstance(x, tuple)))
    params, _ = torch_to_flax(constant_state_dict(shapes), as_structs)
    assert get(params, "backbone/features_0_0/kernel").shape == (3, 3, 6, 32)


# --------------------------------------------------------------------------------- detect_config


def zeros_like_shapes(shapes: dict) -> dict:
    return {k: np.broadcast_to(np.float32(0), s) for k, s in shapes.items()}


@pytest.mark.parametrize("backbone", BACKBONES)
def test_detect_config_reads_backbone_model_type_and_refiner_kernel_size_from_keys_and_shapes(backbone):
    shapes = tsv_shapes(backbone)
    assert detect_config(zeros_like_shapes(shapes)) == {
        "model_type": "refine", "backbone": backbone, "refine_kernel_size": 3}
    assert detect_config(zeros_like_shapes(with_refiner_kernel_1(shapes))) == {
        "model_type": "refine", "backbone": backbone, "refine_kernel_size": 1}
    assert detect_config(zeros_like_shapes(without_refiner(shapes))) == {
        "model_type": "base", "backbone": backbone, "refine_kernel_size": None}


def test_detect_config_explains_imagenet_and_deeplab_checkpoints_are_for_training_init_only():
    imagenet = {"conv1.weight": np.zeros((64, 3, 7, 7)), "fc.weight": np.zeros((1000, 2048))}
    with pytest.raises(InputError, match="resnet50.pth: .*ImageNet"):
        detect_config(imagenet, source="resnet50.pth")
    deeplab = {"backbone.conv1.weight": np.zeros((64, 3, 7, 7)),
               "classifier.classifier.0.convs.0.0.weight": np.zeros((256, 2048, 1, 1))}
    deeplab.update({f"backbone.layer3.{i}.conv1.weight": np.zeros((256, 1024, 1, 1)) for i in range(6)})
    with pytest.raises(InputError, match="6 input channels"):
        detect_config(deeplab)


def test_detect_config_rejects_mixed_refiner_kernels_and_unknown_resnet_depths():
    shapes = dict(tsv_shapes("resnet50"))
    shapes["refiner.conv2.weight"] = (16, 24, 1, 1)
    with pytest.raises(InputError, match="all be 3x3 or all 1x1.*refiner.conv2.weight 1x1"):
        detect_config(zeros_like_shapes(shapes))
    shallow = {k: v for k, v in tsv_shapes("resnet50").items() if not k.startswith("backbone.layer3.5.")}
    with pytest.raises(InputError, match="5 blocks in layer3"):
        detect_config(zeros_like_shapes(shallow))
    backbone_only = {k: v for k, v in tsv_shapes("resnet50").items() if k.startswith("backbone.")}
    with pytest.raises(InputError, match="no aspp"):
        detect_config(zeros_like_shapes(backbone_only))


@pytest.mark.parametrize(("backbone", "total"), [("resnet50", 40_247_703), ("resnet101", 59_239_831),
                                                 ("mobilenetv2", 5_006_839)])
def test_count_parameters_of_the_tsv_matches_the_original_table(backbone, total):
    counts = keys.count_parameters(zeros_like_shapes(tsv_shapes(backbone)))
    assert counts["total"] == total and counts["refiner"] == 15_444


# ------------------------------------------------------------------------------- partial loads


def imagenet_resnet50_shapes() -> dict:
    """torchvision ImageNet ResNet-50 state_dict shapes: the backbone keys without the prefix,
    a 3-channel conv1, and the fc classifier."""
    shapes = {k.removeprefix("backbone."): v for k, v in tsv_shapes("resnet50").items() if k.startswith("backbone.")}
    shapes["conv1.weight"] = (64, 3, 7, 7)
    return shapes | {"fc.weight": (1000, 2048), "fc.bias": (1000,)}


def test_imagenet_resnet_initialises_the_backbone_except_its_3_channel_first_conv():
    target = synthesised_target(tsv_shapes("resnet50"))
    source = imagenet_resnet50_shapes()
    result = partial_torch_to_flax(zeros_like_shapes(source), target, renames=partial.RESNET_IMAGENET_RENAMES)
    backbone_tensors = [k for k in tsv_shapes("resnet50") if k.startswith("backbone.")
                        and not k.endswith("num_batches_tracked")]
    assert sorted(result.loaded) == sorted(k for k in backbone_tensors if k != "backbone.conv1.weight")
    assert result.skipped == [
        "conv1.weight (as backbone.conv1.weight): shape (64, 3, 7, 7) does not fit params/backbone/conv1/kernel "
        "(7, 7, 6, 64)",
        "fc.weight (as backbone.fc.weight): not a conv or BatchNorm tensor of this model",
        "fc.bias (as backbone.fc.bias): the model has no params/backbone/fc/bias",
    ]
    assert "backbone.conv1.weight" in result.kept
    assert not any(k.startswith("backbone.") and k != "backbone.conv1.weight" for k in result.kept)
    assert get(result.params, "backbone/layer4_2/conv3/kernel").shape == (1, 1, 512, 2048)
    assert "conv1" not in result.params["backbone"]


def test_deeplabv3_initialises_backbone_and_aspp_from_classifier_classifier_0():
    shapes = tsv_shapes("resnet50")
    source = {k: v for k, v in shapes.items() if k.startswith("backbone.")}
    source["backbone.conv1.weight"] = (64, 3, 7, 7)
    source.update({k.replace("aspp.", "classifier.classifier.0.", 1): v
                   for k, v in shapes.items() if k.startswith("aspp.")})
    source.update({"classifier.classifier.1.weight": (256, 256, 3, 3), "classifier.classifier.2.weight": (256,),
                   "classifier.classifier.2.bias": (256,), "classifier.classifier.2.running_mean": (256,),
                   "classifier.classifier.2.running_var": (256,), "classifier.classifier.4.weight": (21, 256, 1, 1),
                   "classifier.classifier.4.bias": (21,)})
    result = partial_torch_to_flax(zeros_like_shapes(source), synthesised_target(shapes),
                                   renames=partial.DEEPLABV3_RENAMES, source="best_deeplabv3_resnet50_voc_os16.pth")
    assert {k.split(".")[0] for k in result.loaded} == {"backbone", "aspp"}
    assert len([k for k in result.loaded if k.startswith("aspp.")]) == 6 * 5  # 6 (conv + BN) pairs, 5 tensors each
    assert len(result.skipped) == 1 + 7  # conv1 and the segmentation head
    assert {k.split(".")[0] for k in result.kept} == {"backbone", "decoder", "refiner"}
    assert [k for k in result.kept if k.startswith("backbone.")] == ["backbone.conv1.weight"]
    assert result.summary().startswith(f"loaded {len(result.loaded)} tensors, skipped 8;")


def test_imagenet_mobilenetv2_initialises_features_0_to_17_but_not_the_stem_conv():
    shapes = tsv_shapes("mobilenetv2")
    source = {k.removeprefix("backbone."): v for k, v in shapes.items() if k.startswith("backbone.")}
    source["features.0.0.weight"] = (32, 3, 3, 3)
    source.update({"features.18.0.weight": (1280, 320, 1, 1), "features.18.1.weight": (1280,),
                   "classifier.1.weight": (1000, 1280), "classifier.1.bias": (1000,)})
    result = partial_torch_to_flax(zeros_like_shapes(source), synthesised_target(shapes),
                                   renames=partial.MOBILENETV2_IMAGENET_RENAMES)
    assert [k for k in result.kept if k.startswith("backbone.")] == ["backbone.features.0.0.weight"]
    assert len(result.skipped) == 5


def test_a_checkpoint_with_nothing_in_common_is_an_input_error():
    with pytest.raises(InputError, match="other.pth: none of its 2 tensors matches"):
        partial_torch_to_flax({"x.weight": np.zeros((3, 3, 1, 1)), "y.bias": np.zeros(3)},
                              synthesised_target(tsv_shapes("mobilenetv2")), source="other.pth")
