"""Importing the authors' released checkpoints (design/momask.md §2.2, §3.2, §4.2, §5, §7.4).

The release cannot be downloaded here, so each test writes an official-layout folder tree from
scratch: state dicts with exactly the documented key names and shapes (listed below from the design
notes, not taken from our modules), random values, saved the way the official trainers save them,
``opt.txt`` files in the official format (with its quirks) and float64 meta files. Widths are reduced
where the key structure allows it, so the whole file runs in seconds on one core.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from momask_model.generation.bundle import load_bundle, read_bundle
from momask_model.nets.length import LengthEstimator
from momask_model.nets.masked import MaskTransformer
from momask_model.official.importer import import_official, main
from momask_model.official.options import OfficialImportError, config_from_official, parse_opt_txt
from momask_model.nets.residual import ResidualTransformer
from momask_model.nets.vq import RVQVAE

VQ_DIR = "rvq_nq6_dc512_nc512_noshare_qdp0.2"
M_DIR = "t2m_nlayer8_nhead6_ld384_ff1024_cdp0.1_rvq6ns"
R_DIR = "tres_nlayer8_ld384_ff1024_rvq6ns_cdp0.2_sw"

# reduced official layout: the key structure scales with these numbers only
SMALL = dict(width=64, code_dim=32, nb_code=64, num_quantizers=6, latent=64, ff=96, layers=2, heads=4)
CLIP_DIM = 512


# ------------------------------------------------------------------------------------ official layout
def _rand(gen: torch.Generator, *shape: int, scale: float = 0.05) -> torch.Tensor:
    return torch.randn(*shape, generator=gen) * scale


def official_vq_state(gen, *, dim, width, code_dim, nb_code, num_quantizers, depth=3, down_t=2):
    """§2.2: encoder.model.{0,2,3,4}, decoder.model.{0,2,3,4,6}, quantizer.layers.{i}.codebook."""
    sd: dict[str, torch.Tensor] = {}

    def conv(prefix, cout, cin, k):
        sd[f"{prefix}.weight"] = _rand(gen, cout, cin, k, scale=1.0 / math.sqrt(cin * k))
        sd[f"{prefix}.bias"] = _rand(gen, cout, scale=0.02)

    def resnet(prefix):
        for j in range(depth):
            conv(f"{prefix}.model.{j}.conv1", width, width, 3)
            conv(f"{prefix}.model.{j}.conv2", width, width, 1)

    conv("encoder.model.0", width, dim, 3)
    for i in range(down_t):
        conv(f"encoder.model.{2 + i}.0", width, width, 4)
        resnet(f"encoder.model.{2 + i}.1")
    conv(f"encoder.model.{2 + down_t}", code_dim, width, 3)
    conv("decoder.model.0", width, code_dim, 3)
    for i in range(down_t):
        resnet(f"decoder.model.{2 + i}.0")
        conv(f"decoder.model.{2 + i}.2", width, width, 3)
    conv(f"decoder.model.{2 + down_t}", width, width, 3)
    conv(f"decoder.model.{4 + down_t}", dim, width, 3)
    for q in range(num_quantizers):
        sd[f"quantizer.layers.{q}.codebook"] = _rand(gen, nb_code, code_dim, scale=1.0)
    return sd


def _encoder_layers(gen, sd, *, latent, ff, layers):
    for i in range(layers):
        p = f"seqTransEncoder.layers.{i}"
        sd[f"{p}.self_attn.in_proj_weight"] = _rand(gen, 3 * latent, latent, scale=0.1)
        sd[f"{p}.self_attn.in_proj_bias"] = _rand(gen, 3 * latent)
        sd[f"{p}.self_attn.out_proj.weight"] = _rand(gen, latent, latent, scale=0.1)
        sd[f"{p}.self_attn.out_proj.bias"] = _rand(gen, latent)
        sd[f"{p}.linear1.weight"] = _rand(gen, ff, latent, scale=0.1)
        sd[f"{p}.linear1.bias"] = _rand(gen, ff)
        sd[f"{p}.linear2.weight"] = _rand(gen, latent, ff, scale=0.1)
        sd[f"{p}.linear2.bias"] = _rand(gen, latent)
        for n in ("norm1", "norm2"):
            sd[f"{p}.{n}.weight"] = 1.0 + _rand(gen, latent)
            sd[f"{p}.{n}.bias"] = _rand(gen, latent)


def _common_transformer(gen, sd, *, code_dim, latent, ff, layers, head_out):
    sd["input_process.poseEmbedding.weight"] = _rand(gen, latent, code_dim, scale=0.1)
    sd["input_process.poseEmbedding.bias"] = _rand(gen, latent)
    sd["position_enc.pe"] = _rand(gen, 5000, 1, latent, scale=0.5)  # random: proves it is copied, not rebuilt
    _encoder_layers(gen, sd, latent=latent, ff=ff, layers=layers)
    sd["cond_emb.weight"] = _rand(gen, latent, CLIP_DIM, scale=0.05)
    sd["cond_emb.bias"] = _rand(gen, latent)
    sd["output_process.dense.weight"] = _rand(gen, latent, latent, scale=0.1)
    sd["output_process.dense.bias"] = _rand(gen, latent)
    sd["output_process.LayerNorm.weight"] = 1.0 + _rand(gen, latent)
    sd["output_process.LayerNorm.bias"] = _rand(gen, latent)
    sd["output_process.poseFinal.weight"] = _rand(gen, head_out, latent, scale=0.1)
    sd["output_process.poseFinal.bias"] = _rand(gen, head_out)


def official_m_state(gen, *, nb_code, code_dim, latent, ff, layers, with_clip=True):
    """§3.2 (108 tensors at paper size) plus a few clip_model.* entries the loader must drop."""
    sd: dict[str, torch.Tensor] = {}
    _common_transformer(gen, sd, code_dim=code_dim, latent=latent, ff=ff, layers=layers, head_out=nb_code)
    sd["token_emb.weight"] = _rand(gen, nb_code + 2, code_dim, scale=0.5)
    if with_clip:
        sd["clip_model.positional_embedding"] = _rand(gen, 77, CLIP_DIM)
        sd["clip_model.token_embedding.weight"] = _rand(gen, 16, CLIP_DIM)
        sd["clip_model.ln_final.weight"] = torch.ones(CLIP_DIM)
    return sd


def official_r_state(gen, *, nb_code, code_dim, num_quantizers, latent, ff, layers):
    """§4.2: the three shared tables, quant_emb, and the common stack (112 tensors at paper size)."""
    sd = {
        "embed_proj_shared_weight": _rand(gen, num_quantizers - 2, nb_code + 1, code_dim, scale=0.5),
        "token_embed_weight_": _rand(gen, 1, nb_code + 1, code_dim, scale=0.5),
        "output_proj_weight_": _rand(gen, 1, nb_code + 1, code_dim, scale=0.5),
        "quant_emb.weight": _rand(gen, latent, num_quantizers, scale=0.1),
        "quant_emb.bias": _rand(gen, latent),
    }
    _common_transformer(gen, sd, code_dim=code_dim, latent=latent, ff=ff, layers=layers, head_out=code_dim)
    sd["clip_model.text_projection"] = _rand(gen, CLIP_DIM, CLIP_DIM)
    return sd


def official_length_state(gen):
    """§5: output.{0,1,4,5,8,9,11}.{weight,bias}."""
    sd = {}
    for idx, (cout, cin) in {0: (512, 512), 4: (256, 512), 8: (128, 256), 11: (50, 128)}.items():
        sd[f"output.{idx}.weight"] = _rand(gen, cout, cin, scale=0.05)
        sd[f"output.{idx}.bias"] = _rand(gen, cout)
    for idx, n in {1: 512, 5: 256, 9: 128}.items():
        sd[f"output.{idx}.weight"] = 1.0 + _rand(gen, n)
        sd[f"output.{idx}.bias"] = _rand(gen, n)
    return sd


def write_opt(folder: Path, options: dict) -> None:
    """The official writer: banner, keys sorted, ``key: str(value)``, closing banner."""
    lines = ["------------ Options -------------"]
    lines += [f"{k}: {options[k]}" for k in sorted(options)]
    lines.append("-------------- End ----------------")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "opt.txt").write_text("\n".join(lines) + "\n")


def build_release(
    root: Path,
    *,
    dataset="t2m",
    sizes=SMALL,
    seed=0,
    names=(VQ_DIR, M_DIR, R_DIR),
    length_estimator=True,
    meta_dtype=np.float64,
) -> dict:
    """Write ``root/<dataset>/...`` like the unpacked release; returns the state dicts written."""
    gen = torch.Generator().manual_seed(seed)
    dim = 263 if dataset == "t2m" else 251
    s = dict(sizes)
    ds = root / dataset
    vq_dir, m_dir, r_dir = (ds / n for n in names)
    vq = official_vq_state(gen, dim=dim, width=s["width"], code_dim=s["code_dim"], nb_code=s["nb_code"],
                           num_quantizers=s["num_quantizers"])
    write_opt(vq_dir, {
        "batch_size": 256, "checkpoints_dir": "./checkpoints", "code_dim": s["code_dim"], "commit": 0.02,
        "dataset_name": dataset, "depth": 3, "dilation_growth_rate": 3, "down_t": 2, "feat_bias": 5,
        "gamma": 0.05, "is_continue": False, "is_train": True, "lr": 0.0002, "lr_scheduler": [150000, 250000],
        "mu": 0.99, "name": names[0], "nb_code": s["nb_code"], "num_quantizers": s["num_quantizers"],
        "output_emb_width": s["code_dim"], "quantize_dropout_prob": 0.2 if dataset == "t2m" else 0.5,
        "recons_loss": "l1_smooth", "shared_codebook": False, "stride_t": 2, "vq_act": "relu", "vq_norm": None,
        "weight_decay": 0.0, "width": s["width"], "window_size": 64,
    })
    (vq_dir / "model").mkdir()
    torch.save({"vq_model": vq, "ep": 50}, vq_dir / "model" / "net_best_fid.tar")
    rng = np.random.default_rng(seed)
    (vq_dir / "meta").mkdir()
    mean = rng.normal(size=dim).astype(meta_dtype)
    std = rng.uniform(0.02, 2.0, size=dim).astype(meta_dtype)
    np.save(vq_dir / "meta" / "mean.npy", mean)
    np.save(vq_dir / "meta" / "std.npy", std)

    stack = dict(latent=s["latent"], ff=s["ff"], layers=s["layers"])
    m = official_m_state(gen, nb_code=s["nb_code"], code_dim=s["code_dim"], **stack)
    m_common = {
        "batch_size": 64, "dataset_name": dataset, "dropout": 0.2, "ff_size": s["ff"], "gamma": 0.1,
        "is_train": True, "latent_dim": s["latent"], "lr": 0.0002, "max_epoch": 500, "max_motion_length": 196,
        "milestones": [50000], "n_heads": s["heads"], "n_layers": s["layers"], "seed": 3407, "unit_length": 4,
        "vq_name": names[0], "warm_up_iter": 2000,
    }
    write_opt(m_dir, {**m_common, "cond_drop_prob": 0.1, "fix_token_emb": False, "is_continue": False,
                      "name": names[1]})
    (m_dir / "model").mkdir()
    torch.save({"t2m_transformer": m, "ep": 387, "total_it": 12345}, m_dir / "model" / "latest.tar")

    r = official_r_state(gen, nb_code=s["nb_code"], code_dim=s["code_dim"], num_quantizers=s["num_quantizers"],
                         **stack)
    write_opt(r_dir, {**m_common, "cond_drop_prob": 0.2, "force_mask": False, "is_continue": True, "is_v2": False,
                      "name": names[2], "share_weight": True})
    (r_dir / "model").mkdir()
    torch.save({"res_transformer": r, "ep": 299}, r_dir / "model" / "net_best_fid.tar")

    le = None
    if length_estimator:
        le = official_length_state(gen)
        (ds / "length_estimator" / "model").mkdir(parents=True)
        torch.save({"estimator": le, "epoch": 170, "niter": 9999}, ds / "length_estimator" / "model" / "finest.tar")
    # the evaluator folder sits beside the models in the release; it must not confuse auto-detection
    write_opt(ds / "Comp_v6_KLD005", {"name": "Comp_v6_KLD005", "dataset_name": dataset, "dim_movement_enc_hidden": 512})
    return {"vq": vq, "mask_transformer": m, "residual_transformer": r, "length_estimator": le,
            "mean": mean, "std": std, "dirs": (vq_dir, m_dir, r_dir)}


def no_clip(sd: dict) -> dict:
    return {k: v for k, v in sd.items() if not k.startswith("clip_model.")}


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("release") / "checkpoints"
    return root, build_release(root)


@pytest.fixture(scope="module")
def imported(release, tmp_path_factory):
    """One import with a random CLIP tower (no CLIP weights offline), and the bundle reloaded."""
    root, _ = release
    out = tmp_path_factory.mktemp("bundle") / "official.pt"
    model = import_official(root, "t2m", out, clip_weights=None, clip_allow_random=True)
    return model, out, load_bundle(out)


# ------------------------------------------------------------------------------------ opt.txt
def test_parse_opt_txt_keeps_official_types_and_tolerates_quirks(tmp_path):
    (tmp_path / "opt.txt").write_text(
        "------------ Options -------------\n"
        "batch_size: 256\nlr: 0.0002\nweight_decay: 1e-05\ngpu_id: -1\nis_continue: True\nis_train: False\n"
        "lr_scheduler: [150000, 250000]\nvq_norm: None\n\nname: rvq_nq6\n"
        "text: a man: walks\nstray line without colon\n"
        "-------------- End ----------------\n"
    )
    opt = parse_opt_txt(tmp_path / "opt.txt")
    assert opt["batch_size"] == 256 and isinstance(opt["batch_size"], int)
    assert opt["lr"] == pytest.approx(2e-4) and isinstance(opt["lr"], float)
    assert opt["weight_decay"] == pytest.approx(1e-5)
    assert opt["gpu_id"] == -1
    assert opt["is_continue"] is True and opt["is_train"] is False
    assert opt["lr_scheduler"] == "[150000, 250000]"  # lists stay strings, as in the official reader
    assert opt["vq_norm"] == "None"
    assert opt["name"] == "rvq_nq6"
    assert opt["text"] == "a man: walks"
    assert "stray line without colon" not in opt


def test_parse_opt_txt_missing_file_names_the_path(tmp_path):
    with pytest.raises(OfficialImportError, match=str(tmp_path / "nowhere" / "opt.txt")):
        parse_opt_txt(tmp_path / "nowhere" / "opt.txt")


def test_config_comes_from_opt_files_and_vq_token_space(release):
    _, rel = release
    opts = [parse_opt_txt(d / "opt.txt") for d in rel["dirs"]]
    cfg = config_from_official(*opts, "t2m")
    assert (cfg.vq.width, cfg.vq.code_dim, cfg.vq.nb_code, cfg.vq.num_quantizers) == (64, 32, 64, 6)
    assert cfg.mask_transformer.num_tokens == 64 and cfg.mask_transformer.code_dim == 32
    assert (cfg.mask_transformer.latent_dim, cfg.mask_transformer.num_layers, cfg.mask_transformer.num_heads) == (64, 2, 4)
    assert cfg.mask_transformer.cond_drop_prob == pytest.approx(0.1)
    assert cfg.residual_transformer.cond_drop_prob == pytest.approx(0.2)
    assert cfg.residual_transformer.share_weight and cfg.residual_transformer.num_quantizers == 6
    assert cfg.text_encoder.kind == "clip" and cfg.text_encoder.model_name == "ViT-B-32"
    assert cfg.text_encoder.weights == "openai" and cfg.text_encoder.dim == 512
    with pytest.raises(OfficialImportError, match="dataset_name is 't2m'"):
        config_from_official(*opts, "kit")


# ------------------------------------------------------------------------------------ round trip
def test_import_round_trips_every_tensor_bit_for_bit(release, imported):
    _, rel = release
    model, out, reloaded = imported
    payload = read_bundle(out)
    for part in ("vq", "mask_transformer", "residual_transformer", "length_estimator"):
        official = no_clip(rel[part])
        for source in (getattr(model, part).state_dict(), payload[part], getattr(reloaded, part).state_dict()):
            assert set(source) == set(official), part
            for key, tensor in official.items():
                assert source[key].dtype == torch.float32
                assert torch.equal(source[key].cpu(), tensor), f"{part}.{key}"
    assert len(rel["vq"]) == 2 + 2 * (2 + 3 * 4) + 2 + 2 + 2 * (3 * 4 + 2) + 2 + 2 + 6  # 72, as documented


def test_shipped_float64_meta_is_the_normaliser(release, imported):
    _, rel = release
    model, _, reloaded = imported
    for m in (model, reloaded):
        np.testing.assert_array_equal(m.normalizer.mean, rel["mean"].astype(np.float32))
        np.testing.assert_array_equal(m.normalizer.std, rel["std"].astype(np.float32))
    assert model.bundle_meta["normalizer"]["dtype"] == "float64"


def test_bundle_meta_records_source_files_and_epochs(imported):
    _, _, reloaded = imported
    files = reloaded.bundle_meta["files"]
    assert files["vq"]["ep"] == 50 and files["vq"]["file"].endswith(f"{VQ_DIR}/model/net_best_fid.tar")
    assert files["mask_transformer"]["ep"] == 387 and files["mask_transformer"]["file"].endswith("latest.tar")
    assert files["mask_transformer"]["dropped_clip_keys"] == 3
    assert files["residual_transformer"]["ep"] == 299
    assert files["length_estimator"]["epoch"] == 170 and files["length_estimator"]["niter"] == 9999
    assert reloaded.bundle_meta["source"] == "official"
    assert reloaded.config.text_encoder.kind == "clip"


# ------------------------------------------------------------------------------------ same computation
def _ref_res(sd, prefix, h):
    """Resnet1D of §2.2: blocks stored widest dilation first (9, 3, 1), pre-activation, no norm."""
    for j, dil in enumerate((9, 3, 1)):
        r = F.conv1d(F.relu(h), sd[f"{prefix}.model.{j}.conv1.weight"], sd[f"{prefix}.model.{j}.conv1.bias"],
                     padding=dil, dilation=dil)
        h = h + F.conv1d(F.relu(r), sd[f"{prefix}.model.{j}.conv2.weight"], sd[f"{prefix}.model.{j}.conv2.bias"])
    return h


def reference_vq_encode_latent(sd, x):
    """§2.2 encoder with F.conv1d on the official keys: conv, ReLU, 2 x (stride-2 conv, res), conv."""
    h = F.relu(F.conv1d(x.transpose(1, 2), sd["encoder.model.0.weight"], sd["encoder.model.0.bias"], padding=1))
    for i in (2, 3):
        h = F.conv1d(h, sd[f"encoder.model.{i}.0.weight"], sd[f"encoder.model.{i}.0.bias"], stride=2, padding=1)
        h = _ref_res(sd, f"encoder.model.{i}.1", h)
    return F.conv1d(h, sd["encoder.model.4.weight"], sd["encoder.model.4.bias"], padding=1).transpose(1, 2)


def reference_vq_decode(sd, codes):
    """Sum of codebook rows (-1 -> zero vector), then the §2.2 decoder (res, x2 nearest, conv)."""
    z = 0
    for q in range(codes.shape[-1]):
        c = codes[..., q]
        z = z + F.embedding(c.clamp(min=0), sd[f"quantizer.layers.{q}.codebook"]) * (c >= 0).unsqueeze(-1)
    h = F.relu(F.conv1d(z.transpose(1, 2), sd["decoder.model.0.weight"], sd["decoder.model.0.bias"], padding=1))
    for i in (2, 3):
        h = _ref_res(sd, f"decoder.model.{i}.0", h)
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = F.conv1d(h, sd[f"decoder.model.{i}.2.weight"], sd[f"decoder.model.{i}.2.bias"], padding=1)
    h = F.relu(F.conv1d(h, sd["decoder.model.4.weight"], sd["decoder.model.4.bias"], padding=1))
    return F.conv1d(h, sd["decoder.model.6.weight"], sd["decoder.model.6.bias"], padding=1).transpose(1, 2)


def reference_vq_encode(sd, x, num_quantizers):
    """Greedy residual argmin over the official codebooks."""
    residual = reference_vq_encode_latent(sd, x)
    codes = []
    for q in range(num_quantizers):
        book = sd[f"quantizer.layers.{q}.codebook"]
        d = (residual.unsqueeze(-2) - book).pow(2).sum(-1)
        idx = d.argmin(-1)
        codes.append(idx)
        residual = residual - book[idx]
    return torch.stack(codes, -1)


def reference_m_logits(sd, ids, cond, padding_mask, *, heads):
    """§3.2 with torch's own encoder layer: token_emb -> poseEmbedding -> +PE -> [cond; x] -> post-LN -> head."""
    latent = sd["cond_emb.weight"].shape[0]
    layers = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("seqTransEncoder.layers."))
    x = F.linear(F.embedding(ids, sd["token_emb.weight"]), sd["input_process.poseEmbedding.weight"],
                 sd["input_process.poseEmbedding.bias"]).transpose(0, 1)
    x = x + sd["position_enc.pe"][: x.shape[0]]
    c = F.linear(cond, sd["cond_emb.weight"], sd["cond_emb.bias"]).unsqueeze(0)
    h = torch.cat([c, x], 0)
    mask = torch.cat([torch.zeros_like(padding_mask[:, :1]), padding_mask], 1)
    for i in range(layers):
        layer = nn.TransformerEncoderLayer(latent, heads, sd[f"seqTransEncoder.layers.{i}.linear1.weight"].shape[0],
                                           dropout=0.0, activation="gelu")
        layer.load_state_dict({k.split(f"layers.{i}.", 1)[1]: v for k, v in sd.items()
                               if k.startswith(f"seqTransEncoder.layers.{i}.")})
        h = layer.eval()(h, src_key_padding_mask=mask)
    h = F.gelu(F.linear(h[1:], sd["output_process.dense.weight"], sd["output_process.dense.bias"]))
    h = F.layer_norm(h, (latent,), sd["output_process.LayerNorm.weight"], sd["output_process.LayerNorm.bias"], eps=1e-12)
    return F.linear(h, sd["output_process.poseFinal.weight"], sd["output_process.poseFinal.bias"]).transpose(0, 1)


