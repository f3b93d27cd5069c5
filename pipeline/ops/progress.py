"""Progress of long work (a window's days, the training pipeline's stages, a monitor run) through a
pluggable sink, like :mod:`pipeline.ops.metrics`: the CLI installs a progress bar on the terminal,
everything else (Airflow tasks, tests) keeps the log lines the steps already write.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Sink(Protocol):
    def start(self, task: str, total: int) -> None: ...

    def advance(self, task: str, description: str) -> None: ...

    def finish(self, task: str) -> None: ...


class _Nothing:
    def start(self, task, total):
        pass

    def advance(self, task, description):
        pass

    def finish(self, task):
        pass


_sink: Sink = _Nothing()


def install(sink: Sink) -> None:
    global _sink
    _sink = sink


def start(task: str, total: int) -> None:
    try:
        _sink.start(task, total)
    except Exception as exc:  # noqa: BLE001 - progress never fails a step
        log.debug("progress %s: %s", task, exc)


def advance(task: str, description: str) -> None:
    try:
        _sink.advance(task, description)
    except Exception as exc:  # noqa: BLE001
        log.debug("progress %s: %s", task, exc)


def finish(task: str) -> None:
    try:
        _sink.finish(task)
    except Exception as exc:  # noqa: BLE001
        log.debug("progress %s: %s", task, exc)


class RichBars:
    """Progress bars on a terminal (rich), one per task; what the CLI installs."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.fields[name]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            transient=False,
        )
        self.tasks: dict[str, Any] = {}  # rich TaskIDs

    def start(self, task: str, total: int) -> None:
        if not self.tasks:
            self.progress.start()
        self.tasks[task] = self.progress.add_task("", total=total, name=task)

    def advance(self, task: str, description: str) -> None:
        if task in self.tasks:
            self.progress.update(self.tasks[task], advance=1, description=description)

    def finish(self, task: str) -> None:
        if self.tasks.pop(task, None) is not None and not self.tasks:
            self.progress.stop()
