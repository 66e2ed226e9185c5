"""IK results -> smoothed keyframes -> samples at the control rate (the retargeter's output stage).

1. Temporal smoothing of the IK results (binomial kernel over frames), kept out of self-collision, then a
   floor pass that shifts the base vertically so no foot point is below z = 0 and feet in contact touch it.
2. Resampling to the control rate with the uniform cubic B-spline over the keyframes (C2: no jump of
   acceleration at a keyframe; start and end kept), sampled as Hermite pieces
   (`momask_ros.retarget.trajectory.bspline_knots`); velocities are the spline's derivative.

Why the velocity guarantee holds without post-hoc jumps: the IK bounds every joint's step per input frame
to ``velocity_margin * v_max * dt``; smoothing (a convex combination of steps) and clipping to position
limits cannot enlarge a step, and each keyframe's step is clipped to the same budget; the spline then
at most doubles the bound (`momask_ros.retarget.trajectory`). With ``velocity_margin < 0.5`` every output velocity
is inside its limit.

Every stage looks ahead a fixed number of frames (the smoothing radius, then one keyframe for the spline
slopes), so samples come out incrementally and chunked runs equal the batch run.
"""
from __future__ import annotations

import math

import mujoco
import numpy as np

from momask_ros.robot.model import Robot
from momask_ros.retarget.trajectory import RobotTrajectory, bspline_knots, clip_to_limits, hermite, slerp_wxyz

#: A keyframe or output sample deeper than this in self-collision [m] is pushed out (`KeyframeSpline`).
REPAIR_DEPTH_M = 1e-3


def binomial(radius: int) -> np.ndarray:
    """Normalised binomial smoothing kernel of 2 radius + 1 taps."""
    w = np.array([math.comb(2 * radius, k) for k in range(2 * radius + 1)], float)
    return w / w.sum()


