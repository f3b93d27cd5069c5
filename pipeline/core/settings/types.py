"""What a settings value may be: finite numbers, text YAML did not turn into a boolean, immutable
mappings, closed frozen sections. Messages name the problem; the loader adds the key path."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return value


def _whole(value: Any) -> int:
    if float(_number(value)) != int(value):
        raise ValueError(f"expected a whole number, got {value!r}")
    return int(value)


def _text(value: Any) -> str:
    if value is None:
        raise ValueError("expected text, got nothing (null)")
    if isinstance(value, bool):  # YAML 1.1 reads unquoted yes/no/on/off/true/false as booleans
        raise ValueError(
            f"got the boolean {value!r}; YAML reads unquoted yes/no/true/false as booleans, "
            'so quote the value (e.g. "Yes")'
        )
    if isinstance(value, dict | list):
        raise ValueError(f"expected text, got {type(value).__name__}")
    return str(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true/false, got {value!r}")
    return value


def bounded(check, message: str):
    def validate(value):
        if value is not None and not check(value):
            raise ValueError(message.format(value=value))
        return value

    return AfterValidator(validate)


Number = Annotated[float, BeforeValidator(_number)]
OptNumber = Annotated[float | None, BeforeValidator(lambda v: None if v is None else _number(v))]
Whole = Annotated[int, BeforeValidator(_whole)]
Text = Annotated[str, BeforeValidator(_text)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Positive = Annotated[Whole, bounded(lambda v: v >= 1, "must be at least 1")]
Share = Annotated[Number, bounded(lambda v: 0 <= v < 1, "must be in [0, 1)")]  # of rows, values, labels
Fraction = Annotated[Number, bounded(lambda v: 0 < v <= 1, "must be in (0, 1]")]
Probability = Annotated[Number, bounded(lambda v: 0 < v < 1, "must be between 0 and 1")]
Resamples = Annotated[Whole, bounded(lambda v: v >= 100, "must be >= 100 (p-values need resolution)")]


class FrozenDict(dict):
    """A mapping that cannot be changed after loading (a dict, so it dumps, copies and pickles)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("settings are read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse  # type: ignore[assignment]

    def __reduce__(self) -> tuple:
        return FrozenDict, (dict(self),)

    def __deepcopy__(self, memo: dict) -> FrozenDict:
        return self


def frozen_map(value_type: Any) -> Any:
    return Annotated[Mapping[str, value_type], AfterValidator(FrozenDict)]


def frozen(**values: Any) -> Any:
    """The default of a frozen_map field."""
    return FrozenDict(values)
