"""The tracker's neural policy on CPU (onnxruntime): flat observation in, raw action out.

One intra-op thread by default: the call is ~1 ms and, beside a physics loop on a small CPU, extra
threads spin and slow everything down."""
from __future__ import annotations

import numpy as np

from .spec import TrackerBundle, TrackerSpec


def pd_target_rad(spec: TrackerSpec, raw_action: np.ndarray) -> np.ndarray:
    """PD target = q0 + scale * clip(action): the raw action is clipped only here."""
    clipped = np.clip(np.asarray(raw_action, np.float64), -spec.action_clip, spec.action_clip)
    return spec.default_pose_rad + spec.action_scale * clipped


class OnnxPolicy:
    """An ONNX policy session with a fixed input name (read from the file when the bundle was checked)."""

    def __init__(self, bundle: TrackerBundle, *, intra_op_threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(intra_op_threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(str(bundle.policy_path), sess_options=options,
                                             providers=["CPUExecutionProvider"])
        self._input_name = bundle.policy_input_name
        self.input_dim = bundle.spec.policy_input_dim
        self.action_dim = bundle.spec.num_joints

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        """(input_dim,) float32 observation -> (action_dim,) raw action (float64, unclipped)."""
        obs = np.asarray(observation, dtype=np.float32).reshape(1, self.input_dim)
        (action,) = self._session.run(None, {self._input_name: obs})
        return np.asarray(action, dtype=np.float64).reshape(self.action_dim)
