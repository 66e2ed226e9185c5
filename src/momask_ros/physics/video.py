"""The simulator's MP4 (`momask_sim`'s ``record_path``), rendered off the physics thread.

Rendering one 960x540 frame in software (``MUJOCO_GL=osmesa``) takes as long as hundreds of physics steps.
Done on the physics thread, as before, it slowed the simulator from 1.0x to 0.15-0.28x real time. Here the
physics thread only copies what a frame shows (joint positions and base pose, microseconds) into a bounded
queue. A worker thread poses the robot in a model of its own, in the kinematic previews' scene
(`momask_ros.physics.preview`, `momask_ros.physics.backdrop`), then renders and encodes the frame. MuJoCo
releases the GIL while it renders, so the two threads run on two cores.

When the worker falls `QUEUE_S` of video behind, the physics thread skips snapshots and the video
repeats the frame before each one it skipped. The video keeps the simulation's time, the physics keeps
its pace, and `VideoRecorder.dropped` counts the frames that were repeated.
"""
from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from momask_ros.physics.simulator import Simulator

log = logging.getLogger(__name__)

#: Video the worker may fall behind before snapshots are skipped [s].
QUEUE_S = 0.5


class VideoRecorder:
    """Records a `Simulator` to an MP4 at ``fps`` frames per simulated second (module docstring).

    Args:
        sim: the simulator; `maybe_capture` is called by the thread that steps it.
        path: the MP4 to write (its folder is created).
        fps: frames per second of simulated time.
        width, height: frame size [px]; default `backdrop.VIDEO_SIZE`.
        block: wait for the worker instead of skipping snapshots (a lock-step simulation, faster than
            real time, that must keep every frame).
    """

    def __init__(self, sim: "Simulator", path: str | Path, *, fps: float = 30.0, width: int | None = None,
                 height: int | None = None, block: bool = False) -> None:
        from momask_ros.physics.backdrop import VIDEO_SIZE

        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.sim, self.fps, self.path = sim, float(fps), Path(path)
        self.size = (int(width or VIDEO_SIZE[0]), int(height or VIDEO_SIZE[1]))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.frames = 0     # frames of the video (one per 1 / fps of simulated time)
        self.dropped = 0    # of which repeat the frame before (the worker was behind)
        self.error: str | None = None
        self._block = bool(block)
        self._next_s = 0.0
        self._queue: queue.Queue = queue.Queue(maxsize=max(2, int(QUEUE_S * self.fps)))
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._work, name="momask_video", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self.error is not None:
            raise RuntimeError(f"cannot record {self.path}: {self.error}")

    def maybe_capture(self) -> None:
        """Queue a frame when the simulation has advanced 1 / fps since the last one (physics thread)."""
        if self.sim.time_s + 1e-9 < self._next_s or self.error is not None:
            return
        self._next_s = self.sim.time_s + 1.0 / self.fps
        position, quat = self.sim.base_pose()
        snapshot = (self.frames, self.sim.joint_positions(), position, quat)
        self.frames += 1
        try:
            self._queue.put(snapshot, block=self._block, timeout=10.0 if self._block else None)
        except queue.Full:
            self.dropped += 1

    def close(self) -> Path:
        """Render what is queued, finish the MP4 and return its path."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self.error is not None:
            log.error("video %s: %s", self.path, self.error)
        elif self.dropped:
            log.info("video %s: %d of %d frames repeat the one before (rendering was behind the physics)",
                     self.path, self.dropped, self.frames)
        return self.path

    # ------------------------------------------------------------------ worker thread
    def _work(self) -> None:
        try:
            import imageio.v2 as imageio
            import mujoco

            from momask_ros.physics.backdrop import FollowCamera
            from momask_ros.physics.preview import TrajectoryPlayer, scene_model

            model = scene_model(self.sim.robot.description_path)
            player = TrajectoryPlayer(model, self.sim.joint_names)
            renderer = mujoco.Renderer(model, self.size[1], self.size[0])  # its GL context belongs to this thread
            writer = imageio.get_writer(self.path, fps=self.fps, codec="libx264", quality=7, macro_block_size=2)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self._ready.set()
            return
        self._ready.set()
        camera = FollowCamera(height_m=0.8 * float(self.sim.rest_base_height))
        written, image = 0, None
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                index, positions, base_position, base_quat = item
                while image is not None and written < index:  # frames skipped while the queue was full
                    writer.append_data(image)
                    written += 1
                player.set_pose(positions, base_position, base_quat)
                renderer.update_scene(player.data, camera=camera.aim(np.asarray(base_position)))
                image = renderer.render()
                writer.append_data(image)
                written += 1
            while image is not None and written < self.frames:  # the last ones, if they were skipped
                writer.append_data(image)
                written += 1
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            writer.close()
            renderer.close()
