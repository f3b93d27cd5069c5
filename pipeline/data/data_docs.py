"""Great Expectations Data Docs that work offline and keep only what helps: vendored assets instead of
CDN links, failed expectations shown first, old results pruned, the failing page found for a link."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from pipeline.core.settings import PipelineConfig

log = logging.getLogger(__name__)

KEEP_GX_RESULTS = 200


def prune_results(root: Path, keep: int = KEEP_GX_RESULTS) -> None:
    """Keep GE's own result store bounded; the pipeline's verdicts live in storage."""
    store = root / "uncommitted" / "validations"
    files = sorted((p for p in store.rglob("*.json")), key=lambda p: p.stat().st_mtime)
    for path in files[:-keep] if len(files) > keep else []:
        path.unlink(missing_ok=True)


_VENDORED = {
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js": "bootstrap-table-filter-control.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css": "bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css": "bootstrap-table-filter-control.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": "bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": "bootstrap-datepicker.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "fontawesome/css/all.min.css",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": "bootstrap-prefers-dark.min.css",
    "https://cdn.jsdelivr.net/npm/vega@5": "vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed.min.js",
}
# GE's logo comes from its web-assets bucket (with a tracking query); the site has its own copy.
_REMOTE_LOGO = re.compile(r"https://great-expectations-web-assets\.s3[^\"']*/(logo-long\.png)[^\"']*")
# GE writes the favicon's path one level short on validation pages: point every image at the site's.
_SITE_IMAGE = re.compile(r"([\"'])(?:\.\./)*static/images/")
# The CDN tags carry SRI hashes and crossorigin: a file:// page refuses crossorigin loads, and the
# local copies are checked by their own origin instead.
_SRI = re.compile(r"\s+(?:integrity=\"[^\"]*\"|crossorigin=\"anonymous\")")
# A failing validation's page opens on the failed expectations (the page's own "Failed Only").
_FAILED_ONLY = (
    "<script>document.addEventListener('DOMContentLoaded',function(){"
    "var b=document.getElementById('option2');if(b){b.closest('label').click();}});</script>"
)
_PROJECT_VENDOR = Path(__file__).resolve().parents[2] / "great_expectations" / "plugins" / "custom_data_docs" / "vendor"


def _offline(text: str, relative_site: str, asset: str | None) -> str:
    vendor = f"{relative_site}/static/vendor"
    for url, name in _VENDORED.items():
        for quote in ('"', "'"):
            text = text.replace(f"{quote}{url}{quote}", f"{quote}{vendor}/{name}{quote}")
    text = _REMOTE_LOGO.sub(lambda m: f"{relative_site}/static/images/{m.group(1)}", text)
    text = _SITE_IMAGE.sub(lambda m: f"{m.group(1)}{relative_site}/static/images/", text)
    text = _SRI.sub("", text)
    if asset:
        text = text.replace("Data asset: None", f"Data asset: {asset}")
    return text


def use_vendored_assets(root: Path, asset: str | None = None) -> int:
    """Make the Data Docs pages work offline: vendored CDN assets, the local logo, the data asset
    named; returns the pages rewritten."""
    import shutil

    site = root / "uncommitted" / "data_docs" / "local_site"
    source = root / "plugins" / "custom_data_docs" / "vendor"
    source = source if source.is_dir() else _PROJECT_VENDOR
    if not site.is_dir() or not source.is_dir():
        return 0
    vendor = site / "static" / "vendor"
    if not (vendor / "vega.min.js").exists():
        shutil.copytree(source, vendor, dirs_exist_ok=True)
    rewritten = 0
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        relative = os.path.relpath(site, page.parent)
        new = _offline(text, relative, asset)
        if new != text:
            page.write_text(new, encoding="utf-8")
            rewritten += 1
    return rewritten


def open_on_failures(page: str | None) -> None:
    """Make a failing validation's page open on its failed expectations."""
    if not page or not Path(page).is_file():
        return
    path = Path(page)
    text = path.read_text(encoding="utf-8")
    if _FAILED_ONLY not in text and "</body>" in text:
        path.write_text(text.replace("</body>", _FAILED_ONLY + "</body>", 1), encoding="utf-8")


def docs_page(context, key) -> str | None:
    try:
        sites = context.get_docs_sites_urls(resource_identifier=key)
    except Exception:  # a docs site without a page for this result: fall back to the index
        return None
    for site in sites or []:
        url = site.get("site_url")
        if url:
            return url.removeprefix("file://")
    return None


def data_docs_index(config: PipelineConfig) -> str:
    return str(Path(config.validation.gx_root) / "uncommitted" / "data_docs" / "local_site" / "index.html")
