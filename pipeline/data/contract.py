"""The frozen data contract of a dataset.

A contract fixes what a daily delivery must look like: its columns, each column's
role and type, the id (or the derived row key), the target and its positive class,
ranges, category sets, null tolerances and the row policy. It is resolved once from
the params plus the first data seen (the columns' types), stored under
``contracts/<dataset>/`` in storage, and turned into the Great Expectations suite
committed in ``great_expectations/``. Daily batches are checked *against* it; nothing
a batch contains changes it.

Changing it is an explicit act: ``python -m pipeline contract update --reason ...``
writes a new version (the old ones stay) after the params changed. Until then, a
params file that disagrees with the stored contract is refused with the differences.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import hashlib
import json
import logging
from typing import Any

from pipeline.core import layout
from pipeline.core.errors import ContractError, PreconditionFailed
from pipeline.core.settings import PipelineConfig, jsonable
from pipeline.core.storage import Storage
from pipeline.data.columns import check_columns_exist
from pipeline.data.source import Schema, missing_tokens, resolve_schema
from pipeline.data.typed import canonical_label

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Contract:
    dataset: str
    version: int
    schema: Schema
    terms: dict[str, Any]  # what the params said when the contract was made
    source_columns: tuple[str, ...]  # the delivery's columns (order as first seen)
    typical_rows_per_day: float
    created_at: str
    reason: str
    actor: str
    resolved_from: tuple[str, ...] = ()
    previous_version: int | None = None
    # The target's classes as first seen (canonical text); labels outside them are refused.
    target_classes: tuple[str, ...] = ()

    @property
    def validation(self) -> dict[str, Any]:
        return self.terms["validation"]

    @property
    def digest(self) -> str:
        body = {
            "schema": self.schema.to_dict(),
            "terms": self.terms,
            "source_columns": list(self.source_columns),
            "typical_rows_per_day": self.typical_rows_per_day,
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def protected(self) -> tuple[str, ...]:
        """Columns whose values never appear in validation outputs: id, PII, sensitive attributes."""
        return tuple(dict.fromkeys(self.schema.protected + tuple(self.terms["sensitive_attributes"])))

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Columns every delivery must have."""
        cols = tuple(
            c for c in self.schema.batch_columns if not (self.schema.id_derived and c == self.schema.id_column)
        )
        return cols + (self.schema.target_column,)

    @property
    def max_rows(self) -> int | None:
        v = self.validation
        by_factor = int(v["max_rows_factor"] * self.typical_rows_per_day) if self.typical_rows_per_day else None
        limits = [x for x in (v["max_rows"], by_factor) if x is not None]
        return min(limits) if limits else None

    def mostly(self, column: str, check: str) -> float:
        v = self.validation
        default = round(1.0 - v["max_null_fraction"], 6) if check == "not_null" else 1.0
        return float(v["mostly"].get(column, {}).get(check, default))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["schema"] = self.schema.to_dict()
        out["digest"] = self.digest
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Contract:
        data = {k: v for k, v in data.items() if k != "digest"}
        data["schema"] = Schema.from_dict(data["schema"])
        data["source_columns"] = tuple(data["source_columns"])
        data["resolved_from"] = tuple(data.get("resolved_from", ()))
        data["target_classes"] = tuple(data.get("target_classes", ()))
        return cls(**data)

    def summary(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "version": self.version, "digest": self.digest}


def terms_from_params(config: PipelineConfig) -> dict[str, Any]:
    """The part of the params a contract freezes."""
    ds, v = config.dataset, config.validation
    return jsonable(
        {
            "id_column": ds.id_column,
            "target": {"column": ds.target.column, "positive_class": ds.target.positive_class},
            "event_time_column": ds.event_time_column,
            "features": ds.features,
            "sensitive_attributes": ds.sensitive_attributes,
            "pii_columns": ds.pii_columns,
            "source": {
                "format": ds.source.format,
                "csv_delimiter": ds.source.csv_delimiter,
                "missing_tokens": list(missing_tokens(ds.source)),
            },
            "validation": {
                k: getattr(v, k)
                for k in (
                    "min_rows",
                    "max_rows",
                    "max_null_fraction",
                    "ranges",
                    "categories",
                    "mostly",
                    "max_rows_factor",
                    "row_policy",
                    "max_bad_row_share",
                    "extra_columns",
                )
            },
        }
    )


