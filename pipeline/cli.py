"""Command line: ``python -m pipeline <command>``. Each command is one call into
:mod:`pipeline.steps` and prints its JSON result (``--out FILE`` also writes it,
for DVC stage outputs). Dates default to the ``demo:`` section of params.yaml.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pipeline.core.errors import ConfigError, PipelineError
from pipeline.monitoring.scenarios import SCENARIOS


def _emit(result, out: str | None, command: str = "", as_json: bool = True, limit: int | None = None) -> None:
    """Tables for the listing commands (audit, quarantine, contract, models), JSON otherwise or with --json."""
    text = json.dumps(result, indent=2, sort_keys=True, default=str)
    shown = False
    if not as_json:
        from pipeline.cli_tables import render

        shown = render(command, result, limit)
    if not shown:
        print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")


def _read(path: str) -> dict:
    return json.loads(Path(path).read_text())


def _demo_dates(params: str | None):
    from pipeline import steps

    config, _ = steps.open_pipeline(params)
    if not config.demo.train_as_of:
        raise ConfigError("no date given and params has no demo.train_as_of")
    return config.demo.train_as_of, list(config.demo.score_days)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--params", help="params file (default: $PIPELINE_PARAMS or ./params.yaml)")
    p.add_argument("--out", help="also write the JSON result to this file")
    p.add_argument("--json", action="store_true", help="print JSON (the listing commands print tables by default)")
    p.add_argument("--limit", type=int, default=30, help="listing commands: show the latest N rows (0: all)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("ingest", help="ingest days (default: demo training window + scoring days)")
    s.add_argument("--date", action="append", help="a day to ingest (repeatable)")
    s = sub.add_parser("validate", help="validate days with Great Expectations (default: demo days)")
    s.add_argument("--date", action="append")
    s = sub.add_parser("train", help="snapshot the training window, fit and store a candidate")
    s.add_argument("--as-of")
    s.add_argument("--reason", default="manual")
    s = sub.add_parser("evaluate", help="holdout metrics and HTML report for a version")
    s.add_argument("--version")
    s.add_argument("--from", dest="from_file", help="JSON written by `train --out`")
    s = sub.add_parser("gate", help="apply the gate and promote the version if it passes")
    s.add_argument("--version")
    s.add_argument("--from", dest="from_file")
    s = sub.add_parser(
        "score", help="score days: with the models that decided them before, else the champion (default: demo days)"
    )
    s.add_argument("--date", action="append")
    s.add_argument("--model-version", help="score with this version (the day's earlier decisions become a revision)")
    s.add_argument("--reason", default="", help="why another version decides the day (recorded)")
    s = sub.add_parser("run-training", help="the whole training pipeline without Airflow")
    s.add_argument("--as-of")
    s = sub.add_parser(
        "monitor", help="drift, quality and performance of the week before --as-of; the retraining decision"
    )
    s.add_argument("--as-of")
    s = sub.add_parser(
        "simulate",
        help="publish deliveries with injected drift (or, with --false-alarms N, "
        "measure how often the policy retrains over N weeks without drift)",
    )
    s.add_argument("--scenario", default=None, choices=SCENARIOS)
    s.add_argument("--date", action="append", help="a day to deliver (repeatable; default demo.drift_days)")
    s.add_argument("--column", help="column to change (default: chosen from the champion's importance)")
    s.add_argument("--strength", type=float, help="size of the change (see python -m pipeline.monitoring.simulate)")
    s.add_argument("--break-kind", default="null", choices=["null", "unit"])
    s.add_argument("--false-alarms", type=int, metavar="WEEKS")
    s = sub.add_parser("run-scoring", help="ingest, validate and score days, like the batch_scoring DAG")
    s.add_argument("--date", action="append", required=True)
    s.add_argument("--model-version", help="score with this version (the day's earlier decisions become a revision)")
    s.add_argument("--reason", default="", help="why another version decides the day (recorded)")
    s = sub.add_parser("contract", help="the frozen data contract: show it, or update it from params")
    s.add_argument("action", choices=["show", "update", "history"])
    s.add_argument("--reason", default="", help="update: why the contract changes (recorded)")
    s.add_argument("--from-day", help="update: re-read column types from this day's delivery")
    s = sub.add_parser("quarantine", help="quarantined deliveries and their reasons")
    s.add_argument("action", choices=["list"])
    s.add_argument("--dataset")
    s.add_argument("--since", help="first day (YYYY-MM-DD)")
    s = sub.add_parser(
        "audit",
        help="the audit trail: quarantines, gate decisions, promotions, rollbacks, retraining triggers, alerts; "
        "`verify` checks its hash chain",
    )
    s.add_argument("action", choices=["list", "verify"])
    s.add_argument("--since", help="first day (YYYY-MM-DD)")
    # The kinds are checked by pipeline/ops/audit.py (KINDS), which `--help` does not import.
    s.add_argument("--kind", help="quarantine, gate, promotion, rollback, registry, rescoring, retraining_trigger, …")
    s = sub.add_parser(
        "gc",
        help="remove staging dirs, temp files and unreferenced objects older than "
        "maintenance.gc_min_age_hours (never committed data)",
    )
    s.add_argument("--older-than-hours", type=float, help="override maintenance.gc_min_age_hours")
    s.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    s = sub.add_parser(
        "dvc-restore",
        help="put a model's training snapshot back into the DVC workspace (writes its .dvc file, then `dvc pull`)",
    )
    s.add_argument("version", nargs="?", help="model version (default: the champion)")
    s.add_argument("--no-pull", action="store_true", help="only write the .dvc file")
    s = sub.add_parser("gx-init", help="write the expectation suite and checkpoint built from the data contract")
    s = sub.add_parser("explain", help="one row's decision on a day: score, threshold, model, lineage, revisions")
    s.add_argument("--date", required=True)
    s.add_argument("--id", required=True, dest="row_id", help="the row's id (or derived row key)")
    s = sub.add_parser("status", help="freshness of every zone: deliveries, labels, predictions, champion, drift runs")
    s.add_argument("--date", help="as of this day (YYYY-MM-DD; default today, UTC)")
    s = sub.add_parser("params-schema", help="the JSON schema of params.yaml (for editors; params.schema.json)")
    s = sub.add_parser("models", help="registry: list, history, promote, rollback, challenger, compare-shadow")
    s.add_argument(
        "action",
        choices=[
            "list",
            "history",
            "promote",
            "rollback",
            "challenger",
            "clear-challenger",
            "compare-shadow",
            "resign",
            "card",
        ],
    )
    s.add_argument("version", nargs="?", help="the version (promote, challenger)")
    s.add_argument("--reason", default="", help="why (required for moves; recorded in the history)")
    s.add_argument("--force", action="store_true", help="promote although its gate did not pass (recorded)")
    s.add_argument("--to", help="rollback target (default: the previous champion in the history)")
    s.add_argument("--since", help="compare-shadow: first day (YYYY-MM-DD)")
    return p


def run(args: argparse.Namespace) -> dict | list:
    # Imported here, not at the top: `--help` and a bad argument answer without loading the
    # pipeline's stages (pandas, scikit-learn, Great Expectations).
    from pipeline import steps

    params = args.params
    cmd = args.command
    if cmd == "params-schema":
        return steps.params_schema()
    if cmd == "status":
        return steps.status(args.date, params)
    if cmd == "explain":
        return steps.explain(args.date, args.row_id, params)
    if cmd == "ingest":
        if args.date:
            return [steps.ingest(d, params) for d in args.date]
        as_of, score_days = _demo_dates(params)
        return {
            "window": steps.ingest_window(as_of, params),
            "scoring_days": [steps.ingest(d, params) for d in score_days],
        }
    if cmd == "validate":
        if args.date:
            return [steps.validate(d, params) for d in args.date]
        as_of, score_days = _demo_dates(params)
        return {
            "window": steps.validate_window(as_of, params),
            "scoring_days": [steps.validate(d, params) for d in score_days],
        }
    if cmd == "train":
        as_of = args.as_of or _demo_dates(params)[0]
        snap = steps.snapshot(as_of, params)
        return {"snapshot": snap, "train": steps.train(as_of, snap, args.reason, params)}
    if cmd in ("evaluate", "gate"):
        version = args.version or (_read(args.from_file)["train"]["version"] if args.from_file else None)
        if not version:
            raise SystemExit(f"{cmd}: give --version or --from")
        if cmd == "evaluate":
            return steps.evaluate(version, params)
        return {"gate": steps.gate(version, params), "register": steps.register(version, params=params)}
    if cmd == "score":
        days = args.date or [str(d) for d in _demo_dates(params)[1]]
        return [steps.score(d, params, version=args.model_version, reason=args.reason) for d in days]
    if cmd == "run-training":
        return steps.run_training(args.as_of or _demo_dates(params)[0], params)
    if cmd == "monitor":
        config, _ = steps.open_pipeline(params)
        as_of = args.as_of or config.demo.drift_as_of
        if not as_of:
            raise ConfigError("monitor: give --as-of (params has no demo.drift_as_of)")
        return steps.monitor_drift(as_of, params)
    if cmd == "simulate":
        if args.false_alarms:
            return steps.false_alarms(args.false_alarms, params)
        config, _ = steps.open_pipeline(params)
        days = args.date or [str(d) for d in config.demo.drift_days]
        if not days:
            raise ConfigError("simulate: give --date (params has no demo.drift_days)")
        return steps.simulate(
            days, args.scenario or config.demo.drift_scenario, args.column, args.strength, args.break_kind, params
        )
    if cmd == "run-scoring":
        return [steps.run_scoring(d, params, version=args.model_version, reason=args.reason) for d in args.date]
    if cmd == "contract":
        if args.action == "update":
            return steps.contract_update(args.reason, args.from_day, params)
        return steps.contract_show(params, history=args.action == "history")
    if cmd == "quarantine":
        return steps.quarantine_list(args.dataset, args.since, params)
    if cmd == "gc":
        return steps.collect_garbage(args.older_than_hours, args.dry_run, params)
    if cmd == "dvc-restore":
        return steps.dvc_restore(args.version, pull=not args.no_pull, params=params)
    if cmd == "audit":
        if args.action == "verify":
            return steps.audit_verify(params)
        return steps.audit_list(args.since, args.kind, params)
    if cmd == "gx-init":
        return steps.gx_init(params)
    if cmd == "models":
        if args.action == "compare-shadow":
            return steps.compare_shadow(args.since, params)
        if args.action == "resign":
            return steps.registry_action("resign", params=params)
        if args.action == "card":
            return steps.model_card(args.version, params)
        action = {"challenger": "set_challenger", "clear-challenger": "clear_challenger"}.get(args.action, args.action)
        if args.action == "promote" and args.force and not args.reason.strip():
            raise ConfigError("models promote --force needs --reason (it is recorded)")
        version = args.to if args.action == "rollback" else args.version
        return steps.registry_action(action, version, args.reason, force=args.force, params=params)
    raise SystemExit(f"unknown command {cmd}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("great_expectations", "dvc", "botocore", "matplotlib", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if sys.stderr.isatty() and not args.verbose:  # progress bars for people, log lines for logs
        from pipeline.ops import progress

        progress.install(progress.RichBars())
    try:
        command = f"{args.command} {args.action}" if getattr(args, "action", "") == "verify" else args.command
        result = run(args)
        _emit(result, args.out, command, as_json=args.json, limit=args.limit or None)
    except (PipelineError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    late = result.get("late") if args.command == "status" and isinstance(result, dict) else None
    if late:  # for cron and health checks
        print(f"late: {', '.join(late)}", file=sys.stderr)
        return 1
    return 0
