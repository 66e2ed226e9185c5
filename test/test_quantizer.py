"""EMA-reset quantizer layer and residual quantizer (design/momask.md §2.3–2.4)."""
from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

from momask_model.nets.codebook import CodeIndexError, EMAResetQuantizer, codebook_usage
from momask_model.nets.quantizer import ResidualQuantizer


def _gauss(n: int, c: int, seed: int) -> torch.Tensor:
    return torch.randn(n, c, generator=torch.Generator().manual_seed(seed))


def _mixture(b: int, n: int, c: int, seed: int, centres: int = 12) -> torch.Tensor:
    """Clustered 'latent-like' data: a few centres plus spread, so codes have structure to find."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(centres, c, generator=torch.Generator().manual_seed(1234)) * 2.0
    idx = torch.randint(0, centres, (b, n), generator=g)
    return mu[idx] + 0.5 * torch.randn(b, n, c, generator=g)


def _fit(rq: ResidualQuantizer, steps: int, b: int = 16, n: int = 32, seed0: int = 0) -> None:
    rq.train()
    for s in range(steps):
        rq(_mixture(b, n, rq.code_dim, seed0 + s))


# ---------------------------------------------------------------------------------------------------------
# one layer


def test_straight_through_output_is_code_and_gradient_is_identity():
    layer = EMAResetQuantizer(nb_code=8, code_dim=4, mu=0.99)
    layer.train()
    layer(_gauss(32, 4, 0))  # lazy init
    layer.eval()
    x = _gauss(10, 4, 1).requires_grad_(True)
    out = layer(x)
    assert torch.allclose(out.quantized, layer.codebook[out.codes])
    w = _gauss(10, 4, 2)
    (out.quantized * w).sum().backward()
    assert torch.allclose(x.grad, w)


def test_commit_loss_is_mse_to_detached_code_and_only_moves_input():
    layer = EMAResetQuantizer(nb_code=8, code_dim=4)
    layer.train()
    layer(_gauss(32, 4, 0))
    layer.eval()
    x = _gauss(10, 4, 1).requires_grad_(True)
    out = layer(x)
    expected = F.mse_loss(x, layer.codebook[out.codes])
    assert torch.allclose(out.commit_loss, expected)
    out.commit_loss.backward()
    assert torch.allclose(x.grad, 2 * (x - layer.codebook[out.codes]).detach() / x.numel())


def test_lazy_init_copies_first_rows_of_first_training_batch():
    layer = EMAResetQuantizer(nb_code=8, code_dim=3)
    x = _gauss(20, 3, 0)
    layer.eval()
    layer(x)  # eval never initialises
    assert not layer.initialized and torch.count_nonzero(layer.codebook) == 0
    layer.train()
    out = layer(x, temperature=0.0)
    assert layer.initialized
    # codes chosen against the freshly initialised codebook: row k < 8 picks itself
    assert torch.equal(out.codes[:8], torch.arange(8))


def test_lazy_init_tiles_small_batches_with_tiny_noise():
    torch.manual_seed(0)
    layer = EMAResetQuantizer(nb_code=10, code_dim=4)
    x = _gauss(3, 4, 0)
    layer.train()
    layer._lazy_init(x)
    expected = x.repeat(4, 1)[:10]
    diff = layer.codebook - expected
    assert diff.abs().max() < 0.05 and diff.abs().max() > 0  # noise std 0.01/sqrt(4) = 0.005
    assert torch.allclose(layer.code_sum, layer.codebook) and torch.equal(layer.code_count, torch.ones(10))


def _reference_ema(codebook, code_sum, code_count, x, mu):
    """Independent loop-based re-statement of §2.3 (argmin choice, EMA, reset of dead code k to row k)."""
    k_codes = codebook.shape[0]
    codes = [int(torch.argmin(((codebook - row) ** 2).sum(-1))) for row in x]
    step_sum = torch.zeros_like(code_sum)
    step_count = torch.zeros_like(code_count)
    for row, k in zip(x, codes):
        step_sum[k] += row
        step_count[k] += 1
    code_sum = mu * code_sum + (1 - mu) * step_sum
    code_count = mu * code_count + (1 - mu) * step_count
    new = codebook.clone()
    for k in range(k_codes):
        new[k] = code_sum[k] / code_count[k] if code_count[k] >= 1.0 else x[k]
    return torch.tensor(codes), new, code_sum, code_count


def test_ema_update_and_dead_code_reset_follow_the_documented_rule():
    mu = 0.9
    layer = EMAResetQuantizer(nb_code=6, code_dim=3, mu=mu)
    layer.train()
    cb, cs, cc = None, None, None
    saw_dead = False
    for step in range(12):
        x = _gauss(15, 3, step)
        if step >= 3:  # then every row sits near one point: the other codes starve and die
            x = 5.0 + 0.01 * x
        if step == 0:
            cb, cs, cc = x[:6].clone(), x[:6].clone(), torch.ones(6)
        out = layer(x, temperature=0.0)
        codes, cb, cs, cc = _reference_ema(cb, cs, cc, x, mu)
        assert torch.equal(out.codes, codes)
        assert torch.allclose(layer.codebook, cb, atol=1e-5)
        assert torch.allclose(layer.code_sum, cs, atol=1e-5) and torch.allclose(layer.code_count, cc)
        dead = cc < 1.0
        if dead.any():  # a dead code k is re-seeded with row k of this batch
            saw_dead = True
            assert torch.equal(layer.codebook[dead], x[:6][dead])
    assert saw_dead, "the concentrated batches should starve some codes"


def test_eval_forward_is_argmin_and_leaves_codebook_untouched():
    layer = EMAResetQuantizer(nb_code=16, code_dim=4)
    layer.train()
    layer(_gauss(64, 4, 0))
    layer.eval()
    before = layer.codebook.clone()
    x = _gauss(50, 4, 1)
    out = layer(x, temperature=0.5)
    assert torch.equal(out.codes, torch.cdist(x, before).argmin(-1))
    assert torch.equal(layer.codebook, before)


def test_training_choice_is_gumbel_sampled_near_the_argmin():
    layer = EMAResetQuantizer(nb_code=16, code_dim=4)
    layer.train()
    layer(_gauss(64, 4, 0))
    x = _gauss(400, 4, 1)
    torch.manual_seed(0)
    sampled = layer.choose(x, temperature=0.5)
    nearest = layer.nearest(x)
    agree = (sampled == nearest).float().mean().item()
    assert 0.3 < agree < 1.0  # stochastic, but biased towards the nearest code
    torch.manual_seed(0)
    assert torch.equal(layer.choose(x, temperature=0.5), sampled)  # global RNG makes it repeatable
    assert torch.equal(layer.choose(x, temperature=0.0), nearest)


def test_perplexity_counts_effective_codes():
    layer = EMAResetQuantizer(nb_code=8, code_dim=2)
    layer.codebook.copy_(torch.arange(8.0)[:, None].repeat(1, 2))
    layer.eval()
    x = torch.arange(4.0)[:, None].repeat(1, 2)  # 4 distinct codes, used once each
    assert math.isclose(layer(x).perplexity.item(), 4.0, rel_tol=1e-4)


# ---------------------------------------------------------------------------------------------------------
# residual stack


def test_state_dict_holds_only_the_codebooks():
    rq = ResidualQuantizer(num_quantizers=3, nb_code=16, code_dim=4)
    _fit(rq, 2)
    sd = rq.state_dict()
    assert list(sd) == [f"layers.{i}.codebook" for i in range(3)]
    assert all(v.shape == (16, 4) for v in sd.values())
    assert not any(p.requires_grad for p in rq.parameters())  # codebooks are buffers, not parameters


def test_quantizer_dropout_only_ever_drops_a_suffix_with_the_expected_rate():
    torch.manual_seed(0)
    q_layers, trials = 4, 1000
    rq = ResidualQuantizer(num_quantizers=q_layers, nb_code=8, code_dim=2, quantize_dropout_prob=0.2)
    rq.train()
    z = _gauss(8, 2, 0).reshape(1, 8, 2)
    kept_counts = torch.zeros(q_layers + 1)
    for _ in range(trials):
        codes = rq(z).codes[0]  # (8, Q)
        active = (codes >= 0).all(0)
        assert torch.equal(active, (codes >= 0).any(0)), "a layer is dropped for the whole batch or not at all"
        k = int(active.sum())
        assert k >= 1 and torch.equal(active, torch.arange(q_layers) < k), f"not a prefix: {active.tolist()}"
        kept_counts[k] += 1
    p_all = kept_counts[q_layers].item() / trials
    assert abs(p_all - (0.8 + 0.2 / q_layers)) < 0.04
    assert (kept_counts[1:q_layers] > 0).all(), "every prefix length occurs"
    rq.eval()
    assert (rq(z).codes >= 0).all(), "no dropout at inference"


def test_dropped_layers_add_no_loss_or_perplexity():
    rq = ResidualQuantizer(num_quantizers=3, nb_code=8, code_dim=2, quantize_dropout_prob=0.0)
    _fit(rq, 3)
    rq.eval()
    z = _gauss(20, 2, 5).reshape(2, 10, 2)
    full = rq(z)
    one = rq(z, force_dropout_index=0)
    assert (one.codes[..., 1:] == -1).all() and torch.equal(one.codes[..., 0], full.codes[..., 0])
    assert torch.allclose(one.commit_loss, F.mse_loss(z, rq.layers[0].codebook[full.codes[..., 0]]))
    assert torch.allclose(one.quantized, rq.dequantize(full.codes[..., :1]))


def _inplace_reference_grad(rq: ResidualQuantizer, z_leaf: torch.Tensor, w: torch.Tensor, last: int):
    """The reference's loop: ``residual -= quantized.detach()`` in place on the encoder output."""
    x = z_leaf * 1.0  # stand-in for the encoder output (a non-leaf tensor)
    residual = x
    out, losses = 0.0, []
    b, n, c = x.shape
    for i, layer in enumerate(rq.layers):
        if i > last:
            break
        o = layer(residual.reshape(b * n, c).clone())  # the reference's rearrange copies
        q = o.quantized.reshape(b, n, c)
        residual -= q.detach()
        out = out + q
        losses.append(o.commit_loss)
    loss = (out * w).sum() + torch.stack(losses).mean()
    (g,) = torch.autograd.grad(loss, z_leaf)
    return g


