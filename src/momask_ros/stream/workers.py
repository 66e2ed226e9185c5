"""How a `MotionProducer`'s work runs: on three threads beside the control loop (`WorkerThreads`, the
node), or step by step on the caller's thread (`SteppedWorkers`: tests and the offline recorder drive
it between the conductor's ticks on a fake clock, so what happens when is exactly reproducible).

Both run the same steps of `momask_ros.stream.producer`: a job's generation window by window, each
retargeting task in order, and warn's physical checks.
"""
from __future__ import annotations

import threading
from typing import Iterator

from momask_ros.stream.producer import MotionProducer, Step

__all__ = ["SteppedWorkers", "WorkerThreads"]


class WorkerThreads:
    """The producer's generation, retargeting and check workers, each on a daemon thread."""

    #: How long a paced generation sleeps between looks at playback [s].
    PACE_POLL_S = 0.02

    def __init__(self, producer: MotionProducer) -> None:
        self.producer = producer
        self._threads: list[threading.Thread] = []

    def start(self, *, warm_up: bool) -> None:
        """Start the workers; the generation worker first warms the model up when ``warm_up``."""
        self.producer.model_ready = not warm_up
        for name, target in (("momask_generate", self._generate), ("momask_retarget", self._retarget),
                             ("momask_check", self._check)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    @property
    def alive(self) -> bool:
        """Every worker is running."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def join(self, timeout_s: float = 5.0) -> None:
        """Wait for the workers to return (after `MotionProducer.shutdown`)."""
        for thread in self._threads:
            thread.join(timeout=timeout_s)

    def _generate(self) -> None:
        producer = self.producer
        producer.warm_up()
        while (job := producer.take_job(wait=True)) is not None:
            for step in producer.generation(job):
                if step is Step.WAIT:
                    producer.pause(self.PACE_POLL_S)

    def _retarget(self) -> None:
        while (task := self.producer.take_task(wait=True)) is not None:
            self.producer.retarget(task)

    def _check(self) -> None:
        while (check := self.producer.take_check(wait=True)) is not None:
            self.producer.check(check, wait=True)


class SteppedWorkers:
    """The producer's work done on the caller's thread, when the caller says (`run_pending`)."""

    def __init__(self, producer: MotionProducer) -> None:
        self.producer = producer
        self._generation: Iterator[Step] | None = None  # a job's generation between two calls

    def run_pending(self) -> None:
        """Do the work queued so far: retargeting first, then warn's checks, then generation up to the
        next window whose playback is not near yet (it goes on at a later call, once playback moved)."""
        producer = self.producer
        while True:
            if (task := producer.take_task(wait=False)) is not None:
                producer.retarget(task)
            elif (check := producer.take_check(wait=False)) is not None:
                producer.check(check, wait=False)
            elif self._generation is not None:
                step = next(self._generation, None)
                if step is None:
                    self._generation = None
                elif step is Step.WAIT:
                    return
            elif (job := producer.take_job(wait=False)) is not None:
                self._generation = producer.generation(job)
            else:
                return
