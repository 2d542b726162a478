"""Registry of methods: the generic :class:`cmkd.registry.Registry`, filled by ``@register_method``."""

from __future__ import annotations

from cmkd.errors import UserError
from cmkd.registry import Registry

from .base import Method

METHODS: Registry[type[Method]] = Registry("method")
register_method = METHODS.register
get_method = METHODS.lookup


def teacher_method(kind: str) -> type[Method]:
    """The registered method whose trials teach ``kind`` ("cross-modal" or "multi-modal")."""
    found = [cls for cls in METHODS.values() if cls.teaches == kind]
    if len(found) != 1:
        raise UserError(f"{len(found)} registered methods teach the {kind} scenario "
                        f"({', '.join(c.name for c in found) or 'none'}); exactly one must declare teaches = {kind!r}")
    return found[0]
