"""Where everything lives under the storage root. The one place that builds keys.

    raw/<dataset>/dt=YYYY-MM-DD/              the day's batch (features, id; no target)
    labels/<dataset>/dt=YYYY-MM-DD/           labels of that day, published once they arrive
    quarantine/<dataset>/dt=YYYY-MM-DD/       a batch that failed validation + the result
    validation/<dataset>/dt=YYYY-MM-DD.json   the validation verdict for a raw partition
    snapshots/<dataset>/<snapshot_id>/        training snapshot (train + holdout rows)
    models/<model>/versions/<version>/        artifact, manifest, metrics, gate decision
    models/<model>/aliases/<alias>.json       e.g. champion -> version
    predictions/<model>/dt=YYYY-MM-DD/        scored batch, one row per input row
"""
from __future__ import annotations

import datetime as dt


def _dt(day: dt.date) -> str:
    return f"dt={day.isoformat()}"


def raw_partition(dataset: str, day: dt.date) -> str:
    return f"raw/{dataset}/{_dt(day)}"


def labels_partition(dataset: str, day: dt.date) -> str:
    return f"labels/{dataset}/{_dt(day)}"


def quarantine_partition(dataset: str, day: dt.date) -> str:
    return f"quarantine/{dataset}/{_dt(day)}"


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


def predictions_partition(model: str, day: dt.date) -> str:
    return f"predictions/{model}/{_dt(day)}"


def reports_root() -> str:
    return "reports"
