"""Human previews: stick-figure MP4/GIF (matplotlib) and BVH export of joint positions.

Positions are what MoMask produces reliably; the BVH rotations are solved from them per joint with
scipy's `Rotation.align_vectors` (the rest pose uses the HumanML3D raw offset directions and the
motion's mean bone lengths), so any BVH viewer or Blender can show or retarget the result.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from .motion import JOINT_NAMES, T2M_SKELETON, SkeletonSpec

CHAIN_COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd")
#: Background of marked frames (edited sections, sequence segments) in previews.
MARK_COLOR = "#fff3c4"


class RenderError(ValueError):
    """Input to a renderer is unusable (wrong shape, NaN, unknown output format)."""


def _check_joints(joints: np.ndarray, joints_num: int | None = None) -> np.ndarray:
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[-1] != 3 or joints.shape[0] < 1:
        raise RenderError(f"joints must have shape (T, J, 3), got {joints.shape}")
    if joints_num is not None and joints.shape[1] != joints_num:
        raise RenderError(f"expected {joints_num} joints, got {joints.shape[1]}")
    if not np.isfinite(joints).all():
        raise RenderError("joints contain NaN or inf")
    return joints


def render_frames(
    joints: np.ndarray,
    *,
    skeleton: SkeletonSpec = T2M_SKELETON,
    title: str = "",
    size_px: int = 480,
    radius: float = 1.5,
    marks: tuple[tuple[int, int, str], ...] = (),
) -> np.ndarray:
    """Draw a Y-up skeleton motion as RGB frames (T, H, W, 3) uint8 with a ground grid and root trail.

    ``marks`` are (start, end, label) frame ranges (edited sections, sequence segments): their frames
    show the label under the title on a tinted background.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    joints = _check_joints(joints, skeleton.joints_num)
    dpi = 100
    fig = Figure(figsize=(size_px / dpi, size_px / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(111, projection="3d")
    frames = []
    floor = joints[..., 1].min()
    for t in range(joints.shape[0]):
        ax.cla()
        root = joints[t, 0]
        ax.set_xlim(root[0] - radius, root[0] + radius)
        ax.set_ylim(root[2] - radius, root[2] + radius)
        ax.set_zlim(floor, floor + 2 * radius)
        ax.view_init(elev=15, azim=-70)
        ax.set_axis_off()
        grid = np.linspace(-radius, radius, 7)
        for g in grid:  # ground grid that moves with the root so motion is visible
            ax.plot([root[0] + g] * 2, [root[2] - radius, root[2] + radius], [floor] * 2, color="#cccccc", lw=0.5)
            ax.plot([root[0] - radius, root[0] + radius], [root[2] + g] * 2, [floor] * 2, color="#cccccc", lw=0.5)
        trail = joints[: t + 1, 0]
        ax.plot(trail[:, 0], trail[:, 2], np.full(len(trail), floor), color="#555555", lw=1)
        for chain, color in zip(skeleton.kinematic_chain, CHAIN_COLORS):
            pts = joints[t, list(chain)]
            ax.plot(pts[:, 0], pts[:, 2], pts[:, 1], color=color, lw=3, marker="o", ms=2)
        label = next((m[2] for m in marks if m[0] <= t < m[1]), None)
        fig.set_facecolor(MARK_COLOR if label is not None else "white")
        heading = title[:60] + (f"\n[{label[:50]}]" if label else "")
        if heading:
            ax.set_title(heading, fontsize=9)
        canvas.draw()
        frames.append(np.asarray(canvas.buffer_rgba())[..., :3].copy())
    return np.stack(frames)


def save_video(
    joints: np.ndarray, path: str | Path, *, fps: float = 20.0, skeleton: SkeletonSpec = T2M_SKELETON, title: str = "",
    marks: tuple[tuple[int, int, str], ...] = (),
) -> Path:
    """Write a stick-figure preview; the extension (.mp4 or .gif) picks the format (``marks``: see `render_frames`)."""
    import imageio.v2 as imageio

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise RenderError(f"video must end in .mp4 or .gif, got {path.name}")
    frames = render_frames(joints, skeleton=skeleton, title=title, marks=tuple(marks))
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".mp4":
        with imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=16) as writer:
            for frame in frames:
                writer.append_data(frame)
    else:
        imageio.mimsave(path, list(frames), duration=1.0 / fps, loop=0)
    return path


# ----------------------------------------------------------------------------- BVH
def _children(parents: tuple[int, ...]) -> list[list[int]]:
    kids: list[list[int]] = [[] for _ in parents]
    for j, p in enumerate(parents):
        if p >= 0:
            kids[p].append(j)
    return kids


def joints_to_bvh_rotations(joints: np.ndarray, skeleton: SkeletonSpec = T2M_SKELETON):
    """Solve local joint rotations that reproduce ``joints`` on a fixed-length rest skeleton.

    Returns (offsets (J,3) [m], local rotations (T, J) as a scipy Rotation array of shape (T*J,),
    root positions (T,3)).
    """
    joints = _check_joints(joints, skeleton.joints_num)
    parents = skeleton.parents
    kids = _children(parents)
    raw = np.asarray(skeleton.raw_offsets, dtype=np.float64)
    lengths = np.zeros(len(parents))
    for j, p in enumerate(parents):
        if p >= 0:
            lengths[j] = np.linalg.norm(joints[:, j] - joints[:, p], axis=-1).mean()
    offsets = raw * lengths[:, None]
    T, J = joints.shape[:2]
    global_rot = [None] * J
    local = np.tile(np.array([0.0, 0.0, 0.0, 1.0]), (T, J, 1))  # xyzw quaternions
    for j in range(J):  # parents precede children in SMPL order
        p = parents[j]
        if kids[j]:
            rest = np.stack([offsets[c] for c in kids[j]])
            rots = []
            for t in range(T):
                cur = np.stack([joints[t, c] - joints[t, j] for c in kids[j]])
                if len(kids[j]) == 1:
                    rot, _ = Rotation.align_vectors(cur, rest)
                else:
                    rot, _ = Rotation.align_vectors(cur, rest, weights=np.ones(len(kids[j])))
                rots.append(rot)
            g = Rotation.concatenate(rots)
        else:
            g = global_rot[p] if p >= 0 else Rotation.identity(T)
        global_rot[j] = g
        loc = g if p < 0 else global_rot[p].inv() * g
        local[:, j] = loc.as_quat()
    return offsets, Rotation.from_quat(local.reshape(-1, 4)), joints[:, 0].copy()


def bvh_forward_kinematics(offsets: np.ndarray, local: Rotation, root: np.ndarray, parents) -> np.ndarray:
    """Positions (T, J, 3) of a rest skeleton posed by local rotations (inverse of the solver)."""
    T, J = root.shape[0], len(parents)
    quats = local.as_quat().reshape(T, J, 4)
    pos = np.zeros((T, J, 3))
    glob: list[Rotation] = [None] * J  # type: ignore[list-item]
    for j, p in enumerate(parents):
        r = Rotation.from_quat(quats[:, j])
        if p < 0:
            glob[j], pos[:, j] = r, root
        else:
            glob[j] = glob[p] * r
            pos[:, j] = pos[:, p] + glob[p].apply(offsets[j])
    return pos


def save_bvh(joints: np.ndarray, path: str | Path, *, fps: float = 20.0, skeleton: SkeletonSpec = T2M_SKELETON) -> Path:
    """Export joint positions (T, 22, 3) [m, Y-up] as a BVH file (ZYX Euler channels, degrees)."""
    offsets, local, root = joints_to_bvh_rotations(joints, skeleton)
    parents, kids = skeleton.parents, _children(skeleton.parents)
    names = JOINT_NAMES if skeleton.joints_num == len(JOINT_NAMES) else [f"joint{j}" for j in range(skeleton.joints_num)]
    lines = ["HIERARCHY"]

    def emit(j: int, depth: int) -> None:
        pad = "  " * depth
        kind = "ROOT" if parents[j] < 0 else "JOINT"
        lines.append(f"{pad}{kind} {names[j]}")
        lines.append(f"{pad}{{")
        ox, oy, oz = offsets[j]
        lines.append(f"{pad}  OFFSET {ox:.6f} {oy:.6f} {oz:.6f}")
        if parents[j] < 0:
            lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation")
        else:
            lines.append(f"{pad}  CHANNELS 3 Zrotation Yrotation Xrotation")
        if kids[j]:
            for c in kids[j]:
                emit(c, depth + 1)
        else:
            lines.append(f"{pad}  End Site")
            lines.append(f"{pad}  {{")
            lines.append(f"{pad}    OFFSET 0.000000 0.050000 0.000000")
            lines.append(f"{pad}  }}")
        lines.append(f"{pad}}}")

    emit(0, 0)
    order = []

    def walk(j: int) -> None:
        order.append(j)
        for c in kids[j]:
            walk(c)

    walk(0)
    T = root.shape[0]
    euler = local.as_euler("ZYX", degrees=True).reshape(T, -1, 3)  # intrinsic Z then Y then X
    lines += ["MOTION", f"Frames: {T}", f"Frame Time: {1.0 / fps:.6f}"]
    for t in range(T):
        vals = list(root[t])
        for j in order:
            vals.extend(euler[t, j])
        lines.append(" ".join(f"{v:.5f}" for v in vals))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