def differences(old: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out += differences(old.get(key), new.get(key), f"{path}.{key}" if path else key)
        return out
    return [] if old == new else [f"{path}: {old!r} -> {new!r}"]


# --------------------------------------------------------------------------- storage


def current(config: PipelineConfig, storage: Storage) -> Contract | None:
    pointer, _ = storage.read_json_versioned(layout.contract_current(config.dataset.name))
    if pointer is None:
        return None
    return load_version(config, storage, int(pointer["version"]))


def load_version(config: PipelineConfig, storage: Storage, version: int) -> Contract:
    key = layout.contract_version(config.dataset.name, version)
    try:
        return Contract.from_dict(storage.read_json(key))
    except FileNotFoundError as exc:
        raise ContractError(
            f"contract version {version} of {config.dataset.name} not found at {storage.uri(key)}"
        ) from exc
    except (json.JSONDecodeError, TypeError, KeyError) as exc:
        raise ContractError(f"{storage.uri(key)}: not a readable contract ({exc})") from exc


def describe(config: PipelineConfig, storage: Storage, with_history: bool = False) -> dict:
    """The current contract and how the params differ from it (or every version, with `with_history`)."""
    if with_history:
        return {
            "dataset": config.dataset.name,
            "versions": [
                {**c.summary(), "created_at": c.created_at, "reason": c.reason, "actor": c.actor}
                for c in history(config, storage)
            ],
        }
    found = current(config, storage)
    if found is None:
        return {
            "dataset": config.dataset.name,
            "contract": None,
            "hint": "no contract yet: the first ingest resolves one from params and the data",
        }
    return {"contract": found.to_dict(), "params_differ": differences(found.terms, terms_from_params(config))}


def history(config: PipelineConfig, storage: Storage) -> list[Contract]:
    root = layout.contract_root(config.dataset.name)
    names = sorted(k for k in storage.list_keys(root) if k.rsplit("/", 1)[-1].startswith("v"))
    return [Contract.from_dict(storage.read_json(k)) for k in names]


def _store(config: PipelineConfig, storage: Storage, contract: Contract) -> Contract:
    key = layout.contract_version(config.dataset.name, contract.version)
    pointer_key = layout.contract_current(config.dataset.name)
    pointer, tag = storage.read_json_versioned(pointer_key)
    expected_prev = contract.previous_version
    if (pointer["version"] if pointer else None) != expected_prev:
        raise ContractError(
            f"the contract of {config.dataset.name} changed meanwhile (now v{pointer['version']}); "
            "look at it with `python -m pipeline contract show` and retry"
        )
    if storage.exists(key):
        raise ContractError(f"{storage.uri(key)} already exists")
    storage.write_json(key, contract.to_dict())
    try:
        storage.write_json_if(pointer_key, {"version": contract.version, "digest": contract.digest}, tag)
    except PreconditionFailed as exc:
        storage.delete(key)
        raise ContractError(
            f"another process changed the contract of {config.dataset.name} at the same time; retry"
        ) from exc
    log.info(
        "contract v%d of %s stored at %s (%s)", contract.version, config.dataset.name, storage.uri(key), contract.reason
    )
    return contract


def resolve(
    config: PipelineConfig,
    sample: dict[str, Any],
    version: int,
    reason: str,
    actor: str,
    previous: Contract | None = None,
) -> Contract:
    """A contract from the params plus `sample` (header, numeric columns, target values, rows per day)."""
    import pandas as pd

    ds = config.dataset
    header = list(sample["header"])
    check_columns_exist(config, header, f"the data ({', '.join(sample.get('from', [])) or 'first delivery'})")
    values = sorted(set(canonical_label(pd.Series(sample.get("target_values", []), dtype=object)).tolist()))
    if values and ds.target.positive_class not in values:
        raise ContractError(
            f"dataset.target.positive_class {ds.target.positive_class!r} never occurs in target column "
            f"{ds.target.column!r}; values found: {values[:20]}"
        )
    if values and len(values) != 2:
        raise ContractError(f"target column {ds.target.column!r} must have two classes; found {values[:20]}")
    empty = pd.DataFrame({c: pd.Series([], dtype=object) for c in header})
    # A column with a range in the params is a number column, whatever the first data held.
    numeric = list(dict.fromkeys([*sample.get("numeric_columns", []), *config.validation.ranges]))
    schema = resolve_schema(ds, empty, numeric_columns=numeric)
    schema = dataclasses.replace(schema, id_is_integer=bool(sample.get("id_is_integer")) and not schema.id_derived)
    unknown = sorted(set(config.validation.ranges) - set(schema.numeric) - set(schema.sensitive))
    if unknown:
        raise ContractError(
            f"validation.ranges names column(s) {unknown} that are not numeric "
            f"(numeric: {list(schema.numeric)}); list them under dataset.features.numeric"
        )
    return Contract(
        dataset=ds.name,
        version=version,
        schema=schema,
        terms=terms_from_params(config),
        source_columns=tuple(header),
        typical_rows_per_day=float(sample.get("rows_per_day") or 0.0),
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        reason=reason,
        actor=actor,
        resolved_from=tuple(sample.get("from", ())),
        previous_version=previous.version if previous else None,
        target_classes=tuple(values) if values else (previous.target_classes if previous else ()),
    )


def _comparable(contract: Contract) -> dict[str, Any]:
    return {
        "schema": contract.schema.to_dict(),
        "terms": contract.terms,
        "source_columns": list(contract.source_columns),
    }


def _actor() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"


def require(config: PipelineConfig, storage: Storage, sample: dict[str, Any] | None = None) -> Contract:
    """The current contract; the first one is resolved from params + `sample` and stored.

    Raises ContractError when the params no longer match it (change it with `contract update`)."""
    contract = current(config, storage)
    if contract is None:
        if sample is None:
            raise ContractError(
                f"dataset {config.dataset.name} has no data contract yet: ingest a day first, or run "
                "`python -m pipeline contract update --from-day YYYY-MM-DD --reason ...`"
            )
        contract = resolve(config, sample, 1, "initial contract: params + first data read", _actor())
        try:
            return _store(config, storage, contract)
        except ContractError:
            # Another worker stored the first contract at the same moment: use theirs.
            contract = current(config, storage)
            if contract is None:
                raise
    diff = differences(contract.terms, terms_from_params(config))
    if diff:
        raise ContractError(
            f"params ({config.params_path}) disagree with data contract v{contract.version} of {config.dataset.name}: "
            + "; ".join(diff[:10])
            + ". The contract changes only explicitly: run "
            '`python -m pipeline contract update --reason "..."`, or restore the params'
        )
    return contract


def update(
    config: PipelineConfig,
    storage: Storage,
    reason: str,
    sample: dict[str, Any] | None = None,
    actor: str | None = None,
) -> dict[str, Any]:
    """A new contract version from the current params (and `sample`, or the previous version's columns)."""
    if not reason or not reason.strip():
        raise ContractError("a contract change needs a reason (--reason)")
    previous = current(config, storage)
    if sample is None:
        if previous is None:
            raise ContractError("no contract yet and no data to resolve one from: pass --from-day")
        schema = previous.schema
        sample = {
            "header": list(previous.source_columns),
            "numeric_columns": list(schema.numeric),
            "id_is_integer": schema.id_is_integer,
            "target_values": [],
            "rows_per_day": previous.typical_rows_per_day,
            "from": list(previous.resolved_from),
        }
    new = resolve(
        config, sample, (previous.version + 1) if previous else 1, reason.strip(), actor or _actor(), previous
    )
    if previous is not None and new.digest == previous.digest:
        return {"changed": False, "version": previous.version, "digest": previous.digest}
    _store(config, storage, new)
    return {
        "changed": True,
        "version": new.version,
        "digest": new.digest,
        "differences": differences(_comparable(previous), _comparable(new)) if previous else [],
        "uri": storage.uri(layout.contract_version(config.dataset.name, new.version)),
    }
