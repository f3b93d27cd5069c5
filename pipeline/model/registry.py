"""Model registry in storage: versions with artifact + manifest, and aliases.

    models/<model>/versions/<version>/model.joblib   the fitted sklearn Pipeline
    models/<model>/versions/<version>/manifest.json  sha256 of the artifact, data version
                                                     (snapshot sha256, DVC md5), params,
                                                     code revision, metrics, created time
    models/<model>/versions/<version>/gate.json      the gate decision
    models/<model>/aliases/<alias>.json              champion | challenger -> version, who, why, when
    models/<model>/history/<time>-<id>.json          append-only: every alias move, refusal and approval

Versions are immutable (the artifact and its lineage; evaluation results are attached once).
A version's status is derived from the aliases and the history, never stored in it, so
there is exactly one champion. Alias moves are compare-and-swap writes (S3 If-Match /
If-None-Match; a lock on local storage): of two concurrent moves one wins and the other
is refused and recorded as refused.

The manifest is written after the artifact, so a version without a manifest is
incomplete and never listed. Loading checks the artifact's sha256 against the
manifest and refuses a mismatch.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import io
import logging
import os
import re
import uuid
from typing import Any

import joblib

from pipeline.core import layout
from pipeline.core.errors import (
    PreconditionFailed,
    RegistryError,
)
from pipeline.core.storage import Storage
from pipeline.model import signing

log = logging.getLogger(__name__)

ARTIFACT = "model.joblib"
MANIFEST = "manifest.json"
GATE = "gate.json"
CHAMPION = "champion"
CHALLENGER = "challenger"
ALIASES = (CHAMPION, CHALLENGER)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# What a version id may look like (train.version_id writes <yyyymmdd>-<hex>): a name from a CLI flag, a
# DAG param or a stored record never walks the storage tree.
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def checked_version(model: str, version: str) -> str:
    if not isinstance(version, str) or not _VERSION.match(version) or ".." in version:
        raise RegistryError(f"{version!r} is not a version id of {model} (see `python -m pipeline models list`)")
    return version


def version_exists(storage: Storage, model: str, version: str) -> bool:
    return storage.exists(f"{layout.model_version(model, checked_version(model, version))}/{MANIFEST}")


def save_version(
    storage: Storage, model: str, version: str, estimator, manifest: dict, extra_files: dict[str, bytes] | None = None
) -> dict:
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
        "files_sha256": {name: hashlib.sha256(data).hexdigest() for name, data in sorted((extra_files or {}).items())},
        "created_at": _now(),
    }
    manifest["signature"] = signing.sign(manifest)
    storage.write_bytes(f"{key}/{ARTIFACT}", artifact)
    for name, data in (extra_files or {}).items():
        storage.write_bytes(f"{key}/{name}", data)
    storage.write_json(f"{key}/{MANIFEST}", manifest)  # last: the version now exists
    return manifest


def read_manifest(storage: Storage, model: str, version: str) -> dict:
    try:
        return storage.read_json(f"{layout.model_version(model, checked_version(model, version))}/{MANIFEST}")
    except FileNotFoundError as exc:
        raise RegistryError(f"model {model} has no version {version}") from exc


def update_manifest(storage: Storage, model: str, version: str, **fields) -> dict:
    """Attach results (evaluation, gate) to a version; the signed fields never change."""
    manifest = read_manifest(storage, model, version)
    frozen = sorted(set(fields) & set(signing.SIGNED_FIELDS + ("signature",)))
    if frozen:
        raise RegistryError(f"{model} {version}: {frozen} are signed and never change")
    manifest.update(fields)
    storage.write_json(f"{layout.model_version(model, version)}/{MANIFEST}", manifest)
    return manifest


def load_model(storage: Storage, model: str, version: str):
    """The fitted estimator, after verifying the manifest's signature (a key outside storage) and
    the artifact's bytes against the signed sha256: nothing is unpickled before both hold."""
    manifest = read_manifest(storage, model, version)
    signing.verify(
        manifest, f"model {model} version {version} ({storage.uri(layout.model_version(model, version))}/{MANIFEST})"
    )
    if manifest.get("artifact") != ARTIFACT:
        raise RegistryError(f"model {model} {version}: unexpected artifact name {manifest.get('artifact')!r}")
    data = storage.read_bytes(f"{layout.model_version(model, version)}/{ARTIFACT}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != manifest["artifact_sha256"] or len(data) != manifest.get("artifact_bytes"):
        raise RegistryError(
            f"artifact of {model} {version} does not match its manifest "
            f"(sha256 {digest} != {manifest['artifact_sha256']}, signed); refusing to load it"
        )
    return joblib.load(io.BytesIO(data)), manifest


def resign(storage: Storage, model: str) -> list[dict]:
    """Key rotation: sign every version that verifies under an accepted key again with the
    current key. Versions that verify under none are listed as refused, never signed."""
    out = []
    for version in storage.list_children(f"{layout.model_root(model)}/versions"):
        if not version_exists(storage, model, version):
            continue
        manifest = read_manifest(storage, model, version)
        where = f"model {model} version {version}"
        try:
            old = signing.verify(manifest, where)
        except signing.SignatureError as exc:
            out.append({"version": version, "resigned": False, "why": str(exc)})
            continue
        manifest["signature"] = signing.sign(manifest)
        storage.write_json(f"{layout.model_version(model, version)}/{MANIFEST}", manifest)
        out.append({"version": version, "resigned": True, "from_key": old, "to_key": manifest["signature"]["key_id"]})
    return out


def default_actor() -> str:
    return os.environ.get("PIPELINE_ACTOR") or getpass.getuser()


def get_alias(storage: Storage, model: str, alias: str = CHAMPION) -> dict | None:
    try:
        return storage.read_json(layout.model_alias(model, alias))
    except FileNotFoundError:
        return None


def champion_version(storage: Storage, model: str) -> str:
    alias = get_alias(storage, model, CHAMPION)
    if not alias:
        raise RegistryError(
            f"model {model} has no champion yet: run the training_pipeline DAG "
            f"(or `python -m pipeline train`) and let a candidate pass the gate"
        )
    return alias["version"]


def history(storage: Storage, model: str) -> list[dict]:
    """Every alias move, refusal and approval, oldest first."""
    keys = sorted(k for k in storage.list_keys(layout.model_history(model)) if k.endswith(".json"))
    return [storage.read_json(k) for k in keys]


def champion_at(storage: Storage, model: str, moment: dt.datetime) -> str | None:
    """The champion in force at `moment`, from the history of alias moves (None before the first)."""
    version = None
    for event in history(storage, model):
        if (
            event.get("alias") == CHAMPION
            and event.get("outcome") == "done"
            and event.get("at", "") <= moment.isoformat()
        ):
            version = event.get("version")
    return version


def record_event(storage: Storage, model: str, event: dict) -> dict:
    """Append one record (a new object per event: nothing is rewritten)."""
    now = dt.datetime.now(dt.UTC)
    record = {"model": model, "at": now.isoformat(timespec="microseconds"), **event}
    storage.write_json(f"{layout.model_history(model)}/{now:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.json", record)
    from pipeline.ops import audit

    action = event.get("action", "")
    kind = "promotion" if action == "promote" else "rollback" if action == "rollback" else "registry"
    audit.record(
        storage,
        kind,
        f"{model}: {action} {event.get('alias') or ''} -> {event.get('version')} ({event.get('outcome', '')})".replace(
            "  ", " "
        ),
        why=event.get("reason") or event.get("refused_because") or "",
        run_id=event.get("run_id"),
        actor=event.get("actor"),
        model=model,
        event=event,
    )
    return record


def list_versions(storage: Storage, model: str) -> list[dict]:
    """Manifests with `status` derived from the aliases: champion, challenger, retired (was
    champion once) or candidate."""
    aliases = {a: (get_alias(storage, model, a) or {}).get("version") for a in ALIASES}
    retired = {
        h.get("previous_version")
        for h in history(storage, model)
        if h.get("alias") == CHAMPION and h.get("outcome") == "done"
    }
    out = []
    for version in storage.list_children(f"{layout.model_root(model)}/versions"):
        if version_exists(storage, model, version):
            manifest = read_manifest(storage, model, version)
            if version == aliases[CHAMPION]:
                status = CHAMPION
            elif version == aliases[CHALLENGER]:
                status = CHALLENGER
            elif version in retired:
                status = "retired"
            else:
                status = "candidate"
            out.append({**manifest, "status": status})
    return sorted(out, key=lambda m: (m.get("created_at", ""), m["version"]))


def move_alias(
    storage: Storage,
    model: str,
    alias: str,
    version: str | None,
    reason: str,
    action: str,
    actor: str | None = None,
    run_id: str | None = None,
    extra: dict | None = None,
) -> dict:
    """Point `alias` at `version` (None: remove it) as one compare-and-swap; the attempt is
    recorded in the history whether it succeeds or is refused."""
    if alias not in ALIASES:
        raise RegistryError(f"unknown alias {alias!r}; known: {list(ALIASES)}")
    key = layout.model_alias(model, alias)
    current, tag = storage.read_json_versioned(key)
    previous = current["version"] if current else None
    event = {
        "action": action,
        "alias": alias,
        "version": version,
        "previous_version": previous,
        "reason": reason,
        "actor": actor or default_actor(),
        "run_id": run_id,
        **(extra or {}),
    }

    def refuse(why: str):
        record_event(storage, model, {**event, "outcome": "refused", "refused_because": why})
        raise RegistryError(f"{action} of {model} {version or '(none)'} as {alias} refused: {why}")

    if version is not None and not version_exists(storage, model, version):
        refuse(f"version {version} does not exist")
    if previous == version:
        refuse(f"{version} is already the {alias}" if version else f"there is no {alias}")
    record = {**event, "model": model, "set_at": _now()}
    try:
        storage.write_json_if(
            key,
            record if version else {"model": model, "alias": alias, "version": None, "set_at": record["set_at"]},
            tag,
        )
    except PreconditionFailed:
        refuse(f"the {alias} alias changed while this move was in flight (another move won)")
    # Read back: a store whose conditional writes are not atomic still shows who won.
    after, _ = storage.read_json_versioned(key)
    if (after or {}).get("set_at") != record["set_at"] or (after or {}).get("version") != version:
        refuse(f"the {alias} alias changed while this move was in flight (another move won)")
    if version is None:
        storage.delete(key)
    record_event(storage, model, {**event, "outcome": "done"})
    return record


def promote(
    storage: Storage,
    model: str,
    version: str,
    reason: str,
    alias: str = CHAMPION,
    actor: str | None = None,
    run_id: str | None = None,
    force: bool = False,
) -> dict:
    """Make `version` the champion (or challenger). Only a version whose gate passed, unless
    `force` (recorded, with the reason)."""
    try:
        gate = storage.read_json(f"{layout.model_version(model, version)}/{GATE}")
    except FileNotFoundError:
        gate = None
    extra: dict[str, Any] = {"forced": bool(force)}
    if gate is None or not gate.get("passed"):
        why = (
            "has no gate decision; evaluate and gate it first"
            if gate is None
            else f"failed its gate: {'; '.join(gate.get('reasons', []))}"
        )
        if not force:
            record_event(
                storage,
                model,
                {
                    "action": "promote",
                    "alias": alias,
                    "version": version,
                    "reason": reason,
                    "actor": actor or default_actor(),
                    "run_id": run_id,
                    "outcome": "refused",
                    "refused_because": f"{version} {why}",
                },
            )
            raise RegistryError(f"{model} {version} {why}")
        extra["forced_over"] = why
    record = move_alias(storage, model, alias, version, reason, "promote", actor, run_id, extra)
    challenger = get_alias(storage, model, CHALLENGER)
    if alias == CHAMPION and challenger and challenger.get("version") == version:
        move_alias(storage, model, CHALLENGER, None, f"{version} became champion", "clear", actor, run_id)
    return record


def rollback(
    storage: Storage,
    model: str,
    reason: str,
    to: str | None = None,
    actor: str | None = None,
    run_id: str | None = None,
) -> dict:
    """Point the champion back at `to`, by default the champion before the current one."""
    if to is None:
        moves = [
            h
            for h in history(storage, model)
            if h.get("alias") == CHAMPION and h.get("outcome") == "done" and h.get("previous_version")
        ]
        if not moves:
            raise RegistryError(f"model {model} has no previous champion in its history to roll back to")
        to = moves[-1]["previous_version"]
    return move_alias(storage, model, CHAMPION, to, reason, "rollback", actor, run_id)
