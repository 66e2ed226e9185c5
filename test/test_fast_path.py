"""Fast generation path (issue 8): same weights, same computation, same tokens as the reference loop.

The fast path fuses the conditional and unconditional passes into one batch, runs the encoder
batch-first and builds per-call constants once; at a fixed seed in float32 it must return exactly the
reference's tokens (same random draws in the same order), for both transformers and end to end.
"""
import math

import numpy as np
import pytest
import torch
from torch import nn

from momask_model.nets import fastpath
from momask_model.generation.bundle import build_random_momask
from momask_model.config import (
    MaskTransformerConfig,
    ResidualTransformerConfig,
    VQConfig,
    tiny_config,
)
from momask_model.nets.fastpath import FastPathError, FastPathOptions
from momask_model.nets.masked import MaskTransformer, _FusedMaskedStep
from momask_model.nets.residual import ResidualTransformer, _FusedResidualStep
from momask_model.nets.common import attention_bias, build_encoder, encoder_batch_first, lengths_to_mask


TINY = dict(num_tokens=64, code_dim=32, latent_dim=64, ff_size=128, num_layers=2, num_heads=4, cond_dim=64)
# Small but not tiny: realistic widths/depth ratios, a 256-code book, 6 heads (paper's head count).
SMALL = dict(num_tokens=256, code_dim=128, latent_dim=192, ff_size=512, num_layers=4, num_heads=6, cond_dim=96)



def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module", params=["tiny", "small"])
def transformers(request):
    kw = TINY if request.param == "tiny" else SMALL
    torch.manual_seed(11)
    return MaskTransformer(**kw).eval(), ResidualTransformer(**kw, num_quantizers=5).eval()


# ---------------------------------------------------------------------------------------- encoder
@pytest.mark.parametrize("norm_first", [False, True])
def test_batch_first_encoder_equals_sequence_first_stack(norm_first):
    torch.manual_seed(0)
    enc = build_encoder(latent_dim=48, ff_size=96, num_layers=3, num_heads=4, dropout=0.2)
    for layer in enc.layers:
        layer.norm_first = norm_first
    enc.eval()
    x = torch.randn(3, 9, 48)
    pad = ~lengths_to_mask(torch.tensor([9, 5, 2]), 9)
    with torch.no_grad():
        ref = enc(x.transpose(0, 1), src_key_padding_mask=pad).transpose(0, 1)
        composed = encoder_batch_first(enc, x.contiguous(), key_padding=pad)
        fused = encoder_batch_first(enc, x.contiguous(), key_padding=pad, impl="fused")
    assert torch.equal(composed, ref)  # bit-identical: same primitives, batch-first layout
    torch.testing.assert_close(fused, ref, rtol=1e-5, atol=1e-5)
    # a padded key changes nothing at valid positions of the same row
    x2 = x.clone()
    x2[1, 7] += 100.0
    with torch.no_grad():
        again = encoder_batch_first(enc, x2, key_padding=pad)
    torch.testing.assert_close(again[1, :5], composed[1, :5])
    assert not torch.allclose(again[1, 7], composed[1, 7])


def test_encoder_batch_first_rejects_bad_input():
    enc = build_encoder(latent_dim=16, ff_size=32, num_layers=1, num_heads=2, dropout=0.0).eval()
    with pytest.raises(ValueError, match="impl"):
        encoder_batch_first(enc, torch.zeros(1, 3, 16), key_padding=torch.zeros(1, 3, dtype=torch.bool), impl="x")
    with pytest.raises(ValueError, match="key_padding"):
        encoder_batch_first(enc, torch.zeros(1, 3, 16), key_padding=torch.zeros(1, 4, dtype=torch.bool))


def test_attention_bias_is_minus_inf_at_padding():
    bias = attention_bias(torch.tensor([[False, True, False]]))
    assert bias.shape == (1, 1, 1, 3)
    assert bias[0, 0, 0, 1] == float("-inf") and bias[0, 0, 0, 0] == 0 and bias[0, 0, 0, 2] == 0


