"""Long motions, sequences, the prompt syntax, the bundle's `then` flag and the CLI (issue 13)."""
import numpy as np
import pytest

from momask_model.generation.bundle import build_random_momask, load_bundle, save_bundle
from momask_model.cli.main import generate_main
from momask_model.generation.loading import default_bundle_path
from momask_model.config import tiny_config
from momask_model.evaluate.smoothness import in_clip_stats, jerk_curve, percentile, transition_stats
from momask_model.generation.results import GenerationError
from momask_model.generation.longform import DEFAULT_CONTEXT_TOKENS
from momask_model.generation.prompt import PromptError, Segment, parse_length, parse_sequence


WALK = "a person walks forward"
SEQUENCE = "a person walks forward length=3s | a person jumps forward with both feet | a person kicks with the right leg length=2s"



@pytest.fixture(scope="module")
def tiny():
    return build_random_momask(tiny_config(), seed=2)


@pytest.fixture(scope="module")
def demo():
    return load_bundle(default_bundle_path())


@pytest.fixture(scope="module")
def join_threshold(demo):
    """1.5x the 95th percentile of in-clip Peak Jerk of the demo model (the issue's target)."""
    prompts = ("a person walks forward", "a person runs forward quickly", "a person jumps forward with both feet",
               "a person kicks with the right leg", "a person dances happily", "a person spins around twice")
    clips = []
    for i, text in enumerate(prompts):
        result = demo.generate([text] * 2, 196, seed=50 + i)
        clips += [result.motion(b)[1] for b in range(2)]
    return 1.5 * percentile(in_clip_stats(clips, 20.0)).peak


# ---------------------------------------------------------------------------------------- prompt syntax
def test_sequence_segments_carry_their_own_options():
    segs = parse_sequence("a person walks forward length=3s | a person jumps | a person kicks length=2s seed=4")
    assert segs == [Segment("a person walks forward", 60), Segment("a person jumps"), Segment("a person kicks", 40, seed=4)]
    assert parse_sequence("a person walks then jumps") == [Segment("a person walks then jumps")]
    assert [s.text for s in parse_sequence("walk forward, and then do a cartwheel", then_separates=True)] == [
        "walk forward", "do a cartwheel"]


def test_lengths_round_to_the_nearest_unit():
    assert parse_length("2.5s", fps=20, unit=4) == 52  # 50 frames -> 52
    assert parse_length("49", fps=20, unit=4) == 48
    assert parse_length("30s", fps=20, unit=4) == 600
    with pytest.raises(PromptError, match="0 frames"):
        parse_length("0", fps=20, unit=4)


@pytest.mark.parametrize(
    "command, match",
    [
        ("walk | | jump", r"segment 2 of 3 \(''\): the description is empty"),
        ("walk | jump lenght=2s", r"segment 2 of 2 \('jump lenght=2s'\): unknown option 'lenght'"),
        ("walk length=0 | jump", r"segment 1 of 2 .*0 frames"),
        ("walk | jump length=2s length=1s", "segment 2 of 2 .*given twice"),
        ("   ", "empty"),
    ],
)
def test_bad_sequences_name_the_segment(command, match):
    with pytest.raises(PromptError, match=match):
        parse_sequence(command)


# ---------------------------------------------------------------------------------------- bundle flag
def test_then_flag_is_derived_for_old_bundles_and_explicit_when_set(demo, tiny, tmp_path):
    assert demo.then_separates_segments is True  # packaged skills model, bundle without the field
    assert tiny.then_separates_segments is False  # HumanML3D-style model (no skills list)
    flagged = build_random_momask(tiny_config().replace(
        dataset=tiny_config().dataset.replace(then_separates_segments=True)), seed=0)
    path = save_bundle(flagged, tmp_path / "flag.pt")
    assert load_bundle(path).then_separates_segments is True
    assert [s.text for s in parse_sequence("walk forward then do a cartwheel",
                                           then_separates=demo.then_separates_segments)] == ["walk forward", "do a cartwheel"]


