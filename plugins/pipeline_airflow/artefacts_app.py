"""A small FastAPI app mounted on the Airflow API server (``/pipeline``) that serves the
pipeline's local artefacts, so the task pages' extra links open in the browser: the Airflow UI
only follows http(s) links (not ``file://``).

It requires the same authentication as Airflow's own API (the auth manager's JWT, as a
``Bearer`` header or the UI's ``_token`` session cookie): 401 without it. It is read-only and
serves only what a UI link needs:

* the Great Expectations Data Docs site (results are scrubbed of id/PII/sensitive values);
* under the local storage root: quarantine verdicts and validation results, evaluation, drift
  reports and model cards, prediction partitions' manifests, and directory listings (names
  only) of ``quarantine/``, ``predictions/``, ``predictions_shadow/``, ``models/`` and
  ``monitoring/``.

Rows (raw, staging, labels, snapshots, predictions' Parquet, quarantined files) and model files
are never served unless ``ui.serve_data_files: true`` in params. Anything else is 404; a
malformed path (NUL or control characters) is 400. With S3 storage there is nothing to serve
here (links keep their ``s3://`` URIs).
"""

from __future__ import annotations

import fnmatch
import html
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

PREFIX = "/pipeline"
ROUTE = "/artefacts"

# Files a UI link may open, relative to the storage root (fnmatch: '*' crosses '/').
ALLOWED_FILES = (
    "quarantine/*/dt=*/*/verdict.json",
    "quarantine/*/dt=*/*/validation_result.json",
    "quarantine/*/dt=*/*/_manifest.json",
    "models/*/versions/*/evaluation.html",
    "models/*/versions/*/model_card.html",
    "models/*/versions/*/gate.json",
    "monitoring/*/reports/dt=*.html",
    "predictions/*/dt=*/_manifest.json",
    "predictions_shadow/*/dt=*/_manifest.json",
)
# Directories whose listings (names only) may be shown.
LISTED_DIRS = ("quarantine", "predictions", "predictions_shadow", "models", "monitoring")


async def require_user(request: Request):
    """The caller as Airflow's API sees it: a valid JWT from the auth manager, else 401/403."""
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.core_api.security import resolve_user_from_token

    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    token = credentials.strip() if scheme.lower() == "bearer" else request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    return await resolve_user_from_token(token)


app = FastAPI(
    title="Pipeline artefacts",
    description="Local pipeline artefacts behind the Airflow UI's links",
    dependencies=[Depends(require_user)],
)


def _config():
    from pipeline.core.settings import load_config

    return load_config()


def docs_root() -> Path:
    return Path(_config().validation.gx_root, "uncommitted", "data_docs").resolve()


def storage_root() -> Path | None:
    root = _config().storage.root
    return None if "://" in root else Path(root).resolve()


def allowed_roots() -> list[Path]:
    return [r for r in (docs_root(), storage_root()) if r is not None]


def url_for(path: str) -> str:
    return f"{PREFIX}{ROUTE}{Path(path).resolve()}"


def _servable(target: Path) -> bool:
    docs = docs_root()
    if target == docs or target.is_relative_to(docs):
        return True
    root = storage_root()
    if root is None or not (target == root or target.is_relative_to(root)):
        return False
    if _config().ui.serve_data_files:
        return True
    rel = target.relative_to(root).as_posix()
    if target.is_dir():
        return rel == "." or rel.split("/")[0] in LISTED_DIRS
    return any(fnmatch.fnmatchcase(rel, pattern) for pattern in ALLOWED_FILES)


@app.get(ROUTE + "/{path:path}")
def artefact(path: str):
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path) or len(path) > 4096:
        raise HTTPException(status_code=400, detail="malformed path")
    target = Path("/" + path).resolve()
    if not target.exists() or not _servable(target):
        raise HTTPException(status_code=404, detail="not a pipeline artefact")
    if target.is_dir():
        items = "".join(
            (
                f"<li><a href='{html.escape(url_for(str(p)))}'>{html.escape(p.name)}</a></li>"
                if _servable(p)
                else f"<li>{html.escape(p.name)}</li>"
            )
            for p in sorted(target.iterdir())
            if not p.name.startswith(".")
        )
        return HTMLResponse(f"<h3>{html.escape(str(target))}</h3><ul>{items}</ul>")
    return FileResponse(target)
