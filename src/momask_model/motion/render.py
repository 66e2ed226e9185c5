"""Human previews: stick-figure MP4/GIF (matplotlib). BVH export is ``momask_model.motion.bvh``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from momask_model.motion.skeleton import T2M_SKELETON, SkeletonSpec

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


def _camera(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Rows: screen right, screen up, towards the viewer, for an orthographic camera orbiting +Y.

    Azimuth 0 looks at the figure's front (HumanML3D faces +Z); positive azimuth moves the camera to
    the figure's left (+X).
    """
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    right = np.array([np.cos(az), 0.0, -np.sin(az)])
    toward = np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
    return np.stack([right, np.cross(toward, right), toward])


def _head_joint(joints: np.ndarray, skeleton: SkeletonSpec) -> int:
    """The end of the chain that sits highest on the first frame (the head for every skeleton here)."""
    ends = [chain[-1] for chain in skeleton.kinematic_chain]
    return max(ends, key=lambda j: joints[0, j, 1])


def render_frames(
    joints: np.ndarray,
    *,
    skeleton: SkeletonSpec = T2M_SKELETON,
    title: str = "",
    fps: float = 20.0,
    size_px: int = 480,
    azimuth_deg: float = 35.0,
    elevation_deg: float = 12.0,
    marks: tuple[tuple[int, int, str], ...] = (),
) -> np.ndarray:
    """Draw a Y-up skeleton motion as RGB frames (T, size, size, 3) uint8, one per motion frame.

    ``marks`` are (start, end, label) frame ranges (edited sections, sequence segments): their frames
    show the label in the bottom-left corner on a tinted background.

    The camera follows the figure at a fixed scale chosen for the whole clip, so the figure fills most
    of the frame height (its largest pose 78%) and never leaves it; the
    floor grid moves with the world, so travel shows, and the root's floor path is drawn (ahead
    faint, behind dark). A head disc marks the facing; the title is the prompt, the corner the time.
    """
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    joints = _check_joints(joints, skeleton.joints_num)
    T = joints.shape[0]
    floor = joints[..., 1].min()
    cam = _camera(azimuth_deg, elevation_deg)
    screen = joints @ cam[:2].T  # (T, J, 2)
    depth = joints @ cam[2]
    ground = joints[:, 0] * np.array([1.0, 0.0, 1.0]) + np.array([0.0, floor, 0.0])
    ground_screen = ground @ cam[:2].T  # the root's floor point: the camera's anchor
    rel = screen - ground_screen[:, None]
    height = max(float(rel[..., 1].max()), 1e-6)  # tallest point above the floor (the grid's scale)
    # The camera follows the figure's box centre (smoothed over 0.25 s) at one scale for the clip: the
    # largest pose fills 78% of the frame height, so a crouch or a jump still fills about half of it.
    lo, hi = screen.min(axis=1), screen.max(axis=1)
    centre = (lo + hi) / 2
    k = min(5, T)
    kernel = np.ones(k) / k
    padded = np.pad(centre, ((k // 2, k - 1 - k // 2), (0, 0)), mode="edge")
    smooth = np.stack([np.convolve(padded[:, i], kernel, mode="valid") for i in range(2)], axis=-1)
    extent = hi - lo
    span = max(float(extent[:, 1].max()) / 0.78, float(extent[:, 0].max()) / 0.85, 1e-6)
    needed = 2 * float((np.abs(smooth - centre) + extent / 2).max())  # the lagging camera still holds it all
    span = max(span, needed / 0.94)
    head = _head_joint(joints, skeleton)
    head_radius = 0.055 * height
    grid_step = height / 3.4  # 0.5 m for a standing adult, in whatever unit the joints use

    from matplotlib.collections import LineCollection

    bones = [(a, b, color) for chain, color in zip(skeleton.kinematic_chain, CHAIN_COLORS)
             for a, b in zip(chain[:-1], chain[1:])]
    bone_colors = np.array([matplotlib.colors.to_rgba(c) for _, _, c in bones])
    ticks = np.arange(-6, 7) * grid_step
    dpi = 100
    fig = Figure(figsize=(size_px / dpi, size_px / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_aspect("equal")
    (grid,) = ax.plot([], [], color="#dddddd", lw=0.8, zorder=0)
    ax.plot(ground_screen[:, 0], ground_screen[:, 1], color="#bbbbbb", lw=1.2, ls="--", zorder=1)  # whole path
    (behind,) = ax.plot([], [], color="#444444", lw=2.0, zorder=2)
    (here,) = ax.plot([], [], marker="o", color="#444444", ms=4, zorder=2)
    limbs = LineCollection([], linewidths=4.0, capstyle="round", zorder=3)
    ax.add_collection(limbs)
    dots = ax.scatter(joints[0, :, 0], joints[0, :, 1], s=10, color="#222222", zorder=4)
    head_disc = Circle((0, 0), head_radius, facecolor="#f2c9a0", edgecolor="#333333", lw=1.5, zorder=5)
    ax.add_patch(head_disc)
    if title:
        ax.text(0.5, 0.985, "\n".join(textwrap.wrap(title, 48)[:2]), transform=ax.transAxes, ha="center", va="top",
                fontsize=12, zorder=6)
    clock = ax.text(0.98, 0.015, "", transform=ax.transAxes, ha="right", va="bottom", fontsize=9, color="#555555",
                    zorder=6)
    marker = ax.text(0.02, 0.015, "", transform=ax.transAxes, ha="left", va="bottom", fontsize=9, color="#7a5c00",
                     zorder=6)
    frames = []
    for t in range(T):
        cx, cy = smooth[t]
        ax.set_xlim(cx - span / 2, cx + span / 2)
        ax.set_ylim(cy - span / 2, cy + span / 2)
        # floor grid around the root, anchored in the world so that travel shows
        gx = np.floor(joints[t, 0, 0] / grid_step) * grid_step + ticks
        gz = np.floor(joints[t, 0, 2] / grid_step) * grid_step + ticks
        segs = [np.array([[x, floor, gz[0]], [x, floor, gz[-1]]]) for x in gx]
        segs += [np.array([[gx[0], floor, z], [gx[-1], floor, z]]) for z in gz]
        pts3 = np.concatenate([np.vstack([seg, [[np.nan] * 3]]) for seg in segs]) @ cam[:2].T
        grid.set_data(pts3[:, 0], pts3[:, 1])
        behind.set_data(ground_screen[: t + 1, 0], ground_screen[: t + 1, 1])
        here.set_data(ground_screen[t, :1], ground_screen[t, 1:])
        pts, d = screen[t], depth[t]
        far_first = np.argsort([(d[a] + d[b]) / 2 for a, b, _ in bones])  # nearer limbs over farther ones
        limbs.set_segments([pts[[bones[k][0], bones[k][1]]] for k in far_first])
        limbs.set_color(bone_colors[far_first])
        dots.set_offsets(pts)
        head_disc.center = tuple(pts[head])
        clock.set_text(f"{t / fps:5.2f} s / {(T - 1) / fps:.2f} s")
        label = next((m[2] for m in marks if m[0] <= t < m[1]), None)
        fig.set_facecolor(MARK_COLOR if label is not None else "white")
        marker.set_text(f"[{label[:40]}]" if label else "")
        canvas.draw()
        frames.append(np.asarray(canvas.buffer_rgba())[..., :3].copy())
    return np.stack(frames)


def resample_by_stamps(stamps_s: np.ndarray, frames: np.ndarray, fps: float,
                       start_s: float | None = None, duration_s: float | None = None) -> np.ndarray:
    """Frames (N, ...) received at irregular ``stamps_s`` -> frames on a uniform ``fps`` grid.

    A preview built from a stream (markers sent when a control tick allows, 60 ms apart when 50 ms is
    asked for) plays at the right speed only on its own clock: sample k shows time
    ``start_s + k / fps`` (linear interpolation between the received frames), for
    ``round(duration_s * fps) + 1`` samples (default: the stamps' span).
    """
    stamps = np.asarray(stamps_s, dtype=np.float64)
    frames = np.asarray(frames, dtype=np.float64)
    if stamps.ndim != 1 or len(stamps) != len(frames) or len(stamps) < 1:
        raise RenderError(f"need one stamp per frame, got {stamps.shape} stamps for {frames.shape} frames")
    if not fps > 0:
        raise RenderError(f"fps must be positive, got {fps}")
    order = np.argsort(stamps, kind="stable")
    stamps, frames = stamps[order], frames[order]
    start = stamps[0] if start_s is None else float(start_s)
    duration = stamps[-1] - start if duration_s is None else float(duration_s)
    grid = start + np.arange(int(round(max(duration, 0.0) * fps)) + 1) / fps
    flat = frames.reshape(len(frames), -1)
    out = np.stack([np.interp(grid, stamps, flat[:, k]) for k in range(flat.shape[1])], axis=-1)
    return out.reshape((len(grid),) + frames.shape[1:])


VIDEO_SUFFIXES = (".mp4", ".gif")


def check_video_path(path: str | Path) -> Path:
    """The path, if its extension names a format the previews can write (checked before any work)."""
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise RenderError(f"video must end in {' or '.join(VIDEO_SUFFIXES)}, got {path.name}")
    return path


def write_frames(frames: np.ndarray, path: str | Path, *, fps: float) -> Path:
    """Write RGB frames (N, H, W, 3) uint8 as MP4 (H.264) or GIF, at ``fps`` so N frames last N / fps s."""
    import imageio.v2 as imageio

    path = check_video_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".mp4":
        with imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=16) as writer:
            for frame in frames:
                writer.append_data(frame)
    else:
        imageio.mimsave(path, list(frames), duration=1.0 / fps, loop=0)
    return path


def save_video(
    joints: np.ndarray, path: str | Path, *, fps: float = 20.0, skeleton: SkeletonSpec = T2M_SKELETON, title: str = "",
    marks: tuple[tuple[int, int, str], ...] = (),
) -> Path:
    """Write a stick-figure preview, one video frame per motion frame; the extension (.mp4 or .gif) picks the
    format (``marks``: see `render_frames`)."""
    check_video_path(path)
    frames = render_frames(joints, skeleton=skeleton, title=title, fps=fps, marks=tuple(marks))
    return write_frames(frames, path, fps=fps)
