"""End-to-end generation API, bundle round trip, previews and the momask-generate CLI (tiny random model)."""
import numpy as np
import pytest
import torch

from momask_model.generation.bundle import BundleError, build_random_momask, load_bundle, save_bundle
from momask_model.cli.main import generate_main
from momask_model.config import MoMaskConfig, tiny_config
from momask_model.generation.results import GenerationError
from momask_model.motion.skeleton import T2M_SKELETON
from momask_model.motion.bvh import save_bvh
from momask_model.motion.render import save_video


@pytest.fixture(scope="module")
def tiny_model():
    return build_random_momask(tiny_config(), seed=1)


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory, tiny_model):
    return save_bundle(tiny_model, tmp_path_factory.mktemp("bundle") / "tiny.pt")


def test_generate_shapes_and_lengths(tiny_model):
    out = tiny_model.generate(["a person walks forward", "a man jumps"], [40, 22], seed=0)
    assert out.features.shape == (2, 40, 263)
    assert out.joints.shape == (2, 40, 22, 3)
    assert list(out.lengths) == [40, 20]  # rounded down to the 4-frame unit
    assert out.tokens.shape == (2, 10, tiny_model.config.vq.num_quantizers)
    assert (out.tokens[1, 5:] == -1).all() and (out.tokens[1, :5] >= 0).all()
    assert np.all(out.features[1, 20:] == 0)
    assert np.isfinite(out.joints).all()
    feats, joints = out.motion(1)
    assert feats.shape == (20, 263) and joints.shape == (20, 22, 3)


def test_generate_is_seedable(tiny_model):
    a = tiny_model.generate("a person walks forward", 32, seed=7)
    b = tiny_model.generate("a person walks forward", 32, seed=7)
    c = tiny_model.generate("a person walks forward", 32, seed=8)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert not np.array_equal(a.tokens, c.tokens)


def test_length_estimator_used_when_no_length(tiny_model):
    out = tiny_model.generate(["a person runs", "a person spins around"], seed=3)
    assert out.lengths.shape == (2,)
    assert np.all(out.lengths % 4 == 0) and np.all(out.lengths >= 4) and np.all(out.lengths <= 196)


@pytest.mark.parametrize(
    "texts, lengths, match",
    [
        ("", 40, "empty"),
        (["   "], 40, "empty"),
        ("x" * 5000, 40, "limit"),
        ("a person walks", 0, "out of range"),
        ("a person walks", 6004, "out of range"),  # past MAX_LONG_FRAMES (longer than a window is fine)
        (["a person walks", "a man runs"], [40], "lengths given"),
        ([3], 40, "expected str"),
        ("a person\x00 walks", 40, "control character U\\+0000"),
    ],
)
def test_bad_requests_raise_clear_errors(tiny_model, texts, lengths, match):
    with pytest.raises(GenerationError, match=match):
        tiny_model.generate(texts, lengths)


def test_negative_guidance_is_refused(tiny_model):
    with pytest.raises(GenerationError, match="cond_scale must be >= 0"):
        tiny_model.generate("a person walks", 40, cond_scale=-1.0)


def test_unknown_words_are_named(tiny_model):
    from momask_model.text.encoders import UnknownWordsError

    assert tiny_model.unknown_words("a person juggles torches") == ["juggles", "torches"]
    with pytest.raises(UnknownWordsError, match="juggles"):
        tiny_model.generate("juggles torches", 40)


def test_bundle_round_trips_exactly(tiny_model, tiny_bundle):
    loaded = load_bundle(tiny_bundle)
    assert loaded.config == tiny_model.config
    for part in ("vq", "mask_transformer", "residual_transformer", "length_estimator"):
        a, b = getattr(tiny_model, part).state_dict(), getattr(loaded, part).state_dict()
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (part, k)
    np.testing.assert_array_equal(loaded.normalizer.std, tiny_model.normalizer.std)
    x = tiny_model.generate("a person walks forward", 24, seed=5)
    y = loaded.generate("a person walks forward", 24, seed=5)
    np.testing.assert_array_equal(x.tokens, y.tokens)
    np.testing.assert_allclose(x.joints, y.joints, atol=1e-6)


def test_missing_or_foreign_bundle_is_a_clear_error(tmp_path):
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "nope.pt")
    torch.save({"hello": 1}, tmp_path / "foreign.pt")
    with pytest.raises(BundleError, match="not a momask_ros bundle"):
        load_bundle(tmp_path / "foreign.pt")


def test_config_round_trip_and_validation(tmp_path):
    cfg = tiny_config()
    cfg.save_yaml(tmp_path / "c.yaml")
    assert MoMaskConfig.load_yaml(tmp_path / "c.yaml") == cfg
    with pytest.raises(ValueError, match="unknown keys"):
        MoMaskConfig.from_dict({"vq": {"nb_cod": 3}})
    bad = cfg.replace(mask_transformer=cfg.mask_transformer.replace(num_tokens=7))
    with pytest.raises(ValueError, match="codes"):
        bad.validate()


def _walk(T=30):
    t = np.arange(T)[:, None]
    base = np.array(T2M_SKELETON.raw_offsets, dtype=np.float64)
    # a crude standing figure built from the raw offsets along the chains, swinging arms
    pos = np.zeros((22, 3))
    for chain in T2M_SKELETON.kinematic_chain:
        for a, b in zip(chain[:-1], chain[1:]):
            pos[b] = pos[a] + 0.2 * base[b]
    pos[:, 1] += 1.0
    joints = np.repeat(pos[None], T, axis=0)
    joints[:, :, 2] += 0.02 * t
    joints[:, 20, 2] += 0.1 * np.sin(t[:, 0] / 3.0)
    return joints


def test_previews_are_written(tmp_path):
    joints = _walk(12)
    gif = save_video(joints, tmp_path / "a.gif", fps=20)
    mp4 = save_video(joints, tmp_path / "a.mp4", fps=20)
    bvh = save_bvh(joints, tmp_path / "a.bvh")
    assert gif.stat().st_size > 1000 and mp4.stat().st_size > 1000
    text = bvh.read_text()
    assert text.startswith("HIERARCHY") and "Frames: 12" in text


def test_cli_writes_motion_video_and_bvh(tiny_bundle, tmp_path):
    out = tmp_path / "m.npz"
    rc = generate_main(
        ["--text", "a person walks forward", "--length", "24", "--seed", "1", "--bundle", str(tiny_bundle),
         "--device", "cpu", "--out", str(out), "--video", str(tmp_path / "m.gif"), "--bvh", str(tmp_path / "m.bvh")]
    )
    assert rc == 0
    data = np.load(out)
    assert data["joints"].shape == (1, 24, 22, 3)
    assert (tmp_path / "m.gif").stat().st_size > 1000 and (tmp_path / "m.bvh").exists()
    assert generate_main(["--text", "walk", "--bundle", str(tmp_path / "none.pt"), "--out", str(out)]) == 2