def test_imported_vq_gives_official_tokens_and_features(release, imported):
    _, rel = release
    model, _, reloaded = imported
    direct = RVQVAE(input_dim=263, width=64, code_dim=32, nb_code=64, num_quantizers=6).eval()
    direct.load_state_dict(rel["vq"])
    x = torch.randn(2, 32, 263, generator=torch.Generator().manual_seed(1))
    expected_codes = reference_vq_encode(rel["vq"], x, 6)
    for vq in (model.vq, reloaded.vq, direct):
        codes = vq.encode(x)
        assert torch.equal(codes, expected_codes)
    codes = expected_codes.clone()
    codes[0, 5:, 3:] = -1  # dropped layers / padding decode as zero vectors
    with torch.no_grad():
        expected = reference_vq_decode(rel["vq"], codes)
        for vq in (model.vq, reloaded.vq, direct):
            torch.testing.assert_close(vq.eval().decode(codes), expected, rtol=1e-5, atol=1e-5)
        assert torch.equal(model.vq.decode(codes), direct.decode(codes))


def test_imported_transformers_give_the_same_logits(release, imported):
    _, rel = release
    model, _, reloaded = imported
    s = SMALL
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(0, s["nb_code"] + 1, (2, 9), generator=gen)  # codes and [MASK]
    padding = torch.zeros(2, 9, dtype=torch.bool)
    padding[1, 6:] = True
    ids[padding] = s["nb_code"] + 1
    cond = torch.randn(2, CLIP_DIM, generator=gen)
    direct_m = MaskTransformer(num_tokens=64, code_dim=32, latent_dim=64, ff_size=96, num_layers=2, num_heads=4).eval()
    direct_m.load_state_dict(no_clip(rel["mask_transformer"]))
    with torch.no_grad():
        ref = reference_m_logits(rel["mask_transformer"], ids, cond, padding, heads=s["heads"])
        for m in (model.mask_transformer, reloaded.mask_transformer, direct_m):
            logits = m.eval()(ids, cond, padding)
            valid = ~padding
            torch.testing.assert_close(logits[valid], ref[valid], rtol=1e-4, atol=1e-4)
        assert torch.equal(model.mask_transformer(ids, cond, padding), direct_m(ids, cond, padding))

        direct_r = ResidualTransformer(num_tokens=64, code_dim=32, num_quantizers=6, latent_dim=64, ff_size=96,
                                       num_layers=2, num_heads=4).eval()
        direct_r.load_state_dict(no_clip(rel["residual_transformer"]))
        history = torch.randn(2, 9, 32, generator=gen)
        for j in (1, 3, 5):
            a = model.residual_transformer.eval()(history, j, cond, padding)
            assert torch.equal(a, direct_r(history, j, cond, padding))
            assert torch.equal(reloaded.residual_transformer(history, j, cond, padding), a)
        # shared tables: classifier of layer 2 is the embedding table of layer-2 tokens (§4.2)
        r_sd = rel["residual_transformer"]
        assert torch.equal(model.residual_transformer.output_projection_table(2), r_sd["embed_proj_shared_weight"][1])
        assert torch.equal(model.residual_transformer.token_embedding_table(2), r_sd["embed_proj_shared_weight"][1])
        assert torch.equal(model.residual_transformer.token_embedding_table(0), r_sd["token_embed_weight_"][0])
        assert torch.equal(model.residual_transformer.output_projection_table(5), r_sd["output_proj_weight_"][0])

        direct_le = LengthEstimator().eval()
        direct_le.load_state_dict(rel["length_estimator"])
        assert torch.equal(reloaded.length_estimator.eval()(cond), direct_le(cond))


