"""How the CLI shows the results people read (rich tables); machines ask for ``--json``.

One renderer per listing command: a function from the step's JSON result to rich renderables,
registered in :data:`RENDERERS` under the command's name. Commands without one print JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text


def _short(value: Any, width: int = 90) -> str:
    text = " ".join(str("" if value is None else value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]], shown: int, total: int) -> Table:
    caption = f"{shown} of {total} (--limit, --since to see others; --json for every field)" if shown < total else None
    if not total:
        caption = "none"
    table = Table(title=title, caption=caption, show_lines=False, header_style="bold")
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(_short(v) for v in row))
    return table


def _gate(passed: Any) -> str:
    return "-" if passed is None else ("passed" if passed else "failed")


def _latest(items: list[dict], limit: int | None) -> list[dict]:
    return items[-limit:] if limit else items


def audit(result: Any, limit: int | None) -> list[RenderableType]:
    rows = _latest(result, limit)
    return [
        _table(
            "Audit trail (oldest first)",
            ["at", "kind", "what", "why", "actor"],
            ([r.get("at", "")[:19], r.get("kind"), r.get("what"), r.get("why"), r.get("actor")] for r in rows),
            len(rows),
            len(result),
        )
    ]


def quarantine(result: Any, limit: int | None) -> list[RenderableType]:
    rows = _latest(result, limit)
    return [
        _table(
            "Quarantined deliveries (oldest first)",
            ["day", "delivery", "stage", "first reason", "where"],
            ([r["day"], r["delivery_id"], r["stage"], (r.get("reasons") or [""])[0], r["uri"]] for r in rows),
            len(rows),
            len(result),
        )
    ]


def contract(result: Any, limit: int | None) -> list[RenderableType]:
    if "versions" in result:  # contract history
        rows = _latest(result["versions"], limit)
        return [
            _table(
                f"Data contract history of {result['dataset']}",
                ["version", "digest", "created", "actor", "reason"],
                ([v["version"], v["digest"], v["created_at"], v["actor"], v["reason"]] for v in rows),
                len(rows),
                len(result["versions"]),
            )
        ]
    c = result.get("contract")
    if not c:
        return [Text(result.get("hint", "no contract"))]
    schema = c["schema"]
    roles = {schema["id_column"]: "id", schema["target_column"]: "target"}
    for role in ("numeric", "categorical", "pii", "sensitive"):
        for col in schema.get(role, []):
            roles.setdefault(col, role)
    ranges, categories = c["terms"]["validation"]["ranges"], c["terms"]["validation"]["categories"]
    columns = _table(
        f"{c['dataset']} data contract v{c['version']} ({c['digest']}), {c['created_at']} by {c['actor']}: {c['reason']}",
        ["column", "role", "checks"],
        (
            [
                col,
                roles.get(col, "-"),
                f"range {ranges[col]}" if col in ranges else (f"in {categories[col]}" if col in categories else ""),
            ]
            for col in c["source_columns"]
        ),
        len(c["source_columns"]),
        len(c["source_columns"]),
    )
    out: list[RenderableType] = [columns]
    diff = result.get("params_differ") or []
    out.append(
        Text("params.yaml differs: " + "; ".join(diff), style="bold red")
        if diff
        else Text("params.yaml agrees with this contract.", style="green")
    )
    return out


def models(result: Any, limit: int | None) -> list[RenderableType]:
    if "history" in result:
        rows = _latest(result["history"], limit)
        return [
            _table(
                f"Registry history of {result['model']} (oldest first)",
                ["at", "action", "alias", "version", "outcome", "actor", "reason"],
                (
                    [
                        h.get("at", "")[:19],
                        h.get("action"),
                        h.get("alias"),
                        h.get("version"),
                        h.get("outcome"),
                        h.get("actor"),
                        h.get("refused_because") or h.get("reason"),
                    ]
                    for h in rows
                ),
                len(rows),
                len(result["history"]),
            )
        ]
    if "versions" in result and "champion" in result:
        rows = _latest(result["versions"], limit)
        return [
            _table(
                f"Versions of {result['model']}",
                ["version", "status", "created", "ROC AUC", "gate", "reason", "model card"],
                (
                    [
                        v["version"],
                        v["status"],
                        (v.get("created_at") or "")[:19],
                        f"{v['roc_auc']:.3f}" if isinstance(v.get("roc_auc"), float) else "-",
                        _gate(v.get("gate_passed")),
                        v.get("reason"),
                        v.get("model_card"),
                    ]
                    for v in rows
                ),
                len(rows),
                len(result["versions"]),
            )
        ]
    return []


def status(result: Any, limit: int | None) -> list[RenderableType]:
    zones = result["zones"]
    table = _table(
        f"Freshness as of {result['as_of']}",
        ["zone", "newest day", "expected", "state", "why", "where"],
        (
            [z["zone"], z["latest"] or "-", z["expected"], "LATE" if z["late"] else "ok", z["why"], z["where"]]
            for z in zones
        ),
        len(zones),
        len(zones),
    )
    return [table]


RENDERERS: dict[str, Callable[[Any, int | None], list[RenderableType]]] = {
    "audit": audit,
    "quarantine": quarantine,
    "contract": contract,
    "models": models,
    "status": status,
}


def render(command: str, result: Any, limit: int | None, console: Console | None = None) -> bool:
    """Print `result` as tables when the command has a renderer; False when it has none (print JSON)."""
    renderer = RENDERERS.get(command)
    shown = renderer(result, limit) if renderer else []
    if not shown:
        return False
    console = console or Console(soft_wrap=False)
    for item in shown:
        console.print(item)
    return True
