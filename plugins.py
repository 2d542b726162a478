"""Plugins: modules that register methods or data sets from outside this package.

A plugin is a dotted module name (importable where the driver and every worker run) or a path to a
``.py`` file (on storage every node sees). Importing it runs its ``@register_method`` /
``@register_dataset`` decorators; the benchmark config's ``plugins`` and ``$CMKD_PLUGINS``
(``os.pathsep``-separated) list them, and every Ray worker imports them before its trial.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path

from .errors import UserError


def plugins_from_env() -> tuple[str, ...]:
    return tuple(p for p in os.environ.get("CMKD_PLUGINS", "").split(os.pathsep) if p)


def load_plugins(plugins: tuple[str, ...] | list[str] = ()) -> None:
    """Import each plugin once per process (a second import would register its methods twice)."""
    for plugin in (*plugins_from_env(), *plugins):
        if plugin.endswith(".py"):
            path = Path(plugin).resolve()
            name = f"cmkd_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
            if name in sys.modules:
                continue
            if not path.is_file():
                raise UserError(f"plugin {plugin} does not exist; plugins are .py files or importable module names")
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)  # type: ignore[union-attr]
            except UserError:
                del sys.modules[name]
                raise
            except Exception as exc:
                del sys.modules[name]
                raise UserError(f"plugin {plugin} failed to import ({type(exc).__name__}: {exc})") from None
        elif plugin not in sys.modules:
            try:
                importlib.import_module(plugin)
            except ImportError as exc:
                raise UserError(f"plugin module {plugin!r} cannot be imported ({exc}); pass a .py path or fix "
                                "PYTHONPATH on every node") from None
            except UserError:
                raise
            except Exception as exc:  # a module that does not parse, or raises while it registers its methods
                raise UserError(f"plugin module {plugin!r} failed to import ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); fix the module") from None
