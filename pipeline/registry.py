"""Model registry in storage: versions with artifact + manifest, and aliases.

    models/<model>/versions/<version>/model.joblib   the fitted sklearn Pipeline
    models/<model>/versions/<version>/manifest.json  sha256 of the artifact, data version
                                                     (snapshot sha256, DVC md5), params,
                                                     code revision, metrics, created time
    models/<model>/versions/<version>/gate.json      the gate decision
    models/<model>/aliases/champion.json             {"version": ..., "set_at": ..., "reason": ...}

The manifest is written after the artifact, so a version without a manifest is
incomplete and never listed. Loading checks the artifact's sha256 against the
manifest and refuses a mismatch.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging

import joblib

from . import layout
from .errors import PipelineError
from .storage import Storage

log = logging.getLogger(__name__)

ARTIFACT = "model.joblib"
MANIFEST = "manifest.json"
GATE = "gate.json"
CHAMPION = "champion"


class RegistryError(PipelineError, RuntimeError):
    """A registry operation was refused; the message says why."""


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def version_exists(storage: Storage, model: str, version: str) -> bool:
    return storage.exists(f"{layout.model_version(model, version)}/{MANIFEST}")


def save_version(storage: Storage, model: str, version: str, estimator, manifest: dict,
                 extra_files: dict[str, bytes] | None = None) -> dict:
    """Store a new version (artifact, `extra_files` such as the reference profile, then the
    manifest). An existing version is never overwritten."""
    key = layout.model_version(model, version)
    if version_exists(storage, model, version):
        log.info("version %s of %s exists; keeping it (versions are immutable)", version, model)
        return read_manifest(storage, model, version)
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    artifact = buffer.getvalue()
    manifest = {
        **manifest,
        "model": model,
        "version": version,
        "artifact": ARTIFACT,
        "artifact_sha256": hashlib.sha256(artifact).hexdigest(),
        "artifact_bytes": len(artifact),
        "created_at": _now(),
        "status": "candidate",
    }
    storage.write_bytes(f"{key}/{ARTIFACT}", artifact)
    for name, data in (extra_files or {}).items():
        storage.write_bytes(f"{key}/{name}", data)
    storage.write_json(f"{key}/{MANIFEST}", manifest)  # last: the version now exists
    return manifest


def read_manifest(storage: Storage, model: str, version: str) -> dict:
    try:
        return storage.read_json(f"{layout.model_version(model, version)}/{MANIFEST}")
    except FileNotFoundError as exc:
        raise RegistryError(f"model {model} has no version {version}") from exc


def update_manifest(storage: Storage, model: str, version: str, **fields) -> dict:
    manifest = read_manifest(storage, model, version)
    manifest.update(fields)
    storage.write_json(f"{layout.model_version(model, version)}/{MANIFEST}", manifest)
    return manifest


def load_model(storage: Storage, model: str, version: str):
    """The fitted estimator, after checking its bytes against the manifest's sha256."""
    manifest = read_manifest(storage, model, version)
    data = storage.read_bytes(f"{layout.model_version(model, version)}/{manifest['artifact']}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != manifest["artifact_sha256"]:
        raise RegistryError(f"artifact of {model} {version} does not match its manifest "
                            f"(sha256 {digest} != {manifest['artifact_sha256']}); refusing to load it")
    return joblib.load(io.BytesIO(data)), manifest


def list_versions(storage: Storage, model: str) -> list[dict]:
    out = []
    for version in storage.list_children(f"{layout.model_root(model)}/versions"):
        if version_exists(storage, model, version):
            out.append(read_manifest(storage, model, version))
    return sorted(out, key=lambda m: (m.get("created_at", ""), m["version"]))


def get_alias(storage: Storage, model: str, alias: str = CHAMPION) -> dict | None:
    try:
        return storage.read_json(layout.model_alias(model, alias))
    except FileNotFoundError:
        return None


def champion_version(storage: Storage, model: str) -> str:
    alias = get_alias(storage, model, CHAMPION)
    if not alias:
        raise RegistryError(f"model {model} has no champion yet: run the training_pipeline DAG "
                            f"(or `python -m pipeline train`) and let a candidate pass the gate")
    return alias["version"]


def set_alias(storage: Storage, model: str, version: str, alias: str, reason: str) -> dict:
    if not version_exists(storage, model, version):
        raise RegistryError(f"cannot point {alias} at missing version {version} of {model}")
    previous = get_alias(storage, model, alias)
    record = {"model": model, "alias": alias, "version": version, "set_at": _now(), "reason": reason,
              "previous_version": previous["version"] if previous else None}
    storage.write_json(layout.model_alias(model, alias), record)
    return record


def promote(storage: Storage, model: str, version: str, reason: str) -> dict:
    """Make `version` the champion. Only a version whose gate decision passed may be promoted."""
    try:
        gate = storage.read_json(f"{layout.model_version(model, version)}/{GATE}")
    except FileNotFoundError as exc:
        raise RegistryError(f"{model} {version} has no gate decision; evaluate and gate it first") from exc
    if not gate.get("passed"):
        raise RegistryError(f"{model} {version} failed its gate: {'; '.join(gate.get('reasons', []))}")
    record = set_alias(storage, model, version, CHAMPION, reason)
    update_manifest(storage, model, version, status="champion", promoted_at=record["set_at"])
    return record
