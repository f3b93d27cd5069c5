"""The secret keys the pipeline uses, resolved once here (core: no stage imports): the model
signing key (pipeline/model/signing.py) and the key the privacy gate derives its pseudonyms from
(pipeline/data/privacy.py). Never stored in storage or git.

The signing key, first found: ``PIPELINE_SIGNING_KEY`` (the Airflow glue sets it from the connection
``registry.signing_conn_id``); the file named by ``PIPELINE_SIGNING_KEY_FILE``;
``~/.config/ml-pipeline/signing.key``, created (mode 0600) on first use when none is set.
``PIPELINE_SIGNING_KEYS_PREVIOUS`` (comma-separated) are still accepted during a rotation.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from pathlib import Path

from pipeline.core.errors import SignatureError

log = logging.getLogger(__name__)

KEY_ENV = "PIPELINE_SIGNING_KEY"
KEY_FILE_ENV = "PIPELINE_SIGNING_KEY_FILE"
PREVIOUS_KEYS_ENV = "PIPELINE_SIGNING_KEYS_PREVIOUS"
MIN_KEY_BYTES = 16


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
    # Written whole under a temporary name, then linked into place: two processes creating the key
    # at once end with one key, and no reader ever sees a half-written file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))
    try:
        os.link(tmp, path)  # fails if another process won: then its key is the key
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
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
