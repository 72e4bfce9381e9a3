"""Named credential profiles for unattended checks (the exporter, scheduled batches).

A profile is a ``Credentials``, the one credential type: its password is a
``Secret`` from the moment it is read.

Passwords never travel in a URL or on a command line, where logs, proxies and
``ps`` would show them. A profile is chosen by name; its secret comes from a
TOML file that only its owner may read, or from the environment::

    # ~/.config/maildiag/credentials.toml   (chmod 600)
    [profiles.kunde]
    user = "alice@kunde.test"
    password = "..."

    [profiles.shop]
    user = "info@shop.test"
    password_env = "SHOP_MAIL_PASSWORD"   # read from this variable instead

    # or, without a file: MAILDIAG_PROFILE_KUNDE_USER / MAILDIAG_PROFILE_KUNDE_PASSWORD
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path

from .credentials_input import Credentials, Secret, private_file_problem

__all__ = ["CredentialsError", "load_profiles", "profiles_from_env"]

PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ENV_VARIABLE = re.compile(r"MAILDIAG_PROFILE_([A-Z0-9_]+?)_(USER|PASSWORD)")
_KEYS = {"user", "password", "password_env"}


class CredentialsError(Exception):
    """The credential file or a profile in it cannot be used; the message says why."""


def load_profiles(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> dict[str, Credentials]:
    """The profiles in the TOML file at *path*, by name.

    Refuses a file that its group or others may read or write: a password
    file anyone on the machine can read is a leak waiting to be noticed (the
    same rule ssh applies to private keys).
    """
    environ = os.environ if environ is None else environ
    file = Path(path)
    try:
        with open(file, "rb") as handle:
            problem = private_file_problem(file, os.fstat(handle.fileno()), "credential file")
            if problem:
                raise CredentialsError(problem)
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise CredentialsError(f"{file}: no such credential file") from None
    except PermissionError:
        raise CredentialsError(f"{file}: not allowed to read the credential file") from None
    except IsADirectoryError:
        raise CredentialsError(f"{file}: is a directory, not a credential file") from None
    except tomllib.TOMLDecodeError as exc:
        raise CredentialsError(f"{file}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise CredentialsError(f"{file}: not valid UTF-8") from None

    unknown = set(data) - {"profiles"}
    if unknown:
        raise CredentialsError(
            f"{file}: unknown table(s) {', '.join(sorted(unknown))}; "
            "profiles go under [profiles.NAME]"
        )
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict):
        raise CredentialsError(f"{file}: 'profiles' must be a table of [profiles.NAME] tables")
    return {name: _profile(file, name, entry, environ) for name, entry in profiles.items()}


def profiles_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Credentials]:
    """Profiles from ``MAILDIAG_PROFILE_<NAME>_USER`` and ``..._PASSWORD`` pairs.

    The name is lower-cased (``MAILDIAG_PROFILE_KUNDE_USER`` → ``kunde``); a
    variable without its twin is an error rather than a silent half profile.
    """
    environ = os.environ if environ is None else environ
    parts: dict[str, dict[str, str]] = {}
    for variable, value in environ.items():
        match = _ENV_VARIABLE.fullmatch(variable)
        if match:
            parts.setdefault(match[1].lower(), {})[match[2].lower()] = value
    profiles = {}
    for name, entry in sorted(parts.items()):
        missing = {"user", "password"} - set(entry)
        if missing:
            variable = f"MAILDIAG_PROFILE_{name.upper()}_{missing.pop().upper()}"
            raise CredentialsError(f"profile {name!r}: {variable} is not set")
        if not entry["user"]:
            raise CredentialsError(f"profile {name!r}: the user name is empty")
        profiles[name] = Credentials(entry["user"], Secret(entry["password"]))
    return profiles


def _profile(file: Path, name: object, entry: object, environ: Mapping[str, str]) -> Credentials:
    where = f"{file}: profile {name!r}"
    if not isinstance(name, str) or not PROFILE_NAME.fullmatch(name):
        raise CredentialsError(f"{where}: a name may hold letters, digits, '_', '.', '-'")
    if not isinstance(entry, dict):
        raise CredentialsError(f"{where}: must be a table with user and password")
    unknown = set(entry) - _KEYS
    if unknown:
        raise CredentialsError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    user = entry.get("user")
    if not isinstance(user, str) or not user:
        raise CredentialsError(f"{where}: 'user' must be a non-empty string")
    if ("password" in entry) == ("password_env" in entry):
        raise CredentialsError(f"{where}: give exactly one of 'password' and 'password_env'")
    if "password_env" in entry:
        variable = entry["password_env"]
        if not isinstance(variable, str) or not variable:
            raise CredentialsError(f"{where}: 'password_env' must name a variable")
        if variable not in environ:
            raise CredentialsError(f"{where}: the variable {variable} is not set")
        password = environ[variable]
    else:
        password = entry["password"]
        if not isinstance(password, str):
            raise CredentialsError(f"{where}: 'password' must be a string")
    return Credentials(user, Secret(password))