def test_reloaded_bundle_generates_with_the_official_weights(imported):
    _, _, reloaded = imported
    a = reloaded.generate(["a person walks forward"], [24], seed=3, timesteps=3)
    b = reloaded.generate(["a person walks forward"], [24], seed=3, timesteps=3)
    assert a.features.shape == (1, 24, 263) and a.joints.shape == (1, 24, 22, 3)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    est = reloaded.generate(["a person walks forward"], None, seed=4, timesteps=2)  # imported length estimator
    assert est.lengths[0] % 4 == 0 and 4 <= est.lengths[0] <= 196


# ------------------------------------------------------------------------------------ strictness
def _resave(path: Path, top_key: str, edit) -> None:
    payload = torch.load(path, weights_only=True)
    edit(payload[top_key])
    torch.save(payload, path)


def _fresh(tmp_path, **kwargs):
    root = tmp_path / "checkpoints"
    return root, build_release(root, **kwargs)


def test_missing_key_names_file_and_key(tmp_path):
    root, rel = _fresh(tmp_path)
    path = rel["dirs"][0] / "model" / "net_best_fid.tar"
    _resave(path, "vq_model", lambda sd: sd.pop("decoder.model.4.bias"))
    with pytest.raises(OfficialImportError, match=r"net_best_fid\.tar.*'decoder\.model\.4\.bias' is missing"):
        import_official(root, "t2m")


