"""The body of every executable of this package: init, build the node, spin, shut down cleanly.

A node that cannot start (missing bundle or description, no CUDA, a bad parameter) logs one FATAL line
saying why and the process exits 1, so `ros2 launch` output shows the cause.
"""
from __future__ import annotations

from typing import Callable

import rclpy


def run_node(factory: Callable[[], "rclpy.node.Node"], name: str, args: list[str] | None = None) -> int:
    """Run ``factory()`` until Ctrl-C or an external shutdown; 1 when it cannot be built, else 0."""
    from rclpy.executors import ExternalShutdownException

    rclpy.init(args=args)
    try:
        node = factory()
    except Exception as exc:
        rclpy.logging.get_logger(name).fatal(f"cannot start: {type(exc).__name__}: {exc}")
        rclpy.try_shutdown()
        return 1
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