# ---------------------------------------------------------------------------------------- long motions
def test_thirty_seconds_has_600_frames_and_no_join_above_the_threshold(demo, join_threshold):
    result = demo.generate(WALK, 600, seed=0)
    assert result.features.shape == (1, 600, 263) and result.joints.shape == (1, 600, 22, 3)
    assert list(result.lengths) == [600] and result.tokens.shape == (1, 150, 6)
    window = demo.max_length // demo.unit_length
    joins = [4 * k for k in range(window, 150, window - DEFAULT_CONTEXT_TOKENS)]
    peaks = [s.peak for s in transition_stats(result.joints[0], joins, 20.0)]
    assert len(peaks) == 3 and max(peaks) <= join_threshold, (peaks, join_threshold)
    # the root keeps walking across windows (no reset to the origin)
    root = result.joints[0][:, 0][:, [0, 2]]
    assert np.linalg.norm(np.diff(root, axis=0), axis=-1).max() < 0.2
    assert np.linalg.norm(root[-1] - root[0]) > 5.0


def test_long_fast_equals_reference_and_first_window_is_plain_generation(tiny):
    fast = tiny.generate(WALK, 440, seed=3)
    ref = tiny.generate(WALK, 440, seed=3, fast=False)
    np.testing.assert_array_equal(fast.tokens, ref.tokens)
    np.testing.assert_allclose(fast.joints, ref.joints, atol=1e-5)
    plain = tiny.generate(WALK, 196, seed=3)
    np.testing.assert_array_equal(fast.tokens[:, :49], plain.tokens)
    overlap = tiny.generate(WALK, 440, seed=3, overlap_tokens=4)
    window2 = overlap.tokens[0, 49 - 4 : 49]  # fixed context of the second window
    np.testing.assert_array_equal(window2, plain.tokens[0, 45:49])


def test_batched_long_motions_of_different_lengths(tiny):
    result = tiny.generate(["a person walks", "a person runs"], [300, 500], seed=1)
    assert list(result.lengths) == [300, 500] and result.features.shape[1] == 500
    assert (result.tokens[0, 75:] == -1).all() and (result.tokens[1, :125] >= 0).all()
    np.testing.assert_array_equal(result.joints[0, 300:], np.broadcast_to(result.joints[0, 299], (200, 22, 3)))


def test_the_first_streamed_window_comes_after_one_window_of_generation(tiny, monkeypatch):
    """A long motion's first frames do not wait for the second window's tokens (the node's first
    JointState of a 30 s motion comes as fast as a short one's)."""
    calls = []
    real = tiny.inpaint
    monkeypatch.setattr(tiny, "inpaint", lambda *a, **k: calls.append(1) or real(*a, **k))
    windows = tiny.iter_windows(WALK, 440, seed=3)
    first = next(windows)
    assert len(calls) == 1 and first.lengths[0] == 196 - 4 * tiny.decoder_reach
    rest = list(windows)  # the same tokens (the frames are compared on the demo model below)
    tokens = np.concatenate([w.tokens[0] for w in [first, *rest]])
    np.testing.assert_array_equal(tokens, tiny.generate(WALK, 440, seed=3).tokens[0])
    assert sum(int(w.lengths[0]) for w in [first, *rest]) == 440


def test_streamed_windows_are_the_whole_motion(demo):
    whole = demo.generate_long(WALK, 500, seed=4)
    windows = list(demo.iter_windows(WALK, 500, seed=4))
    r = 4 * demo.decoder_reach  # each window's last frames wait for the next window's tokens
    assert [int(w.lengths[0]) for w in windows] == [196 - r, 148, 148, 8 + r]  # 49 tokens, then 49 - 12 new each
    tokens = np.concatenate([w.tokens[0] for w in windows])
    joints = np.concatenate([w.joints[0][: w.lengths[0]] for w in windows])
    np.testing.assert_array_equal(tokens, whole.tokens[0])
    np.testing.assert_allclose(joints, whole.joints[0], atol=2e-4)
    with pytest.raises(GenerationError, match="overlap"):
        next(demo.iter_windows(WALK, 500, overlap_tokens=49))


