"""What was decided for one row on one day, and why, from storage alone: the row's score, decision,
threshold and model in every revision of the day, the model's lineage (training snapshot, its DVC
md5, the data contract, the threshold's method, the gate), who approved or promoted it, and the
day's validation verdict."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow.compute as pc

from pipeline.core import layout
from pipeline.core.errors import ArtefactMissing, PartitionNotFound
from pipeline.core.settings import PipelineConfig
from pipeline.core.storage import Storage
from pipeline.model import registry

ROW_FIELDS = ("score", "prediction", "threshold", "model_version", "decided_by", "scored_at", "input_publish_id")


def _row(storage: Storage, key: str, id_column: str, row_id: str) -> dict | None:
    table = storage.read_partition(key)
    if id_column not in table.column_names:
        return None
    found = table.filter(pc.equal(pc.cast(table[id_column], "string"), row_id)).to_pylist()
    if not found:
        return None
    return {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in found[0].items() if k in ROW_FIELDS}


def _model_facts(storage: Storage, model: str, version: str) -> dict[str, Any]:
    manifest = registry.read_manifest(storage, model, version)
    data = manifest.get("data", {})
    events = [h for h in registry.history(storage, model) if h.get("version") == version]
    return {
        "version": version,
        "trained_as_of": manifest.get("trained_as_of"),
        "training_snapshot": {k: data.get(k) for k in ("snapshot_id", "snapshot_uri", "snapshot_sha256", "window")},
        "dvc": data.get("dvc", {}),
        "data_contract": manifest.get("data_contract"),
        "threshold": manifest.get("threshold"),
        "threshold_method": (manifest.get("threshold_selection") or {}).get("method"),
        "gate": manifest.get("gate"),
        "code_revision": manifest.get("code_revision"),
        "approvals": [h for h in events if h.get("action") == "approval"],
        "promotions": [
            {k: h.get(k) for k in ("action", "alias", "at", "actor", "reason", "run_id")}
            for h in events
            if h.get("action") != "approval"
        ],
    }


def explain(config: PipelineConfig, storage: Storage, day: dt.date, row_id: str) -> dict:
    """Everything recorded about the decision for row `row_id` on `day` (raises if the day or the
    row was never scored)."""
    model, ds = config.model_name, config.dataset
    key = layout.predictions_partition(model, day)
    try:
        manifest = storage.read_manifest(key)
    except PartitionNotFound as exc:
        raise ArtefactMissing(f"{model} did not score {day}: no partition at {storage.uri(key)}") from exc
    id_column = ds.id_column or "row_key"
    current = _row(storage, key, id_column, str(row_id))
    if current is None:
        raise ArtefactMissing(f"no row with {id_column} = {row_id!r} in {storage.uri(key)}")
    revisions = []
    for rev in manifest.get("revisions", []):
        rev_key = layout.predictions_revision(model, day, rev["publish_id"])
        revisions.append({**rev, "row": _row(storage, rev_key, id_column, str(row_id))})
    versions = [current["model_version"]] + [r["model_version"] for r in revisions]
    validation_key = layout.validation_record(ds.name, day)
    validation = storage.read_json(validation_key) if storage.exists(validation_key) else None
    return {
        "day": day.isoformat(),
        id_column: row_id,
        "decision": current,
        "partition": {
            "uri": storage.uri(key),
            "publish_id": manifest.get("publish_id"),
            "scored_at": manifest.get("scored_at"),
        },
        "revisions": revisions,
        "models": {v: _model_facts(storage, model, v) for v in dict.fromkeys(versions)},
        "validation": {
            k: (validation or {}).get(k)
            for k in ("success", "raw_publish_id", "contract", "data_docs", "failed_expectations", "validated_at")
        },
    }
