"""Freshness of every zone: is the newest delivery, label day, scored day, champion and drift run
as recent as it should be? One function per zone (registered in :data:`ZONES`); `status` shows
them as a table and exits non-zero when one is late."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from pipeline.core import layout
from pipeline.core.errors import StaleData
from pipeline.core.settings import PipelineConfig
from pipeline.core.storage import Storage
from pipeline.model import registry


def newest_day(storage: Storage, prefix: str) -> dt.date | None:
    """The newest committed `dt=` partition under `prefix`."""
    days = sorted(d for d in (layout.day_of(n) for n in storage.list_children(prefix)) if d)
    for day in reversed(days):
        if storage.partition_exists(f"{prefix}/dt={day.isoformat()}"):
            return day
    return None


def _row(zone: str, latest: dt.date | None, expected: dt.date, limit: int, where: str, why: str = "") -> dict:
    """`expected`: the newest day the zone should hold by now; late when more than `limit` days behind."""
    behind = None if latest is None else (expected - latest).days
    late = behind is None or behind > limit
    if not why:
        why = (
            "nothing published yet"
            if latest is None
            else (f"{behind} day(s) behind {expected} (limit {limit})" if late else "on time")
        )
    return {
        "zone": zone,
        "latest": latest.isoformat() if latest else None,
        "expected": expected.isoformat(),
        "days_behind": behind,
        "limit_days": limit,
        "late": late,
        "why": why,
        "where": where,
    }


def raw(config: PipelineConfig, storage: Storage, today: dt.date) -> dict:
    prefix = layout.raw_root(config.dataset.name)
    limit = config.monitoring.freshness.raw_max_age_days
    return _row("raw deliveries", newest_day(storage, prefix), today, limit, storage.uri(prefix))


def labels(config: PipelineConfig, storage: Storage, today: dt.date) -> dict:
    prefix = layout.labels_root(config.dataset.name)
    due = today - dt.timedelta(days=config.dataset.batching.label_delay_days)
    limit = config.monitoring.freshness.label_tolerance_days
    return _row("labels", newest_day(storage, prefix), due, limit, storage.uri(prefix))


def predictions(config: PipelineConfig, storage: Storage, today: dt.date) -> dict:
    prefix = layout.predictions_root(config.model_name)
    limit = config.monitoring.freshness.predictions_max_age_days
    return _row("predictions", newest_day(storage, prefix), today, limit, storage.uri(prefix))


def champion(config: PipelineConfig, storage: Storage, today: dt.date) -> dict:
    from pipeline.data import contract as contracts

    limit = config.monitoring.freshness.champion_max_age_days
    where = storage.uri(layout.model_root(config.model_name))
    alias = registry.get_alias(storage, config.model_name)
    if not alias or not alias.get("version"):
        return _row("champion", None, today, limit, where, why="no champion: run training_pipeline")
    manifest = registry.read_manifest(storage, config.model_name, alias["version"])
    trained = dt.date.fromisoformat(manifest["trained_as_of"])
    row = _row(f"champion {alias['version']}", trained, today, limit, where)
    current = contracts.current(config, storage)
    trained_on = (manifest.get("data_contract") or {}).get("version")
    if current is not None and trained_on is not None and trained_on < current.version:
        row.update(
            late=True,
            why=f"its reference profile is from contract v{trained_on}; the contract is now v{current.version}",
        )
    return row


def monitor(config: PipelineConfig, storage: Storage, today: dt.date) -> dict:
    prefix = layout.monitoring_decisions(config.model_name)
    runs = sorted(d for d in map(layout.day_of_record, storage.list_keys(prefix)) if d)
    limit = config.monitoring.freshness.monitor_max_age_days
    return _row("drift monitoring", runs[-1] if runs else None, today, limit, storage.uri(prefix))


ZONES: list[Callable[[PipelineConfig, Storage, dt.date], dict]] = [raw, labels, predictions, champion, monitor]


def status(config: PipelineConfig, storage: Storage, today: dt.date) -> dict:
    zones = [zone(config, storage, today) for zone in ZONES]
    return {"as_of": today.isoformat(), "late": [z["zone"] for z in zones if z["late"]], "zones": zones}


def require_fresh(config: PipelineConfig, storage: Storage, today: dt.date) -> dict:
    """The status, or StaleData naming every late zone, why and where (an alert of kind freshness)."""
    result = status(config, storage, today)
    late = [z for z in result["zones"] if z["late"]]
    if late:
        raise StaleData(
            f"{len(late)} zone(s) late as of {today}: "
            + "; ".join(f"{z['zone']}: {z['why']} ({z['where']})" for z in late),
            links={z["zone"]: z["where"] for z in late},
        )
    return result