def test_unexpected_key_names_file_and_key(tmp_path):
    root, rel = _fresh(tmp_path)
    path = rel["dirs"][2] / "model" / "net_best_fid.tar"
    _resave(path, "res_transformer", lambda sd: sd.__setitem__("output_bias", torch.zeros(6, 65)))
    with pytest.raises(OfficialImportError, match=r"tres_.*net_best_fid\.tar.*unexpected .*'output_bias'"):
        import_official(root, "t2m")


def test_wrong_shape_names_file_and_key(tmp_path):
    root, rel = _fresh(tmp_path)
    path = rel["dirs"][1] / "model" / "latest.tar"
    _resave(path, "t2m_transformer", lambda sd: sd.__setitem__("output_process.dense.weight", torch.zeros(64, 60)))
    with pytest.raises(OfficialImportError, match=r"latest\.tar.*'output_process\.dense\.weight' has shape \(64, 60\)"):
        import_official(root, "t2m")


def test_transformer_from_another_vq_is_refused(tmp_path):
    root, rel = _fresh(tmp_path)
    # replace the M-transformer by one trained on a 128-code VQ
    other = official_m_state(torch.Generator().manual_seed(9), nb_code=128, code_dim=32, latent=64, ff=96, layers=2)
    torch.save({"t2m_transformer": other, "ep": 1}, rel["dirs"][1] / "model" / "latest.tar")
    with pytest.raises(OfficialImportError, match=r"latest\.tar.*'token_emb\.weight'.*trained on a different VQ"):
        import_official(root, "t2m")


