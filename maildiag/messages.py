"""Error messages of the command line in the user's language.

The messages are written in English where they arise: in click (which
maildiag cannot change), in the CLI, in ``dns.to_ascii``, in the credential
and typed-setting parsers. Rather than thread a language through all of
them, the one place that prints them (``cli.main``) hands the English text
to ``translate``, which recognises it by its template and fills the German
template with the same facts. A fact that is itself a message (the reason
after "Invalid value for '--timeout':") is translated in turn; anything not
recognised (an operating system's error text) stays as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache

from . import i18n

CONTEXT = "cli"
# Facts that hold a message of their own, translated in turn.
_NESTED = ("message", "detail", "reason")

# Most specific first: the first template that matches the whole text wins.
TEMPLATES: tuple[str, ...] = (
    # added by cli.main to every usage error: peeled off first
    "{message} (see '{command} --help')",
    # click's own messages (click 8.1 to 8.5)
    "No such option {name}. Did you mean {possibility}?",
    "No such option {name}. (Did you mean one of: {possibilities}?)",
    "No such option {name}.",
    "No such option: {name} Did you mean {possibility}?",
    "No such option: {name} (Possible options: {possibilities})",
    "No such option: {name}",
    "No such command {name}.",
    "Missing argument {param}.",
    "Missing option {param}.",
    "Invalid value for {param}: {message}",
    "Got unexpected extra argument ({args})",
    "Got unexpected extra arguments ({args})",
    "Option {name} requires an argument.",
    "Option {name} requires {count} arguments.",
    "Option {name} does not take a value.",
    "{value} is not a valid float range.",
    "{value} is not a valid integer range.",
    "{value} is not a valid float.",
    "{value} is not a valid integer.",
    "{value} is not one of {choices}.",
    "{value} is not in the range {range}.",
    "Could not open file {filename}: {message}",
    "File {filename} does not exist.",
    "File {filename} is a directory.",
    "File {filename} is not readable.",
    "Path {filename} does not exist.",
    "No such file or directory",
    "Permission denied",
    "Is a directory",
    # maildiag's CLI
    "{value} is not a finite number.",
    "--password-file needs --user",
    "--sync needs --user (it logs in to send a test message)",
    "--cert-critical-days must not be larger than --cert-warning-days",
    "--quota-warning must not be larger than --quota-critical",
    "settings never writes to the mailbox; --sync belongs to check",
    "cannot listen on {listen}: {reason}",
    "{value}: expected ADDR:PORT, for example 127.0.0.1:9137",
    "{value}: write an IPv6 address in brackets, e.g. [::1]:9137",
    "maildiag exporter on {url} (probe: /probe?target=DOMAIN; {count} credential profile(s))",
    "aborted",
    "interrupted",
    "{value} is not an address at {domain} (LOCAL@{same})",
    "the address must not contain CR, LF or NUL",
    # the check's request
    "cannot use the CA file {file}: {detail}",
    "no usable PEM certificate in {file}: {detail}",
    "the timeout must be a positive number of seconds, not {value}",
    "the deadline must be a positive number of seconds, not {value}",
    # domain names (dns.to_ascii)
    "the domain is empty",
    "{domain} looks like a URL: give the domain only; try {host}",
    "{domain} looks like a URL: give the domain only",
    "{domain} is an email address: give the domain, not the address; try {host}",
    "{domain} is an email address: give the domain, not the address",
    "{domain} looks like a URL or a path: give the domain only; try {host}",
    "{domain} looks like a URL or a path: give the domain only",
    "{domain} is not a valid domain name: {bad} is not allowed",
    "{domain} is not a valid domain name: {detail}",
    "{domain} is too long: {length} characters, at most 253 are allowed",
    "{domain} has an empty label (two dots in a row, or a leading dot)",
    "{domain} contains {bad}: only letters, digits and '-' are allowed",
    "{domain}: {label} is not a valid IDNA A-label ({detail})",
    "{domain}: {label} is not a valid internationalised label ({detail})",
    "{domain}: the label {label} starts or ends with a hyphen",
    "{domain}: the label {label}... is {length} characters long, at most 63 are allowed",
    # name servers
    "bad nameserver {text}: expected [IPv6]:port",
    "bad nameserver {text}: give an IP address, optionally with :port",
    "bad nameserver {text}: {port} is not a port number",
    # what the customer typed (check --typed)
    "{text}: expected PROTO:HOST:PORT:SECURITY, e.g. imap:mail.example.org:993:ssl",
    "{text}: PROTO must be imap, pop3 or smtp",
    "{text}: PORT must be a number from 1 to 65535",
    "{text}: SECURITY must be none, starttls or ssl",
    # batch files
    "line {line}: {reason}: {text}",
    "line longer than {limit} characters",
    "the line must start with a domain, not KEY=HOST",
    "{option}: after the domain only imap=HOST, pop3=HOST or smtp=HOST may follow",
    "unknown key {key}; use {keys}",
    "{key} is given twice",
    # passwords
    "{file}: not a regular file",
    "{file}: refusing a password file that others can access (mode {mode}); "
    "make it private: chmod 600 {path}",
    "{file}: no such password file",
    "{file}: not allowed to read the password file",
    "{file}: is a directory, not a password file",
    "{file}: too large for a password file",
    "{file}: not valid UTF-8",
    "{file}: the first line is empty",
    "no password for {user}: set {variable}, pass --password-file FILE, "
    "or run on a terminal to be asked",
    "no password given",
    # last: the most general shapes
    "{value} is not {choice}.",
    "{text}: {detail}",
)

_FIELD = re.compile(r"\{(\w+)\}")


@cache
def _pattern(template: str) -> re.Pattern[str]:
    parts = _FIELD.split(template)
    regex = "".join(
        f"(?P<{part}>.+?)" if index % 2 else re.escape(part) for index, part in enumerate(parts)
    )
    return re.compile(regex + r"\Z", re.DOTALL)


def _recognised(message: str) -> tuple[str, dict[str, str]] | None:
    for template in TEMPLATES:
        found = _pattern(template).match(message)
        if found:
            return template, found.groupdict()
    return None


def translate(message: str, lang: str) -> str:
    """``message`` (an English error text) in ``lang``; unchanged if not recognised."""
    recognised = None if lang == "en" else _recognised(message)
    if recognised is None:
        return message
    template, facts = recognised
    for name in _NESTED:
        if name in facts:
            facts[name] = translate(facts[name], lang)
    translated = i18n.text(lang, CONTEXT, template)
    return _FIELD.sub(lambda m: facts[m.group(1)], translated)


def render(template: str, lang: str, **facts: object) -> str:
    """One of the ``TEMPLATES`` with its facts, in ``lang``."""
    return _FIELD.sub(lambda m: str(facts[m.group(1)]), i18n.text(lang, CONTEXT, template))


def language_of_command_line(args: list[str], environ: Mapping[str, str] | None = None) -> str:
    """The language asked for by ``--lang X`` / ``--lang=X`` anywhere in ``args``, else by
    the environment: click's own errors come before the options are parsed."""
    for index, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--lang" and index + 1 < len(args):
            return i18n.pick_language(args[index + 1])
        if arg.startswith("--lang="):
            return i18n.pick_language(arg.split("=", 1)[1])
    return i18n.pick_language() if environ is None else i18n.pick_language(None, environ)