# ---------------------------------------------------------------------------------------- sequences
def test_sequence_segments_have_their_lengths_and_join_smoothly(demo, join_threshold):
    parts = list(demo.generate_sequence(SEQUENCE, seed=1, num_samples=2))
    assert len(parts) == 3
    assert list(parts[0].lengths) == [60, 60] and list(parts[2].lengths) == [40, 40]
    assert all(4 <= n <= 196 and n % 4 == 0 for n in parts[1].lengths)  # estimated length
    whole = demo.generate_sequence_motion(SEQUENCE, seed=1, num_samples=2)
    np.testing.assert_array_equal(np.concatenate([p.tokens[0][: p.lengths[0] // 4] for p in parts]),
                                  whole.tokens[0][: whole.lengths[0] // 4])
    assert whole.marks[0] == (0, 60) and whole.marks[2][1] == whole.lengths[0]
    joins = [a for a, _ in whole.marks[1:]]
    assert max(s.peak for s in transition_stats(whole.joints[0], joins, 20.0)) <= join_threshold
    streamed = np.concatenate([p.joints[0][: p.lengths[0]] for p in parts])
    np.testing.assert_allclose(streamed, whole.joints[0][: whole.lengths[0]], atol=2e-4)


def test_sequence_fast_equals_reference_and_segment_seeds(tiny):
    prompt = "a person walks length=40 | a person jumps length=2s seed=9 | a person runs length=60"
    fast = tiny.generate_sequence_motion(prompt, seed=2)
    ref = tiny.generate_sequence_motion(prompt, seed=2, fast=False)
    np.testing.assert_array_equal(fast.tokens, ref.tokens)
    other = tiny.generate_sequence_motion(prompt, seed=3)
    assert not np.array_equal(other.tokens[0, :10], fast.tokens[0, :10])


def test_bad_sequences_are_clear_errors(tiny):
    with pytest.raises(GenerationError, match="segment 2 of 2"):
        tiny.generate_sequence_motion("walk length=1s | jump lenght=2s")
    with pytest.raises(GenerationError, match="segment 2 of 2"):
        tiny.generate_sequence_motion([Segment("walk", 40), Segment("", 40)])
    with pytest.raises(GenerationError, match="at least one"):
        tiny.generate_sequence_motion([])


# ---------------------------------------------------------------------------------------- jerk metric
def test_jerk_metric_sees_a_naive_join():
    t = np.arange(80) / 20.0
    smooth = np.zeros((80, 22, 3))
    smooth[..., 0] = np.sin(t)[:, None]
    jumpy = smooth.copy()
    jumpy[40:, :, 0] += 0.1
    assert jerk_curve(smooth, 20.0).max() < 2.0
    (calm,), (jump,) = transition_stats(smooth, [40], 20.0), transition_stats(jumpy, [40], 20.0)
    assert jump.peak > 100 * calm.peak and jump.area > calm.area


# ---------------------------------------------------------------------------------------- CLI
def test_cli_long_sequence_edit_and_length_errors(tmp_path, capsys):
    out = tmp_path / "long.npz"
    assert generate_main(["--text", WALK, "--length", "30s", "--seed", "1", "--out", str(out)]) == 0
    data = np.load(out)
    assert data["features"].shape == (1, 600, 263)
    assert generate_main(["--text", WALK, "--length", "0", "--out", str(tmp_path / "x.npz")]) == 2
    assert f"--length 0 for prompt {WALK!r}" in capsys.readouterr().err
    seq = tmp_path / "seq.npz"
    assert generate_main(["--text", SEQUENCE, "--seed", "2", "--out", str(seq)]) == 0
    marks = np.load(seq)["marks"]
    assert marks.shape == (3, 2) and marks[0].tolist() == [0, 60]
    short = tmp_path / "short.npz"
    assert generate_main(["--text", WALK, "--length", "2s", "--out", str(short)]) == 0
    edited, video = tmp_path / "edited.npz", tmp_path / "edited.gif"
    assert generate_main(["--edit", str(short), "--edit-section", "0.5s:1s", "--text", "a person jumps forward",
                          "--seed", "3", "--out", str(edited), "--video", str(video)]) == 0
    assert np.load(edited)["marks"].tolist() == [[8, 20]] and video.stat().st_size > 0  # covers frames 10..19
    assert generate_main(["--edit", str(short), "--edit-section", "1s:0.5s", "--text", "jump",
                          "--out", str(edited)]) == 2
    assert "'1s:0.5s' is reversed" in capsys.readouterr().err
    assert generate_main(["--edit-section", "1s:2s", "--text", "jump", "--out", str(edited)]) == 2