def test_vq_opt_disagreeing_with_its_codebooks_is_refused(tmp_path):
    root, rel = _fresh(tmp_path)
    opt = (rel["dirs"][0] / "opt.txt").read_text().replace("num_quantizers: 6", "num_quantizers: 5")
    (rel["dirs"][0] / "opt.txt").write_text(opt)
    with pytest.raises(OfficialImportError, match=r"net_best_fid\.tar.*6 quantizer layers.*num_quantizers=5"):
        import_official(root, "t2m")


def test_missing_folder_file_or_meta_is_a_clear_error(tmp_path):
    with pytest.raises(OfficialImportError, match=f"checkpoints folder not found: {tmp_path / 'absent'}"):
        import_official(tmp_path / "absent", "t2m")
    root, rel = _fresh(tmp_path)
    with pytest.raises(OfficialImportError, match=f"no 'kit' folder in {root}"):
        import_official(root, "kit")
    with pytest.raises(OfficialImportError, match="folder not found: .*t2m/my_vq"):
        import_official(root, "t2m", vq_name="my_vq")
    (rel["dirs"][0] / "meta" / "std.npy").unlink()
    with pytest.raises(OfficialImportError, match=r"normalisation file not found: .*meta/std\.npy"):
        import_official(root, "t2m")
    (rel["dirs"][1] / "model" / "latest.tar").unlink()
    with pytest.raises(OfficialImportError, match=r"masked transformer checkpoint not found .*latest\.tar"):
        import_official(root, "t2m")


