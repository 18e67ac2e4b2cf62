"""Typed settings with their limits: one declaration per setting (type, default, range or choices, description).

A setting is a field of a frozen dataclass made with ``setting(default, description, ...)``; its ``Limits`` live in
the field's metadata. ``check_settings`` validates every such field of an instance with one rule per kind of limit,
so RunnerConfig and the node's parameters (which declare the same limits to ROS) refuse a value for the same
reason, in the same words.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import Any


class SettingError(ValueError):
    """A setting outside its limits; ``name`` says which, ``why`` what is wrong."""

    def __init__(self, name: str, why: str, value: Any) -> None:
        super().__init__(f"{name}: {why} (got {value!r})")
        self.name, self.why, self.value = name, why, value


@dataclass(frozen=True)
class Limits:
    """What a setting accepts beyond its type, and the one-line description that documents it everywhere."""

    description: str
    choices: tuple[str, ...] = ()
    """Allowed values (strings), when the setting is a choice."""
    pattern: str = ""
    """A regular expression the whole value must match, with ``pattern_text`` saying it in words."""
    pattern_text: str = ""
    positive: bool = False
    """A finite number above zero."""
    at_least: int | None = None
    """An integer no smaller than this."""
    multiple_of: int | None = None
    """A positive integer multiple of this."""
    note: str = ""
    """What is accepted, in words, where the owner checks it itself (e.g. a rule across several settings)."""

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is outside these limits, or None."""
        if self.choices and value not in self.choices:
            return f"must be one of {self.choices}"
        if self.pattern and not (isinstance(value, str) and re.fullmatch(self.pattern, value)):
            return f"must be {self.pattern_text}"
        if self.positive and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not math.isfinite(value) or value <= 0):
            return "must be a positive finite number"
        integer = isinstance(value, int) and not isinstance(value, bool)
        if self.at_least is not None and not (integer and value >= self.at_least):
            return f"must be an integer >= {self.at_least}"
        if self.multiple_of is not None and not (integer and value > 0 and value % self.multiple_of == 0):
            return f"must be a positive multiple of {self.multiple_of}"
        return None


def setting(default: Any, description: str, **limits: Any) -> Any:
    """A dataclass field with ``default`` and its Limits (``description`` plus any Limits keyword)."""
    return field(default=default, metadata={"limits": Limits(description, **limits)})


def check_settings(instance: Any, names: tuple[str, ...] | None = None) -> None:
    """SettingError for the first field (of ``names``, default all) of ``instance`` outside its Limits."""
    for f in fields(instance):
        if "limits" in f.metadata and (names is None or f.name in names):
            value = getattr(instance, f.name)
            why = f.metadata["limits"].problem(value)
            if why is not None:
                raise SettingError(f.name, why, value)