@pytest.mark.parametrize("last", [0, 2, 3])
def test_gradient_at_latent_sums_active_layers_like_the_inplace_reference(last):
    rq = ResidualQuantizer(num_quantizers=4, nb_code=16, code_dim=3)
    _fit(rq, 3)
    rq.eval()  # freeze codebooks so both computations see the same ones
    z = _gauss(24, 3, 7).reshape(2, 12, 3).requires_grad_(True)
    w = _gauss(24, 3, 8).reshape(2, 12, 3)
    out = rq(z, force_dropout_index=last)
    (w * out.quantized).sum().backward(retain_graph=True)
    assert torch.allclose(z.grad, (last + 1) * w)  # each active layer passes the gradient straight through
    z.grad = None
    ((w * out.quantized).sum() + out.commit_loss).backward()
    assert torch.allclose(z.grad, _inplace_reference_grad(rq, z, w, last), atol=1e-6)


def test_each_residual_layer_reduces_quantization_error():
    torch.manual_seed(0)
    rq = ResidualQuantizer(num_quantizers=4, nb_code=32, code_dim=6, quantize_dropout_prob=0.2)
    _fit(rq, 40)
    rq.eval()
    z = _mixture(16, 32, 6, seed=999)
    codes = rq.quantize(z)
    errors = [F.mse_loss(rq.dequantize(codes[..., :k]), z).item() for k in range(5)]
    assert errors[0] == pytest.approx(z.pow(2).mean().item())
    for k in range(4):
        assert errors[k + 1] < errors[k], f"layer {k} did not reduce the error: {errors}"
    assert errors[-1] < 0.2 * errors[0]


