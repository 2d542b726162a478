"""User-facing errors: one line, exit code 2, never a traceback."""


class UserError(Exception):
    """Bad input that the user can fix; the message names the problem and the fix."""

    exit_code = 2


def nearest(name: str, valid: list[str] | tuple[str, ...]) -> str:
    """A ' (did you mean X?)' hint, or '' when nothing is close."""
    import difflib

    match = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


def unknown(kind: str, name: str, valid) -> UserError:
    valid = sorted(valid)
    return UserError(f"unknown {kind} {name!r}{nearest(name, valid)}; valid: {', '.join(valid)}")
