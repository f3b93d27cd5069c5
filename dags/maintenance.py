"""Maintenance DAG: wiring only. Every task is one call into pipeline.steps."""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, task

from pipeline_airflow import pipeline_dag, run_step

DOC = """
### Maintenance

Daily garbage collection of what killed or failed writers leave behind. **Never touches
committed data**: files a partition's manifest lists, manifests, records, aliases.

| removed when older than `maintenance.gc_min_age_hours` (24 h) | left by |
|---|---|
| `_staging/…` (staging dirs, mapped scoring's staged parts) | a killed task, a failed mapped run |
| `.<name>.<id>.tmp` files | an interrupted local write (e.g. disk full) |
| objects in a partition that its `_manifest.json` does not list | an S3 writer killed mid-publish |
| expired publish leases `_publishing.json` | an S3 writer killed mid-publish |
| `pipeline-stage-*` in the worker's temp dir | a killed S3 publish (this worker only) |

**Params**: `older_than_hours` overrides the age; `dry_run` lists without removing.
The same from a shell: `python -m pipeline gc [--older-than-hours H] [--dry-run]`.
Each run that removes something writes an audit record (`kind: maintenance`).
"""


@pipeline_dag(
    "maintenance",
    description="Daily: remove staging leftovers, temp files and unreferenced objects (never committed data)",
    schedule="@daily",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    tags=["maintenance"],
    doc_md=DOC,
    params={
        "older_than_hours": Param(
            None,
            type=["null", "number"],
            minimum=0,
            description="Age above which leftovers are removed (default: params.yaml).",
        ),
        "dry_run": Param(False, type="boolean", description="Only list what would be removed."),
    },
)
def maintenance():
    @task
    def collect_garbage(**context) -> dict:
        params = context["params"]
        return run_step("collect_garbage", params.get("older_than_hours"), bool(params.get("dry_run")))

    collect_garbage()


maintenance()
