"""The matching evaluator: official key names, file loading, POS rules, and the GT-vs-GT ceiling."""
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from training_data import tiny_dataset  # noqa: E402,F401  (fixture)

from momask_model.evaluate.evaluator import (  # noqa: E402
    POS_CLASSES, EvaluatorConfig, EvaluatorError, EvaluatorFilesMissing, WordVectorizer, build_evaluator,
    load_evaluator, load_official_evaluator, pos_one_hot, save_evaluator,
)

OFFICIAL_KEYS = {
    "movement_encoder": {"main.0.weight", "main.0.bias", "main.3.weight", "main.3.bias", "out_net.weight", "out_net.bias"},
    "motion_encoder": {"hidden", "input_emb.weight", "input_emb.bias", "output_net.0.weight", "output_net.0.bias",
                       "output_net.1.weight", "output_net.1.bias", "output_net.3.weight", "output_net.3.bias"}
    | {f"gru.{k}_l0{s}" for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") for s in ("", "_reverse")},
}
OFFICIAL_KEYS["text_encoder"] = OFFICIAL_KEYS["motion_encoder"] | {"pos_emb.weight", "pos_emb.bias"}


def _vectorizer(dim=300):
    return WordVectorizer.build([["a/DET", "man/NOUN", "walks/VERB", "left/ADV"]], dim=dim)


def test_paper_size_modules_have_the_official_key_names_and_shapes():
    ev = build_evaluator(config=EvaluatorConfig(), vectorizer=_vectorizer(), mean=np.zeros(263), std=np.ones(263))
    for name, keys in OFFICIAL_KEYS.items():
        assert set(getattr(ev, name).state_dict()) == keys
    assert ev.movement_encoder.main[0].weight.shape == (512, 259, 4)
    assert ev.motion_encoder.gru.weight_ih_l0.shape == (3 * 1024, 1024)
    assert ev.text_encoder.hidden.shape == (2, 1, 512)


def test_official_files_load_and_missing_files_are_named(tmp_path):
    cfg = EvaluatorConfig(dim_word=300)
    src = build_evaluator(config=cfg, vectorizer=_vectorizer(), mean=np.zeros(263), std=np.ones(263))
    ckpt = {n: getattr(src, n).state_dict() for n in OFFICIAL_KEYS} | {"epoch": 3, "iter": 10}
    torch.save(ckpt, tmp_path / "finest.tar")
    glove, meta = tmp_path / "glove", tmp_path / "meta"
    glove.mkdir(), meta.mkdir()
    with pytest.raises(EvaluatorFilesMissing, match="our_vab_data.npy"):
        load_official_evaluator(tmp_path / "finest.tar", glove_dir=glove, meta_dir=meta)
    words = ["unk", "sos", "eos", "walk"]
    np.save(glove / "our_vab_data.npy", np.random.default_rng(0).standard_normal((4, 300)).astype(np.float32))
    (glove / "our_vab_words.pkl").write_bytes(pickle.dumps(words))
    (glove / "our_vab_idx.pkl").write_bytes(pickle.dumps({w: i for i, w in enumerate(words)}))
    np.save(meta / "mean.npy", np.zeros(263))
    np.save(meta / "std.npy", np.ones(263))
    ev = load_official_evaluator(tmp_path / "finest.tar", glove_dir=glove, meta_dir=meta)
    for name in OFFICIAL_KEYS:
        for k, v in getattr(src, name).state_dict().items():
            assert torch.equal(getattr(ev, name).state_dict()[k], v)
    bad = dict(ckpt, text_encoder={k: v for k, v in ckpt["text_encoder"].items() if k != "hidden"})
    torch.save(bad, tmp_path / "bad.tar")
    with pytest.raises(EvaluatorError, match="hidden"):
        load_official_evaluator(tmp_path / "bad.tar", glove_dir=glove, meta_dir=meta)


def test_pos_one_hot_vip_override_and_unknown_words():
    assert len(POS_CLASSES) == 15
    assert POS_CLASSES[int(pos_one_hot("left", "ADV").argmax())] == "Loc_VIP"
    assert POS_CLASSES[int(pos_one_hot("walk", "VERB").argmax())] == "Act_VIP"
    assert POS_CLASSES[int(pos_one_hot("man", "NOUN").argmax())] == "NOUN"
    assert POS_CLASSES[int(pos_one_hot("man", "XYZ").argmax())] == "OTHER"
    assert POS_CLASSES[int(pos_one_hot("walk", "VERB", known=False).argmax())] == "OTHER"


def test_encode_wraps_in_sos_eos_pads_with_unk_and_truncates():
    vec = _vectorizer(8)
    ids, pos, n = vec.encode(["a/DET", "man/NOUN", "zebra/NOUN"], max_text_len=5)
    w = vec.word_to_index
    assert n == 5 and ids.tolist() == [w["sos"], w["a"], w["man"], w["unk"], w["eos"], w["unk"], w["unk"]]
    assert pos.shape == (7, 15)
    ids, _, n = vec.encode(["a/DET"] * 30, max_text_len=20)
    assert n == 22 and len(ids) == 22
    with pytest.raises(EvaluatorError):
        vec.encode(["nopos"])


def test_save_load_round_trip(tmp_path):
    cfg = EvaluatorConfig(dim_pose=263, dim_word=8, dim_text_hidden=8, dim_coemb_hidden=8, dim_movement_enc_hidden=8,
                          dim_movement_latent=8, dim_motion_hidden=8)
    ev = build_evaluator(config=cfg, vectorizer=_vectorizer(8), mean=np.zeros(263), std=np.ones(263)).eval()
    save_evaluator(ev, tmp_path / "e.pt")
    ev2 = load_evaluator(tmp_path / "e.pt")
    x = torch.randn(2, 40, 263)
    lens = torch.tensor([40, 24])
    assert torch.allclose(ev.encode_motion(x, lens), ev2.encode_motion(x, lens))
    with pytest.raises(EvaluatorError):
        ev.encode_motion(torch.randn(2, 40, 251), lens)


def test_trained_evaluator_gives_gt_ceiling_and_beats_shuffled_pairs(tiny_dataset, tmp_path):
    """GT against itself: FID ≈ 0 and R-precision at the ceiling, clearly above shuffled pairs."""
    from momask_model.evaluate.runner import evaluate_generator, identity_generator
    from momask_model.motion.normalization import Normalizer
    from momask_model.train.config import load_pipeline_config
    from momask_model.train.pipeline import load_configured_evaluator, run_stage, text_motion_set, open_layout

    cfg = load_pipeline_config("training/configs/tiny.yaml", ["evaluator_train.max_steps=150",
                                                              "eval.repeats=3", "eval.batch_size=8"])
    run_stage("evaluator", cfg, tmp_path / "ev", data_root=tiny_dataset)
    ev = load_configured_evaluator(cfg, "cpu", tmp_path / "ev" / "evaluator.pt")
    norm = Normalizer(ev.mean.numpy(), ev.std.numpy())
    ds = text_motion_set(cfg, open_layout(cfg, tiny_dataset), "train", norm)
    gt = evaluate_generator(ev, ds, norm, identity_generator, config=cfg.eval, name="gt")

    def shuffled(batch):
        return batch["motion"].roll(1, dims=0)

    sh = evaluate_generator(ev, ds, norm, shuffled, config=cfg.eval, name="shuffled")
    assert abs(gt["gt"]["fid"]["mean"]) < 1e-3
    assert gt["gt"]["top3"]["mean"] == pytest.approx(gt["ground_truth"]["top3"]["mean"])
    # 4 captions shared by 2 clips each per batch of 8: top-1 cannot exceed ~0.5, top-3 can reach 1
    assert gt["gt"]["top1"]["mean"] >= 0.4
    assert gt["gt"]["top3"]["mean"] >= 0.9
    assert sh["shuffled"]["top3"]["mean"] < gt["gt"]["top3"]["mean"] - 0.2
    assert sh["shuffled"]["mm_dist"]["mean"] > gt["gt"]["mm_dist"]["mean"]


@pytest.mark.parametrize("name", ["tiny", "demo", "humanml3d", "kit"])
def test_eval_section_keeps_its_flat_keys_and_samples_like_inference(name):
    from momask_model.config import SamplingConfig
    from momask_model.train.config import load_pipeline_config

    root = Path(__file__).resolve().parents[1] / "training" / "configs"
    raw = yaml.safe_load((root / f"{name}.yaml").read_text())["eval"]
    ev = load_pipeline_config(root / f"{name}.yaml").eval
    assert isinstance(ev, SamplingConfig)
    assert all(getattr(ev, k) == v for k, v in raw.items())  # timesteps, cond_scale... stand flat in eval:
