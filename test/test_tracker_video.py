"""The tracking video: reference left, physics right, rendered offscreen (needs ../shared/trackers/twist2)."""

import numpy as np

from momask_ros.tracker.rollout import RolloutResult




def _result(bundle, n: int) -> RolloutResult:
    spec = bundle.spec
    q = np.tile(spec.default_pose_rad, (n, 1))
    pos = np.tile([0.0, 0.0, spec.standing_height_m], (n, 1))
    quat = np.tile([1.0, 0.0, 0.0, 0.0], (n, 1))
    tipped = quat.copy()
    tipped[n // 2:] = [np.cos(0.6), np.sin(0.6), 0.0, 0.0]  # the robot rolls over; the reference does not
    return RolloutResult(times_s=np.arange(n) * 0.02, joint_pos_rad=q, ref_joint_pos_rad=q, base_pos_world=pos,
                         ref_base_pos_world=pos, fell=False, fall_time_s=None, fall_reason=None,
                         mean_joint_error_rad=0.0, base_height_error_m=0.0, path_deviation_m=0.0,
                         final_path_deviation_m=0.0, realtime_factor=1.0, policy_ms_per_call=1.0, time_stretch=1.0,
                         base_quat_wxyz=tipped, ref_base_quat_wxyz=quat)


def test_frames_show_reference_and_robot_side_by_side(bundle, tmp_path):
    from momask_ros.tracker.video import render_tracking_frames, save_tracking_video

    frames = render_tracking_frames(bundle, _result(bundle, 6), fps=25.0, width=96, height=80)
    assert frames.shape == (3, 80, 192, 3) and frames.dtype == np.uint8  # 0.1 s at 25 fps
    left, right = frames[:, :, :96].astype(int), frames[:, :, 96:].astype(int)
    assert np.abs(left[0] - right[0]).mean() < 1.0  # same pose, same picture
    assert np.abs(left[-1] - right[-1]).mean() > 2.0  # the robot rolled over, its panel shows it
    path = save_tracking_video(bundle, _result(bundle, 6), tmp_path / "t.gif", fps=25.0)
    assert path.stat().st_size > 0
