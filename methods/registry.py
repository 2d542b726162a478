"""Registry of methods: a dict filled by a decorator (as timm's ``register_model``)."""

from __future__ import annotations

from cmkd.errors import UserError, unknown

from .base import Method

METHODS: dict[str, type[Method]] = {}


def register_method(name: str):
    def deco(cls: type[Method]) -> type[Method]:
        if name in METHODS:
            raise ValueError(f"method {name!r} registered twice")
        cls.name = name
        METHODS[name] = cls
        return cls

    return deco


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise unknown("method", name, METHODS)
    return METHODS[name]


def teacher_method(kind: str) -> type[Method]:
    """The registered method whose trials teach ``kind`` ("cross-modal" or "multi-modal")."""
    found = [cls for cls in METHODS.values() if cls.teaches == kind]
    if len(found) != 1:
        raise UserError(f"{len(found)} registered methods teach the {kind} scenario "
                        f"({', '.join(c.name for c in found) or 'none'}); exactly one must declare teaches = {kind!r}")
    return found[0]
