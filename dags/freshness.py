"""Freshness DAG: wiring only. One call into pipeline.steps."""

from __future__ import annotations

import pendulum
from airflow.sdk import task

from pipeline_airflow import date_param, pipeline_dag, run_date, run_step

DOC = """
### Freshness

Daily: is every zone as recent as it should be? Fails (one **freshness** alert to on-call, deduped
per cause; "resolved" on the next passing run) naming each late zone, by how many days, against
which limit (`monitoring.freshness` in params.yaml), and where to look:

| zone | late when |
|---|---|
| raw deliveries | the newest published day is more than `raw_max_age_days` behind |
| labels | the newest labelled day is more than `label_tolerance_days` behind today - `label_delay_days` |
| predictions | the newest scored day is more than `predictions_max_age_days` behind |
| champion | trained more than `champion_max_age_days` ago, or its reference predates the current contract |
| drift monitoring | the last weekly run is more than `monitor_max_age_days` old |

The same table from a shell: `python -m pipeline status [--date D]` (exit 1 when a zone is late).
"""


@pipeline_dag(
    "freshness",
    description="Daily: deliveries, labels, predictions, champion and drift runs against their freshness limits",
    schedule="@daily",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    tags=["monitoring"],
    doc_md=DOC,
    params={"date": date_param("Check as of this date (YYYY-MM-DD) instead of the logical date.")},
)
def freshness():
    @task
    def check_freshness(**context) -> dict:
        return run_step("check_freshness", run_date(context, "date"))

    check_freshness()


freshness()