def test_quantize_is_deterministic_argmin_and_never_updates_codebooks():
    rq = ResidualQuantizer(num_quantizers=3, nb_code=16, code_dim=4)
    _fit(rq, 5)
    rq.train()  # even in training mode
    before = [layer.codebook.clone() for layer in rq.layers]
    z = _mixture(4, 10, 4, seed=50)
    c1, c2 = rq.quantize(z), rq.quantize(z)
    assert torch.equal(c1, c2)
    assert all(torch.equal(b, layer.codebook) for b, layer in zip(before, rq.layers))
    residual = z.reshape(-1, 4)
    for i, layer in enumerate(rq.layers):
        k = torch.cdist(residual, layer.codebook).argmin(-1)
        assert torch.equal(c1[..., i].reshape(-1), k)
        residual = residual - layer.codebook[k]
    rq.eval()
    assert torch.equal(rq(z).codes, c1)


def test_dead_code_reset_keeps_usage_high_on_training_data():
    torch.manual_seed(1)
    rq = ResidualQuantizer(num_quantizers=2, nb_code=32, code_dim=4, quantize_dropout_prob=0.0)
    _fit(rq, 60)
    rq.eval()
    codes = rq.quantize(_mixture(16, 32, 4, seed=500))
    usage = rq.codebook_usage(codes)
    assert usage[0] > 0.9 and usage[1] > 0.5, usage
    for layer in rq.layers:  # every code is kept alive (running count >= 1) by the per-step reset
        assert (layer.code_count >= 1.0).all()


