"""Stick-figure previews: one frame per motion frame (duration = the motion's), a framed figure with a head,
the root's path and a title; streams received at irregular stamps are resampled to a uniform clock. Robot
videos: 960x540, a sky, a checker floor, a light and a camera that follow the robot, rendered off the
physics thread when recording the simulator."""
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


# ---------------------------------------------------------------- robot videos (MuJoCo, issue 24)
def _robot_frames(base_x, *, width=None, height=None):
    from momask_ros.physics.preview import render_trajectory, scene_model
    from momask_ros.robot.model import load_robot

    robot = load_robot("default")
    b = robot.base_qpos_index
    n = len(base_x)
    base = np.tile(robot.rest_qpos[b:b + 3], (n, 1))
    base[:, 0] = base_x
    return render_trajectory(scene_model(robot.description_path), robot.joint_names,
                             np.tile(robot.rest_positions, (n, 1)), base_position=base,
                             base_quat_wxyz=np.tile(robot.rest_qpos[b + 3:b + 7], (n, 1)), width=width, height=height)


def _robot_columns(frame):
    """Columns of the robot's near-white pixels below the horizon (the floor is a dark grey-blue checker)."""
    below = frame[frame.shape[0] // 3:].astype(int)
    white = (below.min(-1) > 170) & (below.max(-1) - below.min(-1) < 40)
    return np.flatnonzero(white.any(axis=0)), int(white.sum())


def test_robot_video_is_960x540_with_a_sky_and_a_checker_floor_and_follows_the_robot():
    frames = _robot_frames([0.0, 10.25])  # the robot 10 m further on (not a whole number of 1 m checker periods)
    assert frames.shape == (2, 540, 960, 3)
    for frame in frames:
        sky = frame[:40].reshape(-1, 3).astype(int)
        assert sky.mean() > 120 and (sky[:, 2] > sky[:, 0] + 20).mean() > 0.9  # blue, not a black band
        cols, count = _robot_columns(frame)
        assert count > 2000 and abs(cols.mean() - 480) < 120  # in the middle of the frame, both times
        floor = frame[-120:, :200].reshape(-1, 3).astype(int).sum(-1)
        assert np.percentile(floor, 90) - np.percentile(floor, 10) > 40  # two tones of checker, not a plain floor
    assert np.abs(frames[0][-200:].astype(int) - frames[1][-200:].astype(int)).mean() > 5  # the floor moved past


def test_robot_scene_light_follows_the_base_and_casts_shadows():
    import mujoco

    from momask_ros.physics.preview import scene_model
    from momask_ros.robot.model import load_robot

    model = scene_model(load_robot("default").description_path)
    sun = model.light("momask_sun")
    assert int(sun.mode[0]) == int(mujoco.mjtCamLight.mjCAMLIGHT_TRACKCOM) and bool(sun.castshadow[0])
    assert model.body(int(sun.bodyid[0])).name == "pelvis"
    assert model.ntex >= 2 and model.vis.global_.offwidth >= 1280  # sky and checker; 720p frames possible
    assert _robot_frames([0.0], width=1280, height=720).shape == (1, 720, 1280, 3)


def test_video_recorder_renders_off_the_physics_thread_and_keeps_the_simulations_time(tmp_path, monkeypatch):
    """The physics thread only queues snapshots; when the worker is behind, the video repeats a frame
    rather than slowing the physics, so it still holds one frame per 1 / fps of simulated time."""
    import threading

    import imageio.v2 as imageio

    from momask_ros.physics import video
    from momask_ros.physics.simulator import SimOptions, Simulator
    from momask_ros.robot.model import load_robot

    monkeypatch.setattr(video, "QUEUE_S", 0.0)  # a queue of 2: the worker falls behind at once
    from momask_ros.physics import preview

    rendered_on = set()
    original = preview.TrajectoryPlayer.set_pose

    def spy(self, *args, **kwargs):
        rendered_on.add(threading.get_ident())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(preview.TrajectoryPlayer, "set_pose", spy)
    sim = Simulator(load_robot("default"), SimOptions(mode="harness"))
    recorder = video.VideoRecorder(sim, tmp_path / "sim.mp4", fps=25.0, width=320, height=180)
    while sim.time_s < 1.0 - 1e-9:
        sim.step(5)
        recorder.maybe_capture()
    path = recorder.close()
    assert rendered_on and threading.get_ident() not in rendered_on  # posed (and rendered) by the worker
    reader = imageio.get_reader(path)
    assert sum(1 for _ in reader) == recorder.frames == 25
    reader.close()
    assert 0 <= recorder.dropped < recorder.frames and recorder.error is None
