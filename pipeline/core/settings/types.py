"""What a settings value may be: finite numbers (no text, no booleans), text YAML did not turn into a
boolean, read-only mappings, closed frozen sections. The loader adds the key path to messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, AllowInfNan, BaseModel, BeforeValidator, ConfigDict, Strict


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _text(value: Any) -> str:
    if value is None:
        raise ValueError("expected text, got nothing (null)")
    if isinstance(value, bool):  # YAML 1.1 reads unquoted yes/no/on/off/true/false as booleans
        raise ValueError(
            f'got the boolean {value!r}; YAML reads unquoted yes/no/true/false as booleans, so quote it ("Yes")'
        )
    if isinstance(value, dict | list):
        raise ValueError(f"expected text, got {type(value).__name__}")
    return str(value)


def bounded(check, message: str) -> AfterValidator:
    def validate(value):
        if value is not None and not check(value):
            raise ValueError(message)
        return value

    return AfterValidator(validate)


Number = Annotated[float, Strict(), AllowInfNan(False)]
Whole = Annotated[int, Strict()]
Flag = Annotated[bool, Strict()]
Text = Annotated[str, BeforeValidator(_text)]
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
    return FrozenDict(values)  # the default of a frozen_map field