def test_dequantize_pads_missing_layers_and_minus_one_is_zero():
    rq = ResidualQuantizer(num_quantizers=3, nb_code=8, code_dim=2)
    _fit(rq, 2)
    codes = torch.tensor([[[1, 2, 3], [4, -1, -1]]])
    full = rq.dequantize(codes)
    assert torch.allclose(full[0, 0], sum(rq.layers[i].codebook[k] for i, k in enumerate([1, 2, 3])))
    assert torch.allclose(full[0, 1], rq.layers[0].codebook[4])
    assert torch.allclose(rq.dequantize(codes[..., :1]), rq.dequantize(torch.cat([codes[..., :1], -torch.ones_like(codes[..., 1:])], -1)))
    assert torch.equal(rq.dequantize(torch.full((1, 3, 2), -1)), torch.zeros(1, 3, 2))
    per_layer = rq.layer_vectors(codes)
    assert per_layer.shape == (3, 1, 2, 2) and torch.equal(per_layer[1, 0, 1], torch.zeros(2))


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.tensor([[[8]]]), r"\[-1, 7\]"),
        (torch.tensor([[[-2]]]), r"-2"),
        (torch.zeros(1, 2, 4, dtype=torch.long), "4 layers"),
        (torch.zeros(1, 2, 1), "integer"),
        (torch.zeros(2, 1, dtype=torch.long), "shape"),
    ],
)
def test_bad_codes_raise_code_index_error(bad, match):
    rq = ResidualQuantizer(num_quantizers=3, nb_code=8, code_dim=2)
    with pytest.raises(CodeIndexError, match=match):
        rq.dequantize(bad)


def test_codebook_usage_counts_distinct_codes_per_layer():
    codes = torch.tensor([[[0, -1], [1, -1], [1, 3]]])
    assert torch.allclose(codebook_usage(codes, 4), torch.tensor([0.5, 0.25]))