def test_wrong_top_level_key_is_named(tmp_path):
    root, rel = _fresh(tmp_path)
    torch.save({"model": rel["vq"], "ep": 3}, rel["dirs"][0] / "model" / "net_best_fid.tar")
    with pytest.raises(OfficialImportError, match=r"expected top-level key 'vq_model' or 'net', found \['ep', 'model'\]"):
        import_official(root, "t2m")


# ------------------------------------------------------------------------------------ layouts and CLI
def test_kit_layout_without_length_estimator_and_float32_meta(tmp_path):
    root = tmp_path / "checkpoints"
    names = (VQ_DIR + "_k", M_DIR + "_k", R_DIR + "_k")
    rel = build_release(root, dataset="kit", names=names, length_estimator=False, meta_dtype=np.float32)
    out = tmp_path / "kit.pt"
    model = import_official(root, "kit", out, clip_weights=str(tmp_path / "no_clip.pt"))
    payload = read_bundle(out)
    assert payload["length_estimator"] is None and model.length_estimator is None
    assert model.config.dataset.name == "kit" and model.config.vq.input_dim == 251
    assert model.config.vq.quantize_dropout_prob == pytest.approx(0.5)  # KIT's released opt value
    assert model.config.sampling.cond_scale == pytest.approx(2.0)
    np.testing.assert_array_equal(payload["std"], rel["std"])
    assert torch.equal(payload["vq"]["quantizer.layers.5.codebook"], rel["vq"]["quantizer.layers.5.codebook"])


