"""Scoring by data arrival, without a scheduler: which landed days are claimed (once, settled,
confined to the landing area), the watcher's event, and the runs the DAG derives from events.
The real scheduler and triggerer run it in tests/test_stack.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import time
from types import SimpleNamespace

import pyarrow as pa
import pytest
from conftest import write_params

from pipeline import steps
from pipeline.core import layout
from pipeline.core.settings import load_config
from pipeline.core.storage import open_storage

DAYS = ["2025-03-01", "2025-03-02", "2025-03-03"]


@pytest.fixture
def landing(tmp_path, monkeypatch):
    root = tmp_path / "landing"
    params = write_params(
        tmp_path,
        dataset={
            **load_config().dataset.model_dump(mode="json"),
            "source": {"uri": str(root / "dt={date}" / "*.csv"), "format": "csv"},
        },
        scoring={"arrival_settle_seconds": 60, "arrival_lookback_days": 7},
    )
    monkeypatch.setenv("PIPELINE_PARAMS", str(params))
    config = load_config(params)
    return root, str(params), config, open_storage(config.storage.root)


def _land(root, day: str, age_seconds: float = 3600, name: str = "delivery.csv") -> None:
    target = root / f"dt={day}" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("ID,LIMIT_BAL\n1,1000\n")
    then = time.time() - age_seconds
    os.utime(target, (then, then))


def test_each_settled_new_day_is_claimed_once(landing):
    root, params, config, storage = landing
    for day in DAYS:
        _land(root, day)
    _land(root, "2025-03-04", age_seconds=5)  # still being uploaded
    (root / "dt=2025-02-30").mkdir()  # not a day
    (root / "dt=2025-02-30" / "x.csv").write_text("ID\n1\n")
    _land(root, "2025-03-01", name="notes.txt")  # does not match *.csv
    claims = layout.arrivals_root(config.dataset.name)
    for stray in ("notes.json", "dt=2025-02-30.json", "dt=2025-03-02.txt"):  # not claims: never read as one
        storage.write_json(f"{claims}/{stray}", {"day": "2025-03-02"})
    assert [
        layout.day_of_record(f"{claims}/{k}") for k in ("notes.json", "dt=2025-02-30.json", "dt=2025-03-02.txt")
    ] == [
        None,
        None,
        None,
    ]

    first = steps.claim_arrivals(params)
    assert first["claimed"] == DAYS and first["settling"] == ["2025-03-04"] and first["refused"] == []
    claim = storage.read_json(layout.arrival_claim(config.dataset.name, dt.date(2025, 3, 1)))
    assert claim["files"] == [str(root / "dt=2025-03-01" / "delivery.csv")]
    assert steps.claim_arrivals(params)["claimed"] == []  # polled again: nothing new

    os.utime(root / "dt=2025-03-04" / "delivery.csv", (time.time() - 120, time.time() - 120))
    assert steps.claim_arrivals(params)["claimed"] == ["2025-03-04"]


def test_a_corrected_redelivery_of_a_day_not_taken_in_is_claimed_again(landing):
    """The first delivery of 2025-03-02 was quarantined (no raw partition): the provider's corrected
    delivery is a new delivery, claimed as attempt 2; the same files polled again are not."""
    root, params, config, storage = landing
    _land(root, "2025-03-02", age_seconds=7200)
    assert steps.claim_arrivals(params)["claimed"] == ["2025-03-02"]
    _land(root, "2025-03-02", age_seconds=600)  # replaced by the provider
    again = steps.claim_arrivals(params)
    assert again["claimed"] == ["2025-03-02"] and again["attempts"] == {"2025-03-02": 2}
    claim = storage.read_json(layout.arrival_claim(config.dataset.name, dt.date(2025, 3, 2)))
    assert claim["attempt"] == 2
    assert steps.claim_arrivals(params)["claimed"] == []
    # Once taken in, a change in the landing area no longer starts anything (re-scoring is a rerun).
    storage.write_partition(
        layout.raw_partition(config.dataset.name, dt.date(2025, 3, 2)),
        {"part-00000.parquet": pa.table({"ID": [1]})},
        manifest={"day": "2025-03-02"},
    )
    _land(root, "2025-03-02", age_seconds=300)
    assert steps.claim_arrivals(params)["claimed"] == []


def test_days_taken_in_or_too_old_are_not_claimed(landing):
    root, params, config, storage = landing
    for day in ["2025-02-01", "2025-03-02", "2025-03-05", "2025-03-10"]:
        _land(root, day)
    storage.write_partition(
        layout.raw_partition(config.dataset.name, dt.date(2025, 3, 10)),
        {"part-00000.parquet": pa.table({"ID": [1]})},
        manifest={"day": "2025-03-10"},
    )
    # 2025-03-10 has its raw partition (scored by the schedule); 2025-03-02 and 2025-02-01 are more
    # than the 7 lookback days older than it.
    assert steps.claim_arrivals(params)["claimed"] == ["2025-03-05"]


def test_a_file_outside_the_landing_area_is_refused(landing, tmp_path):
    root, params, config, storage = landing
    secret = tmp_path / "secret.csv"
    secret.write_text("ID\n1\n")
    (root / "dt=2025-03-01").mkdir(parents=True)
    os.symlink(secret, root / "dt=2025-03-01" / "delivery.csv")
    then = time.time() - 3600
    os.utime(secret, (then, then))
    result = steps.claim_arrivals(params)
    assert result["claimed"] == [] and result["refused"][0].startswith("2025-03-01: ")
    assert "outside the landing area" in result["refused"][0]
    assert not storage.exists(layout.arrival_claim(config.dataset.name, dt.date(2025, 3, 1)))


def test_a_single_file_source_never_lands_anything(tmp_path, monkeypatch):
    params = write_params(tmp_path)
    assert steps.claim_arrivals(str(params))["claimed"] == []


def test_the_watcher_fires_once_with_the_claimed_days(landing):
    """The trigger the triggerer runs: it claims and fires one event, then (re-run after firing,
    as the triggerer does) finds nothing new and keeps polling."""
    from pipeline_airflow.arrival import DeliveryArrivedTrigger

    root, params, config, storage = landing
    _land(root, "2025-03-02")
    trigger = DeliveryArrivedTrigger(poll_seconds=0.05)
    assert trigger.serialize() == ("pipeline_airflow.arrival.DeliveryArrivedTrigger", {"poll_seconds": 0.05})

    async def first_event(trigger):
        async for event in trigger.run():
            return event.payload

    payload = asyncio.run(asyncio.wait_for(first_event(trigger), timeout=20))
    assert payload == {"days": ["2025-03-02"], "attempts": {}, "landing": str(root)}
    with pytest.raises(TimeoutError):  # claimed: the restarted watcher does not fire it again
        asyncio.run(asyncio.wait_for(first_event(DeliveryArrivedTrigger(poll_seconds=0.05)), timeout=0.5))


def _event(payload) -> SimpleNamespace:
    return SimpleNamespace(extra={"from_trigger": True, "payload": payload})


def test_runs_come_from_the_events_days_and_bad_events_fail_without_retry():
    from airflow.sdk.exceptions import AirflowFailException

    from pipeline_airflow.arrival import arrived_runs

    context = {
        "params": {"date": None},
        "triggering_asset_events": {
            "landing": [_event({"days": ["2025-03-03", "2025-03-02"]}), _event({"days": ["2025-03-03"]})]
        },
    }
    assert arrived_runs(context) == [
        {
            "trigger_run_id": "arrival__2025-03-02",
            "logical_date": "2025-03-02T00:00:01+00:00",
            "conf": {"date": "2025-03-02"},
        },
        {
            "trigger_run_id": "arrival__2025-03-03",
            "logical_date": "2025-03-03T00:00:01+00:00",
            "conf": {"date": "2025-03-03"},
        },
    ]
    assert [r["conf"]["date"] for r in arrived_runs({"params": {"date": "2025-03-09"}})] == ["2025-03-09"]
    redelivered = {
        "params": {},
        "triggering_asset_events": {"landing": [_event({"days": ["2025-03-02"], "attempts": {"2025-03-02": 2}})]},
    }
    assert arrived_runs(redelivered) == [
        {
            "trigger_run_id": "arrival__2025-03-02__2",
            "logical_date": "2025-03-02T00:00:02+00:00",
            "conf": {"date": "2025-03-02"},
        }
    ]
    for bad, message in (
        ({"days": ["2025-03-02/../x"]}, "'2025-03-02/../x', which is not a day"),
        ({"days": "2025-03-02"}, "carries no list of days"),
        ("not a mapping", "carries no list of days"),
        ({"days": ["2025-03-02"], "attempts": {"2025-03-02": 1e9}}, "is not a whole number in [1, 1000]"),
        ({"days": ["2025-03-02"], "attempts": {"2025-03-02": True}}, "is not a whole number in [1, 1000]"),
        ({"days": [f"2025-01-{d:02d}" for d in range(1, 32)] + ["2025-02-01"]}, "32 days in one arrival"),
    ):
        with pytest.raises(AirflowFailException, match=f"ArrivalEventError: .*{re.escape(message)}"):
            arrived_runs({"params": {}, "triggering_asset_events": {"landing": [_event(bad)]}})


def test_deliveries_landing_on_s3_are_claimed_once(s3_env, tmp_path, monkeypatch):
    """The landing area and storage on an S3 endpoint (moto over HTTP): object times come from the
    listing, claims are conditional creates in the bucket."""
    bucket, client = s3_env["bucket"], s3_env["client"]
    for day in ("2025-03-01", "2025-03-02"):
        client.put_object(Bucket=bucket, Key=f"landing/dt={day}/delivery.csv", Body=b"ID,LIMIT_BAL\n1,1000\n")
    client.put_object(Bucket=bucket, Key="landing/dt=2025-03-02/readme.txt", Body=b"not a delivery")
    params = write_params(
        tmp_path,
        dataset={
            **load_config().dataset.model_dump(mode="json"),
            "source": {"uri": f"s3://{bucket}/landing/dt={{date}}/*.csv", "format": "csv"},
        },
        scoring={"arrival_settle_seconds": 0},
    )
    monkeypatch.setenv("PIPELINE_STORAGE_URI", f"s3://{bucket}/storage")
    result = steps.claim_arrivals(str(params))
    assert result["claimed"] == ["2025-03-01", "2025-03-02"] and result["landing"] == f"s3://{bucket}/landing"
    claim = client.get_object(Bucket=bucket, Key="storage/arrivals/credit_default/dt=2025-03-02.json")["Body"].read()
    assert f"s3://{bucket}/landing/dt=2025-03-02/delivery.csv" in claim.decode() and "readme" not in claim.decode()
    assert steps.claim_arrivals(str(params))["claimed"] == []
