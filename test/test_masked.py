"""Masked transformer: release layout, spec computation, BERT masking, decoding, CFG and learning."""
from __future__ import annotations

import math

import pytest
import torch

from momask_model.nets import masking as masking_mod
from momask_model.config import MaskTransformerConfig
from momask_model.nets.masked import MaskTransformer
from momask_model.nets.masking import bert_remask, choose_masked_positions, decode_mask_counts
from momask_model.nets.common import TransformerShapeError, masked_cross_entropy, sinusoidal_table
from transformer_reference import encoder_and_head, linear

TINY = dict(num_tokens=64, code_dim=32, latent_dim=64, ff_size=128, num_layers=2, num_heads=4, cond_dim=48)



def tiny(**overrides) -> MaskTransformer:
    torch.manual_seed(0)
    return MaskTransformer(**{**TINY, **overrides})


def batch(model: MaskTransformer, lens=(12, 7, 3), n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.num_tokens, (len(lens), n), generator=g)
    lens_t = torch.tensor(lens)
    padding = torch.arange(n)[None] >= lens_t[:, None]
    ids = torch.where(padding, model.pad_id, ids)
    cond = torch.randn(len(lens), model.cond_dim, generator=g)
    return ids, cond, padding, lens_t


def test_paper_size_state_dict_matches_release_table():
    model = MaskTransformer(**MaskTransformerConfig().model_kwargs())
    sd = model.state_dict()
    assert len(sd) == 108
    assert sum(v.numel() for v in sd.values()) == 13_968_768
    expected = {
        "input_process.poseEmbedding.weight": (384, 512),
        "input_process.poseEmbedding.bias": (384,),
        "position_enc.pe": (5000, 1, 384),
        "cond_emb.weight": (384, 512),
        "cond_emb.bias": (384,),
        "output_process.dense.weight": (384, 384),
        "output_process.dense.bias": (384,),
        "output_process.LayerNorm.weight": (384,),
        "output_process.LayerNorm.bias": (384,),
        "output_process.poseFinal.weight": (512, 384),
        "output_process.poseFinal.bias": (512,),
        "token_emb.weight": (514, 512),
    }
    per_layer = {
        "self_attn.in_proj_weight": (1152, 384), "self_attn.in_proj_bias": (1152,),
        "self_attn.out_proj.weight": (384, 384), "self_attn.out_proj.bias": (384,),
        "linear1.weight": (1024, 384), "linear1.bias": (1024,),
        "linear2.weight": (384, 1024), "linear2.bias": (384,),
        "norm1.weight": (384,), "norm1.bias": (384,), "norm2.weight": (384,), "norm2.bias": (384,),
    }
    for i in range(8):
        expected.update({f"seqTransEncoder.layers.{i}.{k}": v for k, v in per_layer.items()})
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected
    assert (model.mask_id, model.pad_id) == (512, 513)
    assert model.output_process.LayerNorm.eps == 1e-12
    layer = model.seqTransEncoder.layers[0]
    assert layer.norm_first is False and layer.self_attn.batch_first is False and layer.norm1.eps == 1e-5


def test_positional_table_is_sinusoidal_sin_even_cos_odd():
    pe = sinusoidal_table(50, 8)[:, 0]
    pos, i = 7, 2  # channel pair (4, 5)
    freq = 10000 ** (-2 * i / 8)
    assert pe[pos, 4].item() == pytest.approx(math.sin(pos * freq), abs=1e-6)
    assert pe[pos, 5].item() == pytest.approx(math.cos(pos * freq), abs=1e-6)
    assert torch.equal(tiny().position_enc.pe[:50, 0], sinusoidal_table(5000, 64)[:50, 0])


def test_init_is_normal_002_with_zero_bias():
    model = MaskTransformer(**MaskTransformerConfig().model_kwargs())
    w = model.token_emb.weight
    assert w.std().item() == pytest.approx(0.02, rel=0.03)
    assert model.seqTransEncoder.layers[3].linear1.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.count_nonzero(model.cond_emb.bias) == 0
    assert torch.count_nonzero(model.seqTransEncoder.layers[0].self_attn.out_proj.bias) == 0


def test_forward_equals_spec_computation_at_valid_positions():
    model = tiny().eval()
    ids, cond, padding, lens = batch(model)
    ids[0, 3] = model.mask_id
    with torch.no_grad():
        got = model(ids, cond, padding)
        sd = model.state_dict()
        x = linear(sd, "input_process.poseEmbedding", sd["token_emb.weight"][ids])
        prefix = [linear(sd, "cond_emb", cond)]
        want = encoder_and_head(sd, prefix, x, padding, num_layers=2, heads=4)
    assert got.shape == (3, 12, 64)
    valid = ~padding
    torch.testing.assert_close(got[valid], want[valid], atol=2e-5, rtol=1e-4)


def test_padded_ids_do_not_affect_valid_logits():
    model = tiny().eval()
    ids, cond, padding, _ = batch(model)
    other = torch.where(padding, torch.randint_like(ids, 0, model.num_tokens), ids)
    with torch.no_grad():
        torch.testing.assert_close(model(ids, cond, padding)[~padding], model(other, cond, padding)[~padding])


