"""Registry of methods: a dict filled by a decorator (as timm's ``register_model``)."""

from __future__ import annotations

from cmkd.harness.errors import unknown

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
