"""BatchNorm in training updates its running statistics exactly as PyTorch's BatchNorm2d: normalise with the
biased batch variance, update the running variance with the unbiased one (n / (n - 1)).

Where n is small the difference is large: ASPP's image-pooling BatchNorm sees one value per image, so at
batch 2 the unbiased variance is twice the biased one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import require_torch

from bgm_jax.models.layers import BatchNorm


def test_running_variance_uses_the_unbiased_batch_variance_like_torch():
    torch = require_torch()
    x = np.random.default_rng(0).normal(1.0, 3.0, (2, 3, 3, 7)).astype(np.float32)  # n = 18 per channel
    ours = BatchNorm()
    variables = ours.init(jax.random.key(0), x)
    y, updated = ours.apply(variables, x, mutable=["batch_stats"])

    theirs = torch.nn.BatchNorm2d(7, eps=1e-5, momentum=0.1).train()
    expected_y = theirs(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).detach().numpy()
    np.testing.assert_allclose(np.asarray(y), expected_y, atol=2e-5)
    np.testing.assert_allclose(updated["batch_stats"]["mean"], theirs.running_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(updated["batch_stats"]["var"], theirs.running_var.numpy(), rtol=1e-5)
    # Not the biased update: 0.9 + 0.1 * var differs by 0.1 * var / 17 here.
    biased = 0.9 + 0.1 * x.reshape(-1, 7).var(axis=0)
    assert np.all(np.abs(np.asarray(updated["batch_stats"]["var"]) - biased) > 1e-3)


def test_masked_running_variance_counts_only_the_selected_entries():
    x = np.random.default_rng(1).normal(0.0, 2.0, (5, 2, 2, 3)).astype(np.float32)
    mask = np.array([1, 0, 1, 1, 0], bool).reshape(5, 1, 1, 1)
    ours = BatchNorm()
    variables = ours.init(jax.random.key(0), x)
    _, updated = ours.apply(variables, x, mask, mutable=["batch_stats"])
    selected = x[mask.ravel()].reshape(-1, 3)  # 3 patches x 4 pixels = 12 entries per channel
    np.testing.assert_allclose(updated["batch_stats"]["var"], 0.9 + 0.1 * selected.var(axis=0, ddof=1), rtol=1e-5)


@pytest.mark.parametrize("backbone", ["mobilenetv2", "resnet50"])
def test_every_running_statistic_of_a_training_forward_pass_matches_torch(backbone):
    """A MattingBase forward pass in training mode (batch 2: ASPP's pooling BatchNorm has n = 2) updates
    every BatchNorm's running mean and variance as the PyTorch original does."""
    torch = require_torch()
    import torch_reference as ref

    from bgm_jax.checkpoint import abstract_variables
    from bgm_jax.convert.keys import flax_to_torch, torch_to_flax
    from bgm_jax.models import MattingBase

    reference = ref.random_model("base", backbone, seed=3)
    reference.aspp.project[-1].p = 0.0  # dropout off on both sides, so the decoder sees the same values
    src, bgr = ref.random_inputs(2, 64, 64, seed=5)
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    params, batch_stats = torch_to_flax(state, abstract_variables({"model_type": "base", "backbone": backbone}))
    model = MattingBase(backbone, aspp_dropout=0.0)
    nhwc = lambda t: jnp.asarray(t.permute(0, 2, 3, 1).numpy())  # noqa: E731
    _, updated = model.apply({"params": params, "batch_stats": batch_stats}, nhwc(src), nhwc(bgr), train=True,
                             mutable=["batch_stats"])
    reference.train()
    with torch.no_grad():
        reference(src, bgr)
    ours = flax_to_torch(params, jax.device_get(updated["batch_stats"]))
    theirs = {k: v.numpy() for k, v in reference.state_dict().items()}
    names = [k for k in theirs if k.endswith(("running_mean", "running_var"))]
    assert any(k.startswith("aspp.convs.4") for k in names)
    for k in names:  # float32 through ~50 layers: absolute 1e-4 on values near 0, else relative 1e-3
        np.testing.assert_allclose(ours[k], theirs[k], rtol=1e-3, atol=1e-4, err_msg=k)
    # ASPP's pooling BatchNorm (n = 2): the biased update would be off by far more than the tolerance.
    pooled = "aspp.convs.4.2.running_var"
    assert np.max(np.abs(ours[pooled] - theirs[pooled])) < 1e-3 * np.max(theirs[pooled])
