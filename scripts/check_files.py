"""File hygiene for `make lint` and pre-commit: every tracked text file ends with one newline and has
no trailing whitespace; no tracked file is over 1 MB (data goes to DVC or storage, not git).

    python scripts/check_files.py [FILE ...]     # default: every file git tracks
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MAX_BYTES = 1 << 20
# Written by other tools and kept as they write them: Great Expectations' Data Context (regenerated
# from the data contract) and vendored third-party assets (byte-identical to upstream).
SKIP_PREFIXES = ("great_expectations/",)
# Markdown uses two trailing spaces as a hard line break.
KEEP_TRAILING_SPACES = (".md",)


def tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p]


def problems(path: str) -> list[str]:
    file = Path(path)
    if not file.is_file():
        return []
    data = file.read_bytes()
    found = []
    if len(data) > MAX_BYTES:
        found.append(f"{path}: {len(data)} bytes, over {MAX_BYTES} (track it with DVC or keep it in storage)")
    if path.startswith(SKIP_PREFIXES) or b"\0" in data[:8192] or not data:
        return found
    if not data.endswith(b"\n") or data.endswith(b"\n\n"):
        found.append(f"{path}: must end with exactly one newline")
    if not path.endswith(KEEP_TRAILING_SPACES):
        lines = [i for i, line in enumerate(data.split(b"\n"), 1) if line.rstrip(b"\r") != line.rstrip()]
        if lines:
            found.append(f"{path}: trailing whitespace on line(s) {lines[:10]}")
    return found


def main(argv: list[str]) -> int:
    paths = argv or tracked()
    found = [p for path in paths for p in problems(path)]
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
