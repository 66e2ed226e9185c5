"""Every stage trains on a tiny synthetic dataset (loss falls), stages check each other's checkpoints,
and the pipeline ends in a loadable bundle."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from training_data import tiny_dataset  # noqa: E402,F401  (fixture)

from momask_model.train.config import load_pipeline_config  # noqa: E402
from momask_model.train.pipeline import make_bundle, run_stage  # noqa: E402
from momask_model.train.stages import StageCompatibilityError  # noqa: E402

TINY = Path(__file__).resolve().parents[1] / "training" / "configs" / "tiny.yaml"


def _falls(losses, k=8):
    return float(np.mean(losses[-k:])) < float(np.mean(losses[:k]))


@pytest.fixture(scope="module")
def runs(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    cfg = load_pipeline_config(TINY, ["vq.max_steps=60", "mask.max_steps=40", "residual.max_steps=40",
                                      "length.max_steps=40", "vq.eval_every=30", "mask.eval_every=40",
                                      "residual.eval_every=40", "length.eval_every=40"])
    results = {"vq": run_stage("vq", cfg, out / "vq", data_root=tiny_dataset)}
    for st in ("mask", "residual", "length"):
        results[st] = run_stage(st, cfg, out / st, data_root=tiny_dataset, vq=out / "vq")
    return cfg, out, results


@pytest.mark.parametrize("stage", ["vq", "mask", "residual", "length"])
def test_stage_loss_falls(runs, stage):
    _, out, results = runs
    assert _falls(results[stage]["losses"]), results[stage]["losses"]
    assert (out / stage / "checkpoints" / "latest.pt").is_file()
    assert list((out / stage / "tb").glob("events.out.tfevents.*"))


def test_vq_validation_reports_mpjpe_and_codebook_usage(runs):
    _, _, results = runs
    val = results["vq"]["history"][-1]
    assert 0 < val["codebook_usage"] <= 1 and val["codebook_perplexity"] > 1
    assert 0 < val["mpjpe"] < 1.0  # metres, root-aligned


def test_transformer_stage_rejects_a_mismatching_vq(runs, tiny_dataset, tmp_path):
    cfg, out, _ = runs
    bad = load_pipeline_config(TINY, ["model.mask_transformer.num_tokens=32", "model.residual_transformer.num_tokens=32",
                                      "model.vq.nb_code=32"])
    with pytest.raises(StageCompatibilityError, match="nb_code=64"):
        run_stage("mask", bad, tmp_path / "m", data_root=tiny_dataset, vq=out / "vq")
    with pytest.raises(StageCompatibilityError, match="holds stage 'mask'"):
        run_stage("residual", cfg, tmp_path / "r", data_root=tiny_dataset, vq=out / "mask" / "checkpoints" / "latest.pt")


def test_pipeline_writes_a_bundle_that_generates(runs, tmp_path):
    from momask_model.generation.bundle import load_bundle

    cfg, out, _ = runs
    path = make_bundle(cfg, tmp_path / "b.pt", vq=out / "vq", mask=out / "mask", residual=out / "residual",
                       length=out / "length")
    model = load_bundle(path)
    res = model.generate(["a person walks forward slowly"], lengths=[48], seed=0, timesteps=3)
    assert res.joints.shape[-2:] == (22, 3) and np.isfinite(res.joints).all()
    # the sampling defaults are the bundle config's, not the training run's (no retraining to change them)
    other = load_pipeline_config(TINY, ["model.sampling.cond_scale=1.5"])
    assert load_bundle(make_bundle(other, tmp_path / "c.pt", vq=out / "vq", mask=out / "mask",
                                   residual=out / "residual")).config.sampling.cond_scale == 1.5
    assert model.config.sampling.cond_scale == cfg.model.sampling.cond_scale


def test_evaluator_stage_loss_falls(tiny_dataset, tmp_path):
    cfg = load_pipeline_config(TINY, ["evaluator_train.max_steps=40", "evaluator_train.eval_every=40"])
    res = run_stage("evaluator", cfg, tmp_path / "ev", data_root=tiny_dataset)
    assert _falls(res["losses"])
    assert (tmp_path / "ev" / "evaluator.pt").is_file()
