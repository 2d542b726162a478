"""Floor 0: the one registry class behind methods, data sets (and architectures): a name -> class map
filled by a decorator, as timm's ``register_model``.

Names are checked at registration (``[a-z0-9][a-z0-9_-]*``): a registered name becomes part of trial
folder paths, MLflow tags and table rows, so it must never carry a path separator or a space.
"""

from __future__ import annotations

import re
from typing import Callable, Generic, Iterator, TypeVar

from .errors import unknown

T = TypeVar("T", bound=type)

NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


class Registry(Generic[T]):
    """Registered classes by name. Reads like the dict it used to be (``in``, ``[]``, ``get``, ``items``,
    ``values``, iteration in registration order); ``register`` is the decorator and ``lookup`` the
    checked access that raises a one-line :class:`~cmkd.errors.UserError` with a did-you-mean."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "method", "data set": what the error messages call an entry
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: register the class under ``name`` and set its ``name`` attribute."""
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ValueError(f"{self.kind} name {name!r} must match [a-z0-9][a-z0-9_-]* (it names folders and rows)")

        def deco(cls: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            cls.name = name
            self._entries[name] = cls
            return cls

        return deco

    def lookup(self, name: str) -> T:
        if name not in self._entries:
            raise unknown(self.kind, name, self._entries)
        return self._entries[name]

    # ---- read like a dict ----------------------------------------------------------------------
    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str, default: T | None = None) -> T | None:
        return self._entries.get(name, default)

    def items(self):
        return self._entries.items()

    def values(self):
        return self._entries.values()

    def keys(self):
        return self._entries.keys()

    def unregister(self, name: str) -> None:
        """Remove an entry (tests that register a throw-away method clean up with it)."""
        self._entries.pop(name, None)
