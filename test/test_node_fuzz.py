"""Fuzz momask_node (CI size): the node survives random bytes, unicode, 1 MB strings and a command
burst, stays within limits and memory bounds, and serves a valid command afterwards.

The full-size run (10,000 messages, burst of 1,000 in a second) is ``benchmarks/fuzz_node.py``;
MOMASK_FUZZ_MESSAGES scales this test.
"""
import importlib.util
import os
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz_node.py"
MESSAGES = int(os.environ.get("MOMASK_FUZZ_MESSAGES", "400"))


def load_fuzz():
    spec = importlib.util.spec_from_file_location("fuzz_node", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fuzzed_node_stays_alive_bounded_and_serves_afterwards():
    report = load_fuzz().run_fuzz(messages=MESSAGES, burst=max(50, MESSAGES // 4), big_every=100, seed=1)
    assert report["node_alive"] and report["valid_command_served"], report
    assert report["positions_within_limits"], report
    assert report["errors"] == 0, report
    assert report["rss_growth_mb"] < 200, report
    rejections = report["rejections"]
    for reason in ("not_utf8", "too_long", "control_characters", "bad_number", "coalesced"):
        assert rejections.get(reason, 0) > 0, (reason, rejections)
    assert report["joint_states"] > 50
    assert report["received"] >= 0.95 * MESSAGES, report  # the parser really saw the fuzz
