"""Pipeline metrics (rows ingested, quarantined, scored; validation failures; scoring throughput;
drift flags) through a pluggable sink, so the pipeline never imports Airflow.

Outside Airflow the sink does nothing. Inside a task, the Airflow glue installs Airflow's own
metrics client (StatsD or OpenTelemetry, as ``[metrics]`` in airflow.cfg says): names are
prefixed with ``[metrics] statsd_prefix`` (``airflow.``) and carry ``dataset`` / ``model`` tags.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Sink(Protocol):
    def incr(self, name: str, count: int = 1, tags: dict[str, Any] | None = None) -> None: ...

    def gauge(self, name: str, value: float, tags: dict[str, Any] | None = None) -> None: ...


class _Nothing:
    def incr(self, name, count=1, tags=None):
        pass

    def gauge(self, name, value, tags=None):
        pass


_sink: Sink = _Nothing()


def install(sink: Sink) -> None:
    global _sink
    _sink = sink


def incr(name: str, count: int = 1, **tags: Any) -> None:
    try:
        _sink.incr(f"pipeline.{name}", int(count), tags=tags or None)
    except Exception as exc:  # noqa: BLE001 - metrics never fail a step
        log.debug("metric %s not sent: %s", name, exc)


def gauge(name: str, value: float, **tags: Any) -> None:
    try:
        _sink.gauge(f"pipeline.{name}", float(value), tags=tags or None)
    except Exception as exc:  # noqa: BLE001
        log.debug("metric %s not sent: %s", name, exc)
