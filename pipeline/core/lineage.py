"""Where a model came from: code revision and library versions."""

from __future__ import annotations

import contextlib
import os
import subprocess
from importlib import metadata
from pathlib import Path

CODE_REVISION_ENV = "PIPELINE_CODE_REVISION"


def code_revision() -> str:
    """The git commit of the code (suffixed '-dirty' with local changes), or the env override
    that images set at build time when they carry no .git."""
    if os.environ.get(CODE_REVISION_ENV):
        return os.environ[CODE_REVISION_ENV]
    here = Path(__file__).resolve().parents[1]  # the whole pipeline package
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", str(here)],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return f"{rev}-dirty" if dirty else rev
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def library_versions() -> dict[str, str]:
    out = {}
    for name in ("scikit-learn", "pandas", "pyarrow", "numpy", "great-expectations", "dvc"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out