# ---------------------------------------------------------------------------------------- transformers
@pytest.mark.parametrize(
    "lens, gsample, cond_scale, seed",
    [([12], False, 4.0, 0), ([12, 5, 9], False, 4.0, 1), ([7, 7], True, 4.0, 2), ([10, 3], False, 1.0, 3),
     ([1, 11, 6, 8], True, 2.5, 4)],
)
def test_masked_fast_path_gives_reference_tokens(transformers, lens, gsample, cond_scale, seed):
    mask, _ = transformers
    torch.manual_seed(100 + seed)
    cond = torch.randn(len(lens), mask.cond_dim)
    lens = torch.tensor(lens)
    kw = dict(timesteps=6, cond_scale=cond_scale, gsample=gsample)
    ref = mask.generate(cond, lens, generator=_gen(seed), **kw)
    fast = mask.generate(cond, lens, generator=_gen(seed), fused_cfg=True, **kw)
    fused_kernel = mask.generate(
        cond, lens, generator=_gen(seed), fused_cfg=True, fast_options=FastPathOptions(encoder_impl="fused"), **kw
    )
    assert torch.equal(fast, ref)
    assert torch.equal(fused_kernel, ref)
    assert (ref >= 0).sum() == lens.sum()  # a real decode, not all padding
    other = mask.generate(cond, lens, generator=_gen(seed + 50), fused_cfg=True, **kw)
    assert not torch.equal(other, fast)  # the seed matters: equality is not vacuous


@pytest.mark.parametrize("lens, cond_scale, seed", [([12], 5.0, 0), ([12, 4, 9], 5.0, 1), ([6, 6], 1.0, 2)])
def test_residual_fast_path_gives_reference_tokens(transformers, lens, cond_scale, seed):
    mask, res = transformers
    torch.manual_seed(200 + seed)
    cond = torch.randn(len(lens), res.cond_dim)
    lens = torch.tensor(lens)
    base = mask.generate(cond, lens, timesteps=3, generator=_gen(seed))
    ref = res.generate(base, cond, lens, cond_scale=cond_scale, generator=_gen(seed))
    fast = res.generate(base, cond, lens, cond_scale=cond_scale, generator=_gen(seed), fused_cfg=True)
    assert ref.shape == (len(lens), int(lens.max()), res.num_quantizers)
    assert torch.equal(fast, ref)
    other = res.generate(base, cond, lens, cond_scale=cond_scale, generator=_gen(seed + 50), fused_cfg=True)
    assert not torch.equal(other, fast)


def test_residual_fast_path_without_shared_weights():
    torch.manual_seed(5)
    res = ResidualTransformer(**TINY, num_quantizers=4, share_weight=False)
    with torch.no_grad():
        res.output_bias.normal_()  # make the per-layer bias matter
    cond, lens = torch.randn(2, res.cond_dim), torch.tensor([8, 5])
    base = torch.randint(0, res.num_tokens, (2, 8))
    ref = res.generate(base, cond, lens, generator=_gen(3))
    assert torch.equal(res.generate(base, cond, lens, generator=_gen(3), fused_cfg=True), ref)


def test_fast_step_logits_match_reference_and_buckets_only_pad(transformers):
    """Per-step logits agree (bit for bit for one pass; to float rounding once the two CFG halves share
    a GEMM); padding the sequence to a length bucket (the GPU compile path) only adds masked keys, so
    the valid logits stay equal to float rounding."""
    mask, res = transformers
    torch.manual_seed(9)
    lens = torch.tensor([11, 6])
    padding = ~lengths_to_mask(lens, 11)
    cond = torch.randn(2, mask.cond_dim)
    ids = torch.where(padding, mask.pad_id, torch.randint(0, mask.num_tokens + 1, (2, 11)))

    class Bucketed(FastPathOptions):
        def padded_length(self, n, device):
            return int(math.ceil(n / 8) * 8)

    with torch.no_grad():
        single = _FusedMaskedStep(mask, cond, padding, 1.0, FastPathOptions())(ids)
        assert torch.equal(single, mask.forward(ids, cond, padding))
        ref = mask.forward_with_cfg(ids, cond, padding, 3.0)
        torch.testing.assert_close(_FusedMaskedStep(mask, cond, padding, 3.0, FastPathOptions())(ids), ref,
                                   rtol=1e-5, atol=1e-5)
        bucketed = _FusedMaskedStep(mask, cond, padding, 3.0, Bucketed())
        assert bucketed.seq.shape[1] == 1 + 16
        torch.testing.assert_close(bucketed(ids), ref, rtol=1e-4, atol=1e-4)

        history = torch.randn(2, 11, res.code_dim)
        ref_r = res.forward_with_cfg(history, 2, cond[:, : res.cond_dim], padding, 5.0)
        step = _FusedResidualStep(res, cond[:, : res.cond_dim], padding, 5.0, FastPathOptions())
        torch.testing.assert_close(step(history, 2), ref_r, rtol=1e-5, atol=1e-5)
        single = _FusedResidualStep(res, cond[:, : res.cond_dim], padding, 1.0, FastPathOptions())(history, 3)
        assert torch.equal(single, res.forward(history, 3, cond[:, : res.cond_dim], padding))
        torch.testing.assert_close(
            _FusedResidualStep(res, cond[:, : res.cond_dim], padding, 5.0, Bucketed())(history, 2), ref_r,
            rtol=1e-4, atol=1e-4,
        )


