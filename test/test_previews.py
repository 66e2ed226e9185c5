"""Stick-figure previews: one frame per motion frame (duration = the motion's), a framed figure with a head,
the root's path and a title; streams received at irregular stamps are resampled to a uniform clock."""
import imageio.v2 as imageio
import numpy as np
import pytest

from momask_model.motion.render import RenderError, check_video_path, render_frames, resample_by_stamps, save_video


def _jog(shared_data, frames=40):
    joints = np.load(shared_data / "humanml3d_sample" / "new_joints" / "012314.npy").astype(np.float64)
    return joints[:frames]


def _colourful(frame):
    rgb = frame.astype(int)
    return (rgb.max(-1) - rgb.min(-1)) > 60  # limbs and head; grid, path and text are grey


def test_video_lasts_as_long_as_the_motion(tmp_path, shared_data):
    joints = _jog(shared_data, 37)
    for name in ("m.mp4", "m.gif"):
        path = save_video(joints, tmp_path / name, fps=20.0, title="a person walks")
        reader = imageio.get_reader(path)
        n = sum(1 for _ in reader)
        reader.close()
        assert n == len(joints), name  # 37 frames at 20 fps = the motion's 1.85 s
    meta = imageio.get_reader(tmp_path / "m.mp4").get_meta_data()
    assert abs(meta["fps"] - 20.0) < 1e-6


def test_figure_is_framed_with_head_path_and_title(shared_data):
    joints = _jog(shared_data, 40)
    frames = render_frames(joints, title="a person walks forward", size_px=240)
    assert frames.shape == (40, 240, 240, 3)
    for frame in frames[::13]:
        rows = np.flatnonzero(_colourful(frame).any(axis=1))
        cols = np.flatnonzero(_colourful(frame).any(axis=0))
        assert rows[-1] - rows[0] >= 0.5 * 240, "figure under half the frame height"
        assert rows[0] > 0 and rows[-1] < 239 and cols[0] > 0 and cols[-1] < 239  # never cut off
        head = (np.abs(frame.astype(int) - [0xF2, 0xC9, 0xA0]).sum(-1) < 30).sum()
        assert head > 30  # the head disc
        assert (frame[:20].astype(int).sum(-1) < 200).sum() > 20  # dark title text at the top
    # the root's path: dark pixels drawn near the bottom grow as the figure travels
    path_px = [(np.abs(f[150:].astype(int) - 0x44).sum(-1) < 30).sum() for f in (frames[1], frames[-1])]
    assert path_px[1] > path_px[0]


def test_stream_at_irregular_stamps_is_resampled_to_the_motion_clock():
    """Markers asked for every 50 ms but sent every 60 ms (50 Hz ticks): the preview keeps real time."""
    fps, duration = 20.0, 2.95  # a 60-frame motion
    stamps = 100.0 + np.arange(0.0, duration + 1e-9, 0.06)
    stamps = np.append(stamps, 100.0 + duration)
    frames = np.stack([np.full((22, 3), t) for t in stamps])  # value = its own time: checks where frames land
    out = resample_by_stamps(stamps, frames, fps, start_s=100.0, duration_s=duration)
    assert abs(len(out) / fps - (duration + 1 / fps)) < 1 / fps + 1e-9  # within one frame of the motion
    assert len(out) == 60
    np.testing.assert_allclose(out[:, 0, 0], 100.0 + np.arange(60) / fps, atol=1e-9)
    with pytest.raises(RenderError, match="one stamp per frame"):
        resample_by_stamps(stamps[:-1], frames, fps)


def test_video_format_is_checked_up_front(tmp_path):
    assert check_video_path(tmp_path / "a.MP4").name == "a.MP4"
    with pytest.raises(RenderError, match=r"\.mp4 or \.gif"):
        check_video_path(tmp_path / "x.avi")
