"""`make demo-drift`: a drift week end to end on the embedded default, through Airflow.

1. If there is no champion with a reference profile yet, runs training_pipeline as `make demo` does.
2. Publishes a week of deliveries with the injected scenario (`demo.drift_scenario` on
   `demo.drift_days`, params.yaml) through `python -m pipeline simulate`'s code, then validates
   and scores each day with the champion.
3. Runs the drift_monitoring DAG as of `demo.drift_as_of` (dag.test() on the local SQLite DB).
4. If the policy decided to retrain, runs the training_pipeline run that drift_monitoring
   triggered (its conf carries `as_of` and the reason) and shows the new version's manifest.

`--scenario NAME` (`make demo-drift SCENARIO=NAME`) injects another scenario than params.yaml's, e.g.
`correlation_break`: every numeric column keeps its distribution, their correlations are lost; no
single column is flagged and the multivariate statistic is. `labels_stop`: the week and the days after
it are delivered without labels; once they are overdue the freshness DAG fails and on-call gets one
alert of kind freshness naming the labels zone.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import airflow_env  # noqa: E402

airflow_env.apply()

from demo import LOG, _step, logs_to, run_dag, say  # noqa: E402

# Scenarios whose effect shows in realized performance only (labels, label_delay_days later).
SEEN_BY_LABELS = ("segment_shift", "concept_drift")


def _triggered_run(dag_id: str, run_id: str):
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run_id).one_or_none()
        return (run.logical_date, dict(run.conf or {})) if run else None


def main(argv: list[str] | None = None) -> int:
    """Airflow's, the libraries' and the tasks' log lines go to the demo log file, like `make demo`."""
    import argparse

    from pipeline.monitoring.scenarios import SCENARIOS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=SCENARIOS, help="default: demo.drift_scenario in params.yaml")
    args = parser.parse_args(argv)
    _step(f"task logs in {LOG}")
    with logs_to(LOG):
        return _main(args.scenario)


