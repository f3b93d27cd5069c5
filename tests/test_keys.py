"""The signing key created on first use: processes creating it at once end with one key, never a
half-written file; a missing key refuses verification with a clear message."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from pipeline import keys
from pipeline.errors import SignatureError


def _key(_):
    return keys.signing_key(create=True)


def test_concurrent_first_use_creates_one_key(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("PIPELINE_SIGNING_KEY", raising=False)
    monkeypatch.delenv("PIPELINE_SIGNING_KEY_FILE", raising=False)
    with pytest.raises(SignatureError, match="no model signing key"):
        keys.signing_key()  # verification never creates one
    with mp.get_context("fork").Pool(8) as pool:
        created = pool.map(_key, range(32))
    assert len(set(created)) == 1 and len(created[0]) == 64
    assert [p.name for p in (tmp_path / "ml-pipeline").iterdir()] == ["signing.key"]
    assert ((tmp_path / "ml-pipeline" / "signing.key").stat().st_mode & 0o777) == 0o600
