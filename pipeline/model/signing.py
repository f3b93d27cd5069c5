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
from typing import Any

from pipeline.core.errors import SignatureError
from pipeline.core.keys import accepted_keys, key_id, signing_key

log = logging.getLogger(__name__)

ALGORITHM = "hmac-sha256"
SIGNED_FIELDS = ("model", "version", "artifact", "artifact_sha256", "artifact_bytes", "files_sha256", "created_at")


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