def _main(scenario: str | None) -> int:
    from pipeline import steps
    from pipeline.core import layout
    from pipeline.core.settings import load_config
    from pipeline.core.storage import open_storage
    from pipeline.model import registry

    config = load_config()
    storage = open_storage(config.storage.root)
    model = config.model_name
    as_of, days = config.demo.drift_as_of, list(config.demo.drift_days)
    if not as_of or not days:
        raise SystemExit("params.yaml has no demo.drift_as_of / demo.drift_days")
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=subprocess.DEVNULL)
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(airflow_env.ROOT / "dags"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")

    champion = registry.get_alias(storage, model)
    has_profile = champion and storage.exists(
        f"{layout.model_version(model, champion['version'])}/reference_profile.json"
    )
    if not has_profile:
        _step(f"No champion with a reference profile yet: training_pipeline as of {config.demo.train_as_of}")
        run_dag(bag, "training_pipeline", config.demo.train_as_of)
    champion = registry.champion_version(storage, model)

    scenario = scenario or config.demo.drift_scenario
    _deliver(steps, days, scenario)
    if scenario in SEEN_BY_LABELS or scenario == "labels_stop":
        # What this scenario changes shows in realized performance only, and labels arrive
        # label_delay_days after a day: the following days are delivered (unchanged) and the
        # drift run looks back once the drifted days' labels are in (or, for labels_stop, are overdue).
        delay = dt.timedelta(days=config.dataset.batching.label_delay_days)
        later = [d + delay for d in days]
        following = "labels_stop" if scenario == "labels_stop" else "none"
        _step(
            f"{scenario} shows once labels are due ({delay.days} days later): deliveries ({following}) for {later[0]} .. {later[-1]}"
        )
        _deliver(steps, later, following)
        as_of = later[-1] + dt.timedelta(days=1)

    _step(f"drift_monitoring as of {as_of} (champion {champion})")
    from pipeline.monitoring.findings import pages

    try:
        run_dag(bag, "drift_monitoring", as_of)
    except SystemExit:
        # The findings task fails on purpose when the decision holds something to page on-call for.
        if not storage.exists(layout.monitoring_decision(model, as_of)):
            raise
        paged = pages(storage.read_json(layout.monitoring_decision(model, as_of)))
        if not paged:
            raise
        say(f"    findings: {len(paged)} paged on-call (the findings task failed on purpose; alert kind monitoring)")
    decision = storage.read_json(layout.monitoring_decision(model, as_of))
    say(f"    decision: {decision['reason']}")
    say(f"    drifted columns (calibrated): {', '.join(decision['drifted_features']) or 'none'}")
    from pipeline.monitoring.multivariate import describe

    say(f"    {describe(decision.get('multivariate_drift'))}")
    for alert in decision["alerts"]:
        say(f"    alert: {alert}")

    if scenario == "labels_stop":
        _freshness(bag, steps, storage, as_of)

    new_version = None
    if decision["retrain"]:
        triggered = _triggered_run("training_pipeline", f"drift_retrain__{as_of.isoformat()}")
        if not triggered:
            raise SystemExit("drift_monitoring decided to retrain but no training_pipeline run was triggered")
        logical_date, conf = triggered
        _step(f"training_pipeline triggered by drift_monitoring (conf {conf})")
        dag = bag.dags["training_pipeline"]
        run = dag.test(logical_date=logical_date, run_conf=conf)
        state = str(getattr(run.state, "value", run.state))
        say(f"    training_pipeline: {state}")
        if state != "success":
            raise SystemExit(f"the triggered training run did not succeed; see the task logs in {LOG}")
        versions = [m for m in registry.list_versions(storage, model) if m.get("reason") == conf["reason"]]
        new_version = versions[-1] if versions else None

    _step("Done. Where things are:")
    say(f"    drift report   {decision['report']}")
    say(f"    statistics     {decision['statistics']}/part-00000.parquet")
    say(f"    decision       {storage.uri(layout.monitoring_decision(model, as_of))}")
    if new_version:
        say(
            f"    new version    {new_version['version']} (status {new_version['status']}); its manifest's "
            f"reason: {new_version['reason']!r}"
        )
        say(f"    manifest       {storage.uri(layout.model_version(model, new_version['version']))}/manifest.json")
    say(f"    champion now   {registry.champion_version(storage, model)}")
    query = (
        f"select feature, statistic, value, noise_p95, calibrated_pvalue, calibrated_flag "
        f"from '{decision['statistics']}/*.parquet' where is_primary order by calibrated_pvalue limit 5"
    )
    say(f'    try:  {Path(sys.executable).parent}/python -c "import duckdb; duckdb.sql(\\"{query}\\").show()"')
    return 0


def _freshness(bag, steps, storage, as_of: dt.date) -> None:
    """The freshness DAG as of `as_of` must fail on the labels zone and leave one open freshness alert."""
    _step(f"freshness as of {as_of}: are the labels that were due by now in?")
    try:
        run_dag(bag, "freshness", as_of)
        failed = False
    except SystemExit:  # the check fails on purpose when a zone is late
        failed = True
    status = steps.status(as_of)
    width = max(len(zone["zone"]) for zone in status["zones"])
    for zone in status["zones"]:
        say(
            f"    {zone['zone']:<{width}}  latest {zone['latest'] or '-':<10}  {'LATE: ' if zone['late'] else ''}{zone['why']}"
        )
    if not failed or "labels" not in status["late"]:
        raise SystemExit(f"labels stopped arriving but the freshness check did not alert (late: {status['late']})")
    ledger = "alerts/open/freshness/check_freshness"
    for key in storage.list_keys(ledger):
        alert = storage.read_json(key)
        say(f"    alert to on-call (kind {alert['kind']}, sent {alert['count']}x): {alert['summary'][:300]}")


def _deliver(steps, days: list, scenario: str) -> None:
    """Publish the days' deliveries with the scenario injected, then validate and score each."""
    import time

    _step(f"Deliveries with injected {scenario} for {days[0]} .. {days[-1]}")
    sim = steps.simulate([d.isoformat() for d in days], scenario)
    say(
        f"    column {sim['column']}, strength {sim['strength']}, "
        f"{sum(d['rows'] for d in sim['days'])} rows over {len(days)} days"
    )
    for i, day in enumerate(days, 1):
        started = time.monotonic()
        try:
            steps.validate(day)
            scored = steps.score(day)
            say(
                f"    [{i}/{len(days)}] {day}: validated, {scored['rows']} rows scored by {scored['model_version']} "
                f"in {time.monotonic() - started:.1f}s"
            )
        except Exception as exc:  # a quarantined delivery is part of some scenarios; the monitor reports it
            say(f"    [{i}/{len(days)}] {day}: not scored: {type(exc).__name__}: {str(exc).splitlines()[0]}")


if __name__ == "__main__":
    raise SystemExit(main())
