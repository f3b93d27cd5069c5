"""Scoring by data arrival: wiring only. The watcher and the event parsing are in pipeline_airflow.arrival."""

from __future__ import annotations

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import task

from pipeline_airflow import date_param, pipeline_dag
from pipeline_airflow.arrival import arrived_runs, landing_asset

DOC = """
### Scoring on arrival

Starts **batch_scoring** for a day as soon as its delivery lands, instead of waiting for the daily
schedule (which stays as the fallback).

The landing area (`dataset.source.uri` with `{date}`, local or S3) is an Asset whose **watcher**
runs in the triggerer: every `scoring.arrival_poll_seconds` it lists the landing area and, for each
day whose files have been unchanged for `scoring.arrival_settle_seconds`, that has no committed raw
partition yet and is at most `scoring.arrival_lookback_days` older than the newest landed day, it
stores a claim (`arrivals/<dataset>/dt=….json`: the files, when) and fires one asset event with the
days. This DAG then starts one batch_scoring run per day (run id `arrival__YYYY-MM-DD`, param
`date`, logical date one second after the day's midnight, which belongs to the day's scheduled run);
a run that exists already is skipped.

`days_landed` → `start_scoring` ×N (mapped)

**Manual run**: give `date` to start scoring that day now. **Single-file sources** (the demo) never
land anything new: the asset has no watcher, and this DAG runs only by hand.
A corrected re-delivery of a day that was not taken in (its first delivery was quarantined) is a
new delivery: it is claimed again and scored by run `arrival__YYYY-MM-DD__2` (3, ...). A day whose
raw partition is committed is never started again by an arrival: re-scoring a decided day is a
deliberate rerun of its batch_scoring run (its tasks replace the partitions atomically).
"""


@pipeline_dag(
    "scoring_on_arrival",
    description="Starts batch_scoring for a day when its delivery lands (an Asset watcher on the landing area)",
    schedule=[landing_asset()],
    tags=["scoring"],
    doc_md=DOC,
    params={"date": date_param("Start scoring this day (YYYY-MM-DD) now.")},
)
def scoring_on_arrival():
    @task
    def days_landed(**context) -> list[dict]:
        return arrived_runs(context)

    TriggerDagRunOperator.partial(
        task_id="start_scoring", trigger_dag_id="batch_scoring", skip_when_already_exists=True
    ).expand_kwargs(days_landed())


scoring_on_arrival()
