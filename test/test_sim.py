"""The simulator's MP4 option, without ROS: what `momask_sim`'s ``record_path`` writes."""
import imageio.v2 as imageio
import numpy as np

from momask_ros.robot.model import load_robot
from momask_ros.physics.simulator import SimOptions, Simulator, VideoRecorder


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
