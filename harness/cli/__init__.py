"""Floor 6, the ``cmkd`` command: one module per sub-command group, each with ``add_parser(sub)``;
``main`` holds the parser, ``cmkd train``/``methods``/``datasets`` and the one-line error handling."""

from .main import entry, main

__all__ = ["entry", "main"]
