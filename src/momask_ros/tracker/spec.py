"""A whole-body tracker described by data (a YAML file), and the checks that make a folder of its files
usable: the weights are the ones the spec names (sha256), the ONNX graph has the spec's shapes, and the
robot model's joints and actuators are in the spec's order. Each check fails with one clear line."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import yaml

DEFAULT_SPEC_NAME = "twist2_g1.yaml"
MIMIC_BASE_DIM = 6  # root vel xy (2), root height (1), roll/pitch (2), yaw rate (1); then the joints


class TrackerError(ValueError):
    """A tracker's files, spec or reference cannot be used; the message is one line naming the value."""


def _frozen(values, dtype=np.float64, shape=None) -> np.ndarray:
    array = np.array(values, dtype=dtype)
    if shape is not None and array.shape != shape:
        raise TrackerError(f"expected shape {shape}, got {array.shape}: {values}")
    array.setflags(write=False)
    return array


@dataclass(frozen=True)
class CheckpointFile:
    """One policy checkpoint as published: file name, size and sha256."""

    name: str
    file: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class TrackerSource:
    """Where users download the tracker's files from (a pinned commit of a public repository)."""

    repository: str
    commit: str
    raw_url: str
    checkpoint_dir: str
    model_path: str
    meshes_dir: str
    license_path: str
    lfs_url: str = ""  # where a file stored with Git LFS is served (raw_url then returns only its pointer)

    def url(self, path: str) -> str:
        """Raw download URL of a repository path at the pinned commit."""
        return self.raw_url.format(commit=self.commit, path=path)

    def lfs_file_url(self, path: str) -> str | None:
        """Download URL of a Git LFS file's content at the pinned commit (None: the source has no LFS URL)."""
        return self.lfs_url.format(commit=self.commit, path=path) if self.lfs_url else None


@dataclass(frozen=True, eq=False)
class TrackerSpec:
    """Everything a tracker's policy assumes, per joint in `joint_names` order (arrays are read-only)."""

    name: str
    source: TrackerSource
    checkpoints: Mapping[str, CheckpointFile]
    default_checkpoint: str
    model_file: str
    joint_names: tuple[str, ...]
    default_pose_rad: np.ndarray
    kp: np.ndarray
    kd: np.ndarray
    torque_limit_nm: np.ndarray
    history_length: int
    ang_vel_scale: float
    joint_vel_scale: float
    zeroed_joint_vel_indices: tuple[int, ...]
    action_scale: float
    action_clip: float
    policy_rate_hz: float
    allowed_policy_rates_hz: tuple[float, ...]
    physics_dt_s: float
    standing_height_m: float
    sim_start_pose_rad: np.ndarray
    fall_min_base_height_m: float
    fall_max_tilt_rad: float
    safe_kp: np.ndarray
    safe_kd: np.ndarray
    blend_in_s: float
    blend_out_s: float
    ease_s: float
    max_base_speed_mps: float
    max_reference_tilt_rad: float
    velocity_cutoff_hz: float
    max_reference_yaw_rate_rad_s: float = float("inf")
    reference_joint_scale: np.ndarray | None = None  # (J,) swing about the default pose kept (1: as given)
    reference_joint_range_rad: np.ndarray | None = None  # (J, 2) reference joints clipped into (and hardware)
    skip_tilt_rad: float = float("inf")  # sections with the base tilted beyond are bridged (feasibility.py)
    skip_joint_range_rad: np.ndarray | None = None  # (J, 2) sections with a joint outside are bridged

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def mimic_dim(self) -> int:
        return MIMIC_BASE_DIM + self.num_joints

    @property
    def proprio_dim(self) -> int:
        return 3 + 2 + 3 * self.num_joints

    @property
    def frame_dim(self) -> int:
        return self.mimic_dim + self.proprio_dim

    @property
    def policy_input_dim(self) -> int:
        """current frame + history frames + the future (mimic) slot."""
        return self.frame_dim * (1 + self.history_length) + self.mimic_dim


