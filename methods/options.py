"""Method options as a schema: each field declares its type (the annotation), its range or choices, and
a one-line help. Validation, ``--opt`` parsing and ``cmkd methods`` all read the same declaration.

    temperature: float = option(4.0, "softmax temperature T", low=0, high=100, low_open=True)
    reduction: str = option("sum", "how a term combines modalities", choices=("sum", "concat-mean"))
    temp_lr: float | None = option(None, "theta's own lr (None: the student's)", low=0)
"""

from __future__ import annotations

import typing
from dataclasses import MISSING, field, fields
from typing import Any

from cmkd.errors import UserError, check_fields, nearest


def option(default: Any, help: str, *, low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False, choices: tuple | None = None) -> Any:
    """A dataclass field with its schema: ``low``/``high`` bound a number (open with ``*_open``), ``choices``
    lists the values a text option may take."""
    return field(default=default, metadata={"help": help, "low": low, "high": high, "low_open": low_open,
                                            "high_open": high_open, "choices": tuple(choices) if choices else None})


def interval(meta: dict) -> str:
    """'(0, 100]', '>= 0', '' for a field's bounds."""
    low, high = meta.get("low"), meta.get("high")
    if low is not None and high is not None:
        return f"{'(' if meta['low_open'] else '['}{low:g}, {high:g}{')' if meta['high_open'] else ']'}"
    if low is not None:
        return f"{'>' if meta['low_open'] else '>='} {low:g}"
    if high is not None:
        return f"{'<' if meta['high_open'] else '<='} {high:g}"
    return ""


def _inside(value: float, meta: dict) -> bool:
    low, high = meta.get("low"), meta.get("high")
    if low is not None and (value < low or (meta["low_open"] and value == low)):
        return False
    return not (high is not None and (value > high or (meta["high_open"] and value == high)))


def validate(options: Any) -> None:
    """Types first (an int option takes an int, a float a finite number), then each declared range/choice."""
    check_fields(options, "option ")
    for f in fields(options):
        value, meta = getattr(options, f.name), f.metadata
        if value is None or not meta:
            continue
        if meta.get("choices") and value not in meta["choices"]:
            valid = ", ".join(repr(c) if c == "" else str(c) for c in meta["choices"])
            hint = nearest(str(value), [str(c) for c in meta["choices"] if c != ""])
            raise UserError(f"option {f.name} must be one of {valid}, got {value!r}{hint}")
        if not isinstance(value, bool) and isinstance(value, (int, float)) and not _inside(value, meta):
            bound = interval(meta)
            raise UserError(f"option {f.name} must {'lie in ' if bound[0] in '([' else 'be '}{bound}, got {value}")


def schema(cls: type) -> list[dict[str, Any]]:
    """One row per option: name, type, default, range or choices, help (what ``cmkd methods`` prints)."""
    hints = typing.get_type_hints(cls)
    rows = []
    for f in fields(cls):
        kind = hints[f.name]
        name = getattr(kind, "__name__", None) or str(kind).replace("typing.", "")
        if type(None) in typing.get_args(kind):
            inner = [a for a in typing.get_args(kind) if a is not type(None)]
            name = f"{inner[0].__name__} or None" if len(inner) == 1 else str(kind)
        meta = f.metadata or {}
        allowed = "|".join(str(c) or '""' for c in meta["choices"]) if meta.get("choices") else interval(meta)
        rows.append({"name": f.name, "type": name, "default": None if f.default is MISSING else f.default,
                     "allowed": allowed, "help": meta.get("help", "")})
    return rows
