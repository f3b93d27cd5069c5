"""The signing key created on first use: processes creating it at once end with one key, never a
half-written file; a missing key refuses verification with a clear message."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline.core import keys
from pipeline.core.errors import SignatureError

# Each process waits for a start file, so all of them race for the first use together. Separate
# interpreters, not a forked pool: forking a test process that runs server threads can deadlock.
_RACER = """
import os, sys, time
from pipeline.core import keys
while not os.path.exists(sys.argv[1]):
    time.sleep(0.005)
print(keys.signing_key(create=True).decode())
"""


def test_concurrent_first_use_creates_one_key(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("PIPELINE_SIGNING_KEY", raising=False)
    monkeypatch.delenv("PIPELINE_SIGNING_KEY_FILE", raising=False)
    with pytest.raises(SignatureError, match="no model signing key"):
        keys.signing_key()  # verification never creates one
    go = tmp_path / "go"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(go)], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
        )
        for _ in range(8)
    ]
    go.touch()
    created = [racer.communicate(timeout=120)[0].strip() for racer in racers]
    assert all(racer.returncode == 0 for racer in racers)
    assert len(set(created)) == 1 and len(created[0]) == 64
    key_dir = tmp_path / "config" / "ml-pipeline"
    assert [p.name for p in key_dir.iterdir()] == ["signing.key"]
    assert ((key_dir / "signing.key").stat().st_mode & 0o777) == 0o600
