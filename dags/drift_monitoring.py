"""Drift monitoring DAG: wiring only. The monitoring step is one call into pipeline.steps."""

from __future__ import annotations

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import task

from pipeline_airflow import date_param, pipeline_dag, run_date, run_step

DOC = """
### Drift monitoring

Once a week, compares the last `monitoring.window_days` scored days with the champion's
**reference profile** (stored with the model at training time) and decides whether to retrain.

`monitor` → `retraining_needed` → `trigger_training`, and `monitor` → `findings`

| task | does | writes (under the storage root) |
|---|---|---|
| monitor | drift per feature (PSI, KS, Wasserstein / Jensen-Shannon, χ²) under fixed thresholds and calibrated noise floors (bootstrap + Benjamini-Hochberg); multivariate drift (PCA reconstruction error); prediction drift; performance and fairness per segment (TPR vs training, disparities by week); data quality (missing, out of range, unseen categories, unit changes, rows per day, quarantined deliveries); realized performance where labels arrived, estimated (CBPE) where not; the policy decision | `monitoring/<model>/statistics/dt=…/` (Parquet, one row per feature × statistic), `monitoring/<model>/reports/dt=….html`, `monitoring/<model>/decisions/dt=….json` |
| findings | fails (one on-call alert of kind **monitoring**, deduped, resolved by the next run without findings) when the decision holds a data-quality break, a segment breach or a retraining suppressed by its limit; a cooldown does not page | – |
| retraining_needed | continues only if the policy says retrain (skips otherwise) | – |
| trigger_training | triggers `training_pipeline` with `as_of`, the decision's `reason` and `drift_decision` (recorded in the new model's manifest: the drift period and whether its training window holds it); run id `drift_retrain__<as_of>`, so a rerun does not retrain twice | a `training_pipeline` run |

**Policy** (`monitoring.policy` in params.yaml): retrain when an important feature (or the features
jointly: multivariate) drifts in `persistence_runs` consecutive runs, or realized/estimated performance
falls below its floor (a segment breach alerts, and retrains only with `retrain_on_segment_breach`);
**never on a data-quality break** (the decision carries alerts instead); `cooldown_days` and
`max_retrains` per `period_days` cap retraining.

**Params**: `as_of` (YYYY-MM-DD): monitor the week before this date instead of the logical date.

**Rerun / backfill**: safe. A rerun for a date replaces its statistics, report and decision.
"""


@pipeline_dag(
    "drift_monitoring",
    description="Weekly: drift, data quality and performance vs the reference; triggers retraining by policy",
    schedule="@weekly",
    tags=["monitoring"],
    doc_md=DOC,
    params={
        "as_of": date_param("Monitor the scored days before this date (YYYY-MM-DD) instead of the logical date."),
    },
)
def drift_monitoring():
    @task
    def monitor(**context) -> dict:
        return run_step("monitor_drift", run_date(context, "as_of"), run_id=context["run_id"])

    @task
    def findings(decision: dict) -> dict:
        return run_step("monitoring_findings", decision["as_of"])

    @task.short_circuit
    def retraining_needed(decision: dict) -> bool:
        return bool(decision["retrain"])

    trigger = TriggerDagRunOperator(
        task_id="trigger_training",
        trigger_dag_id="training_pipeline",
        trigger_run_id="drift_retrain__{{ ti.xcom_pull(task_ids='monitor')['as_of'] }}",
        conf={
            "as_of": "{{ ti.xcom_pull(task_ids='monitor')['as_of'] }}",
            "reason": "drift_monitoring {{ ti.xcom_pull(task_ids='monitor')['as_of'] }}: "
            "{{ ti.xcom_pull(task_ids='monitor')['reason'] }}",
            "drift_decision": "{{ ti.xcom_pull(task_ids='monitor')['as_of'] }}",
        },
        skip_when_already_exists=True,
    )
    decision = monitor()
    findings(decision)
    retraining_needed(decision) >> trigger


drift_monitoring()