class KeyframeSpline:
    """Smoothed keyframes of one stream and the emitted part of the spline through them.

    Args:
        robot: from `load_robot`.
        settings: the `Retargeter` (smoothing radius, velocity margin, floor pull, output rate).
        dt: input frame period [s].
        avoid: the IK's self-collision limit, or None.
        tracked: (K,) bool, keypoints whose error counts.
    """

    def __init__(self, robot: Robot, settings, dt: float, avoid, tracked: np.ndarray) -> None:
        self.robot = robot
        self.rt = settings
        self.dt = dt
        self.avoid = avoid
        self._tracked = tracked
        self._data = mujoco.MjData(robot.model)
        self._kernel = binomial(settings.smoothing)
        self._key_q: list[np.ndarray] = []        # smoothed + floor-corrected: driven joints
        self._key_base: list[np.ndarray] = []     # base position
        self._key_quat: list[np.ndarray] = []
        self._n_emitted_pieces = 0                # pieces [k, k+1] fully emitted
        self._next_sample = 0                     # index i of the next grid time i / rate

    def __len__(self) -> int:
        return len(self._key_q)

    def kept(self, frame: int) -> tuple[int, int, int]:
        """(keyframes, spline pieces, grid samples) still valid when only frames [0, frame) remain."""
        keys = min(len(self._key_q), max(0, frame - self.rt.smoothing))  # smoothing looks r frames ahead
        pieces = min(self._n_emitted_pieces, max(0, keys - 2))           # a piece's end slope needs k + 2
        samples = int(math.floor(pieces * self.dt * self.rt.rate_hz - 1e-9)) + 1 if pieces else 0
        return keys, pieces, min(samples, self._next_sample)

    def truncate(self, keys: int, pieces: int, samples: int) -> None:
        """Forget keyframes from ``keys`` on and emit again from piece ``pieces`` / sample ``samples``."""
        del self._key_q[keys:], self._key_base[keys:], self._key_quat[keys:]
        self._n_emitted_pieces, self._next_sample = pieces, samples

    def advance(self, ik_q: list[np.ndarray], contact: list[tuple[bool, bool]], *, final: bool) -> None:
        """Smooth + floor-correct every frame whose smoothing window is complete."""
        r = self.rt.smoothing
        n = len(ik_q)
        ready = n if final else n - r
        robot = self.robot
        b = robot.base_qpos_index
        lims = robot.position_limits
        budget = self.rt.velocity_margin * robot.velocity_limits * self.dt  # per keyframe step (module doc)
        while len(self._key_q) < ready:
            k = len(self._key_q)
            idx = np.clip(np.arange(k - r, k + r + 1), 0, n - 1)
            window = np.array([ik_q[i] for i in idx])
            w = self._kernel
            joints = np.clip(w @ window[:, robot.qpos_index], lims[:, 0], lims[:, 1])
            base = w @ window[:, b:b + 3]
            quats = window[:, b + 3:b + 7]
            quats = quats * np.where(quats @ quats[r] < 0, -1.0, 1.0)[:, None]
            quat = w @ quats
            quat /= np.linalg.norm(quat)
            qpos = robot.full_qpos(joints, base, quat)
            if self.avoid is not None:  # smoothing must not undo the IK's self-collision avoidance
                qpos = self.avoid.least_smoothing(ik_q[k], qpos, robot.qpos_index, b)
                joints, base, quat = qpos[robot.qpos_index], qpos[b:b + 3], qpos[b + 3:b + 7]
            if self._key_q:  # keep each step within the velocity budget whatever the blend did
                joints = np.clip(joints, self._key_q[-1] - budget, self._key_q[-1] + budget)
                qpos = robot.full_qpos(joints, base, quat)
            if self.avoid is not None and self.avoid.depth(qpos) > REPAIR_DEPTH_M:  # out, within the budget
                lower, upper = lims[:, 0], lims[:, 1]
                if self._key_q:
                    lower = np.maximum(lower, self._key_q[-1] - budget)
                    upper = np.minimum(upper, self._key_q[-1] + budget)
                qpos = self.avoid.push_out(qpos, robot.qpos_index, lower, np.maximum(lower, upper))
                joints = qpos[robot.qpos_index]
            data = robot.forward(qpos, self._data)
            feet = robot.foot_points_z(data)
            contacts = contact[k]
            in_contact = [z for z, c in zip(feet, contacts) if c]
            if in_contact:
                dz = max(-min(in_contact), -self.rt.max_floor_pull_m, -min(feet))
            else:
                dz = max(0.0, -min(feet))
            base = base + np.array([0.0, 0.0, dz])
            self._key_q.append(joints)
            self._key_base.append(base)
            self._key_quat.append(quat)

    def _clear_piece(self, knot_t: list, knot_q: list, knot_m: list, times: np.ndarray, pos: np.ndarray,
                     vel: np.ndarray, base: np.ndarray, quat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One spline piece's samples, with a knot inserted at each sample that would penetrate.

        Why: two clear keyframes can have a spline between them that cuts through a limb in a fast
        spin or flip. The deepest penetrating sample becomes a knot pushed out of collision
        (`push_out`) inside the box that keeps both neighbouring secants within the velocity slope
        ``s = velocity_margin * v_max``; its slope is the secant of its neighbours (within ``s``), so the
        refined spline keeps the module's velocity guarantee. Repeated until no sample penetrates
        or every penetrating sample is a knot.
        """
        robot = self.robot
        depth = np.array([self.avoid.depth(robot.full_qpos(p, b, q)) for p, b, q in zip(pos, base, quat)])
        if depth.max(initial=0.0) <= REPAIR_DEPTH_M:
            return pos, vel
        slope = self.rt.velocity_margin * robot.velocity_limits
        lims = robot.position_limits
        knot_t, knot_q, knot_m = list(knot_t), list(knot_q), list(knot_m)
        is_knot = np.zeros(len(times), bool)
        pos, vel = pos.copy(), vel.copy()
        while True:
            i = int(np.argmax(np.where(is_knot, -1.0, depth)))
            if is_knot[i] or depth[i] <= REPAIR_DEPTH_M:
                return pos, vel
            t = times[i]
            j = int(np.searchsorted(knot_t, t))
            if j == 0 or j == len(knot_t) or t - knot_t[j - 1] < 1e-9 or knot_t[j] - t < 1e-9:
                is_knot[i] = True  # a keyframe (pushed out already in `advance`) or a knot: leave it
                continue
            left, right = knot_t[j - 1], knot_t[j]
            ql, qr = knot_q[j - 1], knot_q[j]
            lower = np.maximum(np.maximum(ql - slope * (t - left), qr - slope * (right - t)), lims[:, 0])
            upper = np.minimum(np.minimum(ql + slope * (t - left), qr + slope * (right - t)), lims[:, 1])
            fixed = self.avoid.push_out(robot.full_qpos(pos[i], base[i], quat[i]), robot.qpos_index, lower,
                                        np.maximum(lower, upper))[robot.qpos_index]
            knot_t.insert(j, t)
            knot_q.insert(j, fixed)
            knot_m.insert(j, np.clip((qr - ql) / (right - left), -slope, slope))
            is_knot[i] = True
            sel = (times > left) & (times < right)   # the samples whose piece changed
            for k in (j - 1, j):
                part = sel & (times >= knot_t[k]) & (times <= knot_t[k + 1])
                pos[part], vel[part] = hermite(knot_t[k], knot_t[k + 1] - knot_t[k], knot_q[k], knot_q[k + 1],
                                               knot_m[k], knot_m[k + 1], times[part])
            for m in np.flatnonzero(sel):
                depth[m] = self.avoid.depth(robot.full_qpos(pos[m], base[m], quat[m]))

    def _settle_knots(self, kq: np.ndarray, kb: np.ndarray, lo: int, first: int, last: int) -> None:
        """Make the B-spline knots of keyframes ``first .. last`` (the window ``kq`` / ``kb`` starts at
        keyframe ``lo``) as clear as the keyframes are (in place).

        A knot that would be in self-collision gets its keyframe back: the keyframes are clear
        (`advance`), and a keyframe's step to a neighbouring knot is a convex combination of keyframe
        steps, so the secants keep the velocity slope (only C2 is lost there, C1 remains). A knot with a
        foot point below the floor has its base raised to the floor (the floor pass of `advance`, for
        the averaged pose).
        """
        robot = self.robot
        for k in range(first, last + 1):
            i = k - lo
            qpos = robot.full_qpos(kq[i], kb[i], self._key_quat[k])
            if self.avoid is not None and self.avoid.depth(qpos) > REPAIR_DEPTH_M:
                kq[i], kb[i] = self._key_q[k], self._key_base[k]
                continue
            kb[i, 2] += max(0.0, -robot.lowest_foot_z(robot.forward(qpos, self._data)))

    def _keypoint_errors(self, targets: list[np.ndarray], lo: int, hi: int) -> np.ndarray:
        out = np.empty(max(0, hi - lo))
        for i, k in enumerate(range(lo, hi)):
            data = self.robot.forward(self.robot.full_qpos(self._key_q[k], self._key_base[k], self._key_quat[k]),
                                      self._data)
            pts = data.site_xpos[self.robot.keypoint_site_ids]
            out[i] = np.linalg.norm(pts - targets[k], axis=-1)[self._tracked].mean()
        return out

    def emit(self, contact: list[tuple[bool, bool]], targets: list[np.ndarray], *, final: bool) -> RobotTrajectory:
        """Sample every spline piece whose end slopes are known (piece k needs keyframe k + 2)."""
        nk = len(self._key_q)
        last_piece = nk - 1 if final else nk - 2     # exclusive: pieces [k, k+1] for k < last_piece
        first_piece = self._n_emitted_pieces
        rate = self.rt.rate_hz
        robot = self.robot
        if nk == 0 or (last_piece <= first_piece and not (final and nk >= 1)):
            return RobotTrajectory.empty(robot.joint_names, position_limits=robot.position_limits,
                                         velocity_limits=robot.velocity_limits)
        t_end_piece = last_piece * self.dt
        t_last = (nk - 1) * self.dt
        # grid indices i with t_i < t_end_piece (final: <= t_last, plus t_last appended)
        i_stop = int(math.floor(t_end_piece * rate - 1e-9)) + 1 if not final else \
            int(math.floor(t_last * rate + 1e-9)) + 1
        times = np.arange(self._next_sample, max(self._next_sample, i_stop)) / rate
        if final and (len(times) == 0 or t_last - times[-1] > 1e-9):
            times = np.append(times, t_last)   # earlier chunks stop >= 2 frames before the end
        self._next_sample = max(self._next_sample, i_stop)
        key_t = np.arange(nk) * self.dt
        lo = max(0, first_piece - 1)
        hi = min(nk, max(last_piece, first_piece) + 2)
        # the pieces are the C2 B-spline over the keyframes, each knot's value needing its two neighbours
        # (the window holds them: piece k needs keyframes k - 1 .. k + 2, the look-ahead of `kept`);
        # only the knots of the pieces sampled now are settled (the window's ends are neighbours only)
        kq, slopes_q = bspline_knots(self.dt, np.array(self._key_q[lo:hi]))
        kb, slopes_b = bspline_knots(self.dt, np.array(self._key_base[lo:hi]))
        piece = np.clip(np.floor(times / self.dt + 1e-9).astype(int), 0, max(nk - 2, 0))
        if nk > 1 and len(times):
            self._settle_knots(kq, kb, lo, int(piece.min()), int(piece.max()) + 1)
        nj = len(robot.joint_names)
        pos = np.empty((len(times), nj))
        vel = np.empty_like(pos)
        base = np.empty((len(times), 3))
        if nk == 1:
            pos[:] = kq[0]
            vel[:] = 0.0
            base[:] = kb[0]
        quat = slerp_wxyz(key_t[lo:hi], np.array(self._key_quat[lo:hi]), times) if len(times) else np.zeros((0, 4))
        if nk > 1:
            for k in np.unique(piece):
                sel = piece == k
                a, c = k - lo, k + 1 - lo
                pos[sel], vel[sel] = hermite(key_t[k], self.dt, kq[a], kq[c], slopes_q[a], slopes_q[c], times[sel])
                base[sel], _ = hermite(key_t[k], self.dt, kb[a], kb[c], slopes_b[a], slopes_b[c], times[sel])
                if self.avoid is not None:
                    pos[sel], vel[sel] = self._clear_piece(
                        [key_t[k], key_t[k] + self.dt], [kq[a], kq[c]], [slopes_q[a], slopes_q[c]], times[sel],
                        pos[sel], vel[sel], base[sel], quat[sel])
        pos, vel = clip_to_limits(pos, vel, robot.position_limits)
        penetration = 0.0
        for i in range(len(times)):
            data = robot.forward(robot.full_qpos(pos[i], base[i], quat[i]), self._data)
            penetration = max(penetration, -robot.lowest_foot_z(data))
        err_hi = nk if final else max(first_piece, last_piece)
        errors = self._keypoint_errors(targets, first_piece, err_hi)
        self._n_emitted_pieces = max(first_piece, last_piece) if not final else nk
        nearest = np.clip(np.rint(times / self.dt).astype(int), 0, nk - 1)
        contacts = np.array([contact[k] for k in nearest], bool).reshape(-1, 2)
        return RobotTrajectory(robot.joint_names, times, pos, vel, base, quat, errors, max(0.0, penetration),
                               robot.position_limits, robot.velocity_limits, contacts)
