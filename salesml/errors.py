"""Named errors whose messages say what is wrong and how to fix it.

The CLI prints ``str(error)`` as its one-line reason; the API maps them to problem+json.
"""

from __future__ import annotations

from collections.abc import Sequence


class SalesmlError(Exception):
    """Base class: every message states the problem and a fix."""


class ConfigError(SalesmlError):
    """Bad settings or arguments."""


class WarehouseError(SalesmlError):
    """The warehouse cannot be opened or read."""


class ImportFailedError(SalesmlError):
    """The whole import was refused; the warehouse is unchanged."""


class WrongFileError(ImportFailedError):
    """A file is not what the chosen format expects."""

    def __init__(self, path: str, expected: str, hint: str = "") -> None:
        self.path = path
        msg = f"{path} does not look like {expected}"
        super().__init__(f"{msg}. {hint}".strip() if hint else msg)


class MissingColumnsError(ImportFailedError):
    """A source file lacks columns the format requires."""

    def __init__(
        self, path: str, missing: Sequence[str], present: Sequence[str], hint: str = ""
    ) -> None:
        self.path = path
        self.missing = list(missing)
        shown = ", ".join(list(present)[:20])
        fix = hint or "rename the columns in the export or use --format mapping with a mapping file"
        super().__init__(
            f"{path} is missing required column(s) {', '.join(self.missing)} "
            f"(it has: {shown}); {fix}"
        )


class MappingError(ImportFailedError):
    """A mapping file is invalid."""