def test_extra_state_round_trip_continues_training_identically():
    rq = ResidualQuantizer(num_quantizers=3, nb_code=16, code_dim=4)
    _fit(rq, 5)
    sd = {k: v.clone() for k, v in rq.state_dict().items()}
    extra = rq.extra_state()
    assert "code_sum" not in str(list(sd))
    clone = ResidualQuantizer(num_quantizers=3, nb_code=16, code_dim=4)
    clone.load_state_dict(sd)
    clone.load_extra_state(extra)
    torch.manual_seed(3)
    _fit(rq, 3, seed0=100)
    torch.manual_seed(3)
    _fit(clone, 3, seed0=100)
    for a, b in zip(rq.layers, clone.layers):
        assert torch.equal(a.codebook, b.codebook) and torch.equal(a.code_count, b.code_count)
    with pytest.raises(ValueError, match="2 layers"):
        clone.load_extra_state({"layers": extra["layers"][:2]})


def test_loaded_codebook_is_kept_when_fine_tuning():
    rq = ResidualQuantizer(num_quantizers=1, nb_code=8, code_dim=2, quantize_dropout_prob=0.0)
    _fit(rq, 3)
    fresh = ResidualQuantizer(num_quantizers=1, nb_code=8, code_dim=2, quantize_dropout_prob=0.0)
    fresh.load_state_dict(rq.state_dict())
    layer = fresh.layers[0]
    # unlike the official trainer, a loaded codebook is not thrown away by a lazy re-initialisation
    assert layer.initialized
    torch.testing.assert_close(layer.code_sum, layer.codebook)
    torch.testing.assert_close(layer.code_count, torch.ones(8))


# ---------------------------------------------------------------------------------------------------------
# distributed: codebooks stay identical across ranks and equal a single process on the whole batch


def _dist_batch(rank: int, step: int) -> torch.Tensor:
    return _mixture(4, 8, 3, seed=1000 * step + rank)  # 32 rows per rank >= nb_code


def _dist_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(rank)  # ranks draw differently; rank 0's dropout draw must win
    rq = ResidualQuantizer(num_quantizers=3, nb_code=16, code_dim=3, quantize_dropout_prob=0.5,
                           sample_codebook_temp=0.0)
    rq.train()
    patterns = []
    untouched = True
    for step in range(6):
        z = _dist_batch(rank, step)
        z_copy = z.clone()
        patterns.append((rq(z).codes >= 0).any(0).any(0))
        untouched &= torch.equal(z, z_copy)  # broadcasts must not write into the caller's tensor
    torch.save({"state": rq.state_dict(), "extra": rq.extra_state(), "patterns": torch.stack(patterns),
                "untouched": untouched},
               os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_distributed_ranks_keep_identical_codebooks(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_dist_worker, args=(2, str(tmp_path / "pg"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert r0["untouched"] and r1["untouched"]
    assert torch.equal(r0["patterns"], r1["patterns"])
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k])
    # one process seeing both ranks' rows (rank 0's first) must end with the same codebooks
    torch.manual_seed(0)
    ref = ResidualQuantizer(num_quantizers=3, nb_code=16, code_dim=3, quantize_dropout_prob=0.5,
                            sample_codebook_temp=0.0)
    ref.train()
    patterns = []
    for step in range(6):
        z = torch.cat([_dist_batch(0, step), _dist_batch(1, step)], dim=0)
        patterns.append((ref(z).codes >= 0).any(0).any(0))
    assert torch.equal(torch.stack(patterns), r0["patterns"])
    assert not torch.stack(patterns).all(), "the test should exercise quantizer dropout"
    for k, v in ref.state_dict().items():
        assert torch.allclose(v, r0["state"][k], atol=1e-5), k
    for a, b in zip(ref.extra_state()["layers"], r0["extra"]["layers"]):
        assert torch.allclose(a["code_count"], b["code_count"], atol=1e-6)