def test_pruned_last_layer_equals_full_encoder_at_the_queried_positions():
    """query_index computes the last layer only at some positions; those outputs are bit-identical."""
    torch.manual_seed(3)
    enc = build_encoder(latent_dim=96, ff_size=192, num_layers=3, num_heads=6, dropout=0.1).eval()
    x = torch.randn(4, 21, 96)
    pad = ~lengths_to_mask(torch.tensor([21, 17, 9, 20]), 21)
    query = torch.stack([torch.randperm(9)[:8].sort().values for _ in range(4)])
    with torch.inference_mode():
        full = encoder_batch_first(enc, x, key_padding=pad)
        pruned = encoder_batch_first(enc, x, key_padding=pad, query_index=query)
    assert pruned.shape == (4, 8, 96)
    assert torch.equal(pruned, full.gather(1, query.unsqueeze(-1).expand(-1, -1, 96)))
    with pytest.raises(ValueError, match="query_index"):
        encoder_batch_first(enc, x, key_padding=pad, query_index=query[:2])


def test_masked_fast_steps_compute_only_predicted_rows_and_cache_the_text_free_first_step(monkeypatch):
    torch.manual_seed(21)
    mask = MaskTransformer(**SMALL).eval()
    calls = []
    original = mask.fused_network

    def spy(seq, key_padding, bias, impl, query_index=None):
        calls.append((seq.shape[0], None if query_index is None else query_index.shape[1]))
        return original(seq, key_padding, bias, impl, query_index)

    monkeypatch.setattr(mask, "fused_network", spy)
    cond, lens = torch.randn(2, mask.cond_dim), torch.tensor([40, 33])
    kw = dict(timesteps=8, cond_scale=4.0)
    first = mask.generate(cond, lens, generator=_gen(1), fused_cfg=True, **kw)
    rows, queries = zip(*calls)
    assert rows[0] == 4  # first command: both halves of the all-[MASK] step run (and fill the cache)
    assert queries[0] is None and queries[-1] == 8  # the last step predicts 1 token per row: 8 query rows
    assert all(q is None or q % 8 == 0 and q < 40 for q in queries)
    assert sum(q is not None for q in queries) >= 5  # most steps are pruned

    calls.clear()
    again = mask.generate(cond.flip(0), lens.flip(0), generator=_gen(1), fused_cfg=True, **kw)
    assert calls[0][0] == 2  # cached lengths: only the conditional half of the first step runs
    ref = mask.generate(cond.flip(0), lens.flip(0), generator=_gen(1), **kw)
    assert torch.equal(again, ref)

    with torch.no_grad():  # new weights (fine-tuning, loading) must not reuse the cached logits
        mask.cond_emb.bias.add_(0.5)
        mask.token_emb.weight.mul_(1.5)
    calls.clear()
    after = mask.generate(cond, lens, generator=_gen(1), fused_cfg=True, **kw)
    assert calls[0][0] == 4
    assert torch.equal(after, mask.generate(cond, lens, generator=_gen(1), **kw))
    assert not torch.equal(after, first)


