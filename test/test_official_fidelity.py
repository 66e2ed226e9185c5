"""The two sampling/recovery details that make a seed give the official tokens and joints (issue 13).

Each test restates what the official code does (design/momask.md §4.4, §1.6) in its own tensor
layout and checks our implementation against it bit for bit.
"""
import math

import pytest
import torch

from momask_model.nets.masked import MaskTransformer
from momask_model.motion.features import features_to_joints, recover_root_rot_pos
from momask_model.nets.residual import ResidualTransformer
from momask_model.nets.common import lengths_to_mask


TINY = dict(num_tokens=64, code_dim=32, latent_dim=64, ff_size=128, num_layers=2, num_heads=4, cond_dim=64)



def _official_top_k(logits, thres):
    """top_k of the official tools on a (b, n, c) view: full_like keeps the view's memory layout."""
    k = math.ceil((1 - thres) * logits.shape[-1])
    val, ind = logits.topk(k, dim=-1)
    probs = torch.full_like(logits, float("-inf"))
    probs.scatter_(-1, ind, val)
    return probs


def _official_gumbel(t, temperature=1.0):
    noise = torch.zeros_like(t).uniform_(0, 1)  # fills the (b, c, n) storage of the permuted view
    g = -torch.log((-torch.log(noise.clamp(min=1e-20))).clamp(min=1e-20))
    return (t / max(temperature, 1e-10) + g).argmax(dim=-1)


def official_residual_generate(model, base, cond, lens, cond_scale, seed, thres=0.9):
    """The official ResidualTransformer.generate sampling, on our network's logits in its layout."""
    torch.manual_seed(seed)
    padding = ~lengths_to_mask(lens, base.shape[1])
    ids = torch.where(padding, model.pad_id, base)
    layers, history = [ids], 0
    for i in range(1, model.num_quantizers):
        history = history + model.token_embedding_table(i - 1)[ids]
        logits = model.forward_with_cfg(history, i, cond, padding, cond_scale)  # (b, n, c)
        logits = logits.permute(0, 2, 1).contiguous().permute(0, 2, 1)  # official: (b, c, n) storage, permuted
        ids = torch.where(padding, model.pad_id, _official_gumbel(_official_top_k(logits, thres)))
        layers.append(ids)
    out = torch.stack(layers, dim=-1)
    return torch.where(out == model.pad_id, -1, out)


