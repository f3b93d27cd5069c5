"""Deliveries that landed and were not taken in yet: what starts scoring by data arrival.

For a source with one file per day (`dataset.source.uri` holding `{date}`), a day has *landed*
when its pattern matches at least one file in the landing area. A landed day is *new* when it
has no committed raw partition and no claim, and it is at most `scoring.arrival_lookback_days`
older than the newest landed day (older ones are backfills, started on purpose). It is *claimed*
once every one of its files has been unchanged for `scoring.arrival_settle_seconds` (a provider
still uploading is not read half-way): :func:`claim_arrivals` writes
`arrivals/<dataset>/dt=<day>.json` (a conditional write, so two watchers never both claim it)
before it returns the day, so a delivery starts scoring once however often the landing area is
polled. The claim names the delivery (its files and their times): a corrected re-delivery of a
day that was not taken in (its first delivery was quarantined) is a new delivery and is claimed
again, as attempt 2, 3, ...; a day whose raw partition is committed is never claimed again
(re-scoring a decided day is a deliberate rerun). A single file for every day never lands.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import re
import time

from pipeline.core import layout
from pipeline.core.errors import ArrivalEventError, OutsideLandingArea, PreconditionFailed
from pipeline.core.settings import PipelineConfig
from pipeline.core.storage import Storage
from pipeline.data.delivery import confined, day_pattern
from pipeline.data.source import is_per_day, landing_root

MAX_DAYS_PER_CLAIM = 31  # the rest are claimed on the next poll; more in one event is a backfill
DATE = "{date}"


def _template_regex(template: str) -> re.Pattern:
    """`.../dt={date}/*.csv` as a regex whose one group is the day."""
    glob_parts = [re.escape(part).replace(r"\*", "[^/]*").replace(r"\?", "[^/]") for part in template.split(DATE)]
    return re.compile(r"(\d{4}-\d{2}-\d{2})".join(glob_parts) + r"\Z")


def landed(config: PipelineConfig, storage: Storage) -> dict[dt.date, list[tuple[str, float]]]:
    """Every landed day with its files and their last-modified times (epoch seconds)."""
    src = config.dataset.source
    if not is_per_day(src) or DATE not in src.uri:
        return {}
    regex = _template_regex(src.uri)
    days: dict[dt.date, list[tuple[str, float]]] = {}
    for uri, modified in storage.list_external_modified(src.uri.replace(DATE, "*")):
        match = regex.match(uri)
        if not match:
            continue
        try:
            day = dt.date.fromisoformat(match.group(1))
        except ValueError:  # dt=2025-02-30: not a day; ingest would never read it either
            continue
        if fnmatch.fnmatchcase(uri, day_pattern(config, day)):
            days.setdefault(day, []).append((uri, modified))
    return days


def _delivery(files: list[tuple[str, float]]) -> str:
    """What identifies one delivery of a day: its files and their last-modified times."""
    return hashlib.sha256("\n".join(f"{uri}|{modified:.3f}" for uri, modified in sorted(files)).encode()).hexdigest()[
        :16
    ]


def claim_arrivals(config: PipelineConfig, storage: Storage, now: float | None = None) -> dict:
    """Claim the new, settled deliveries (oldest day first, at most MAX_DAYS_PER_CLAIM); returns the
    claimed days, their attempt numbers beyond the first, and the days still settling or refused."""
    now = time.time() if now is None else now
    ds = config.dataset
    days = landed(config, storage)
    result: dict = {"landing": landing_root(ds.source), "claimed": [], "attempts": {}, "settling": [], "refused": []}
    if not days:
        return result
    horizon = max(days) - dt.timedelta(days=config.scoring.arrival_lookback_days)
    claimed = set(map(layout.day_of_record, storage.list_keys(layout.arrivals_root(ds.name))))
    for day in sorted(d for d in days if d >= horizon):
        if len(result["claimed"]) >= MAX_DAYS_PER_CLAIM:
            break
        if storage.partition_exists(layout.raw_partition(ds.name, day)):
            continue  # taken in already (this watcher's run, the schedule, a backfill, training)
        files = days[day]
        try:
            for uri, _ in files:
                confined(uri, landing_root(ds.source))
        except OutsideLandingArea as exc:  # never read; the day's scheduled run fails on it and alerts
            result["refused"].append(f"{day}: {exc}")
            continue
        if any(now - modified < config.scoring.arrival_settle_seconds for _, modified in files):
            result["settling"].append(day.isoformat())
            continue
        key, delivery = layout.arrival_claim(ds.name, day), _delivery(files)
        previous, tag = storage.read_json_versioned(key) if day in claimed else (None, None)
        if previous and previous.get("delivery", delivery) == delivery:
            continue  # this delivery was claimed already (its run may still be going)
        attempt = int(previous.get("attempt", 1)) + 1 if previous else 1
        record = {
            "day": day.isoformat(),
            "files": [uri for uri, _ in files],
            "delivery": delivery,
            "attempt": attempt,
            "claimed_at": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(),
        }
        try:
            storage.write_json_if(key, record, tag)
        except PreconditionFailed:
            continue  # another watcher claimed it first
        result["claimed"].append(day.isoformat())
        if attempt > 1:
            result["attempts"][day.isoformat()] = attempt
    return result


def days_of_events(payloads: list, extra_day: str | None = None) -> list[tuple[str, int]]:
    """The (day, attempt) pairs the arrival events' payloads name (plus `extra_day`, attempt 1),
    checked and sorted: an asset event can also be posted by hand through the API, so each payload
    must hold a list of real ISO days (at most MAX_DAYS_PER_CLAIM in all) and whole attempts."""
    attempts: dict[str, int] = {str(extra_day)[:40]: 1} if extra_day else {}
    for i, payload in enumerate(payloads):
        listed = payload.get("days") if isinstance(payload, dict) else None
        tries = (payload.get("attempts") or {}) if isinstance(payload, dict) else {}
        if not isinstance(listed, list) or not isinstance(tries, dict):
            raise ArrivalEventError(
                f"arrival event {i + 1} of {len(payloads)} carries no list of days: {str(payload)[:200]}"
            )
        for day in listed:
            attempt = tries.get(str(day), 1)
            if type(attempt) is not int or not 1 <= attempt <= 1000:
                raise ArrivalEventError(
                    f"arrival event {i + 1}: attempt {str(attempt)[:40]!r} of {str(day)[:40]!r} is not a whole number in [1, 1000]"
                )
            attempts[str(day)[:40]] = max(attempt, attempts.get(str(day)[:40], 1))
    if len(attempts) > MAX_DAYS_PER_CLAIM:
        raise ArrivalEventError(
            f"{len(attempts)} days in one arrival (at most {MAX_DAYS_PER_CLAIM}); backfill them instead"
        )
    checked: dict[str, int] = {}
    for day, attempt in attempts.items():
        try:
            iso = dt.date.fromisoformat(day).isoformat()
        except ValueError:
            raise ArrivalEventError(f"arrival event names {day!r}, which is not a day (YYYY-MM-DD)") from None
        checked[iso] = max(attempt, checked.get(iso, 1))
    return sorted(checked.items())