def test_cfg_scale_one_equals_conditional_and_scale_s_mixes_two_passes():
    model = tiny().eval()
    ids, cond, padding, _ = batch(model)
    with torch.no_grad():
        conditional = model(ids, cond, padding)
        unconditional = model(ids, cond, padding, force_mask=True)
        assert torch.equal(model.forward_with_cfg(ids, cond, padding, 1.0), conditional)
        torch.testing.assert_close(
            model.forward_with_cfg(ids, cond, padding, 4.0), unconditional + 4.0 * (conditional - unconditional)
        )
        # force_mask is the same as a zero text vector
        torch.testing.assert_close(unconditional, model(ids, torch.zeros_like(cond), padding))
    assert not torch.allclose(conditional, unconditional)


def test_condition_dropout_acts_on_raw_text_vector_in_training_only():
    model = tiny(dropout=0.0, cond_drop_prob=1.0)
    ids, cond, padding, _ = batch(model)
    model.train()
    dropped = model(ids, cond, padding)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(dropped.detach(), model(ids, torch.zeros_like(cond), padding))
        assert not torch.allclose(model(ids, cond, padding), dropped.detach())


def test_bert_remask_proportions_are_10_random_79_mask_11_kept():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 64, (100, 2000), generator=g)
    chosen = torch.rand(ids.shape, generator=g) < 0.7
    out = bert_remask(ids, chosen, num_tokens=64, mask_id=64, generator=g)
    sel = out.inputs[chosen]
    truth = ids[chosen]
    frac_mask = (sel == 64).float().mean().item()
    frac_kept = (sel == truth).float().mean().item()
    frac_random = ((sel != 64) & (sel != truth)).float().mean().item()
    # a random replacement hits the true id with probability 1/64
    assert frac_mask == pytest.approx(0.9 * 0.88, abs=0.005)
    assert frac_random == pytest.approx(0.1 * 63 / 64, abs=0.003)
    assert frac_kept == pytest.approx(0.9 * 0.12 + 0.1 / 64, abs=0.003)
    assert torch.equal(out.inputs[~chosen], ids[~chosen])
    assert torch.equal(out.labels[chosen], truth) and bool((out.labels[~chosen] == 64).all())


def test_chosen_positions_are_valid_and_cosine_distributed():
    g = torch.Generator().manual_seed(2)
    lens = torch.randint(5, 50, (4000,), generator=g)
    non_pad = torch.arange(49)[None] < lens[:, None]
    chosen = choose_masked_positions(non_pad, generator=g)
    assert not bool((chosen & ~non_pad).any())
    # E[cos(pi u / 2)] = 2/pi; counts are a fraction of the padded length intersected with valid positions
    ratio = (chosen.sum(1).float() / lens.float()).mean().item()
    assert ratio == pytest.approx(2 / math.pi, abs=0.02)
    full = choose_masked_positions(torch.ones(4000, 49, dtype=torch.bool), generator=g)
    assert int(full.sum(1).min()) >= 1


def test_loss_counts_only_masked_positions():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 6, 10, generator=g)
    labels = torch.tensor([[3, 9, 9, 1, 9, 9], [9, 9, 2, 9, 9, 0]])  # 9 = ignore
    base, _ = masked_cross_entropy(logits, labels, ignore_index=9)
    changed = logits.clone()
    changed[labels == 9] = torch.randn_like(changed[labels == 9]) * 10
    assert torch.equal(masked_cross_entropy(changed, labels, ignore_index=9)[0], base)
    keep = labels != 9
    want = torch.nn.functional.cross_entropy(logits[keep], labels[keep])
    torch.testing.assert_close(base, want)


