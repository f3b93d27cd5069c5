"""A small FastAPI app mounted on the Airflow API server (``/pipeline``) that serves the
pipeline's local artefacts, so the task pages' extra links open in the browser: the Airflow UI
only follows http(s) links (not ``file://``).

Only files under the configured local storage root and the Great Expectations Data Docs site
are served, read-only; everything else is 404. With S3 storage there is nothing to serve here
(links keep their ``s3://`` URIs, shown by the REST API). Meant for a local or trusted UI:
Airflow does not put its own login in front of plugin apps.
"""
from __future__ import annotations

import html
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

PREFIX = "/pipeline"
ROUTE = "/artefacts"

app = FastAPI(title="Pipeline artefacts", description="Local pipeline artefacts behind the Airflow UI's links")


def allowed_roots() -> list[Path]:
    from pipeline.config import load_config

    config = load_config()
    roots = [Path(config.validation.gx_root, "uncommitted", "data_docs").resolve()]
    if "://" not in config.storage.root:
        roots.append(Path(config.storage.root).resolve())
    return roots


def url_for(path: str) -> str:
    return f"{PREFIX}{ROUTE}{Path(path).resolve()}"


@app.get(ROUTE + "/{path:path}")
def artefact(path: str):
    target = Path("/" + path).resolve()
    if not any(target == root or target.is_relative_to(root) for root in allowed_roots()) or not target.exists():
        raise HTTPException(status_code=404, detail="not a pipeline artefact")
    if target.is_dir():
        items = "".join(f"<li><a href='{html.escape(url_for(str(p)))}'>{html.escape(p.name)}</a></li>"
                        for p in sorted(target.iterdir()) if not p.name.startswith("."))
        return HTMLResponse(f"<h3>{html.escape(str(target))}</h3><ul>{items}</ul>")
    return FileResponse(target)
