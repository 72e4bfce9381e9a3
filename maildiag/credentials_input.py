"""The login for the mailbox checks, and where its password may come from.

A password is held in a ``Secret``: its ``repr``/``str``/``format`` are
redacted, so a traceback, a log line or an f-string never shows it, and only
the code that sends it to a server calls ``reveal()``. It may come from the
``MAILDIAG_PASSWORD`` variable, a file only its owner can read, or a hidden
prompt; never from the command line, where ``ps`` and shell history show it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from msgspec import Struct, structs

__all__ = [
    "PASSWORD_VARIABLE",
    "Credentials",
    "CredentialsInputError",
    "Secret",
    "private_file_problem",
    "read_password_file",
    "resolve_password",
]

PASSWORD_VARIABLE = "MAILDIAG_PASSWORD"
_MAX_PASSWORD_FILE = 64 * 1024
_REDACTED = "********"


class CredentialsInputError(Exception):
    """No usable password; the message says why and never contains the password."""


class Secret:
    """A string that does not show itself: ``repr``, ``str`` and ``format`` are redacted."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("a Secret holds a str")
        self._value = value

    def reveal(self) -> str:
        """The password itself, for the bytes sent to a server and nothing else."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({_REDACTED!r})"

    def __str__(self) -> str:
        return _REDACTED

    def __format__(self, spec: str) -> str:
        return _REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> str | tuple[object, ...]:
        # Pickling would copy the password into whatever stores the pickle.
        raise TypeError("a Secret cannot be pickled")

    def __bool__(self) -> bool:
        return bool(self._value)


class Credentials(Struct, frozen=True):
    """A mailbox login. The password is a ``Secret``, so ``repr`` is safe to log."""

    user: str
    password: Secret

    def __post_init__(self) -> None:
        if not isinstance(self.password, Secret):
            structs.force_setattr(self, "password", Secret(self.password))


def private_file_problem(file: Path, info: os.stat_result, what: str) -> str | None:
    """Why a file holding secrets must not be used, or None: not a regular file, or
    readable or writable by its group or others (the rule ssh applies to private keys)."""
    if not stat.S_ISREG(info.st_mode):
        return f"{file}: not a regular file"
    if os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        mode = stat.S_IMODE(info.st_mode)
        return (
            f"{file}: refusing a {what} that others can access (mode {mode:04o}); "
            f"make it private: chmod 600 {file}"
        )
    return None


def read_password_file(path: str | os.PathLike[str]) -> Secret:
    """The password in the file at *path*: its first line, without the line end.

    Refuses a file that its group or others may access (``mode & 0o077``): a
    password file anyone on the machine can read is a leak waiting to be
    noticed (the rule ssh applies to private keys).
    """
    file = Path(path)
    try:
        with open(file, "rb") as handle:
            problem = private_file_problem(file, os.fstat(handle.fileno()), "password file")
            if problem:
                raise CredentialsInputError(problem)
            data = handle.read(_MAX_PASSWORD_FILE + 1)
    except FileNotFoundError:
        raise CredentialsInputError(f"{file}: no such password file") from None
    except PermissionError:
        raise CredentialsInputError(f"{file}: not allowed to read the password file") from None
    except IsADirectoryError:
        raise CredentialsInputError(f"{file}: is a directory, not a password file") from None
    if len(data) > _MAX_PASSWORD_FILE:
        raise CredentialsInputError(f"{file}: too large for a password file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CredentialsInputError(f"{file}: not valid UTF-8") from None
    # Only the first line: "echo secret > file" adds a newline that is not part of it.
    password = text.split("\n", 1)[0].removesuffix("\r")
    if not password:
        raise CredentialsInputError(f"{file}: the first line is empty")
    return Secret(password)


def resolve_password(
    user: str,
    *,
    password_file: str | os.PathLike[str] | None,
    environ: Mapping[str, str],
    interactive: bool,
    prompt: Callable[[str], str],
) -> Secret:
    """The password for *user*: ``--password-file``, else ``MAILDIAG_PASSWORD``, else a prompt.

    An explicitly named file wins over the environment. ``prompt`` is only
    called when ``interactive`` (standard input is a terminal); otherwise a
    missing password is an error rather than a hang on a pipe.
    """
    if password_file is not None:
        return read_password_file(password_file)
    from_env = environ.get(PASSWORD_VARIABLE)
    if from_env:
        return Secret(from_env)
    if not interactive:
        raise CredentialsInputError(
            f"no password for {user}: set {PASSWORD_VARIABLE}, pass --password-file FILE, "
            "or run on a terminal to be asked"
        )
    password = prompt(f"Password for {user}")
    if not password:
        raise CredentialsInputError("no password given")
    return Secret(password)