def _per_joint(raw: Mapping, key: str, n: int) -> np.ndarray:
    values = raw[key]
    if np.isscalar(values):
        values = [values] * n
    if len(values) != n:
        raise TrackerError(f"spec '{key}' has {len(values)} values, expected one per joint ({n})")
    return _frozen(values)


def _joint_ranges(ranges: Mapping | None, names: tuple[str, ...], key: str) -> np.ndarray:
    """(J, 2) [low, high] per joint from {joint: [low, high]}; joints not named are unbounded."""
    out = np.tile([-np.inf, np.inf], (len(names), 1))
    for joint, bounds in (ranges or {}).items():
        if joint not in names:
            raise TrackerError(f"spec {key} names unknown joint '{joint}'")
        low, high = (float(b) for b in bounds)
        if not low < high:
            raise TrackerError(f"spec {key} for '{joint}' needs low < high, got {bounds}")
        out[names.index(joint)] = [low, high]
    return _frozen(out)


def parse_spec(raw: Mapping) -> TrackerSpec:
    """Build a TrackerSpec from the YAML mapping; raises TrackerError on a missing or malformed key."""
    try:
        names = tuple(raw["joint_names"])
        n = len(names)
        if len(set(names)) != n:
            raise TrackerError(f"spec joint_names has duplicates: {names}")
        q0 = _per_joint(raw, "default_pose_rad", n)
        start = np.array(q0)
        for joint, value in (raw["standing"].get("sim_start_overrides_rad") or {}).items():
            if joint not in names:
                raise TrackerError(f"spec standing.sim_start_overrides_rad names unknown joint '{joint}'")
            start[names.index(joint)] = value
        ckpts = {key: CheckpointFile(name=str(key), file=v["file"], sha256=v["sha256"].lower(),
                                     bytes=int(v["bytes"]))
                 for key, v in raw["checkpoints"]["files"].items()}
        default_ckpt = str(raw["checkpoints"]["default"])
        if default_ckpt not in ckpts:
            raise TrackerError(f"spec default checkpoint '{default_ckpt}' not in {sorted(ckpts)}")
        obs, act, rates, ref = raw["observation"], raw["action"], raw["rates"], raw["reference"]
        if int(act["dim"]) != n:
            raise TrackerError(f"spec action.dim {act['dim']} != number of joints {n}")
        zeroed = tuple(int(i) for i in obs["zeroed_joint_vel_indices"])
        if any(not 0 <= i < n for i in zeroed):
            raise TrackerError(f"spec zeroed_joint_vel_indices out of range: {zeroed}")
        safe = raw["safe_mode"]
        spec = TrackerSpec(
            name=str(raw["name"]),
            source=TrackerSource(**{k: str(v) for k, v in raw["source"].items()}),
            checkpoints=ckpts,
            default_checkpoint=default_ckpt,
            model_file=str(raw["model"]),
            joint_names=names,
            default_pose_rad=q0,
            kp=_per_joint(raw, "kp", n),
            kd=_per_joint(raw, "kd", n),
            torque_limit_nm=_per_joint(raw, "torque_limit_nm", n),
            history_length=int(obs["history_length"]),
            ang_vel_scale=float(obs["ang_vel_scale"]),
            joint_vel_scale=float(obs["joint_vel_scale"]),
            zeroed_joint_vel_indices=zeroed,
            action_scale=float(act["scale"]),
            action_clip=float(act["clip"]),
            policy_rate_hz=float(rates["policy_hz"]),
            allowed_policy_rates_hz=tuple(float(r) for r in rates["allowed_policy_hz"]),
            physics_dt_s=float(rates["physics_dt_s"]),
            standing_height_m=float(raw["standing"]["base_height_m"]),
            sim_start_pose_rad=_frozen(start),
            fall_min_base_height_m=float(raw["fall"]["min_base_height_m"]),
            fall_max_tilt_rad=float(raw["fall"]["max_tilt_rad"]),
            safe_kp=_per_joint(safe, "kp", n),
            safe_kd=_per_joint(safe, "kd", n),
            blend_in_s=float(ref["blend_in_s"]),
            blend_out_s=float(ref["blend_out_s"]),
            ease_s=float(ref["ease_s"]),
            max_base_speed_mps=float(ref["max_base_speed_mps"]),
            max_reference_tilt_rad=float(ref["max_tilt_rad"]),
            velocity_cutoff_hz=float(ref["velocity_cutoff_hz"]),
            max_reference_yaw_rate_rad_s=float(ref.get("max_yaw_rate_rad_s", float("inf"))),
            reference_joint_scale=_per_joint(ref, "joint_scale", n) if "joint_scale" in ref else _frozen(np.ones(n)),
            reference_joint_range_rad=_joint_ranges(ref.get("joint_range_rad"), names, "reference.joint_range_rad"),
            skip_tilt_rad=float((ref.get("skip_beyond") or {}).get("tilt_rad", float("inf"))),
            skip_joint_range_rad=_joint_ranges((ref.get("skip_beyond") or {}).get("joint_range_rad"), names,
                                               "reference.skip_beyond.joint_range_rad"),
        )
    except KeyError as err:
        raise TrackerError(f"tracker spec lacks key {err}") from None
    if spec.policy_rate_hz not in spec.allowed_policy_rates_hz:
        raise TrackerError(f"spec policy rate {spec.policy_rate_hz} Hz not in {spec.allowed_policy_rates_hz}")
    return spec


