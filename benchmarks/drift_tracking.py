"""How well estimated performance (CBPE) tracks realized performance on the demo data, and
how often each policy view retrains on weeks without drift.

    .venv/bin/python benchmarks/drift_tracking.py [--root DIR] [--weeks 100]

Trains the demo champion as of demo.train_as_of in a fresh storage root (default: a temp
dir), scores every later day of the demo data, lets the labels arrive (as of 45 days after
the last day), and runs the monitor once with a performance window covering all scored
days. Writes benchmarks/results/drift_tracking.json: per ISO week the realized and the
estimated ROC AUC / precision / recall, their differences, and the false-alarm rates.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", help="storage root (default: a new temp dir)")
    parser.add_argument("--weeks", type=int, default=100)
    args = parser.parse_args()
    root = args.root or tempfile.mkdtemp(prefix="drift-tracking-")
    os.environ["PIPELINE_STORAGE_URI"] = root
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["dvc"] = {"enabled": False}
    params["dataset"]["source"]["uri"] = str(ROOT / params["dataset"]["source"]["uri"])
    params["validation"]["gx_root"] = str(Path(root) / "great_expectations")
    path = Path(root) / "params.yaml"
    Path(root).mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(params))

    from pipeline import steps
    from pipeline.core.settings import load_config
    from pipeline.core.storage import open_storage
    from pipeline.data.ingest import ingest_labels
    from pipeline.monitoring.monitor import run_monitoring

    config = load_config(path)
    storage = open_storage(config.storage.root)
    started = time.monotonic()
    print(f"training as of {config.demo.train_as_of} in {root}", flush=True)
    steps.run_training(config.demo.train_as_of, str(path))
    first = config.demo.train_as_of + dt.timedelta(days=1)
    last = config.dataset.batching.start_date + dt.timedelta(days=config.dataset.batching.days - 1)
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    labels_as_of = last + dt.timedelta(days=45)
    for i, day in enumerate(days, 1):
        steps.ingest(day, str(path))
        steps.validate(day, str(path))
        steps.score(day, str(path))
        ingest_labels(config, storage, day, as_of=labels_as_of)
        print(f"  [{i}/{len(days)}] scored {day}", flush=True)
    as_of = labels_as_of
    # A performance window reaching back to the first scored day.
    wide = config.model_copy(
        update={
            "monitoring": config.monitoring.model_copy(update={"performance_window_days": (as_of - first).days + 1})
        }
    )
    run_monitoring(wide, storage, as_of)
    record = storage.read_json(f"monitoring/{config.model_name}/decisions/dt={as_of.isoformat()}.json")
    # The monitor's own weekly figures (pooled rows), realized and estimated side by side.
    import numpy as np

    series = []
    for week, w in sorted(record["performance_by_week"].items()):
        if not w["realized"]:
            continue
        series.append(
            {
                "week": week,
                "rows": int(w["realized"]["rows"]),
                **{f"realized_{k}": round(w["realized"][k], 4) for k in ("roc_auc", "precision", "recall")},
                **{f"estimated_{k}": round(w["estimated"][k], 4) for k in ("roc_auc", "precision", "recall")},
            }
        )
    if not series:
        raise SystemExit("no labelled week in the monitor's performance: nothing to compare")
    diffs = {
        k: float(np.mean([abs(r[f"estimated_{k}"] - r[f"realized_{k}"]) for r in series]))
        for k in ("roc_auc", "precision", "recall")
    }
    false_alarms = steps.false_alarms(args.weeks, str(path))
    result = {
        "model_version": record["champion_version"],
        "scored_days": [days[0].isoformat(), days[-1].isoformat()],
        "weekly": series,
        "mean_abs_difference": diffs,
        "false_alarms": false_alarms,
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    out = ROOT / "benchmarks" / "results" / "drift_tracking.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for r in series:
        print(
            f"  {r['week']}  rows {r['rows']:5d}  ROC AUC realized {r['realized_roc_auc']:.3f} "
            f"estimated {r['estimated_roc_auc']:.3f}  precision {r['realized_precision']:.3f} / "
            f"{r['estimated_precision']:.3f}  recall {r['realized_recall']:.3f} / {r['estimated_recall']:.3f}"
        )
    print(f"mean |estimated - realized|: {diffs}")
    print(f"false alarms over {args.weeks} weeks: {false_alarms['retrain_rate']}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
