"""Human previews: stick-figure MP4/GIF (matplotlib). BVH export is ``momask_model.bvh_export``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .motion import T2M_SKELETON, SkeletonSpec

CHAIN_COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd")


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
) -> np.ndarray:
    """Draw a Y-up skeleton motion as RGB frames (T, H, W, 3) uint8 with a ground grid and root trail."""
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
        if title:
            ax.set_title(title[:60], fontsize=9)
        canvas.draw()
        frames.append(np.asarray(canvas.buffer_rgba())[..., :3].copy())
    return np.stack(frames)


def save_video(
    joints: np.ndarray, path: str | Path, *, fps: float = 20.0, skeleton: SkeletonSpec = T2M_SKELETON, title: str = ""
) -> Path:
    """Write a stick-figure preview; the extension (.mp4 or .gif) picks the format."""
    import imageio.v2 as imageio

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise RenderError(f"video must end in .mp4 or .gif, got {path.name}")
    frames = render_frames(joints, skeleton=skeleton, title=title)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".mp4":
        with imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=16) as writer:
            for frame in frames:
                writer.append_data(frame)
    else:
        imageio.mimsave(path, list(frames), duration=1.0 / fps, loop=0)
    return path