@pytest.mark.parametrize("fast", [False, True])
def test_residual_sampling_draws_in_the_official_element_order(fast):
    torch.manual_seed(0)
    model = ResidualTransformer(**TINY, num_quantizers=5).eval()
    base = torch.randint(0, 64, (3, 11), generator=torch.Generator().manual_seed(1))
    lens = torch.tensor([11, 7, 9])
    cond = torch.randn(3, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = official_residual_generate(model, base, cond, lens, cond_scale=5.0, seed=7)
        got = model.generate(base, cond, lens, cond_scale=5.0, generator=torch.Generator().manual_seed(7),
                             fused_cfg=fast)
    assert torch.equal(got, expected)
    # the old (b, n, c) draw order gives other tokens from the same seed: the test can tell them apart
    torch.manual_seed(7)
    other = torch.rand(3, 11, 65).argmax(-1)
    torch.manual_seed(7)
    official = torch.zeros(3, 65, 11).uniform_().permute(0, 2, 1).argmax(-1)
    assert not torch.equal(other, official)


def test_masked_gumbel_sampling_follows_the_same_order():
    torch.manual_seed(0)
    model = MaskTransformer(**TINY).eval()
    cond = torch.randn(2, 64, generator=torch.Generator().manual_seed(2))
    lens = torch.tensor([9, 6])
    ids = model.generate(cond, lens, timesteps=1, gsample=True, generator=torch.Generator().manual_seed(3))
    # one step: every valid position is sampled once from the CFG logits of an all-[MASK] input
    padding = ~lengths_to_mask(lens, 9)
    start = torch.where(padding, model.pad_id, model.mask_id)
    with torch.no_grad():
        logits = model.forward_with_cfg(start, cond, padding, 4.0).permute(0, 2, 1).contiguous().permute(0, 2, 1)
    torch.manual_seed(3)
    expected = torch.where(padding, -1, _official_gumbel(_official_top_k(logits, 0.9)))
    assert torch.equal(ids, expected)


def test_heading_is_shifted_then_summed_as_the_official_code():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(2, 300, 263, generator=gen, dtype=torch.float32) * 0.1
    features[..., 0] = 0.35 + 0.05 * torch.randn(2, 300, generator=gen)  # a fast spin
    r_rot, _ = recover_root_rot_pos(features)
    shifted = torch.zeros_like(features[..., 0])
    shifted[..., 1:] = features[..., :-1, 0]
    angle = torch.cumsum(shifted, dim=-1)  # official recover_root_rot_pos
    assert torch.equal(r_rot[..., 0], torch.cos(angle)) and torch.equal(r_rot[..., 2], torch.sin(angle))
    legacy = torch.cumsum(features[..., 0], dim=-1) - features[..., 0]
    assert not torch.equal(legacy, angle)  # the two sums differ in float32, so the check is not vacuous
    joints = features_to_joints(features, 22)
    assert joints.shape == (2, 300, 22, 3) and torch.isfinite(joints).all()


def official_edit(model, cond, tokens, lens, edit_mask, *, timesteps, cond_scale, seed, thres=0.9):
    """The official MaskTransformer.edit loop (edit_mask given), categorical sampling, on our logits."""
    from torch.distributions import Categorical

    torch.manual_seed(seed)
    padding = ~lengths_to_mask(lens, tokens.shape[1])
    edit_mask = edit_mask & ~padding
    edit_len = edit_mask.sum(dim=-1)
    ids = torch.where(edit_mask, model.mask_id, tokens)
    scores = torch.where(edit_mask, 0.0, 1e5)
    for timestep in torch.linspace(0, 1, timesteps):
        num = torch.round(torch.cos(timestep * math.pi * 0.5) * edit_len).clamp(min=1)
        is_mask = scores.argsort(dim=1).argsort(dim=1) < num.unsqueeze(-1)
        ids = torch.where(is_mask, model.mask_id, ids)
        logits = model.forward_with_cfg(torch.where(padding, model.pad_id, ids), cond, padding, cond_scale)
        logits = logits.permute(0, 2, 1).contiguous().permute(0, 2, 1)
        filtered = _official_top_k(logits, thres)
        pred = Categorical(torch.softmax(filtered, dim=-1) / 1.0).sample()
        ids = torch.where(is_mask, pred, ids)
        scores = logits.softmax(dim=-1).gather(2, pred.unsqueeze(-1)).squeeze(-1).masked_fill(~is_mask, 1e5)
    return torch.where(padding, -1, ids)


@pytest.mark.parametrize("fast", [False, True])
def test_edit_gives_the_official_edit_tokens(fast):
    torch.manual_seed(0)
    model = MaskTransformer(**TINY).eval()
    gen = torch.Generator().manual_seed(4)
    cond = torch.randn(2, 64, generator=gen)
    tokens = torch.randint(0, 64, (2, 14), generator=gen)
    lens = torch.tensor([14, 12])
    edit_mask = torch.zeros(2, 14, dtype=torch.bool)
    edit_mask[0, 4:9] = True
    edit_mask[1, :3] = True
    edit_mask[1, 10:] = True
    with torch.no_grad():
        for seed in range(3):
            expected = official_edit(model, cond, tokens, lens, edit_mask, timesteps=6, cond_scale=4.0, seed=seed)
            got = model.edit(cond, tokens, lens, edit_mask, timesteps=6, cond_scale=4.0,
                             generator=torch.Generator().manual_seed(seed), fused_cfg=fast)
            assert torch.equal(got, expected)
