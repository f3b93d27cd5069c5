"""Signed model versions: an HMAC over a version's immutable facts, with a key kept out of storage.

A model artifact is a pickle, and unpickling runs code. Its sha256 in the manifest only helps
if the manifest cannot be rewritten by the same person who swaps the artifact, and anyone who
can write to storage can do both. So the registry signs the manifest's immutable part (model,
version, the artifact's sha256 and size, the other files' sha256, the creation time) with
HMAC-SHA256 under a key that lives with the workers, never in storage; loading verifies the
signature and the artifact's bytes *before* unpickling, and refuses anything else.

The key, first found:

1. ``PIPELINE_SIGNING_KEY`` (the Airflow glue sets it from the connection named by
   ``registry.signing_conn_id``, its password, when that connection exists);
2. the file named by ``PIPELINE_SIGNING_KEY_FILE``;
3. ``~/.config/ml-pipeline/signing.key``, created (mode 0600) on the first signature when
   none of the above is set: right for one machine; a deployment with several workers gives
   them all the same key through 1 or 2.

Rotation: set the new key as ``PIPELINE_SIGNING_KEY`` and the old one(s) as
``PIPELINE_SIGNING_KEYS_PREVIOUS`` (comma-separated), run ``python -m pipeline models resign``
(every version that verifies under an accepted key is signed again with the new one), then
drop the previous keys. Signatures record the key id (a hash prefix of the key, not the key).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from ..errors import PipelineError

log = logging.getLogger(__name__)

KEY_ENV = "PIPELINE_SIGNING_KEY"
KEY_FILE_ENV = "PIPELINE_SIGNING_KEY_FILE"
PREVIOUS_KEYS_ENV = "PIPELINE_SIGNING_KEYS_PREVIOUS"
ALGORITHM = "hmac-sha256"
SIGNED_FIELDS = ("model", "version", "artifact", "artifact_sha256", "artifact_bytes", "files_sha256", "created_at")
MIN_KEY_BYTES = 16


class SignatureError(PipelineError, ValueError):
    """A model version has no valid signature (or no key is configured to check one)."""


def default_key_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ml-pipeline" / "signing.key"


def _checked(key: bytes, where: str) -> bytes:
    key = key.strip()
    if len(key) < MIN_KEY_BYTES:
        raise SignatureError(
            f"the signing key from {where} is {len(key)} bytes; use at least {MIN_KEY_BYTES} "
            "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
        )
    return key


def signing_key(create: bool = False) -> bytes:
    """The current key (see the module docstring for where it comes from)."""
    if os.environ.get(KEY_ENV):
        return _checked(os.environ[KEY_ENV].encode(), KEY_ENV)
    if os.environ.get(KEY_FILE_ENV):
        path = Path(os.environ[KEY_FILE_ENV])
        try:
            return _checked(path.read_bytes(), str(path))
        except FileNotFoundError as exc:
            raise SignatureError(f"{KEY_FILE_ENV} names {path}, which does not exist") from exc
    path = default_key_file()
    if path.exists():
        return _checked(path.read_bytes(), str(path))
    if not create:
        raise SignatureError(
            f"no model signing key: set {KEY_ENV} (or {KEY_FILE_ENV}) to the key the models "
            f"were signed with; {path} does not exist on this machine"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))
    log.warning(
        "created a model signing key at %s (this machine only); give every worker the same key "
        "through %s for a multi-machine deployment",
        path,
        KEY_ENV,
    )
    return _checked(path.read_bytes(), str(path))


def accepted_keys() -> list[bytes]:
    """The current key, then the previous ones still accepted during a rotation."""
    keys = [signing_key()]
    for i, value in enumerate(v for v in os.environ.get(PREVIOUS_KEYS_ENV, "").split(",") if v.strip()):
        keys.append(_checked(value.encode(), f"{PREVIOUS_KEYS_ENV}[{i}]"))
    return keys


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"key-id:" + key).hexdigest()[:12]


def _body(manifest: dict[str, Any]) -> bytes:
    return json.dumps({f: manifest.get(f) for f in SIGNED_FIELDS}, sort_keys=True, separators=(",", ":")).encode()


def sign(manifest: dict[str, Any], key: bytes | None = None) -> dict[str, Any]:
    """The signature record of a manifest's immutable fields."""
    key = key if key is not None else signing_key(create=True)
    return {
        "algorithm": ALGORITHM,
        "key_id": key_id(key),
        "fields": list(SIGNED_FIELDS),
        "value": hmac.new(key, _body(manifest), hashlib.sha256).hexdigest(),
    }


def verify(manifest: dict[str, Any], where: str) -> str:
    """The id of the key that signed `manifest`; raises SignatureError naming `where` otherwise."""
    signature = manifest.get("signature")
    if not isinstance(signature, dict) or signature.get("algorithm") != ALGORITHM:
        raise SignatureError(
            f"{where} is not signed; refusing to load it (a version from before signing, or a "
            "manifest written outside the registry): retrain, or roll back to a signed version"
        )
    body = _body(manifest)
    for key in accepted_keys():
        expected = hmac.new(key, body, hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, str(signature.get("value", ""))):
            return key_id(key)
    raise SignatureError(
        f"{where}: the signature does not match (signed with key {signature.get('key_id')}; "
        f"accepted here: {[key_id(k) for k in accepted_keys()]}); the manifest or artifact was "
        "changed outside the registry, or this worker has another key. Refusing to load it"
    )
