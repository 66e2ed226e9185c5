"""Where a continuation joins the playing motion (`momask_ros.stream.switching`): pure functions, no ROS."""
import numpy as np
import pytest

from momask_ros.stream.switching import FADE_FRAMES, MAX_SLIP_FRAMES, LatencyStats, join_frame, plan_token, splice

FPS = 20.0


def cut_with_lookahead(frame):
    """A retargeter whose samples change 4 frames before the frame it continues from (like the real one)."""
    return (frame - 4) / FPS


def test_latency_stats_are_a_distribution_with_a_first_guess():
    stats = LatencyStats(250.0, size=4)
    assert stats.quantile(0.1) == 250.0 and len(stats) == 0
    for ms in (100, 120, 140, 160, 400):  # the oldest falls out
        stats.add(ms)
    stats.add(float("nan"))
    assert len(stats) == 4
    assert stats.quantile(0.0) == 120 and stats.quantile(1.0) == 400
    assert 120 < stats.quantile(0.5) < 400


def test_plan_token_rounds_down_to_the_token_before_the_first_frame_still_ahead():
    # played 1.0 s, continuation ready 0.13 s later: the first frame whose cut is after 1.13 s is 27
    at = plan_token(played_s=1.0, lead_s=0.13, base_start=0, base_frames=160, unit=4, fps=FPS,
                    cut_time=cut_with_lookahead)
    assert at == 24
    # on a timeline where the base starts at frame 40, frames count from the base's start
    assert plan_token(played_s=3.0, lead_s=0.13, base_start=40, base_frames=160, unit=4, fps=FPS,
                      cut_time=cut_with_lookahead) == 24
    # never before the first token, never past the base's last whole token
    assert plan_token(played_s=0.0, lead_s=0.0, base_start=0, base_frames=160, unit=4, fps=FPS,
                      cut_time=cut_with_lookahead) == 4
    assert plan_token(played_s=9.0, lead_s=0.1, base_start=0, base_frames=30, unit=4, fps=FPS,
                      cut_time=cut_with_lookahead) == 28


def test_join_frame_is_the_first_frame_whose_cut_is_still_ahead():
    # playback will be at 1.3 s once the first chunk is in: frame 30's cut (1.3 s) is too late, 31's is not
    assert join_frame(at=24, base_start=0, base_frames=160, deadline_s=1.3, cut_time=cut_with_lookahead) == 31
    # early enough: the planned token itself
    assert join_frame(at=24, base_start=0, base_frames=160, deadline_s=0.5, cut_time=cut_with_lookahead) == 24
    # too late: more than MAX_SLIP_FRAMES after the token, or no room left in the base for the crossfade
    late = (24 + MAX_SLIP_FRAMES - 4 + 0.5) / FPS
    assert join_frame(at=24, base_start=0, base_frames=160, deadline_s=late, cut_time=cut_with_lookahead) is None
    assert join_frame(at=24, base_start=0, base_frames=32, deadline_s=1.3, cut_time=cut_with_lookahead) is None


def test_splice_keeps_what_was_played_then_crossfades_into_the_new_motion():
    rng = np.random.default_rng(0)
    old = np.cumsum(rng.normal(0, 0.01, (80, 22, 3)), axis=0)
    new = old[24:] + 0.05 * np.arange(56)[:, None, None] / 56  # diverges slowly from the token on
    assert np.array_equal(splice(old, new, 24, 24), new)        # at the token: the continuation as is
    out = splice(old, new, 24, 30)
    assert out.shape == new.shape
    assert np.array_equal(out[:6], old[24:30])                   # played as the old motion's
    assert np.allclose(out[6 + FADE_FRAMES:], new[6 + FADE_FRAMES:])
    fade = out[5 : 6 + FADE_FRAMES + 1]
    # between the two motions, moving from old to new monotonically
    w = (fade - old[29 : 29 + len(fade)]) / (new[5 : 5 + len(fade)] - old[29 : 29 + len(fade)] + 1e-12)
    w = w[..., 0].mean(axis=1)
    assert w[0] == pytest.approx(0.0, abs=1e-9) and w[-1] == pytest.approx(1.0, abs=1e-6)
    assert np.all(np.diff(w) > 0)
    # near the old motion's end the fade is shorter, never reads past it
    assert splice(old[:33], new, 24, 30).shape == new.shape


def test_splice_crossfade_adds_no_step_of_acceleration():
    """The fade's weights are flat in velocity and acceleration at both ends (quintic): the spliced
    motion's second difference at the join is small against the fade's largest, unlike a cubic
    smoothstep (about half of its largest there)."""
    old, new = np.zeros((80, 22, 3)), np.ones((56, 22, 3))
    out = splice(old, new, 24, 30)[:, 0, 0]
    second = np.abs(np.diff(out, 2))
    start, end = 6 - 2, 6 + FADE_FRAMES - 1          # second differences centred on the fade's first / last frame
    assert second[start] < 0.15 * second.max() and second[end] < 0.15 * second.max()
    assert np.all(np.diff(out[5:6 + FADE_FRAMES + 1]) >= 0)
