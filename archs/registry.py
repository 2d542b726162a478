"""Registry of architectures: the generic :class:`cmkd.registry.Registry`, filled by ``@register_arch``, and
``timm:<name>`` for any timm model (built on demand, never registered)."""

from __future__ import annotations

from cmkd.errors import UserError
from cmkd.registry import Registry

from .base import Arch

ARCHS: Registry[type[Arch]] = Registry("architecture")
register_arch = ARCHS.register

#: the paper's network, the default of every role
DEFAULT_ARCH = "resnet18"
TIMM_PREFIX = "timm:"


def get_arch(name: str) -> type[Arch]:
    """The architecture class of ``name``: a registered entry, or ``timm:<model>`` for any timm model."""
    if isinstance(name, str) and name.startswith(TIMM_PREFIX):
        from .timm_archs import timm_arch

        return timm_arch(name[len(TIMM_PREFIX):])
    if not isinstance(name, str):
        raise UserError(f"an architecture is a name (cmkd archs lists them), got {name!r}")
    return ARCHS.lookup(name)
