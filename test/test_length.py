"""Length estimator: release layout, sampling (not argmax) with a floor, learning lengths from text vectors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from momask_model.config import LengthEstimatorConfig
from momask_model.nets.length import LengthEstimator
from momask_model.nets.common import TransformerShapeError



def test_release_keys_shapes_and_element_count():
    model = LengthEstimator(**LengthEstimatorConfig().model_kwargs())
    sd = model.state_dict()
    assert sum(v.numel() for v in sd.values()) == 435_122
    assert {k: tuple(v.shape) for k, v in sd.items()} == {
        "output.0.weight": (512, 512), "output.0.bias": (512,),
        "output.1.weight": (512,), "output.1.bias": (512,),
        "output.4.weight": (256, 512), "output.4.bias": (256,),
        "output.5.weight": (256,), "output.5.bias": (256,),
        "output.8.weight": (128, 256), "output.8.bias": (128,),
        "output.9.weight": (128,), "output.9.bias": (128,),
        "output.11.weight": (50, 128), "output.11.bias": (50,),
    }
    kinds = [type(m) for m in model.output]
    assert kinds[2] is nn.LeakyReLU and model.output[2].negative_slope == 0.2
    assert kinds[3] is nn.Dropout and kinds[7] is nn.Dropout and kinds[10] is nn.LeakyReLU


def test_sample_is_categorical_reproducible_and_floored():
    model = LengthEstimator(input_dim=16, num_classes=10)
    with torch.no_grad():
        model.output[11].weight.zero_()
        model.output[11].bias.zero_()  # uniform over 0..9
    cond = torch.randn(4000, 16)
    a = model.sample(cond, generator=torch.Generator().manual_seed(0))
    b = model.sample(cond, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.dtype == torch.long
    counts = torch.bincount(a, minlength=10)
    assert counts[0] == 0  # class 0 (a zero-length motion) is floored to 1
    assert counts[1] == pytest.approx(800, rel=0.15)  # its own 1/10 plus class 0's 1/10
    assert counts[2:].float().div(4000).sub(0.1).abs().max() < 0.03
    assert int(model.sample(cond, min_tokens=4).min()) == 4
    with pytest.raises(ValueError, match="min_tokens"):
        model.sample(cond, min_tokens=0)


def test_learns_a_length_per_text_vector():
    torch.manual_seed(0)
    model = LengthEstimator(input_dim=32, num_classes=50)
    g = torch.Generator().manual_seed(0)
    conds = torch.randn(4, 32, generator=g) * 3
    lengths = torch.tensor([5, 12, 30, 44])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(150):
        k = torch.randint(0, 4, (32,), generator=g)
        loss, _ = model.training_loss(conds[k] + 0.1 * torch.randn(32, 32, generator=g), lengths[k])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.6 * sum(losses[:10]) / 10
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(conds).argmax(-1), lengths)
    draws = model.sample(conds.repeat(50, 1), generator=torch.Generator().manual_seed(1))
    assert (draws == lengths.repeat(50)).float().mean() > 0.7


def test_bad_lengths_and_conditions_raise():
    model = LengthEstimator(input_dim=8, num_classes=5)
    with pytest.raises(TransformerShapeError, match="token_lens"):
        model.training_loss(torch.randn(2, 8), torch.tensor([1, 5]))
    with pytest.raises(TransformerShapeError, match="cond"):
        model(torch.randn(2, 7))
    with pytest.raises(TransformerShapeError, match="cond"):
        model(torch.randn(8))
