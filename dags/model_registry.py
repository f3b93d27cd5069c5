"""Model registry DAG (manual): wiring only. One call into pipeline.steps."""

from __future__ import annotations

from airflow.sdk import Param, task

from pipeline_airflow import actor, pipeline_dag, run_step

DOC = """
### Model registry

Manual runs only (*Trigger* with params). Moves the registry's aliases, with a reason that is
recorded, like `python -m pipeline models …`:

| action | does |
|---|---|
| promote | makes `version` the champion; refused if its gate did not pass, unless `force` (recorded) |
| rollback | points the champion back at `version`, or by default at the previous champion in the history |
| set_challenger | makes `version` the challenger: `batch_scoring` scores it in shadow (and canary, with `scoring.canary_share`) |
| clear_challenger | removes the challenger |
| history | shows the append-only history (who, what, when, why, run id) in the task log / XCom |

Every attempt, including refused ones, is appended to `models/<model>/history/`.
Alias moves are compare-and-swap writes: of two concurrent moves one wins, the other is refused.
"""


@pipeline_dag(
    "model_registry",
    description="Manual: promote, roll back, set or clear the challenger; every move recorded with a reason",
    schedule=None,
    default_args={"owner": "ml-platform", "retries": 0},
    tags=["registry"],
    doc_md=DOC,
    params={
        "action": Param(
            "history",
            type="string",
            enum=["promote", "rollback", "set_challenger", "clear_challenger", "history"],
            description="What to do.",
        ),
        "version": Param(
            None,
            type=["null", "string"],
            description="The version (promote, set_challenger; rollback target, optional).",
        ),
        # Optional in the form (history needs none); the task refuses a move without a reason.
        "reason": Param(
            None,
            type=["null", "string"],
            description="Why: needed for promote, rollback, set_challenger and clear_challenger; kept in the history.",
        ),
        "force": Param(
            False,
            type=["boolean", "null"],
            description="Promote although the candidate's gate did not pass (recorded, with the reason).",
        ),
    },
)
def model_registry():
    @task
    def apply(**context) -> dict:
        p = context["params"]
        return run_step(
            "registry_action",
            p["action"],
            p.get("version"),
            p.get("reason") or "",
            force=bool(p.get("force")),
            actor=actor(context),
            run_id=context["run_id"],
        )

    apply()


model_registry()
