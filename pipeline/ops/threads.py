"""Threads per task: parallel tasks on one machine must not each start one OpenMP/BLAS thread
per core (on a busy 2-core machine that made a HistGradientBoosting fit 10x slower).

The limit is ``resources.threads_per_task`` from params, or, when that is null, the machine's
cores divided by the tasks that run at once on it. The orchestrator says how many that is
through ``PIPELINE_TASKS_PER_MACHINE`` (the Airflow glue sets it from the executor's
concurrency); without it (CLI, DVC) one task has the machine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

from pipeline.core.settings import PipelineConfig

log = logging.getLogger(__name__)

TASKS_ENV = "PIPELINE_TASKS_PER_MACHINE"
T = TypeVar("T")


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_task(config: PipelineConfig) -> int:
    if config.resources.threads_per_task:
        return int(config.resources.threads_per_task)
    try:
        tasks = max(1, int(os.environ.get(TASKS_ENV) or 1))
    except ValueError:
        tasks = 1
    return max(1, cores() // tasks)


@contextlib.contextmanager
def thread_limit(config: PipelineConfig) -> Iterator[int]:
    """Limit OpenMP and BLAS pools of this process to the task's share while the block runs."""
    from threadpoolctl import threadpool_limits

    n = threads_per_task(config)
    log.debug("threads per task: %d", n)
    with threadpool_limits(limits=n):
        yield n


def prefetched(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """`items`, produced up to `depth` ahead on a helper thread, so that reading the next block
    (inflating, parsing: Arrow releases the GIL) overlaps working on this one. The producer's
    errors are raised here; leaving the loop early stops it."""
    pending: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        pending.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            pending.put((done, None))
        except BaseException as exc:  # handed to the consumer, raised there
            pending.put((done, exc))

    worker = threading.Thread(target=produce, name="prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, error = pending.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)