def test_folders_are_auto_detected_from_their_opt_files(tmp_path):
    root = tmp_path / "checkpoints"
    rel = build_release(root, names=("rvq_mine", "t2m_mine", "tres_mine"))
    out = tmp_path / "mine.pt"
    import_official(root / "t2m", "t2m", out, clip_weights=str(tmp_path / "no_clip.pt"))  # dataset folder given
    meta = read_bundle(out)["meta"]
    assert meta["folders"] == {"vq": "rvq_mine", "mask_transformer": "t2m_mine", "residual_transformer": "tres_mine"}
    # a second VQ makes the choice ambiguous unless the M opt's vq_name or an explicit name settles it
    build_release(tmp_path / "other", seed=1, names=("rvq_other", "t2m_o", "tres_o"))
    (tmp_path / "other" / "t2m" / "rvq_other").rename(root / "t2m" / "rvq_other")
    import_official(root, "t2m", out, clip_weights=str(tmp_path / "no_clip.pt"))
    assert read_bundle(out)["meta"]["folders"]["vq"] == "rvq_mine"  # from t2m_mine/opt.txt vq_name
    # an explicit name wins (same sizes, so the pair check passes; the vq_name mismatch is only logged)
    import_official(root, "t2m", out, clip_weights=str(tmp_path / "no_clip.pt"), vq_name="rvq_other")
    other = torch.load(root / "t2m" / "rvq_other" / "model" / "net_best_fid.tar", weights_only=True)["vq_model"]
    assert torch.equal(read_bundle(out)["vq"]["encoder.model.0.weight"], other["encoder.model.0.weight"])
    assert not torch.equal(other["encoder.model.0.weight"], rel["vq"]["encoder.model.0.weight"])
    # two VQ folders and no hint at all: an error listing both
    (root / "t2m" / "t2m_mine" / "opt.txt").write_text(
        (root / "t2m" / "t2m_mine" / "opt.txt").read_text().replace("vq_name: rvq_mine\n", ""))
    with pytest.raises(OfficialImportError, match=r"several RVQ-VAE folders .*rvq_mine.*rvq_other.*vq_name="):
        import_official(root, "t2m")
    assert rel["vq"]["encoder.model.0.weight"].shape == (64, 263, 3)


