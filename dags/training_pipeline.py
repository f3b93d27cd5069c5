"""Training pipeline DAG: wiring only. Every task is one call into pipeline.steps."""

from __future__ import annotations

from airflow.sdk import Param, task

from pipeline_airflow import (
    actor,
    announce_champion,
    approval_operator,
    approval_required,
    champion_asset,
    date_param,
    pipeline_dag,
    run_date,
    run_step,
    skip,
)
from pipeline_airflow.alerting import GateRejectionNotifier

DOC = """
### Training pipeline

Trains a candidate model on the labelled days before the run's date, evaluates it
on a time-based holdout, applies the gate, and promotes it to **champion** only if
it passes.

`ingest` → `validate` → `snapshot` → `train` → `evaluate` → `gate` → `register`

| task | does | writes (under the storage root) |
|---|---|---|
| ingest | features + labels of every day in the training window (days already ingested are kept) | `raw/<dataset>/dt=…/`, `labels/<dataset>/dt=…/` |
| validate | Great Expectations suite on each day not validated yet; failures are quarantined and fail the task, naming the expectations | `validation/…`, `quarantine/…`, Data Docs in `great_expectations/uncommitted/data_docs/` |
| snapshot | training window joined to labels, time split train/holdout; `dvc add` + `dvc push` | `snapshots/<dataset>/<id>/`, `data.dvc` |
| train | cross-validation + fit of the sklearn Pipeline, stored as a candidate version | `models/<model>/versions/<version>/` |
| evaluate | holdout metrics + HTML report | `…/metrics.json`, `…/evaluation.html` |
| gate | floors, fairness limits, cost, and non-regression against the champion on the same holdout (paired bootstrap) | `…/gate.json` |
| approve | only with `gate.require_approval: true`: waits for a human (Approve / Reject with a reason) without holding a worker; a rejection skips `register` | – |
| register | moves `registry.promote_to` (`champion`, or `challenger` for shadow/canary) to the version if the gate passed; **skipped** (with the reasons) if not | `models/<model>/aliases/…`, `models/<model>/history/` |
| record_approval | only with approval: records who approved or rejected and why | `models/<model>/history/` |

**Params**: `as_of` (YYYY-MM-DD) trains as of that date instead of the logical date;
`reason` is recorded in the model manifest; a run triggered by drift_monitoring also records `drift_decision`: the drift period and whether this training window holds it.

**Rerun / backfill**: safe. Partitions are replaced atomically; a version is content-addressed
(same data, params and code give the same version), so a rerun does not mint a new model.
Bad data fails at once (no retries); storage errors are retried with backoff.
"""


@pipeline_dag(
    "training_pipeline",
    description="Weekly: train a candidate, evaluate it against the champion, gate, (approve,) register",
    schedule="@weekly",
    tags=["training"],
    doc_md=DOC,
    params={
        "as_of": date_param("Train as of this date (YYYY-MM-DD) instead of the run's logical date."),
        "reason": Param("scheduled", type="string", description="Why this model is trained; kept in its manifest."),
        "drift_decision": date_param(
            "Set by drift_monitoring: the date of the monitoring decision that triggered this run "
            "(its drift period is recorded in the manifest with whether the training window holds it)."
        ),
    },
)
def training_pipeline():
    @task
    def ingest(**context) -> dict:
        return run_step("ingest_window", run_date(context, "as_of"))

    @task
    def validate(_ingested: dict, **context) -> dict:
        return run_step("validate_window", run_date(context, "as_of"))

    @task
    def snapshot(_validated: dict, **context) -> dict:
        return run_step("snapshot", run_date(context, "as_of"))

    @task
    def train(snap: dict, **context) -> dict:
        params = context["params"]
        return run_step(
            "train", run_date(context, "as_of"), snap, reason=params["reason"], drift_decision=params["drift_decision"]
        )

    @task
    def evaluate(trained: dict) -> dict:
        return run_step("evaluate", trained["version"])

    @task
    def gate(evaluated: dict) -> dict:
        return run_step("gate", evaluated["version"])

    @task(on_skipped_callback=[GateRejectionNotifier()], outlets=[CHAMPION])
    def register(decision: dict, **context) -> dict:
        approval = context["ti"].xcom_pull(task_ids="approve", key="response") if needs_approval else None
        result = run_step(
            "register", decision["version"], actor=actor(context), run_id=context["run_id"], approval=approval
        )
        if not result["promoted"]:
            skip(
                f"gate rejected {decision['version']}, not promoted: {'; '.join(result['reasons'])}. "
                f"Champion stays {result['champion']}.",
                context,
            )
        announce_champion(context, CHAMPION, {**result, "metrics": decision.get("metrics")})
        return result

    decision = gate(evaluate(train(snapshot(validate(ingest())))))
    if not needs_approval:
        register(decision)
        return

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def gate_passed(decision: dict) -> bool:
        return bool(decision["passed"])  # a failed candidate is not put before a human

    approve = approval_operator(
        task_id="approve",
        subject="Promote {{ ti.xcom_pull(task_ids='gate')['version'] }}?",
        body=(
            "Candidate **{{ ti.xcom_pull(task_ids='gate')['version'] }}** passed the gate.\n\n"
            "Gate decision: `{{ ti.xcom_pull(task_ids='gate')['gate'] }}`\n\n"
            "Report: `{{ ti.xcom_pull(task_ids='gate')['gate'] | replace('gate.json', 'evaluation.html') }}`\n\n"
            "Approve to move the alias; Reject (give a reason) to keep the current champion."
        ),
        params={"reason": Param("", type="string", description="Why (recorded in the model history)")},
        retries=0,
    )

    @task(trigger_rule="none_failed")
    def record_approval(decision: dict, **context) -> dict:
        approval = context["ti"].xcom_pull(task_ids="approve", key="response")
        if not approval:
            skip("no approval was asked (the gate did not pass)")
        return run_step("record_approval", decision["version"], approval, run_id=context["run_id"])

    promoted = register(decision)
    gate_passed(decision) >> approve >> promoted >> record_approval(decision)


needs_approval = approval_required()
CHAMPION = champion_asset()
training_pipeline()