def test_compiled_bucket_path_runs_whole_decodes_without_pruning_or_cache(transformers, monkeypatch):
    """The GPU compile path's control flow, exercised on CPU: compile forced on (torch.compile as the
    identity), sequences padded to 16-token buckets, fixed shapes (no pruning, no first-step cache)."""
    mask, res = transformers

    class ForcedCompile(FastPathOptions):
        def uses_compile(self, device):
            return True

    monkeypatch.setattr(torch, "compile", lambda fn, **kw: fn)
    shapes = []
    original = mask.fused_network
    monkeypatch.setattr(mask, "fused_network",
                        lambda seq, kp, bias, impl, query_index=None: shapes.append((seq.shape, query_index))
                        or original(seq, kp, bias, impl, query_index))
    mask.__dict__.pop("_fastpath_compiled", None)
    res.__dict__.pop("_fastpath_compiled", None)
    try:
        torch.manual_seed(8)
        cond, lens = torch.randn(2, mask.cond_dim), torch.tensor([11, 6])
        opts = ForcedCompile(length_bucket=16)
        ref = mask.generate(cond, lens, timesteps=5, generator=_gen(4))
        fast = mask.generate(cond, lens, timesteps=5, generator=_gen(4), fused_cfg=True, fast_options=opts)
        assert {tuple(s) for s, _ in shapes} == {(4, 17, mask.latent_dim)}  # one shape: both halves, 1 + 16
        assert all(q is None for _, q in shapes)
        assert torch.equal(fast, ref)  # padding only adds masked keys (equal here to float rounding)
        base = torch.where(ref < 0, 0, ref)
        ref_r = res.generate(base, cond[:, : res.cond_dim], lens, generator=_gen(5))
        fast_r = res.generate(base, cond[:, : res.cond_dim], lens, generator=_gen(5), fused_cfg=True,
                              fast_options=opts)
        assert torch.equal(fast_r, ref_r)
    finally:
        mask.__dict__.pop("_fastpath_compiled", None)
        res.__dict__.pop("_fastpath_compiled", None)


def test_fast_path_restores_training_mode_and_returns_plain_ids(transformers):
    mask, _ = transformers
    mask.train()
    try:
        out = mask.generate(torch.randn(1, mask.cond_dim), torch.tensor([4]), generator=_gen(0), fused_cfg=True)
        assert mask.training and out.dtype == torch.long
    finally:
        mask.eval()


# ---------------------------------------------------------------------------------------- options
def test_fast_path_options_validate_and_gpu_options_are_ignored_on_cpu(monkeypatch):
    with pytest.raises(FastPathError, match="encoder_impl"):
        FastPathOptions(encoder_impl="flash")
    with pytest.raises(FastPathError, match="length_bucket"):
        FastPathOptions(length_bucket=0)
    gpu_only = FastPathOptions(bf16=True, compile=True, length_bucket=16)
    cpu = torch.device("cpu")
    assert gpu_only.padded_length(13, cpu) == 13 and not gpu_only.uses_compile(cpu)
    assert gpu_only.padded_length(13, torch.device("cuda")) == 16
    assert gpu_only.padded_length(33, torch.device("cuda")) == 48
    assert fastpath.compiled(nn.Linear(1, 1), "f", len, gpu_only, cpu) is len  # never compiles on CPU
    called = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: called.append(kw) or fn)
    owner = nn.Linear(1, 1)
    assert fastpath.compiled(owner, "f", len, gpu_only, torch.device("cuda")) is len
    fastpath.compiled(owner, "f", len, gpu_only, torch.device("cuda"))
    assert called == [{"mode": "reduce-overhead", "dynamic": False}]  # cached per owner: compiled once


# ---------------------------------------------------------------------------------------- end to end
def _small_config():
    cfg = tiny_config()
    text = cfg.text_encoder.replace(dim=96)
    return cfg.replace(
        vq=VQConfig(width=128, code_dim=128, nb_code=256, num_quantizers=4, depth=2),
        mask_transformer=MaskTransformerConfig(**{**SMALL, "cond_dim": text.dim}),
        residual_transformer=ResidualTransformerConfig(**{**SMALL, "cond_dim": text.dim}, num_quantizers=4),
        length_estimator=cfg.length_estimator.replace(input_dim=text.dim),
        text_encoder=text,
    ).validate()


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_momask_generate_fast_equals_reference(size):
    model = build_random_momask(tiny_config() if size == "tiny" else _small_config(), seed=4)
    cases = [
        (["a person walks forward"], [48], 0),
        (["a man jumps", "a woman turns left slowly", "a person kicks"], [40, 16, 60], 1),
        (["a person runs forward", "a person runs forward"], [28, 28], 2),
    ]
    for texts, lengths, seed in cases:
        model.clear_text_cache()
        ref = model.generate(texts, lengths, seed=seed, fast=False)
        fast = model.generate(texts, lengths, seed=seed, fast=True)
        cached = model.generate(texts, lengths, seed=seed, fast=True)  # text now from the cache
        np.testing.assert_array_equal(fast.tokens, ref.tokens)
        np.testing.assert_array_equal(cached.tokens, ref.tokens)
        np.testing.assert_array_equal(fast.joints, ref.joints)
        np.testing.assert_array_equal(fast.lengths, ref.lengths)
    # the duplicate prompt of the last case received different samples (noise is per row)
    assert not np.array_equal(fast.tokens[0], fast.tokens[1])


