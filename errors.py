"""Floor 0: user-facing errors (one line, exit code 2, never a traceback) and the type checks that
raise them. Every floor imports these; this module imports nothing of cmkd."""

from __future__ import annotations

import math
import typing
from dataclasses import fields
from typing import Any


class UserError(Exception):
    """Bad input that the user can fix; the message names the problem and the fix."""

    exit_code = 2


class Interrupted(Exception):
    """A run stopped by a signal after keeping what had finished; exit code 128 + the signal number."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.exit_code = 128 + signum


def nearest(name: str, valid: list[str] | tuple[str, ...]) -> str:
    """A ' (did you mean X?)' hint, or '' when nothing is close."""
    import difflib

    match = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


def unknown(kind: str, name: str, valid) -> UserError:
    valid = sorted(valid)
    return UserError(f"unknown {kind} {name!r}{nearest(name, valid)}; valid: {', '.join(valid)}")


def check_value(what: str, value: Any, kind: type, optional: bool = False) -> None:
    """Refuse a value of the wrong type with a one-line error: an int field takes an int (not 1.5 or
    true), a float field a finite number, a bool field true/false, a str field text."""
    if value is None and optional:
        return
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    else:
        ok = isinstance(value, kind)
    if not ok:
        name = {bool: "true or false", int: "an integer", float: "a finite number", str: "text"}.get(kind, kind.__name__)
        raise UserError(f"{what} must be {name}, got {value!r}")


def check_fields(obj: Any, what: str) -> None:
    """Type-check every field of a dataclass instance against its annotation (int, float, bool, str, X | None)."""
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) == 1 and type(None) in typing.get_args(hint)
        kind = args[0] if optional else hint
        if kind in (int, float, bool, str):
            check_value(f"{what}{f.name}", getattr(obj, f.name), kind, optional)
