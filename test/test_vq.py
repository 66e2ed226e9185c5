"""Residual VQ-VAE: official layout, shapes, encode/decode contracts, loss, and that it learns."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from momask_model.config import VQConfig, tiny_config
from momask_model.nets.vq import RVQVAE, VQInputError, VQOutput, joints_num_from_dim

TINY = dict(input_dim=263, width=64, code_dim=32, nb_code=64, num_quantizers=4, depth=2)


def _official_keys(d: int, q: int = 6) -> dict[str, tuple[int, ...]]:
    """The 72 state_dict entries listed in design/momask.md §2.2, written out independently."""
    w = 512
    keys: dict[str, tuple[int, ...]] = {}

    def conv(prefix: str, c_out: int, c_in: int, k: int) -> None:
        keys[f"{prefix}.weight"] = (c_out, c_in, k)
        keys[f"{prefix}.bias"] = (c_out,)

    def resnet(prefix: str) -> None:
        for b in range(3):
            conv(f"{prefix}.model.{b}.conv1", w, w, 3)
            conv(f"{prefix}.model.{b}.conv2", w, w, 1)

    conv("encoder.model.0", w, d, 3)
    for s in (2, 3):
        conv(f"encoder.model.{s}.0", w, w, 4)
        resnet(f"encoder.model.{s}.1")
    conv("encoder.model.4", w, w, 3)
    conv("decoder.model.0", w, w, 3)
    for s in (2, 3):
        resnet(f"decoder.model.{s}.0")
        conv(f"decoder.model.{s}.2", w, w, 3)
    conv("decoder.model.4", w, w, 3)
    conv("decoder.model.6", d, w, 3)
    for i in range(q):
        keys[f"quantizer.layers.{i}.codebook"] = (512, 512)
    return keys


def _motion_batch(b: int, t: int, d: int, g: torch.Generator) -> torch.Tensor:
    """Smooth motion-like features: a few sinusoidal latent 'joint angles' mixed into D channels."""
    mix = torch.randn(6, d, generator=torch.Generator().manual_seed(7)) / math.sqrt(6)
    tt = torch.arange(t, dtype=torch.float32)[None, :, None] / t
    freq = 0.5 + 1.5 * torch.rand(b, 1, 6, generator=g)
    phase = 2 * math.pi * torch.rand(b, 1, 6, generator=g)
    amp = 0.5 + torch.rand(b, 1, 6, generator=g)
    latent = amp * torch.sin(2 * math.pi * freq * tt + phase)
    return latent @ mix + 0.02 * torch.randn(b, t, d, generator=g)


@pytest.fixture(scope="module")
def trained_tiny() -> RVQVAE:
    """A tiny VQ after a few training steps (codebooks initialised from data)."""
    torch.manual_seed(0)
    m = RVQVAE(**TINY)
    g = torch.Generator().manual_seed(1)
    m.train()
    for _ in range(5):
        m(_motion_batch(8, 32, 263, g))
    m.eval()
    return m


# ---------------------------------------------------------------------------------------------------------
# layout


@pytest.mark.parametrize("d, params", [(263, 21_009_671), (251, 21_009_671 - 12 * (512 * 3 * 2) - 12)])
def test_paper_size_state_dict_matches_the_official_keys_and_shapes(d, params):
    model = RVQVAE(**VQConfig(input_dim=d).model_kwargs())
    sd = model.state_dict()
    expected = _official_keys(d)
    assert len(sd) == len(expected) == 72
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected
    assert sum(v.numel() for v in sd.values()) == params
    assert {n for n, _ in model.named_buffers() if n in sd} == {f"quantizer.layers.{i}.codebook" for i in range(6)}
    model.load_state_dict({k: torch.zeros(s) for k, s in expected.items()}, strict=True)


def test_dilations_are_reversed_and_dropout_sits_in_every_block():
    model = RVQVAE()
    for stack in (model.encoder.model[2][1], model.decoder.model[2][0]):
        assert [blk.conv1.dilation[0] for blk in stack.model] == [9, 3, 1]
        assert [blk.conv1.padding[0] for blk in stack.model] == [9, 3, 1]
        assert all(blk.dropout.p == 0.2 for blk in stack.model)
    up = model.decoder.model[3][1]
    assert isinstance(up, torch.nn.Upsample) and up.mode == "nearest" and up.scale_factor == 2


def test_builds_from_config():
    cfg = tiny_config().vq
    m = RVQVAE(**cfg.model_kwargs())
    assert m.nb_code == cfg.nb_code and m.num_quantizers == cfg.num_quantizers


# ---------------------------------------------------------------------------------------------------------
# forward / encode / decode


def test_forward_shapes_and_dropped_layers_are_a_suffix():
    torch.manual_seed(0)
    m = RVQVAE(**{**TINY, "quantize_dropout_prob": 1.0})
    m.train()
    x = _motion_batch(3, 32, 263, torch.Generator().manual_seed(0))
    seen = set()
    for _ in range(12):
        out = m(x)
        assert isinstance(out, VQOutput)
        assert out.recon.shape == x.shape and out.codes.shape == (3, 8, 4) and out.codes.dtype == torch.long
        assert out.commit_loss.shape == () and out.perplexity.shape == ()
        kept = (out.codes[0, 0] >= 0).tolist()
        assert kept == sorted(kept, reverse=True) and kept[0]
        seen.add(sum(kept))
    assert len(seen) > 1  # with p=1 the kept prefix length varies


def test_encode_is_deterministic_argmin_and_does_not_train(trained_tiny):
    m = trained_tiny
    x = _motion_batch(4, 32, 263, torch.Generator().manual_seed(5))
    m.train()
    try:
        before = {k: v.clone() for k, v in m.state_dict().items()}
        codes = m.encode(x)
        assert torch.equal(codes, m.encode(x))
        assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
        assert m.training and all(mod.training for mod in m.modules())  # mode restored
    finally:
        m.eval()
    assert codes.shape == (4, 8, 4) and codes.dtype == torch.long and (codes >= 0).all()
    with torch.no_grad():
        z = m.encoder(x.transpose(1, 2)).transpose(1, 2).reshape(-1, m.code_dim)
    for i, layer in enumerate(m.quantizer.layers):
        k = torch.cdist(z, layer.codebook).argmin(-1)
        assert torch.equal(codes[..., i].reshape(-1), k)
        z = z - layer.codebook[k]
    assert torch.equal(m(x).codes, codes)  # eval forward = encode


def test_decode_any_prefix_and_minus_one_is_zero(trained_tiny):
    m = trained_tiny
    x = _motion_batch(2, 32, 263, torch.Generator().manual_seed(6))
    codes = m.encode(x)
    with torch.no_grad():
        full = m.decode(codes)
        assert full.shape == (2, 32, 263)
        assert torch.allclose(full, m(x).recon, atol=1e-5)
        for q in range(1, 5):
            prefix = m.decode(codes[..., :q])
            padded = torch.cat([codes[..., :q], torch.full_like(codes[..., q:], -1)], dim=-1)
            assert prefix.shape == (2, 32, 263)
            assert torch.allclose(prefix, m.decode(padded), atol=1e-6)
        zero_latent = m.decoder(torch.zeros(2, m.code_dim, 8)).transpose(1, 2)
        assert torch.allclose(m.decode(torch.full((2, 8, 4), -1)), zero_latent, atol=1e-6)
        # more layers, better reconstruction
        errs = [F.mse_loss(m.decode(codes[..., :q]), x).item() for q in (1, 4)]
    assert errs[1] < errs[0]
    assert m.decode(codes[:, :3]).shape == (2, 12, 263)


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.full((1, 4, 1), 64), r"\[-1, 63\]"),
        (torch.zeros(1, 4, 5, dtype=torch.long), "5 layers"),
        (torch.zeros(1, 4, 2), "integer"),
    ],
)
def test_decode_rejects_bad_codes(bad, match):
    with pytest.raises(ValueError, match=match):
        RVQVAE(**TINY).decode(bad)


# ---------------------------------------------------------------------------------------------------------
# input checks


def test_nan_input_raises():
    m = RVQVAE(**TINY)
    x = torch.zeros(1, 8, 263)
    x[0, 3, 7] = float("nan")
    for fn in (m, m.encode, m.training_loss):
        with pytest.raises(VQInputError, match="NaN"):
            fn(x)


def test_wrong_feature_dim_names_the_expected_dim():
    m = RVQVAE(**TINY)
    with pytest.raises(ValueError, match="expects 263"):
        m(torch.zeros(1, 8, 251))
    with pytest.raises(ValueError, match="expects 263"):
        m.encode(torch.zeros(1, 8, 251))
    with pytest.raises(VQInputError, match="multiple of 4"):
        m(torch.zeros(1, 10, 263))
    with pytest.raises(VQInputError, match=r"\(B, T, 263\)"):
        m(torch.zeros(8, 263))


def test_joints_num_inferred_from_feature_dim():
    assert joints_num_from_dim(263) == 22 and joints_num_from_dim(251) == 21
    with pytest.raises(VQInputError, match="100"):
        joints_num_from_dim(100)


# ---------------------------------------------------------------------------------------------------------
# loss and learning


def test_training_loss_combines_the_documented_terms(trained_tiny):
    m = trained_tiny
    x = _motion_batch(2, 32, 263, torch.Generator().manual_seed(8))
    terms = m.training_loss(x, commit_weight=0.02, loss_vel=0.5)
    recon = m(x).recon
    assert torch.allclose(terms["recon"], F.smooth_l1_loss(recon, x))
    assert torch.allclose(terms["ric"], F.smooth_l1_loss(recon[..., 4:67], x[..., 4:67]))
    assert torch.allclose(terms["loss"], terms["recon"] + 0.5 * terms["ric"] + 0.02 * terms["commit"])
    kit = RVQVAE(**{**TINY, "input_dim": 251})
    kit.eval()
    xk = _motion_batch(1, 16, 251, torch.Generator().manual_seed(9))
    t = kit.training_loss(xk)
    assert torch.allclose(t["ric"], F.smooth_l1_loss(kit(xk).recon[..., 4:64], xk[..., 4:64]))
    t2 = kit.training_loss(xk, joints_num=5)
    assert torch.allclose(t2["ric"], F.smooth_l1_loss(kit(xk).recon[..., 4:16], xk[..., 4:16]))


def test_gradient_reaches_every_encoder_and_decoder_weight():
    torch.manual_seed(0)
    m = RVQVAE(**{**TINY, "dropout": 0.0})
    m.train()
    m.training_loss(_motion_batch(4, 32, 263, torch.Generator().manual_seed(2)))["loss"].backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(not b.requires_grad for b in m.buffers())


def test_tiny_vq_learns_to_reconstruct_motion_like_data():
    torch.manual_seed(0)
    m = RVQVAE(**TINY)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.99))
    held_out = _motion_batch(16, 32, 263, torch.Generator().manual_seed(123))
    g = torch.Generator().manual_seed(0)

    def held_out_recon() -> float:
        m.eval()
        with torch.no_grad():
            value = m.training_loss(held_out)["recon"].item()
        m.train()
        return value

    initial = held_out_recon()
    m.train()
    for _ in range(200):
        terms = m.training_loss(_motion_batch(16, 32, 263, g))
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
    final = held_out_recon()
    assert final < 0.5 * initial, (initial, final)
    usage = m.codebook_usage(m.encode(held_out))
    assert usage[0] > 0.25, usage  # dead-code resets keep the base codebook in use


def test_extra_state_is_separate_from_state_dict(trained_tiny):
    m = trained_tiny
    extra = m.extra_state()
    assert len(extra["layers"]) == 4 and all(s["initialized"] for s in extra["layers"])
    clone = RVQVAE(**TINY)
    clone.load_state_dict(m.state_dict())
    clone.load_extra_state(extra)
    for a, b in zip(clone.quantizer.layers, m.quantizer.layers):
        assert torch.equal(a.code_sum, b.code_sum) and a.initialized
