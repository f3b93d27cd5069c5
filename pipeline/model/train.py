"""Training: fit the sklearn Pipeline on the snapshot's train split, with cross-validation,
and store it as a candidate version in the registry."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable

import numpy as np
from sklearn import metrics as skm
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold

from pipeline.core.lineage import code_revision, library_versions
from pipeline.core.settings import PipelineConfig
from pipeline.core.storage import Storage
from pipeline.data.snapshot import DAY_COLUMN, SPLIT_COLUMN, read_snapshot
from pipeline.data.source import Schema
from pipeline.model import card, registry
from pipeline.model.cost import choose_threshold
from pipeline.model.features import build_model, feature_frame, target_vector

log = logging.getLogger(__name__)


def version_id(as_of: dt.date, snapshot_sha256: str, config: PipelineConfig, code_rev: str) -> str:
    """Readable and content-addressed: the same data, params and code give the same version,
    so a rerun of a training run does not mint a new model."""
    digest = hashlib.sha256(json.dumps([snapshot_sha256, config.fingerprint(), code_rev]).encode()).hexdigest()
    return f"{as_of:%Y%m%d}-{digest[:10]}"


# Builds the drift monitor's reference from the fitted model (monitoring.profile.reference_for): the
# monitoring stage owns what a reference holds; training only stores it with the version.
ReferenceBuilder = Callable[..., dict]


def train_candidate(
    config: PipelineConfig,
    storage: Storage,
    snapshot: dict,
    as_of: dt.date,
    build_reference: ReferenceBuilder,
    reason: str = "scheduled",
    trigger: dict | None = None,
) -> dict:
    """Train a candidate on the snapshot. `trigger`: the monitoring decision that asked for it (its
    drift period is recorded with whether this model's training window holds it)."""
    ds = config.dataset
    frame, snap_meta = read_snapshot(storage, ds.name, snapshot["snapshot_id"])
    schema = Schema.from_dict(snap_meta["schema"])
    train = frame[frame[SPLIT_COLUMN] == "train"]
    X, y = feature_frame(train, schema), target_vector(train[ds.target.column], ds.target.positive_class)

    code_rev = code_revision()
    version = version_id(as_of, snap_meta["sha256"], config, code_rev)
    if registry.version_exists(storage, config.model_name, version):
        manifest = registry.read_manifest(storage, config.model_name, version)
        log.info("version %s already trained from the same data, params and code", version)
        return {"version": version, "cv": manifest["cross_validation"], "reused": True}

    t = config.training
    folds = StratifiedKFold(n_splits=t.cv_folds, shuffle=True, random_state=t.random_state)
    log.info("cross-validating %s on %d rows, %d features (%d folds)", t.estimator, len(X), X.shape[1], t.cv_folds)
    # Out-of-fold predictions: fold metrics, and honest scores to choose the threshold on
    # (never the holdout, which judges the model).
    oof = np.zeros(len(y))
    fold_auc, fold_ap = [], []
    for fit_idx, val_idx in folds.split(X, y):
        fold_model = clone(build_model(schema, t)).fit(X.iloc[fit_idx], y[fit_idx])
        oof[val_idx] = fold_model.predict_proba(X.iloc[val_idx])[:, 1]
        fold_auc.append(skm.roc_auc_score(y[val_idx], oof[val_idx]))
        fold_ap.append(skm.average_precision_score(y[val_idx], oof[val_idx]))
    cv = {
        "folds": t.cv_folds,
        "roc_auc_mean": round(float(np.mean(fold_auc)), 6),
        "roc_auc_std": round(float(np.std(fold_auc)), 6),
        "pr_auc_mean": round(float(np.mean(fold_ap)), 6),
        "pr_auc_std": round(float(np.std(fold_ap)), 6),
    }
    if config.cost:
        selection = {
            "method": "minimum expected cost on out-of-fold training predictions",
            **choose_threshold(y, oof, config.cost),
        }
        threshold = selection["threshold"]
    else:
        threshold = config.scoring.threshold
        selection = {"method": "scoring.threshold from params (no cost section)", "threshold": threshold}
    log.info("decision threshold %.3f (%s)", threshold, selection["method"])
    model = build_model(schema, t).fit(X, y)
    # The drift monitor's reference: training columns, holdout scores, calibration and
    # importance, stored with the version so the weekly run never reloads the training set.
    holdout = frame[frame[SPLIT_COLUMN] == "holdout"]
    holdout_X = feature_frame(holdout, schema)
    holdout_y = target_vector(holdout[ds.target.column], ds.target.positive_class)
    rows_per_day = float(train.groupby(DAY_COLUMN).size().median()) if DAY_COLUMN in train else float(len(train))
    reference = build_reference(
        config,
        schema,
        train,
        holdout_X,
        holdout_y,
        model.predict_proba(holdout_X)[:, 1],
        model,
        rows_per_day,
        threshold,
    )
    manifest = registry.save_version(
        storage,
        config.model_name,
        version,
        model,
        {
            "dataset": ds.name,
            "trained_as_of": as_of.isoformat(),
            "reason": reason,
            "trigger": trigger_record(trigger, snap_meta["window"]),
            "data": {
                "snapshot_id": snap_meta["snapshot_id"],
                "snapshot_uri": snapshot["uri"],
                "snapshot_sha256": snap_meta["sha256"],
                "dvc": snapshot.get("dvc", {}),
                "window": snap_meta["window"],
                "train_rows": int(len(train)),
                "train_days": sorted(set(train[DAY_COLUMN])) if DAY_COLUMN in train else [],
                "holdout_rows": snap_meta["holdout_rows"],
            },
            "schema": schema.to_dict(),
            "data_contract": snap_meta.get("contract"),
            "positive_class": ds.target.positive_class,
            "threshold": threshold,
            "threshold_selection": selection,
            "params": config.as_dict(),
            "params_fingerprint": config.fingerprint(),
            "code_revision": code_rev,
            "libraries": library_versions(),
            "cross_validation": cv,
            "importance": {
                "method": "permutation (holdout ROC AUC drop, 5 repeats)",
                "features": reference["importance"],
            },
            "reference_profile": reference["manifest"],
        },
        extra_files=reference["files"],
    )
    log.info("stored candidate %s (cv roc_auc %.3f)", version, cv["roc_auc_mean"])
    card.refresh(config, storage, version)
    return {"version": version, "cv": cv, "reused": False, "artifact_sha256": manifest["artifact_sha256"]}


def trigger_record(trigger: dict | None, window: list[str]) -> dict | None:
    """The retraining's trigger with the training window and whether it holds the drifted days."""
    if not trigger:
        return None
    record = {**trigger, "training_window": [window[0], window[-1]]}
    period = trigger.get("drift_period")
    if period:
        record["drift_inside_training_window"] = window[0] <= period[0] and period[1] <= window[-1]
    return record
