"""Where everything lives under the storage root. The one place that builds keys.

raw/<dataset>/dt=YYYY-MM-DD/              the day's batch (features, id; no target)
labels/<dataset>/dt=YYYY-MM-DD/           labels of that day, published once they arrive
staging/<dataset>/dt=YYYY-MM-DD/<delivery>/     a typed delivery awaiting validation (write-audit-publish)
quarantine/<dataset>/dt=YYYY-MM-DD/<delivery>/  a failed delivery (or its bad rows) + verdict.json
contracts/<dataset>/v0001.json, current.json    the frozen data contract and its versions
cache/source/<dataset>/<fingerprint>/     a single-file source split by day (read once)
arrivals/<dataset>/dt=YYYY-MM-DD.json     a landed delivery claimed for scoring (scoring by data arrival)
validation/<dataset>/dt=YYYY-MM-DD.json   the validation verdict for a raw partition
snapshots/<dataset>/<snapshot_id>/        training snapshot (train + holdout rows)
models/<model>/versions/<version>/        artifact, manifest, metrics, gate decision
models/<model>/aliases/<alias>.json       champion | challenger -> version
models/<model>/history/<time>-<id>.json   append-only alias moves, refusals, approvals
predictions/<model>/dt=YYYY-MM-DD/        scored batch, one row per input row
predictions_shadow/<model>/dt=YYYY-MM-DD/ the challenger's scores of the day (shadow)
monitoring/<model>/statistics/dt=…/       drift, quality and performance statistics of a run
monitoring/<model>/reports/dt=….html      the drift report of a run
monitoring/<model>/decisions/dt=….json    the retraining decision of a run
monitoring/<model>/calibration/<version>/ noise floors per sample size (cache)
"""

from __future__ import annotations

import datetime as dt


def _dt(day: dt.date) -> str:
    return f"dt={day.isoformat()}"


def day_of(name: str) -> dt.date | None:
    """The day a `dt=YYYY-MM-DD` directory name stands for (None for any other name)."""
    if not name.startswith("dt="):
        return None
    try:
        return dt.date.fromisoformat(name[3:])
    except ValueError:
        return None


def day_of_record(key: str) -> dt.date | None:
    """The day of a one-file-per-day record (`.../dt=YYYY-MM-DD.json`; None for any other key)."""
    name = key.rsplit("/", 1)[-1]
    return day_of(name.removesuffix(".json")) if name.endswith(".json") else None


def quarantine_root(dataset: str | None = None) -> str:
    return f"quarantine/{dataset}" if dataset else "quarantine"


def shadow_predictions_root(model: str) -> str:
    return f"predictions_shadow/{model}"


def audit_day(day: dt.date | str | None = None) -> str:
    return f"audit/{day}" if day else "audit"


def audit_record(day: str, seq: int) -> str:
    return f"{audit_day(day)}/{seq:06d}.json"


def raw_root(dataset: str) -> str:
    return f"raw/{dataset}"


def raw_partition(dataset: str, day: dt.date) -> str:
    return f"{raw_root(dataset)}/{_dt(day)}"


def arrivals_root(dataset: str) -> str:
    return f"arrivals/{dataset}"


def arrival_claim(dataset: str, day: dt.date) -> str:
    return f"{arrivals_root(dataset)}/{_dt(day)}.json"


def labels_root(dataset: str) -> str:
    return f"labels/{dataset}"


def labels_partition(dataset: str, day: dt.date) -> str:
    return f"{labels_root(dataset)}/{_dt(day)}"


def quarantine_day(dataset: str, day: dt.date) -> str:
    return f"{quarantine_root(dataset)}/{_dt(day)}"


def quarantine_delivery(dataset: str, day: dt.date, delivery_id: str) -> str:
    return f"quarantine/{dataset}/{_dt(day)}/{delivery_id}"


def staging_day(dataset: str, day: dt.date) -> str:
    return f"staging/{dataset}/{_dt(day)}"


def staging_delivery(dataset: str, day: dt.date, delivery_id: str) -> str:
    return f"staging/{dataset}/{_dt(day)}/{delivery_id}"


def contract_root(dataset: str) -> str:
    return f"contracts/{dataset}"


def contract_version(dataset: str, version: int) -> str:
    return f"contracts/{dataset}/v{version:04d}.json"


def contract_current(dataset: str) -> str:
    return f"contracts/{dataset}/current.json"


def source_index(dataset: str, fingerprint: str) -> str:
    return f"cache/source/{dataset}/{fingerprint}"


def validation_record(dataset: str, day: dt.date) -> str:
    return f"validation/{dataset}/{_dt(day)}.json"


def snapshot_partition(dataset: str, snapshot_id: str) -> str:
    return f"snapshots/{dataset}/{snapshot_id}"


def model_root(model: str) -> str:
    return f"models/{model}"


def model_version(model: str, version: str) -> str:
    return f"models/{model}/versions/{version}"


def model_alias(model: str, alias: str) -> str:
    return f"models/{model}/aliases/{alias}.json"


def model_history(model: str) -> str:
    return f"models/{model}/history"


def predictions_root(model: str) -> str:
    return f"predictions/{model}"


def predictions_partition(model: str, day: dt.date) -> str:
    return f"{predictions_root(model)}/{_dt(day)}"


def predictions_revision(model: str, day: dt.date, publish_id: str) -> str:
    """Decisions of a day that other decisions replaced, kept readable (outside predictions/)."""
    return f"predictions_revisions/{model}/{_dt(day)}/rev={publish_id}"


def shadow_predictions_partition(model: str, day: dt.date) -> str:
    """Challenger's scores of a day: never the production decision, never under predictions/."""
    return f"{shadow_predictions_root(model)}/{_dt(day)}"


def reports_root() -> str:
    return "reports"


def monitoring_statistics(model: str, as_of: dt.date) -> str:
    return f"monitoring/{model}/statistics/{_dt(as_of)}"


def monitoring_report(model: str, as_of: dt.date) -> str:
    return f"monitoring/{model}/reports/{_dt(as_of)}.html"


def monitoring_decisions(model: str) -> str:
    return f"monitoring/{model}/decisions"


def monitoring_decision(model: str, as_of: dt.date) -> str:
    return f"{monitoring_decisions(model)}/{_dt(as_of)}.json"


def monitoring_calibration(model: str, version: str, sample_size: int) -> str:
    return f"monitoring/{model}/calibration/{version}/n={sample_size}.parquet"
