"""The simulator without ROS: tracked mode (PD drives, the IMU, pushes, the start pose, the tracker's own G1)
and the MP4 option (what `momask_sim`'s ``record_path`` writes)."""
import imageio.v2 as imageio
import numpy as np

from momask_ros.robot.model import load_robot
from momask_ros.physics.simulator import SimOptions, Simulator
from momask_ros.physics.video import VideoRecorder


def test_video_recorder_writes_one_frame_per_period_of_the_physics(tmp_path):
    sim = Simulator(load_robot("default"), SimOptions(mode="free"))
    recorder = VideoRecorder(sim, tmp_path / "physics" / "run.mp4", fps=10.0)
    steps = int(round(0.05 / sim.timestep_s))
    while sim.time_s < 1.0 - 1e-9:  # 1 s of physics, asked twice per frame period
        sim.step(steps)
        recorder.maybe_capture()
    path = recorder.close()
    assert recorder.frames == 10
    frames = [np.asarray(f) for f in imageio.get_reader(path)]
    assert len(frames) == recorder.frames
    assert frames[0].shape[2] == 3 and frames[0].std() > 5.0  # a rendered scene, not a blank image


# ---------------------------------------------------------------- tracked mode
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from momask_ros.physics.simulator import SimError  # noqa: E402

TWIST2 = Path(__file__).resolve().parents[2] / "shared" / "trackers" / "twist2"


def test_tracked_mode_applies_the_pd_law_with_torque_limits_every_physics_step():
    sim = Simulator(load_robot("default"), SimOptions(mode="tracked"))
    n = len(sim.joint_names)
    rng = np.random.default_rng(0)
    target = sim.joint_positions() + rng.uniform(-0.5, 0.5, n)
    kp, kd, limit = rng.uniform(20, 200, n), rng.uniform(1, 5, n), np.full(n, 15.0)
    sim.command_pd(target, kp, kd, limit)
    for _ in range(5):  # the torque is recomputed from the state before each step
        q, qd = sim.joint_positions(), sim.joint_velocities()
        sim.step()
        want = np.clip(kp * (target - q) - kd * qd, -limit, limit)
        np.testing.assert_allclose(sim.data.actuator_force[sim.actuator_index], want, rtol=1e-9, atol=1e-9)
    assert np.any(np.abs(want) == 15.0)  # some joints saturated at their limit
    ref, speed = sim.reference()
    np.testing.assert_array_equal(ref, target)
    assert not speed.any()


def test_tracked_mode_gives_no_torque_before_a_command_and_refuses_set_points():
    sim = Simulator(load_robot("default"), SimOptions(mode="tracked"))
    sim.step(3)
    assert sim.pd is None and not sim.data.actuator_force.any()
    with pytest.raises(SimError, match="PD commands"):
        sim.command_joints(sim.joint_names[:1], [0.1])
    with pytest.raises(SimError, match="finite kp"):
        sim.command_pd(np.zeros(len(sim.joint_names)), [1.0], np.ones(len(sim.joint_names)),
                       np.ones(len(sim.joint_names)))
    with pytest.raises(SimError, match=">= 0"):
        n = len(sim.joint_names)
        sim.command_pd(np.zeros(n), -np.ones(n), np.ones(n), np.ones(n))
    harness = Simulator(load_robot("default"), SimOptions(mode="harness"))
    with pytest.raises(SimError, match="mode 'tracked'"):
        harness.command_pd(*[np.zeros(len(harness.joint_names))] * 4)


def test_imu_reads_the_base_orientation_gyro_and_specific_force():
    sim = Simulator(load_robot("default"), SimOptions(mode="fixed"))
    sim.step(50)
    imu = sim.imu()
    np.testing.assert_allclose(np.abs(imu.quat_wxyz), np.abs(sim.base_pose()[1]), atol=1e-9)
    np.testing.assert_allclose(imu.ang_vel_rad_s, 0.0, atol=1e-9)
    assert np.linalg.norm(imu.lin_acc_m_s2) == pytest.approx(9.81, abs=0.05)  # at rest: gravity's reaction
    free = Simulator(load_robot("default"), SimOptions(mode="free"))
    free.step(7)  # between publishes: read at the current state, not the one before the last step
    adr = free.model.jnt_dofadr[free._free[0]]
    np.testing.assert_allclose(free.imu().ang_vel_rad_s, free.data.qvel[adr + 3:adr + 6], atol=1e-12)


def test_push_moves_the_base_for_its_duration_and_reset_keeps_the_clock():
    sim = Simulator(load_robot("default"), SimOptions(mode="tracked"))
    sim.set_start_state(base_position=[0.0, 0.0, 1.5])  # in the air: nothing but the push moves it sideways
    sim.push([0.0, 200.0, 0.0], duration_s=0.05)
    sim.step(int(round(0.1 / sim.timestep_s)))
    assert not sim.data.xfrc_applied.any()  # over after its 50 ms
    assert sim.base_pose()[0][1] > 0.01
    t = sim.time_s
    sim.reset(keep_time=True)
    assert sim.time_s == t and sim.base_pose()[0][1] == 0.0 and sim.base_pose()[0][2] == 1.5
    with pytest.raises(SimError, match="finite"):
        sim.push([0.0, float("nan"), 0.0])


@pytest.mark.skipif(not TWIST2.is_dir(), reason=f"tracker files not found at {TWIST2}")
def test_tracked_mode_on_the_trackers_g1_is_the_trackers_own_simulation():
    """The same PD commands give bit for bit the trajectory of `TrackerSimulation` (the model the policy was
    validated on, as its authors run it), and the IMU reads what the rollout feeds the policy."""
    from momask_ros.tracker import Tracker, load_tracker
    from momask_ros.tracker.rollout import TrackerSimulation

    bundle = load_tracker(TWIST2)
    spec = bundle.spec
    sim = Simulator(load_robot("g1", description=bundle.model_path), SimOptions(mode="tracked"))
    sim.set_start_state(spec.sim_start_pose_rad, [0.0, 0.0, spec.standing_height_m], [1.0, 0.0, 0.0, 0.0])
    reference = TrackerSimulation(bundle)
    tracker = Tracker(bundle)
    for k in range(25):
        measured = reference.measured()
        imu = sim.imu()
        np.testing.assert_allclose(imu.quat_wxyz, measured.base_quat_wxyz, atol=1e-12)
        np.testing.assert_allclose(imu.ang_vel_rad_s, measured.base_ang_vel_body_rad_s, atol=1e-12)
        command = tracker.step(0.02 * k, measured)
        sim.command_pd(command.target_rad, command.kp, command.kd, command.torque_limit_nm)
        sim.step(20)
        for _ in range(20):
            q, qd = reference.joint_state()
            reference.step(command.torque_nm(q, qd))
    np.testing.assert_array_equal(sim.data.qpos, reference.data.qpos)
    np.testing.assert_array_equal(sim.data.qvel, reference.data.qvel)