def load_spec(path: str | Path | None = None) -> TrackerSpec:
    """Read a tracker spec YAML; None reads the packaged TWIST2 G1 spec."""
    if path is None:
        text = resources.files(__package__).joinpath(DEFAULT_SPEC_NAME).read_text()
    else:
        path = Path(path)
        if not path.is_file():
            raise TrackerError(f"tracker spec not found: {path}")
        text = path.read_text()
    return parse_spec(yaml.safe_load(text))


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (weights can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def check_joint_names(expected: Sequence[str], got: Sequence[str], what: str) -> None:
    """Raise TrackerError unless `got` is exactly `expected` (same names, same order)."""
    got = tuple(got)
    if got == tuple(expected):
        return
    missing = [j for j in expected if j not in got]
    unknown = [j for j in got if j not in expected]
    if missing or unknown:
        raise TrackerError(f"{what} joints do not match the tracker: missing {missing}, unknown {unknown}")
    first = next(i for i, (a, b) in enumerate(zip(expected, got)) if a != b)
    raise TrackerError(f"{what} joint order differs from the tracker's at index {first}: "
                       f"'{got[first]}' where '{expected[first]}' is expected")


def check_reference_joints(spec: TrackerSpec, joint_names: Sequence[str]) -> None:
    """A reference must carry exactly the tracker's joints in its order (see reference.reorder_joints)."""
    check_joint_names(spec.joint_names, joint_names, "reference")


@dataclass(frozen=True, eq=False)
class TrackerBundle:
    """A checked tracker folder: its spec, the chosen checkpoint, and facts read from the files."""

    spec: TrackerSpec
    directory: Path
    checkpoint: CheckpointFile
    policy_path: Path
    model_path: Path
    policy_input_name: str
    joint_range_rad: np.ndarray  # (J, 2) lower, upper from the robot model


def _check_policy(spec: TrackerSpec, path: Path) -> str:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # only read for its shapes: no thread pool needed
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        raise TrackerError(f"cannot load policy {path}: {str(err).splitlines()[0]}") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise TrackerError(f"policy {path.name} has {len(inputs)} inputs and {len(outputs)} outputs, expected 1 and 1")
    in_shape, out_shape = inputs[0].shape, outputs[0].shape
    if len(in_shape) != 2 or in_shape[-1] != spec.policy_input_dim:
        raise TrackerError(f"policy {path.name} input '{inputs[0].name}' has shape {in_shape}, "
                           f"expected [batch, {spec.policy_input_dim}]")
    if len(out_shape) != 2 or out_shape[-1] != spec.num_joints:
        raise TrackerError(f"policy {path.name} output has shape {out_shape}, expected [batch, {spec.num_joints}]")
    return inputs[0].name


def _check_model(spec: TrackerSpec, path: Path) -> np.ndarray:
    import mujoco

    try:
        model = mujoco.MjModel.from_xml_path(str(path))
    except Exception as err:  # mujoco raises ValueError with a multi-line message
        raise TrackerError(f"cannot load robot model {path}: {str(err).splitlines()[0]}") from None
    actuators = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_ACTUATOR, i) for i in range(model.nu)]
    check_joint_names(spec.joint_names, actuators, f"robot model {path.name} actuator")
    hinge = [i for i in range(model.njnt) if model.jnt_type[i] == mujoco.mjtJoint.mjJNT_HINGE]
    joints = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, i) for i in hinge]
    check_joint_names(spec.joint_names, joints, f"robot model {path.name}")
    driven = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, model.actuator_trnid[i, 0])
              for i in range(model.nu)]
    check_joint_names(spec.joint_names, driven, f"robot model {path.name} actuated")
    if model.njnt != len(hinge) + 1 or model.jnt_type[0] != mujoco.mjtJoint.mjJNT_FREE:
        raise TrackerError(f"robot model {path.name} must have one free base joint first, then hinges")
    if abs(model.opt.timestep - spec.physics_dt_s) > 1e-12:
        raise TrackerError(f"robot model {path.name} timestep {model.opt.timestep} s != spec {spec.physics_dt_s} s")
    return _frozen(model.jnt_range[hinge])


