"""Residual transformer: release layout, shared tables, spec computation, layer schedule, generation, learning."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from momask_model.nets import residual as residual_mod
from momask_model.config import ResidualTransformerConfig
from momask_model.nets.residual import ResidualTransformer, sample_residual_layers
from momask_model.nets.common import TransformerShapeError, gumbel_sample
from transformer_reference import encoder_and_head, linear

TINY = dict(
    num_tokens=64, code_dim=32, num_quantizers=4, latent_dim=64, ff_size=128, num_layers=2, num_heads=4, cond_dim=48
)



def tiny(**overrides) -> ResidualTransformer:
    torch.manual_seed(0)
    return ResidualTransformer(**{**TINY, **overrides})


def codes_batch(model: ResidualTransformer, lens=(10, 6, 2), n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, model.num_tokens, (len(lens), n, model.num_quantizers), generator=g)
    lens_t = torch.tensor(lens)
    padding = torch.arange(n)[None] >= lens_t[:, None]
    cond = torch.randn(len(lens), model.cond_dim, generator=g)
    return codes, cond, padding, lens_t


def test_paper_size_state_dict_matches_release():
    model = ResidualTransformer(**ResidualTransformerConfig().model_kwargs())
    sd = model.state_dict()
    assert len(sd) == 112
    assert sum(v.numel() for v in sd.values()) == 15_284_224
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["embed_proj_shared_weight"] == (4, 513, 512)
    assert shapes["token_embed_weight_"] == (1, 513, 512)
    assert shapes["output_proj_weight_"] == (1, 513, 512)
    assert shapes["quant_emb.weight"] == (384, 6) and shapes["quant_emb.bias"] == (384,)
    assert shapes["position_enc.pe"] == (5000, 1, 384)
    assert shapes["output_process.poseFinal.weight"] == (512, 384)
    assert shapes["input_process.poseEmbedding.weight"] == (384, 512)
    assert shapes["seqTransEncoder.layers.7.self_attn.in_proj_weight"] == (1152, 384)
    assert not any("bias" in k and ("proj_weight" in k or "output_bias" in k) for k in shapes)
    assert model.pad_id == 512
    assert model.embed_proj_shared_weight.std().item() == pytest.approx(0.02, rel=0.02)


def test_classifier_j_is_the_embedding_table_of_layer_j():
    model = tiny()
    q = model.num_quantizers
    for j in range(1, q - 1):
        emb, cls = model.token_embedding_table(j), model.output_projection_table(j)
        assert emb.data_ptr() == cls.data_ptr() and torch.equal(emb, cls)
    assert model.token_embedding_table(0).data_ptr() == model.token_embed_weight_.data_ptr()
    assert model.output_projection_table(q - 1).data_ptr() == model.output_proj_weight_.data_ptr()
    # a gradient through classifier j lands on the shared table that also embeds layer-j tokens
    model.output_projection_table(2).sum().backward()
    grad = model.embed_proj_shared_weight.grad
    assert grad[1].abs().sum() > 0 and grad[0].abs().sum() == 0 and grad[2:].abs().sum() == 0
    with pytest.raises(IndexError):
        model.output_projection_table(0)
    with pytest.raises(IndexError):
        model.token_embedding_table(q - 1)


def test_forward_equals_spec_computation_and_uses_table_j_without_bias():
    model = tiny().eval()
    codes, cond, padding, _ = codes_batch(model)
    history = torch.randn(3, 10, model.code_dim)
    qids = torch.tensor([1, 3, 2])
    with torch.no_grad():
        got = model(history, qids, cond, padding)
        sd = model.state_dict()
        x = linear(sd, "input_process.poseEmbedding", history)
        prefix = [linear(sd, "cond_emb", cond), linear(sd, "quant_emb", F.one_hot(qids, 4).float())]
        features = encoder_and_head(sd, prefix, x, padding, num_layers=2, heads=4)
        tables = [model.output_projection_table(int(j)) for j in qids]
        want = torch.stack([features[b] @ tables[b].T for b in range(3)])
    assert got.shape == (3, 10, model.num_tokens + 1)
    valid = ~padding
    torch.testing.assert_close(got[valid], want[valid], atol=2e-5, rtol=1e-4)


def test_layer_schedule_is_cosine_skewed_towards_low_layers():
    j = sample_residual_layers(200_000, 6, generator=torch.Generator().manual_seed(0))
    assert int(j.min()) == 1 and int(j.max()) == 5
    freq = torch.bincount(j, minlength=6)[1:].float() / j.numel()
    # j = round(4 (1 - cos(pi u / 2))) + 1, u uniform: u(e) = (2/pi) acos(1 - e/4) at the rounding edges e
    edges = [0.0, 0.5, 1.5, 2.5, 3.5, 4.0]
    u = [(2 / math.pi) * math.acos(1 - e / 4) for e in edges]
    want = [u[i + 1] - u[i] for i in range(5)]
    torch.testing.assert_close(freq, torch.tensor(want), atol=0.005, rtol=0)
    assert want == pytest.approx([0.322, 0.249, 0.185, 0.165, 0.080], abs=1e-3)  # design/momask.md §4.3


def test_history_is_cumulative_sum_of_layer_embeddings_with_pad_rows():
    model = tiny()
    codes, _, _, _ = codes_batch(model)
    codes[0, -1, :] = model.pad_id
    hist = model.history_embeddings(codes)
    manual = sum(model.token_embedding_table(k)[codes[..., k]] for k in range(3))
    torch.testing.assert_close(hist[..., 2], manual)
    torch.testing.assert_close(hist[..., 0], model.token_embedding_table(0)[codes[..., 0]])
    pad_rows = model.token_embedding_table(0)[64] + model.token_embedding_table(1)[64]
    torch.testing.assert_close(hist[0, -1, :, 1], pad_rows)


def test_training_loss_is_ce_over_pad_inclusive_classes_of_the_drawn_layer():
    model = tiny(dropout=0.0, cond_drop_prob=0.0).eval()
    codes, cond, padding, lens = codes_batch(model)
    loss, acc = model.training_loss(codes, lens, cond, generator=torch.Generator().manual_seed(4))
    j = sample_residual_layers(3, 4, generator=torch.Generator().manual_seed(4))
    padded = torch.where(padding[..., None], model.pad_id, codes)
    with torch.no_grad():
        hist = model.history_embeddings(padded)
        history = torch.stack([hist[b, :, :, j[b] - 1] for b in range(3)])
        logits = model(history, j, cond, padding)
    targets = torch.stack([padded[b, :, j[b]] for b in range(3)])
    valid = ~padding
    torch.testing.assert_close(loss.detach(), F.cross_entropy(logits[valid], targets[valid]))
    assert logits.shape[-1] == 65 and 0.0 <= acc.item() <= 1.0


def test_cfg_scale_one_equals_conditional():
    model = tiny().eval()
    _, cond, padding, _ = codes_batch(model)
    history = torch.randn(3, 10, model.code_dim)
    with torch.no_grad():
        conditional = model(history, 2, cond, padding)
        unconditional = model(history, 2, cond, padding, force_mask=True)
        assert torch.equal(model.forward_with_cfg(history, 2, cond, padding, 1.0), conditional)
        torch.testing.assert_close(
            model.forward_with_cfg(history, 2, cond, padding, 5.0), unconditional + 5.0 * (conditional - unconditional)
        )


def test_gumbel_sampling_matches_softmax_probabilities():
    logits = torch.tensor([1.0, 0.0, -1.0, 0.5]).repeat(40_000, 1)
    draws = gumbel_sample(logits, temperature=1.0, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).float() / draws.numel()
    torch.testing.assert_close(freq, logits[0].softmax(-1), atol=0.01, rtol=0)


def test_generate_keeps_base_layer_pads_with_minus_one_and_is_reproducible():
    model = tiny()
    codes, cond, padding, lens = codes_batch(model)
    base = torch.where(padding, -1, codes[..., 0])
    out = model.generate(base, cond, lens, generator=torch.Generator().manual_seed(0))
    again = model.generate(base, cond, lens, generator=torch.Generator().manual_seed(0))
    other = model.generate(base, cond, lens, generator=torch.Generator().manual_seed(1))
    assert out.shape == (3, 10, 4) and out.dtype == torch.long
    assert torch.equal(out[..., 0], base)
    assert bool((out[padding] == -1).all())
    assert bool((out[~padding] < model.num_tokens).all()) and bool((out[~padding] >= -1).all())
    assert torch.equal(out, again) and not torch.equal(out, other)
    assert model.training


def test_generated_pad_class_becomes_minus_one(monkeypatch):
    model = tiny()
    codes, cond, padding, lens = codes_batch(model)
    real = residual_mod.gumbel_sample

    def always_pad_at_first_position(logits, **kw):
        out = real(logits, **kw)
        out[:, 0] = model.pad_id
        return out

    monkeypatch.setattr(residual_mod, "gumbel_sample", always_pad_at_first_position)
    out = model.generate(codes[..., 0], cond, lens, generator=torch.Generator().manual_seed(0))
    assert bool((out[:, 0, 1:] == -1).all())
    valid_rest = (torch.arange(10)[None] < lens[:, None])[:, 1:]
    assert (out[:, 1:, 1:][valid_rest] >= 0).float().mean() > 0.8  # elsewhere real codes (pad only by chance)


def test_unshared_variant_has_full_tables_and_adds_bias_once():
    model = tiny(share_weight=False).eval()
    sd = model.state_dict()
    assert tuple(sd["token_embed_weight"].shape) == (3, 65, 32)
    assert tuple(sd["output_proj_weight"].shape) == (3, 65, 32)
    assert tuple(sd["output_bias"].shape) == (4, 65)
    with torch.no_grad():
        model.output_bias.normal_()
    _, cond, padding, _ = codes_batch(model)
    history = torch.randn(3, 10, 32)
    features = {}
    model.output_process.register_forward_hook(lambda m, i, o: features.setdefault("h", o))
    with torch.no_grad():
        logits = model(history, 3, cond, padding)
    want = features["h"] @ model.output_proj_weight[2].T + model.output_bias[2]
    torch.testing.assert_close(logits, want)


def test_bad_inputs_raise_typed_errors():
    model = tiny()
    codes, cond, padding, lens = codes_batch(model)
    history = torch.randn(3, 10, model.code_dim)
    with pytest.raises(TransformerShapeError, match="qids"):
        model(history, 4, cond, padding)
    with pytest.raises(TransformerShapeError, match="history_sum"):
        model(history[..., :5], 1, cond, padding)
    with pytest.raises(TransformerShapeError, match="codes"):
        model.training_loss(codes[..., :3], lens, cond)
    with pytest.raises(ValueError, match="num_quantizers"):
        ResidualTransformer(num_quantizers=1)


def test_tiny_model_learns_residual_layers():
    torch.manual_seed(0)
    model = ResidualTransformer(**{**TINY, "dropout": 0.1})
    g = torch.Generator().manual_seed(0)
    conds = torch.randn(4, TINY["cond_dim"], generator=g) * 3
    templates = torch.randint(0, 64, (4, 12, 4), generator=g)
    lens = torch.tensor([12, 9, 7, 11])
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-5)
    losses = []
    for _ in range(150):
        k = torch.randint(0, 4, (16,), generator=g)
        loss, _ = model.training_loss(templates[k], lens[k], conds[k], generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.6 * first, (first, last)
    out = model.generate(templates[..., 0], conds, lens, cond_scale=2.0, generator=torch.Generator().manual_seed(0))
    valid = torch.arange(12)[None] < lens[:, None]
    accuracy = (out[..., 1:] == templates[..., 1:])[valid].float().mean().item()
    assert accuracy > 0.5, accuracy  # chance is 1/65
