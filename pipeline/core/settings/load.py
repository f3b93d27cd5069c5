"""Reading a params file: size and YAML checks, parsing with messages that name the key path,
paths made absolute against the file's directory, and the environment's overrides."""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import GenerateJsonSchema

from pipeline.core.errors import ConfigError
from pipeline.core.settings.root import PipelineConfig, jsonable

PARAMS_ENV = "PIPELINE_PARAMS"  # another params file
STORAGE_ENV = "PIPELINE_STORAGE_URI"  # the storage root (deployments point the same params at S3)
DVC_REMOTE_ENV = "PIPELINE_DVC_REMOTE_URL"
MAX_PARAMS_BYTES = 1 << 20  # a params file is a few KB; a larger one is a mistake or an attack


class _PlainLoader(yaml.SafeLoader):
    """YAML without anchors and aliases: params never need them, and aliases let a few hundred bytes
    expand into gigabytes ("billion laughs")."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise ConfigError(
                f"{self.name}: line {event.start_mark.line + 1}: YAML anchors/aliases ('&', '*') are not "
                "allowed in params; write the values out"
            )
        return super().compose_node(parent, index)


def _read(path: Path) -> Any:
    if (size := path.stat().st_size) > MAX_PARAMS_BYTES:
        raise ConfigError(f"{path}: {size} bytes; a params file may have at most {MAX_PARAMS_BYTES}")
    try:
        loader = _PlainLoader(path.read_bytes().decode("utf-8"))
        loader.name = str(path)
        try:
            return loader.get_single_data() or {}
        finally:
            loader.dispose()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def _keys_at(loc: tuple) -> list[str]:
    """The keys allowed at a key path (walking the sections)."""
    model: Any = PipelineConfig
    for part in loc:
        kinds = getattr(model.model_fields[part].annotation, "__args__", (model.model_fields[part].annotation,))
        model = next(k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel))
    return sorted(model.model_fields)


def _message(error: Any, file: str) -> str:
    loc, kind, value = error["loc"], error["type"], error.get("input")
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or file
    parent = path.rsplit(".", 1)[0] if len(loc) > 1 else file
    if kind == "extra_forbidden":
        allowed = _keys_at(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        return f"{parent}: unknown key(s) {[loc[-1]]}{f'; did you mean {close[0]!r}?' if close else ''}; allowed: {allowed}"
    if kind == "missing":
        return f"{parent}: required key '{loc[-1]}' is missing"
    if kind == "literal_error":
        close = difflib.get_close_matches(str(value), re.findall(r"'([^']*)'", error["ctx"]["expected"]), n=1)
        return f"{path} must be one of {error['ctx']['expected']}, got {value!r}{f'; did you mean {close[0]!r}?' if close else ''}"
    if kind in ("float_type", "int_type"):
        return f"{path}: expected a number{' (a whole one)' if kind == 'int_type' else ''}, got {value!r}"
    if kind == "finite_number":
        return f"{path}: expected a finite number, got {value!r}"
    if kind == "bool_type":
        return f"{path}: expected true/false, got {value!r}"
    if kind == "value_error":
        text = str(error["ctx"]["error"])
        return f"{path} {text}" if text.startswith(("must", "is ")) else f"{path}: {text}"
    if kind in ("dict_type", "mapping_type", "model_type", "model_attributes_type", "tuple_type", "list_type"):
        return f"{path}: expected a {'list' if 'tuple' in kind or 'list' in kind else 'mapping'}, got {type(value).__name__}"
    return f"{path}: {error['msg']} (got {value!r})"


def _absolute(base: Path, value: str | None) -> str | None:
    if not value or "://" in value or os.path.isabs(value):
        return value
    return str((base / value).resolve())


def load_config(path: str | os.PathLike | None = None) -> PipelineConfig:
    """$PIPELINE_PARAMS, else ./params.yaml, else the project's params.yaml."""
    here = Path.cwd() / "params.yaml"
    default = here if here.exists() else Path(__file__).resolve().parents[3] / "params.yaml"
    params_path = Path(path or os.environ.get(PARAMS_ENV) or default)
    if not params_path.exists():
        raise ConfigError(f"params file not found: {params_path} (set {PARAMS_ENV} to choose one)")
    if not isinstance(raw := _read(params_path), dict):
        raise ConfigError(f"{params_path}: top level must be a mapping")
    try:
        config = PipelineConfig.model_validate({**raw, "params_path": str(params_path.resolve())})
    except ValidationError as exc:
        raise ConfigError("; ".join(_message(e, params_path.name) for e in exc.errors()[:5])) from None
    base, src = params_path.resolve().parent, config.dataset.source
    for key, value in (("uri", src.uri), ("root", src.root)):
        if value and ("://" in value or os.path.isabs(value)) and ".." in value.replace("\\", "/").split("/"):
            raise ConfigError(
                f"dataset.source.{key} {value!r} contains '..': write the path it means "
                "(sources are confined to their landing area)"
            )
    source = src.model_copy(update={"uri": _absolute(base, src.uri), "root": _absolute(base, src.root)})
    if source.root and not (source.uri + "/").startswith(source.root.rstrip("/") + "/"):
        raise ConfigError(f"dataset.source.uri {source.uri!r} is not under dataset.source.root {source.root!r}")
    env_root = os.environ.get(STORAGE_ENV)  # relative to where the command runs, not to the params file
    storage_root = _absolute(Path.cwd(), env_root) if env_root else _absolute(base, config.storage.root)
    remote = os.environ.get(DVC_REMOTE_ENV) or config.dvc.remote_url
    return config.model_copy(
        update={
            "dataset": config.dataset.model_copy(update={"source": source}),
            "storage": config.storage.model_copy(update={"root": storage_root}),
            "validation": config.validation.model_copy(update={"gx_root": _absolute(base, config.validation.gx_root)}),
            "dvc": config.dvc.model_copy(
                update={"repo_dir": _absolute(base, config.dvc.repo_dir), "remote_url": remote}
            ),
        }
    )


class _Schema(GenerateJsonSchema):
    def encode_default(self, dft: Any) -> Any:
        return super().encode_default(jsonable(dft))  # read-only mappings are written as plain ones


def schema() -> dict:
    """The JSON schema of params.yaml (for editors; `python -m pipeline params-schema`)."""
    out = PipelineConfig.model_json_schema(mode="validation", schema_generator=_Schema)
    out["properties"].pop("params_path")  # set by the loader, never written in a params file
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "params.yaml", **out}
