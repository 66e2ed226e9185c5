"""Command syntax, validation and burst control (pure, no ROS)."""
import math

import pytest

from momask_ros.stream.commands import (
    BurstLimiter,
    CommandLimits,
    CommandRejected,
    MotionCommand,
    parse_command,
    preview,
)


def reason_of(raw, limits=None) -> str:
    with pytest.raises(CommandRejected) as info:
        parse_command(raw, limits)
    assert str(info.value)  # every rejection explains itself
    return info.value.reason


def test_plain_text_collapses_whitespace_and_has_no_options():
    assert parse_command("  a person\twalks \n forward ") == MotionCommand("a person walks forward")


def test_length_in_seconds_and_frames_round_to_token_unit():
    assert parse_command("walk length=4s").length_frames == 80
    assert parse_command("walk length=2.5s").length_frames == 52  # 50 frames -> nearest multiple of 4
    assert parse_command("walk length=80").length_frames == 80
    assert parse_command("walk length=81f").length_frames == 80


def test_hash_shorthand_is_frames():
    cmd = parse_command("a person jumps#120")
    assert cmd == MotionCommand("a person jumps", length_frames=120)
    assert parse_command("a person jumps # 60").length_frames == 60


def test_options_any_order_with_speed_and_seed():
    cmd = parse_command("walk forward seed=7 speed=1.5 length=3s")
    assert cmd == MotionCommand("walk forward", length_frames=60, speed=1.5, seed=7)


def test_equals_sign_inside_the_description_is_text():
    assert parse_command("x=1 means walk").text == "x=1 means walk"


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("", "empty"),
        ("   \t\n ", "empty"),
        ("length=4s", "empty"),
        (b"walk \xff\xfe forward", "not_utf8"),
        ("walk \udcff forward", "not_utf8"),
        ("walk\x00forward", "control_characters"),
        ("walk \x1b[31m red", "control_characters"),
        ("walk \x7f", "control_characters"),
        ("walk \u202eevil", "control_characters"),
        ("walk length=nan", "bad_number"),
        ("walk length=inf", "bad_number"),
        ("walk speed=nan", "bad_number"),
        ("walk speed=-inf", "bad_number"),
        ("walk speed=fast", "bad_number"),
        ("walk length=4.5f", "bad_number"),
        ("walk length=1e9s", "out_of_range"),
        ("walk length=0", "out_of_range"),
        ("walk#99999", "out_of_range"),
        ("walk speed=100", "out_of_range"),
        ("walk speed=0", "out_of_range"),
        ("walk seed=-1", "bad_number"),
        ("walk seed=99999999999999999999", "bad_number"),
        ("walk lenght=4s", "bad_option"),
        ("walk length=4s length=3s", "bad_option"),
        ("walk#40 length=2s", "bad_option"),
    ],
)
def test_bad_commands_are_rejected_with_reason(raw, reason):
    assert reason_of(raw) == reason


def test_overlong_text_and_megabyte_messages_are_rejected():
    limits = CommandLimits(max_chars=20, max_bytes=100)
    assert reason_of("walk " * 10, limits) == "too_long"
    assert reason_of("x" * 1_000_000, limits) == "too_long"
    assert reason_of(b"y" * 1_000_000, limits) == "too_long"
    assert parse_command("walk " * 4, limits).text == "walk walk walk walk"


def test_unicode_text_is_accepted():
    assert parse_command("une personne marche vers l'avant, très lentement").text.endswith("lentement")
    assert parse_command("人が歩く length=2s").length_frames == 40


def test_limits_reject_inconsistent_bounds():
    with pytest.raises(ValueError, match="min_frames"):
        CommandLimits(min_frames=300, max_frames=196)
    with pytest.raises(ValueError, match="fps"):
        CommandLimits(fps=math.nan)


def test_preview_is_short_and_printable():
    shown = preview("a\x00b" + "z" * 500, limit=20)
    assert len(shown) <= 20 and "\x00" not in shown and shown.isprintable()
    assert preview(b"\xff\xfeok").endswith("ok")


def test_burst_limiter_admits_burst_then_coalesces_to_latest():
    lim = BurstLimiter(rate_hz=2.0, burst=3)
    results = [lim.offer(i, now_s=0.0) for i in range(1000)]
    admitted = [r.admitted for r in results if r.admitted is not None]
    superseded = [r.superseded for r in results if r.superseded is not None]
    assert admitted == [0, 1, 2]
    assert superseded == list(range(3, 999))  # every buffered item but the newest is superseded
    assert lim.pending == 999
    assert lim.poll(now_s=0.1) is None  # bucket still empty
    assert lim.poll(now_s=0.5) == 999  # one token after 1/rate seconds
    assert lim.pending is None and lim.poll(now_s=10.0) is None


def test_burst_limiter_refills_up_to_capacity_only():
    lim = BurstLimiter(rate_hz=1.0, burst=2)
    assert lim.offer("a", 0.0).admitted == "a"
    assert lim.offer("b", 100.0).admitted == "b"
    assert lim.offer("c", 100.0).admitted == "c"
    assert lim.offer("d", 100.0).admitted is None  # capacity 2, not 100
    assert lim.clear() == "d"


def test_burst_limiter_rejects_bad_settings():
    with pytest.raises(ValueError, match="rate_hz"):
        BurstLimiter(rate_hz=math.inf)
    with pytest.raises(ValueError, match="burst"):
        BurstLimiter(burst=0)
