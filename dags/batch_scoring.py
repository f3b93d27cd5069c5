"""Batch scoring DAG: wiring only. Every task is one call into pipeline.steps."""

from __future__ import annotations

from airflow.sdk import Param, task

from pipeline_airflow import actor, date_param, pipeline_dag, run_date, run_step
from pipeline_airflow.alerting import scoring_deadline

DOC = """
### Batch scoring

Scores the day's batch with the current **champion** model.

`ingest` → `validate` → `plan_scoring` → `score_range` ×N (mapped) → `score`

| task | does | writes (under the storage root) |
|---|---|---|
| ingest | reads the day's delivery, checks it against the data contract, types it row by row and stages it (and publishes the labels that arrive that day); a delivery that does not fit goes to quarantine | `staging/<dataset>/dt=…/<delivery>/`, `labels/…`, `quarantine/<dataset>/dt=…/<delivery>/` |
| validate | Great Expectations suite of the contract on the staged delivery; passes → published as the day's partition, fails → quarantined (the committed partition stays) and the task fails naming the expectations, shares and the failing Data Docs page | `raw/<dataset>/dt=YYYY-MM-DD/`, `validation/…`, `quarantine/…` |
| plan_scoring | pins the champion (and challenger) version and the scoring time, and splits the day's Parquet into row-group ranges of about `scoring.rows_per_task` rows | – |
| score_range | one mapped task per range: scores it and stages the part (invisible to readers) | `_staging/parts/…` |
| score | publishes the staged parts as the day's partition, atomically, in one step | `predictions/<model>/dt=YYYY-MM-DD/` |

**Output for analysts**: Parquet with columns `<id>`, `score` (probability of the positive
class), `prediction` (1 = positive class at the model's threshold), `model_version`,
`scored_at`; one row per input row. Read with e.g.
`duckdb -c "select * from '<root>/predictions/<model>/*/*.parquet'"`.

**Params**: `date` (YYYY-MM-DD) scores that day instead of the logical date; `model_version`
scores it with that version (with a `reason`): the day's earlier decisions are kept under
`predictions_revisions/<model>/dt=…/rev=…/` and the change is audited.

**Rerun / backfill**: safe. A day once decided is re-scored by the same models (never silently
by a newer champion); each task replaces its day's partition atomically, so readers see the old
complete partition or the new one.
`airflow backfill create --dag-id batch_scoring --from-date … --to-date … --reprocess-behavior completed --max-active-runs 4`
(the DAG's own limit; Airflow's backfill default runs 10 at once).
Bad data fails at once (no retries); storage errors are retried with backoff.
"""


@pipeline_dag(
    "batch_scoring",
    description="Daily: ingest, validate and score the day with the champion (and challenger in shadow/canary)",
    schedule="@daily",
    max_active_runs=4,
    # Lateness: a scheduled run of day D not done by D + alerts.scoring_deadline_hours alerts on-call.
    deadline=scoring_deadline(),
    tags=["scoring"],
    doc_md=DOC,
    params={
        "date": date_param("Score this day (YYYY-MM-DD) instead of the run's logical date."),
        "model_version": Param(
            None,
            type=["null", "string"],
            description="Score with this model version. Empty: the models that decided the day before "
            "(a rerun never changes past decisions), else the champion. Another version keeps the "
            "earlier decisions as a revision.",
        ),
        # Optional (null): a form field typed "string" alone would be required, blocking a plain manual run.
        "reason": Param(None, type=["null", "string"], description="Why another version decides the day (recorded)."),
    },
)
def batch_scoring():
    @task
    def ingest(**context) -> dict:
        return run_step("ingest", run_date(context))

    @task
    def validate(ingested: dict, **context) -> dict:
        # Audit exactly the delivery this run staged (write-audit-publish).
        return run_step("validate", run_date(context), delivery_id=ingested.get("delivery_id"))

    @task
    def plan_scoring(_validated: dict, **context) -> list[dict]:
        return run_step("scoring_jobs", run_date(context), version=context["params"].get("model_version"))

    @task(map_index_template="{{ range_label }}")
    def score_range(job: dict) -> dict:
        from airflow.sdk import get_current_context

        get_current_context()["range_label"] = job["label"]
        return run_step("score_range", job["plan"], job["range"])

    @task
    def score(jobs: list[dict], parts: list[dict], **context) -> dict:
        reason = context["params"].get("reason") or ""
        return run_step("publish_scoring", jobs[0]["plan"], parts, reason=reason, actor=actor(context))

    # One job per row-group range; each carries the plan (a few KB: versions, ranges), never data.
    jobs = plan_scoring(validate(ingest()))
    score(jobs, score_range.expand(job=jobs))


batch_scoring()
