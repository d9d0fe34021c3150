"""One rooted exception tree for everything desilab reports to a user.

Every user-facing failure is a :class:`DesilabError` that says *what* went wrong and
*where* (file, HDU, column, parameter). User errors also subclass the matching builtin
(``ValueError``, ``OSError``...) so that generic callers can still catch them. Each class
has a stable ``code`` string that the CLI and the data service serialise.

The CLI prints ``str(error)`` on one line and exits non-zero; the traceback appears
only with ``--debug``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ChecksumError",
    "ComputeError",
    "ConfigError",
    "DesilabError",
    "FetchError",
    "FormatError",
    "InputError",
    "InternalError",
    "SchemaError",
    "StageError",
    "StoreError",
]


class DesilabError(Exception):
    """Root of every error desilab raises on purpose.

    Parameters
    ----------
    message
        What went wrong, in words a user understands.
    file
        The file involved, if any.
    hdu
        The FITS HDU (EXTNAME or index) involved, if any.
    column
        The table column involved, if any.
    parameter
        The user-supplied parameter (CLI option, config key, query field) involved.
    hint
        How to fix it, if known.
    """

    code = "desilab_error"
    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        hdu: str | int | None = None,
        column: str | None = None,
        parameter: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.hdu = hdu
        self.column = column
        self.parameter = parameter
        self.hint = hint
        super().__init__(self.__str__())

    def where(self) -> str:
        """Return the location part of the message, e.g. ``f.fits[FIBERMAP].TARGETID``."""
        parts = []
        if self.file is not None:
            loc = self.file
            if self.hdu is not None:
                loc += f"[{self.hdu}]"
            if self.column is not None:
                loc += f".{self.column}"
            parts.append(loc)
        else:
            if self.hdu is not None:
                parts.append(f"HDU {self.hdu}")
            if self.column is not None:
                parts.append(f"column {self.column}")
        if self.parameter is not None:
            parts.append(f"parameter {self.parameter}")
        return ", ".join(parts)

    def __str__(self) -> str:
        where = self.where()
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text

    def to_dict(self) -> dict[str, object]:
        """Serialise for JSON responses and logs."""
        return {
            "error": self.code,
            "message": self.message,
            "file": self.file,
            "hdu": self.hdu,
            "column": self.column,
            "parameter": self.parameter,
            "hint": self.hint,
        }

    def __reduce__(self):  # keep context when crossing process boundaries
        return (
            _rebuild,
            (
                type(self),
                self.message,
                {
                    "file": self.file,
                    "hdu": self.hdu,
                    "column": self.column,
                    "parameter": self.parameter,
                    "hint": self.hint,
                },
            ),
        )


def _rebuild(cls: type[DesilabError], message: str, kwargs: dict) -> DesilabError:
    return cls(message, **kwargs)


class InputError(DesilabError, ValueError):
    """Bad user input: arguments, files, queries."""

    code = "input_error"


class ConfigError(InputError):
    """Invalid or inconsistent settings (environment, desilab.toml, CLI options)."""

    code = "config_error"


class FormatError(InputError):
    """A file is not what it claims: not FITS, truncated, missing HDU/column, wrong dtype."""

    code = "format_error"


class SchemaError(FormatError):
    """A file is readable but does not match its product's golden schema."""

    code = "schema_error"


class FetchError(DesilabError, OSError):
    """A download failed (network, HTTP status, bad listing)."""

    code = "fetch_error"


class ChecksumError(FetchError):
    """A downloaded file does not match its published checksum."""

    code = "checksum_error"


class StoreError(DesilabError):
    """The catalog store refused an operation or is unreachable."""

    code = "store_error"


class ComputeError(DesilabError, RuntimeError):
    """A shard failed inside the compute layer; the original error is chained."""

    code = "compute_error"


class StageError(DesilabError, RuntimeError):
    """A `desilab run` stage failed or its post-run checks did not pass."""

    code = "stage_error"


class InternalError(DesilabError, RuntimeError):
    """A bug in desilab: please report it with the ``--debug`` traceback."""

    code = "internal_error"
