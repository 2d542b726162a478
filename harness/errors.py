"""The harness's name for :mod:`cmkd.errors` (which lives below every floor so that data sets and
methods raise the same one-line errors without importing the harness)."""

from cmkd.errors import Interrupted, UserError, check_fields, check_value, nearest, unknown

__all__ = ["Interrupted", "UserError", "check_fields", "check_value", "nearest", "unknown"]