# ---------------------------------------------------------------------------------------- CLIP trimming
@pytest.fixture(scope="module")
def clip_random():
    from momask_model.text.encoders import ClipTextEncoder

    return ClipTextEncoder(weights=None, allow_random=True)


def test_clip_fast_encode_equals_full_context(clip_random):
    texts = ["a person walks", "a man jumps twice and then sits down on the floor slowly", "wave"]
    full = clip_random.encode(texts)
    trimmed = clip_random.encode(texts, fast=True)
    assert trimmed.shape == full.shape == (3, 512)
    # causal tower + EOT pooling: the positions after the last EOT cannot matter (float rounding only)
    torch.testing.assert_close(trimmed, full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(clip_random.encode(texts[:1], fast=True), full[:1], rtol=1e-5, atol=1e-5)
    long_text = ["walk " * 200]  # truncated to the full 77-token context: same computation exactly
    assert torch.equal(clip_random.encode(long_text, fast=True), clip_random.encode(long_text))


def test_clip_fast_encode_uses_fewer_positions(clip_random, monkeypatch):
    seen = []
    original = clip_random.clip.transformer.forward

    def spy(x, *args, **kwargs):
        seen.append(x.shape[1])
        return original(x, *args, **kwargs)

    monkeypatch.setattr(clip_random.clip.transformer, "forward", spy)
    clip_random.encode(["a person walks"], fast=True)
    clip_random.encode(["a person walks"])
    assert seen == [5, 77]  # <start> a person walks <end>  vs the whole context


# ---------------------------------------------------------------------------------------- benchmark
def test_bench_runs_both_paths_side_by_side(monkeypatch, tmp_path, capsys):
    import json

    from momask_model.cli import bench

    tiny = build_random_momask(tiny_config(), seed=2)
    rows = bench.bench_model("tiny", tiny, device=torch.device("cpu"), threads=[1], batches=[1, 3], frames=40,
                             repeats=2, big_batch_repeats=1)
    assert [(r["batch"], r["path"]) for r in rows] == [(1, "reference"), (1, "fast"), (3, "reference"), (3, "fast")]
    for r in rows:
        assert r["same_tokens_as_reference"]
        assert 0 < r["tokens_p50_ms"] <= r["joints_p50_ms"] and r["tokens_p50_ms"] <= r["tokens_p95_ms"]
        assert r["motions_per_s"] == pytest.approx(r["batch"] * 1e3 / r["joints_p50_ms"])
    assert "| tiny | cpu | 1 | 3 | fast |" in bench.markdown_table(rows)
    prompts = bench.prompts_for(32)
    assert len(set(prompts)) == 32
    assert all(not tiny.unknown_words(t) for t in bench.prompts_for(5, tiny.text_encoder.vocab))
    # the CLI end to end, with the tiny model standing in for the paper-size one
    monkeypatch.setattr(bench, "build_models", lambda names, notes: notes.append("tiny stand-in") or {"tiny": tiny})
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--frames", "24", "--repeats", "1", "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["machine"]["cores"] >= 1 and payload["machine"]["torch"] == torch.__version__
    assert {r["path"] for r in payload["results"]} == {"reference", "fast"}
    gflop = payload["gflop_per_motion"]["tiny"]
    assert 0 < gflop["fast (warm)"] < gflop["fast"] < gflop["reference"]  # the cached first step is skipped
    assert "text→joints" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench.main(["--batch", "0"])