def test_training_loss_is_ce_on_remasked_inputs():
    model = tiny(dropout=0.0, cond_drop_prob=0.0).eval()
    ids, cond, padding, lens = batch(model)
    codes = torch.where(padding, 0, ids)  # anything at padding: the loss must overwrite it with pad
    loss, acc = model.training_loss(codes, lens, cond, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    non_pad = ~padding
    chosen = choose_masked_positions(non_pad, generator=g)
    remask = bert_remask(ids, chosen, num_tokens=model.num_tokens, mask_id=model.mask_id, generator=g)
    with torch.no_grad():
        logits = model(remask.inputs, cond, padding)
    torch.testing.assert_close(loss.detach(), torch.nn.functional.cross_entropy(logits[chosen], ids[chosen]))
    assert 0.0 <= acc.item() <= 1.0


def test_decode_mask_counts_follow_cosine_on_true_length():
    # cos(pi/3) * 49 = 24.4999... in float32 (and float64), so step 6 rounds to 24; design/momask.md §3.5
    # lists 25, which only exact arithmetic with round-half-up would give.
    assert decode_mask_counts(torch.tensor([49]), 10)[:, 0].tolist() == [49, 48, 46, 42, 38, 31, 24, 17, 9, 1]
    assert decode_mask_counts(torch.tensor([2]), 3)[:, 0].tolist() == [2, 1, 1]


def test_generate_fills_every_position_and_pads_with_minus_one():
    model = tiny()
    lens = torch.tensor([9, 4, 1])
    cond = torch.randn(3, model.cond_dim)
    out = model.generate(cond, lens, timesteps=5, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 9) and out.dtype == torch.long
    padding = torch.arange(9)[None] >= lens[:, None]
    assert bool((out[padding] == -1).all())
    assert bool(((out[~padding] >= 0) & (out[~padding] < model.num_tokens)).all())
    assert model.training  # the mode is restored after generation


def test_generate_with_same_generator_is_reproducible():
    model = tiny()
    cond = torch.randn(2, model.cond_dim)
    lens = torch.tensor([10, 6])
    for gsample in (False, True):
        a = model.generate(cond, lens, gsample=gsample, generator=torch.Generator().manual_seed(7))
        b = model.generate(cond, lens, gsample=gsample, generator=torch.Generator().manual_seed(7))
        c = model.generate(cond, lens, gsample=gsample, generator=torch.Generator().manual_seed(8))
        assert torch.equal(a, b)
        assert not torch.equal(a, c)


def test_decoding_remasks_lowest_confidence_and_never_reopens_fixed_tokens(monkeypatch):
    model = tiny().eval()
    steps: list[dict] = []
    real_cfg = model.forward_with_cfg
    real_sample = masking_mod.categorical_sample

    def spy_cfg(ids, cond, padding, scale):
        logits = real_cfg(ids, cond, padding, scale)
        steps.append({"ids": ids.clone(), "probs": logits.softmax(-1)})
        return logits

    def spy_sample(logits, **kw):
        sampled = real_sample(logits, **kw)
        steps[-1]["sampled"] = sampled.clone()
        return sampled

    monkeypatch.setattr(model, "forward_with_cfg", spy_cfg)
    monkeypatch.setattr(masking_mod, "categorical_sample", spy_sample)
    lens = torch.tensor([20, 11])
    out = model.generate(torch.randn(2, model.cond_dim), lens, timesteps=6, generator=torch.Generator().manual_seed(1))
    counts = decode_mask_counts(lens, 6)
    for s, step in enumerate(steps):
        masked = step["ids"] == model.mask_id
        assert masked.sum(1).tolist() == counts[s].long().tolist()
        if s == 0:
            continue
        prev = steps[s - 1]
        prev_masked = prev["ids"] == model.mask_id
        assert not bool((masked & ~prev_masked).any()), "a fixed token was re-masked"
        # the re-masked positions are the least confident of the previous step's predictions
        score = prev["probs"].gather(-1, prev["sampled"].unsqueeze(-1)).squeeze(-1)
        for b in range(2):
            cand = prev_masked[b].nonzero().squeeze(1)
            lowest = cand[score[b, cand].argsort()[: int(counts[s, b])]]
            assert set(lowest.tolist()) == set(masked[b].nonzero().squeeze(1).tolist())
        # kept positions keep the previous step's sample
        kept = prev_masked & ~masked
        assert torch.equal(step["ids"][kept], prev["sampled"][kept])
    final_masked = steps[-1]["ids"] == model.mask_id
    assert torch.equal(out[final_masked], steps[-1]["sampled"][final_masked])


def test_bad_inputs_raise_typed_errors():
    model = tiny()
    ids, cond, padding, lens = batch(model)
    with pytest.raises(TransformerShapeError, match="cond"):
        model(ids, cond[:, :5], padding)
    with pytest.raises(TransformerShapeError, match="ids"):
        model(ids.float(), cond, padding)
    with pytest.raises(TransformerShapeError, match="token_lens"):
        model.generate(cond, torch.tensor([3, 0, 2]))
    with pytest.raises(TransformerShapeError, match="exceed"):
        model.training_loss(torch.where(padding, 0, ids), torch.tensor([13, 2, 2]), cond)
    with pytest.raises(ValueError, match="topk"):
        model.generate(cond, lens, topk_filter_thres=1.0)


def _synthetic_task(num_classes=4, n=16, num_tokens=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    conds = torch.randn(num_classes, TINY["cond_dim"], generator=g) * 3
    templates = torch.randint(0, num_tokens, (num_classes, n), generator=g)
    lens = torch.tensor([16, 12, 9, 14])[:num_classes]
    return conds, templates, lens, g


def test_tiny_model_learns_text_conditioned_tokens():
    torch.manual_seed(0)
    model = MaskTransformer(**{**TINY, "dropout": 0.1})
    conds, templates, lens, g = _synthetic_task()
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
    out = model.generate(conds, lens, timesteps=6, cond_scale=2.0, generator=torch.Generator().manual_seed(0))
    valid = torch.arange(16)[None] < lens[:, None]
    accuracy = (out == templates)[valid].float().mean().item()
    assert accuracy > 0.5, accuracy  # chance is 1/64
