"""Spinning an rclpy executor beside a test, and ending it cleanly (rclpy only, light to import).

`BackgroundSpin.stop` ends the spinning before anything is destroyed: a callback still running while
the executor's guard condition or a node is destroyed fails inside an rclpy task, and in a
MultiThreadedExecutor's pool nobody reads that task's exception, which rclpy then prints after the
test session ("The following exception was never retrieved: cannot use Destroyable because
destruction was requested"). Hence one thread, spun here, stopped first.
"""
from __future__ import annotations

import threading

import rclpy
from rclpy.executors import SingleThreadedExecutor


class BackgroundSpin:
    """Spin ``executor`` on a daemon thread until `stop` (which lets the running callback finish, then
    shuts the executor down): only then may its nodes be destroyed."""

    def __init__(self, executor: SingleThreadedExecutor, context: rclpy.Context) -> None:
        self.executor, self._context = executor, context
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self._context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # a probe callback's failure shows in the test's assertions
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        self.executor.shutdown(timeout_sec=1.0)