def test_cli_writes_a_bundle_offline_and_clip_is_resolved_at_load(tmp_path, capsys):
    from momask_model.text.base import TextEncoderWeightsMissing

    root, rel = _fresh(tmp_path)
    out = tmp_path / "cli.pt"
    missing_clip = tmp_path / "ViT-B-32.pt"
    code = main(["--checkpoints", str(root), "--dataset", "t2m", "--out", str(out), "--clip-weights", str(missing_clip)])
    assert code == 0 and out.is_file()
    payload = read_bundle(out)
    assert payload["config"]["text_encoder"]["weights"] == str(missing_clip)
    assert torch.equal(payload["mask_transformer"]["token_emb.weight"], rel["mask_transformer"]["token_emb.weight"])
    with pytest.raises(TextEncoderWeightsMissing, match="ViT-B-32.pt"):
        load_bundle(out)
    assert main(["--checkpoints", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "checkpoints folder not found" in capsys.readouterr().err


def test_full_paper_size_vq_imports_bit_for_bit(tmp_path):
    root = tmp_path / "checkpoints"
    sizes = dict(SMALL, width=512, code_dim=512, nb_code=512)
    rel = build_release(root, sizes=sizes, length_estimator=False)
    model = import_official(root, "t2m", tmp_path / "full.pt", clip_weights=str(tmp_path / "no_clip.pt"))
    assert len(rel["vq"]) == 72
    assert sum(t.numel() for t in rel["vq"].values()) == 21_009_671  # §2.2 parameter count (D = 263)
    state = model.vq.state_dict()
    assert all(torch.equal(state[k], v) for k, v in rel["vq"].items())
    assert model.config.vq.width == 512 and model.config.mask_transformer.num_tokens == 512
