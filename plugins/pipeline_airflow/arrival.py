"""Scoring by data arrival: the landing area as an Airflow Asset with a watcher.

:class:`DeliveryArrivedTrigger` (an event trigger, run by the triggerer) lists the landing area
every `scoring.arrival_poll_seconds`, claims the days whose delivery has landed and settled
(pipeline.data.arrival) and fires one asset event carrying them; the scoring_on_arrival DAG then
starts one batch_scoring run per day. Each claim is stored before the event fires, so a restarted
triggerer never fires a day twice; a day claimed but not dispatched (the triggerer died in
between) is scored by batch_scoring's daily schedule, which stays the fallback.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent


class DeliveryArrivedTrigger(BaseEventTrigger):
    """Fires once some days' deliveries have landed and settled; the event's payload is
    `{"days": ["YYYY-MM-DD", ...], "attempts": {day: n for a re-delivery}, "landing": <landing area>}`."""

    def __init__(self, poll_seconds: float = 30.0):
        super().__init__()
        self.poll_seconds = float(poll_seconds)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("pipeline_airflow.arrival.DeliveryArrivedTrigger", {"poll_seconds": self.poll_seconds})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from pipeline import steps
        from pipeline_airflow import s3_options_async

        while True:
            try:
                result = await asyncio.to_thread(steps.claim_arrivals, s3_options=await s3_options_async())
            except Exception as exc:  # noqa: BLE001 - a watcher must outlive a storage outage or a bad file
                self.log.error(
                    "listing the landing area failed (retrying in %ss): %s: %s",
                    self.poll_seconds,
                    type(exc).__name__,
                    exc,
                )
                result = {"claimed": [], "settling": [], "refused": []}
            for refused in result["refused"]:
                self.log.error("delivery refused, not scored on arrival: %s", refused)
            if result["settling"]:
                self.log.info("landed, still settling: %s", ", ".join(result["settling"]))
            if result["claimed"]:
                self.log.info("deliveries arrived in %s: %s", result.get("landing"), ", ".join(result["claimed"]))
                yield TriggerEvent(
                    {
                        "days": result["claimed"],
                        "attempts": result.get("attempts", {}),
                        "landing": result.get("landing"),
                    }
                )
                return
            await asyncio.sleep(self.poll_seconds)


def landing_asset():
    """The landing area of this params' dataset as an Asset; with a source of one file per day it
    has the watcher (a single file for every day never lands anything new)."""
    from airflow.sdk import Asset, AssetWatcher

    from pipeline.core.settings import load_config

    config = load_config()
    source = config.dataset.source
    watchers = []
    if "{date}" in source.uri:
        trigger = DeliveryArrivedTrigger(poll_seconds=config.scoring.arrival_poll_seconds)
        watchers.append(AssetWatcher(name=f"{config.dataset.name}_delivery_arrived", trigger=trigger))
    return Asset(name=f"{config.dataset.name}_landing", watchers=watchers)


def arrived_runs(context: dict[str, Any]) -> list[dict[str, Any]]:
    """One batch_scoring run per arrived day, from the asset events that triggered this run (or the
    `date` param of a manual run). A bad event fails the task at once (ArrivalEventError, no retries)."""
    from pipeline.data.arrival import days_of_events
    from pipeline_airflow import fail_fast_on_bad_data

    payloads = [
        (event.extra or {}).get("payload")
        for events in (context.get("triggering_asset_events") or {}).values()
        for event in events
    ]
    with fail_fast_on_bad_data():
        days = days_of_events(payloads, (context.get("params") or {}).get("date"))
    # The `date` param says which day a run scores. Its logical date is one second after the day's
    # midnight: midnight belongs to the scheduled run of the day (logical dates are unique per DAG,
    # and that run may exist already, skipped when nothing had landed), and batch_scoring's deadline
    # needs a logical date (a run without one cannot be created). A corrected re-delivery (attempt
    # n > 1) gets its own run, one second later again.
    return [
        {
            "trigger_run_id": f"arrival__{day}" + (f"__{attempt}" if attempt > 1 else ""),
            "logical_date": (
                dt.datetime.fromisoformat(f"{day}T00:00:00+00:00") + dt.timedelta(seconds=attempt)
            ).isoformat(),
            "conf": {"date": day},
        }
        for day, attempt in days
    ]
