"""Exceptions the package raises for problems a user can fix (bad input, missing files).

The CLI prints these as one line on stderr and exits non-zero; anything else is a bug.
"""


class RefineFuseError(Exception):
    """Base class of user-facing errors; ``str(err)`` is the one-line message."""


class InputError(RefineFuseError):
    """Unreadable / missing / mismatched / unpaired input, or an output collision."""