def load_tracker(directory: str | Path, spec: TrackerSpec | str | Path | None = None,
                 checkpoint: str | None = None) -> TrackerBundle:
    """Check a tracker folder against its spec and return what the controller and rollout need.

    Args:
        directory: folder holding the checkpoints and the robot model (as `fetch_tracker` writes it).
        spec: a TrackerSpec, a spec YAML path, or None for the packaged TWIST2 G1 spec.
        checkpoint: checkpoint key in the spec (e.g. "25k"); None picks the spec's default.
    Returns:
        TrackerBundle with verified paths, the policy's input name and the model's joint ranges [rad].
    Raises:
        TrackerError: missing folder or file, wrong sha256, mismatched ONNX shapes or robot joints.
    """
    if not isinstance(spec, TrackerSpec):
        spec = load_spec(spec)
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise TrackerError(f"tracker folder not found: {directory} (run momask-fetch-tracker --dest {directory})")
    key = spec.default_checkpoint if checkpoint is None else str(checkpoint)
    if key not in spec.checkpoints:
        raise TrackerError(f"unknown checkpoint '{key}' for {spec.name}; known: {sorted(spec.checkpoints)}")
    ckpt = spec.checkpoints[key]
    policy_path = directory / ckpt.file
    if not policy_path.is_file():
        raise TrackerError(f"policy weights not found: {policy_path}")
    got = sha256_file(policy_path)
    if got != ckpt.sha256:
        raise TrackerError(f"policy {ckpt.file} has sha256 {got}, expected {ckpt.sha256}")
    model_path = directory / spec.model_file
    if not model_path.is_file():
        raise TrackerError(f"robot model not found: {model_path}")
    input_name = _check_policy(spec, policy_path)
    joint_range = _check_model(spec, model_path)
    return TrackerBundle(spec=spec, directory=directory, checkpoint=ckpt, policy_path=policy_path,
                         model_path=model_path, policy_input_name=input_name, joint_range_rad=joint_range)
