"""The command line: click options → a request → the library → a renderer → an exit code.

Heavy modules (dnspython, cryptography) are imported inside the commands so
that ``maildiag --version`` and ``--help`` start fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import click
from msgspec.structs import replace

from . import __version__
from .environment import Environment

_Command = Callable[..., object]
_Decorator = Callable[[_Command], _Command]

EXIT_CODES_HELP = (
    "Exit status (monitoring-plugins convention): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. "
    "CRITICAL includes a domain that does not exist (DOMAIN_NOT_FOUND); UNKNOWN means "
    "nothing could be judged: DNS failed completely, a malformed domain or bad arguments."
)
EXIT_UNKNOWN = 3


def _host_port(value: str | None) -> str | None:
    return value.strip() if value else None


class FiniteFloat(click.FloatRange):
    """A FloatRange that refuses nan (and, without a maximum, inf).

    nan compares false with both bounds, so FloatRange lets it through; a
    nan --timeout then makes every socket wait fail at once and a healthy
    domain comes out as six HOST_UNRESOLVED.
    """

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        import math

        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class NameserverAddress(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """ADDR[:PORT] of a DNS server: 127.0.0.1, 127.0.0.1:5353, ::1, [::1]:53.

    Checked while parsing, so a bad value is a usage error (exit 3) for every
    command instead of a traceback later or, for "", a silent fall-back to
    the system's resolver.
    """

    name = "ADDR[:PORT]"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        from .dns import parse_nameserver

        try:
            return parse_nameserver(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _host_name(value: str) -> str:
    """A server name in ASCII form; IP literals (also "[::1]") pass unchanged."""
    import ipaddress

    from .dns import to_ascii

    bare = value.strip().strip("[]")
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        return to_ascii(value)


def _environment() -> Environment:
    """The environment ``main`` was given (a command invoked by other means gets the process's)."""
    obj = click.get_current_context().obj or {}
    env = obj.get("env")
    return env if isinstance(env, Environment) else Environment()


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, "-V", "--version", prog_name="maildiag")
def cli() -> None:
    """Explains why a mailbox does not work: discovers and probes IMAP, POP3 and SMTP
    submission endpoints, checks their TLS certificates and tells what to fix."""


def _endpoint_options() -> list[_Decorator]:
    """--imap-host ... --smtp-host, then --imap-port ... --submissions-port, from the registry."""
    from .model import Security
    from .protocols.registry import ORDER, PROBED_SECURITIES, spec

    hosts: list[_Decorator] = [
        click.option(
            f"--{spec(p).key}-host",
            metavar="HOST",
            help=f"Use this {spec(p).long_name} server instead of discovery.",
        )
        for p in ORDER
    ]
    ports: list[_Decorator] = [
        click.option(
            f"--{spec(p).slot_name(s)}-port",
            type=click.IntRange(1, 65535),
            help=f"{spec(p).long_name} "
            f"{spec(p).starttls_command if s is Security.STARTTLS else 'TLS'} port "
            f"[{spec(p).port(s)}].",
        )
        for p in ORDER
        for s in PROBED_SECURITIES
    ]
    return hosts + ports


_CHECK_OPTIONS: list[_Decorator] = [
    click.option(
        "--timeout",
        type=FiniteFloat(min=0.1, max=600),
        default=10.0,
        show_default=True,
        help="Seconds allowed for each network step; a silent port is given up this long "
        "after the check started.",
    ),
    click.option(
        "--deadline",
        type=FiniteFloat(min=0.5, max=3600),
        default=60.0,
        show_default=True,
        help="Seconds allowed for the whole check of one domain.",
    ),
    click.option(
        "--nameserver",
        type=NameserverAddress(),
        metavar="ADDR[:PORT]",
        help="Ask this DNS server instead of the system's resolver.",
    ),
    click.option(
        "--ca-file",
        type=click.Path(exists=True, dir_okay=False),
        help="Also trust the CA certificates in this PEM file.",
    ),
    *_endpoint_options(),
    click.option(
        "-w",
        "--cert-warning-days",
        type=FiniteFloat(min=0),
        default=21.0,
        show_default=True,
        help="Warn when a certificate expires within this many days.",
    ),
    click.option(
        "-c",
        "--cert-critical-days",
        type=FiniteFloat(min=0),
        default=7.0,
        show_default=True,
        help="Critical when a certificate expires within this many days.",
    ),
    click.option(
        "--no-autoconfig", is_flag=True, help="Do not fetch Thunderbird autoconfig files."
    ),
]


def check_options(command: _Command) -> _Command:
    """The discovery, TLS and threshold options shared by check, batch and serve."""
    for option in reversed(_CHECK_OPTIONS):
        command = option(command)
    return command


_MAILBOX_OPTIONS = [
    click.option(
        "--user",
        metavar="USER",
        help="Log in as USER (usually the e-mail address) on every endpoint and check the "
        "login, the quota and the INBOX size. The password comes from $MAILDIAG_PASSWORD, "
        "--password-file, or a hidden prompt; never from the command line.",
    ),
    click.option(
        "--password-file",
        type=click.Path(dir_okay=False),
        help="Read the password from the first line of this file (readable by its owner only).",
    ),
    click.option(
        "--sync",
        is_flag=True,
        help="Also measure delivery and sync latency: sends a test message to USER through "
        "submission and deletes it again (writes to the mailbox).",
    ),
    click.option(
        "--allow-plaintext",
        is_flag=True,
        help="Also send the password over unencrypted connections (only on trusted networks).",
    ),
    click.option(
        "--quota-warning",
        type=FiniteFloat(min=0, max=1000),
        default=90.0,
        show_default=True,
        metavar="PERCENT",
        help="Warn when the mailbox uses this share of its quota.",
    ),
    click.option(
        "--quota-critical",
        type=FiniteFloat(min=0, max=1000),
        default=100.0,
        show_default=True,
        metavar="PERCENT",
        help="Critical when the mailbox uses this share of its quota.",
    ),
]


def lang_option(command: _Command) -> _Command:
    return click.option(
        "--lang",
        type=click.Choice(["de", "en"]),
        default=None,
        help="Language of everything people read: report, settings sheet, summary, messages  "
        "[default: from MAILDIAG_LANG, LC_ALL, LC_MESSAGES, LANG: de* is German]",
    )(command)


def mailbox_options(command: _Command) -> _Command:
    """The login, quota and sync options (--user, ...); reusable by batch and serve."""
    for option in reversed(_MAILBOX_OPTIONS):
        command = option(command)
    return command


def _given(value: object, default: float) -> object:
    return default if value is None else value


class CredentialsProblem(click.ClickException):
    """No usable password; exits UNKNOWN (3) like every other bad argument."""

    exit_code = EXIT_UNKNOWN


def _credentials(options: dict[str, object]):  # type: ignore[no-untyped-def]
    from .credentials_input import Credentials, CredentialsInputError, resolve_password

    user = options.get("user")
    if not user:
        if options.get("password_file"):
            raise click.UsageError("--password-file needs --user")
        if options.get("sync"):
            raise click.UsageError("--sync needs --user (it logs in to send a test message)")
        return None
    env = _environment()
    try:
        secret = resolve_password(
            str(user),
            password_file=options.get("password_file"),  # type: ignore[arg-type]
            environ=env.environ,
            interactive=env.is_terminal(env.stdin),
            prompt=lambda text: click.prompt(text, hide_input=True, err=True),
        )
    except CredentialsInputError as exc:
        raise CredentialsProblem(str(exc)) from None
    return Credentials(str(user), secret)


def build_request(domain: str, **options: object):  # type: ignore[no-untyped-def]
    """A ``CheckRequest`` from the shared options (see ``check_options``, ``mailbox_options``)."""
    from .discovery import Overrides
    from .dns import InvalidDomain
    from .model import Thresholds
    from .protocols.registry import ORDER, SLOTS, spec
    from .runner import CheckRequest

    warning_days = float(options["cert_warning_days"])  # type: ignore[arg-type]
    critical_days = float(options["cert_critical_days"])  # type: ignore[arg-type]
    if critical_days > warning_days:
        raise click.UsageError("--cert-critical-days must not be larger than --cert-warning-days")
    # batch and serve may not carry the mailbox options: fall back to their defaults.
    defaults = Thresholds()
    quota_warning = float(
        _given(options.get("quota_warning"), defaults.quota_warning_percent)  # type: ignore[arg-type]
    )
    quota_critical = float(
        _given(options.get("quota_critical"), defaults.quota_critical_percent)  # type: ignore[arg-type]
    )
    if quota_warning > quota_critical:
        raise click.UsageError("--quota-warning must not be larger than --quota-critical")
    try:
        hosts = {
            protocol: _host_name(str(options[f"{spec(protocol).key}_host"]))
            for protocol in ORDER
            if options.get(f"{spec(protocol).key}_host")
        }
    except InvalidDomain as exc:
        raise click.BadParameter(str(exc), param_hint="host") from exc
    ports = {
        (protocol, security): int(options[name])  # type: ignore[call-overload]
        for protocol, security, _ in SLOTS
        if options.get(name := f"{spec(protocol).slot_name(security)}_port")
    }
    timeout = float(options["timeout"])  # type: ignore[arg-type]
    return CheckRequest(
        domain=domain.strip(),
        overrides=Overrides(hosts=hosts, ports=ports),
        nameserver=_host_port(options.get("nameserver")),  # type: ignore[arg-type]
        ca_file=options.get("ca_file"),  # type: ignore[arg-type]
        timeout=timeout,
        deadline=float(options["deadline"]),  # type: ignore[arg-type]
        thresholds=Thresholds(
            warning_days,
            critical_days,
            quota_warning_percent=quota_warning,
            quota_critical_percent=quota_critical,
        ),
        autoconfig=not options.get("no_autoconfig"),
        credentials=_credentials(options),
        sync=bool(options.get("sync")),
        allow_plaintext=bool(options.get("allow_plaintext")),
    )


def _inbound_address(address: str | None, domain: str) -> str | None:
    """--address: an address at DOMAIN (its MX servers are the ones asked)."""
    from .dns import InvalidDomain, to_ascii
    from .protocols.lines import check_command_text

    if address is None:
        return None
    text = address.strip()
    local, at, at_domain = text.rpartition("@")
    try:
        check_command_text(text, "the address")
        same = bool(at and local) and to_ascii(at_domain) == to_ascii(domain)
    except (InvalidDomain, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--address") from None
    if "<" in text or ">" in text or " " in text or not same:
        raise click.BadParameter(
            f"{address!r} is not an address at {domain} (LOCAL@{domain})",
            param_hint="--address",
        )
    return text


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("domain")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "nagios", "junit"]),  # report.formats.NAMES
    default="text",
    show_default=True,
    help="Report for people (text), scripts (json), Nagios/Icinga (nagios) or CI "
    "systems (junit XML).",
)
@check_options
@mailbox_options
@click.option(
    "--color",
    "colour",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="Colour in the text report.",
)
@click.option("-v", "--verbose", is_flag=True, help="Also list what works.")
@click.option(
    "--typed",
    "typed",
    multiple=True,
    metavar="PROTO:HOST:PORT:SECURITY",
    help="A setting the customer typed into the mail client (repeatable), e.g. "
    "imap:mail.example.org:143:ssl; PROTO imap|pop3|smtp, SECURITY none|starttls|ssl "
    "(ssl = SSL/TLS). Probed as that client would (never with the password) and judged: "
    "works, warning or fails, with the setting to type instead.",
)
@lang_option
@click.option(
    "--address",
    metavar="ADDR",
    help="Check the inbound path of this address at DOMAIN without logging in: each MX is "
    "asked on port 25 whether it takes mail for ADDR (MAIL FROM:<>, RCPT TO, then RSET; "
    "never DATA, nothing is delivered). --user USER@DOMAIN does the same.",
)
def check(
    domain: str,
    output_format: str,
    colour: str,
    verbose: bool,
    typed: tuple[str, ...],
    lang: str | None,
    address: str | None,
    **options: object,
) -> None:
    """Check the mail endpoints of DOMAIN and explain every failure."""
    from .dns import InvalidDomain
    from .messages import translate
    from .report import formats
    from .report.formats import RenderOptions
    from .runner import BadRequest, diagnose
    from .typed import TypedSettingError, parse_typed

    try:
        settings = tuple(parse_typed(text) for text in typed)
    except TypedSettingError as exc:
        raise click.BadParameter(str(exc), param_hint="--typed") from None
    started = (click.get_current_context().obj or {}).get("started")
    request = replace(
        build_request(domain, **options),
        started=started,
        typed=settings,
        address=_inbound_address(address, domain),
    )
    env = _environment()
    render_options = RenderOptions(
        lang=env.language(lang),
        colour=env.colour(colour),
        verbose=verbose,
        width=env.width(),
        thresholds=request.thresholds,
    )
    try:
        diagnosis = diagnose(request, meanwhile=lambda: formats.get(output_format))
    except (InvalidDomain, BadRequest) as exc:
        message = translate(str(exc), render_options.lang)
        click.echo(f"maildiag: {message}", file=env.stderr)
        kind = "invalid_domain" if isinstance(exc, InvalidDomain) else "bad_request"
        answer = formats.render_bad_request(output_format, domain, message, kind, render_options)
        click.echo(answer, file=env.stdout, nl=False)
        raise SystemExit(EXIT_UNKNOWN) from None
    report = formats.render(output_format, diagnosis, render_options)
    click.echo(report, file=env.stdout, nl=False, color=render_options.colour)
    raise SystemExit(int(diagnosis.status))


BATCH_EPILOG = (
    "FILE has one domain per line; '#' starts a comment. After the domain, imap=HOST, "
    "pop3=HOST and smtp=HOST override discovery for that domain. Malformed lines are "
    "reported on stderr and skipped. Exit status: the worst status of all domains "
    "(CRITICAL > UNKNOWN > WARNING > OK); 3 when interrupted or when nothing was checked."
)


@cli.command(epilog=BATCH_EPILOG)
@click.argument("source", metavar="FILE|-")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["jsonl"]),
    default="jsonl",
    show_default=True,
    help="One JSON object per line and domain, as 'check --format json' describes it.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    help="Domains checked at the same time.",
)
@click.option(
    "--per-host",
    type=click.IntRange(0, 1000),
    default=2,
    show_default=True,
    help="Connections open at the same time to one server address, across the "
    "whole batch (0: no limit).",
)
@click.option(
    "--share-probes/--no-share-probes",
    default=True,
    show_default=True,
    help="Probe a server endpoint (host name, port) once and reuse the result, for a "
    "minute, for every domain that names it; --no-share-probes connects for each domain.",
)
@click.option(
    "--processes",
    type=click.IntRange(1, 256),
    default=None,
    help="Worker processes sharing --concurrency and --per-host; 1 runs every check in "
    "this process  [default: one per CPU, at most --per-host]",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr  [default: when stderr is a terminal]",
)
@click.option("-q", "--quiet", is_flag=True, help="No summary table on stderr at the end.")
@lang_option
@check_options
@mailbox_options
def batch(
    source: str,
    output_format: str,
    concurrency: int,
    per_host: int,
    share_probes: bool,
    processes: int | None,
    progress: bool | None,
    quiet: bool,
    lang: str | None,
    **options: object,
) -> None:
    """Check every domain listed in FILE (- for standard input); one JSON line per domain.

    The JSON lines are English whatever --lang says (they are for programs);
    --lang sets the language of the summary, the progress line and complaints.
    """
    from . import batch as batch_module
    from . import batch_run

    template = build_request("", **options)
    env = _environment()
    try:
        handle = env.binary_stdin() if source == "-" else open(source, "rb")
    except OSError as exc:
        raise click.FileError(source, exc.strerror or str(exc)) from None
    err = env.stderr
    language = env.language(lang)
    bar = None
    if env.is_terminal(err) if progress is None else progress:
        total = None
        if source != "-":
            with open(source, "rb") as counting:
                total = batch_module.count_entries(counting)
        bar = batch_module.Progress(err, total, language, env.width(err))
    settings = batch_run.BatchSettings(
        concurrency=concurrency,
        per_host=per_host,
        share_probes=share_probes,
        processes=processes,
        quiet=quiet,
        lang=language,
    )
    try:
        status = batch_run.run(
            handle, template, settings, out=env.binary_stdout(), err=err, progress=bar
        )
    finally:
        if source != "-":
            handle.close()
    raise SystemExit(status)


@cli.command()
@click.option(
    "--listen",
    default="127.0.0.1:9137",
    show_default=True,
    metavar="ADDR:PORT",
    help="Where to serve /probe and /metrics (:PORT for every interface).",
)
@click.option(
    "--credentials",
    "credentials_file",
    type=click.Path(dir_okay=False),
    help="TOML file of named credential profiles (readable by its owner only); "
    "a probe picks one with profile=NAME.",
)
@click.option(
    "--max-checks",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    help="Checks running at the same time; a scrape over this is answered at once with "
    'maildiag_probe_success 0 and maildiag_probe_no_diagnosis{reason="too_many_checks"}.',
)
@click.option(
    "--per-host",
    type=click.IntRange(0, 1000),
    default=2,
    show_default=True,
    help="Connections open at the same time to one server address, across all "
    "scrapes (0: no limit).",
)
@click.option(
    "--share-probes/--no-share-probes",
    default=True,
    show_default=True,
    help="Probe a server endpoint (host name, port) once and reuse the result, for a "
    "minute, for every scraped domain that names it; --no-share-probes connects for "
    "each scrape.",
)
@check_options
@mailbox_options
@lang_option
def serve(
    listen: str,
    credentials_file: str | None,
    max_checks: int,
    per_host: int,
    share_probes: bool,
    lang: str | None,
    **options: object,
) -> None:
    """Serve Prometheus metrics: GET /probe?target=DOMAIN checks a domain.

    /metrics has the exporter's own metrics. Each check is bounded by the scrape
    timeout Prometheus sends; --deadline applies to requests without one. A probe
    logs in with the profile named by profile=NAME, else with --user if given."""
    from .credentials import CredentialsError, load_profiles, profiles_from_env
    from .exporter import Exporter, parse_listen
    from .messages import render

    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    template = build_request("", **options)
    env = _environment()
    try:
        profiles = profiles_from_env(env.environ)
        if credentials_file:
            profiles.update(load_profiles(credentials_file))
    except CredentialsError as exc:
        raise click.UsageError(str(exc)) from None
    exporter = Exporter(
        template,
        profiles,
        max_checks=max_checks,
        per_host=per_host,
        share_probes=share_probes,
        log=lambda message: click.echo(message, file=env.stderr),
    )
    try:
        server = exporter.make_server(host, port)
    except OSError as exc:
        raise click.UsageError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    shown = f"[{host}]" if ":" in host else (host or "0.0.0.0")
    started_line = render(
        "maildiag exporter on {url} (probe: /probe?target=DOMAIN; {count} credential profile(s))",
        env.language(lang),
        url=f"http://{shown}:{server.server_address[1]}/",
        count=len(profiles),
    )
    click.echo(started_line, file=env.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@cli.command()
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["markdown", "json"]),
    default="markdown",
    show_default=True,
)
@lang_option
def codes(output_format: str, lang: str | None) -> None:
    """List every finding code with its severity, explanation and fix."""
    from .report.codes import render

    env = _environment()
    click.echo(render(output_format, env.language(lang)), file=env.stdout, nl=False)


SETTINGS_EPILOG = (
    "Only settings that worked in this check are offered: an endpoint that answered, "
    "negotiated TLS 1.2 or newer with a certificate valid for the name in the setting, and "
    "has no critical finding. Exit status: 0 when receiving and sending can both be set up, "
    "2 when not (the sheet says why; the client files are then not written), 3 for a bad "
    "request."
)


@cli.command(epilog=SETTINGS_EPILOG)
@click.argument("domain")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "autoconfig", "autodiscover", "mobileconfig"]),
    default="text",
    show_default=True,
    help="The sheet to read out or e-mail (text), for scripts (json), or a file mail clients "
    "import: Thunderbird config-v1.1.xml (autoconfig), Outlook autodiscover.xml "
    "(autodiscover), an iPhone/macOS profile (mobileconfig). None contains a password.",
)
@lang_option
@check_options
@mailbox_options
def settings(domain: str, output_format: str, lang: str | None, **options: object) -> None:
    """The settings to type into a mail client for DOMAIN, as measured."""
    from .dns import InvalidDomain
    from .messages import translate
    from .report import settings as sheet_formats
    from .runner import BadRequest, diagnose
    from .settings import build_sheet

    if options.get("sync"):
        raise click.UsageError("settings never writes to the mailbox; --sync belongs to check")
    started = (click.get_current_context().obj or {}).get("started")
    request = replace(build_request(domain, **options), started=started)
    env = _environment()
    language = env.language(lang)
    try:
        sheet = build_sheet(request, diagnose)
    except (InvalidDomain, BadRequest) as exc:
        click.echo(f"maildiag: {translate(str(exc), language)}", file=env.stderr)
        raise SystemExit(EXIT_UNKNOWN) from None
    if output_format in sheet_formats.NEEDS_COMPLETE and not sheet.complete:
        # A file that sets up half an account is worse than none: say why instead.
        click.echo(sheet_formats.render_text_sheet(sheet, language), file=env.stderr, nl=False)
    else:
        render = sheet_formats.FORMATS[output_format]
        click.echo(render(sheet, language), file=env.stdout, nl=False)
    raise SystemExit(int(sheet.status))


def main(
    argv: Sequence[str] | None = None,
    *,
    started: float | None = None,
    env: Environment | None = None,
) -> int:
    """Entry point; returns the exit status (usage errors are UNKNOWN, 3).

    ``started`` (a ``time.monotonic()`` reading) is when the process began,
    so that ``check --deadline`` counts the start-up too. ``env``: the
    streams and environment variables to use (default: the process's).
    """
    from .messages import language_of_command_line, translate

    env = env or Environment()
    args = list(sys.argv[1:] if argv is None else argv)
    lang = language_of_command_line(args, env.environ)
    try:
        cli.main(
            args=args,
            prog_name="maildiag",
            standalone_mode=False,
            obj={"started": started, "env": env},
        )
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        # One line, as for every other bad input (the fault suite and
        # monitoring wrappers read the first line of stderr).
        message = " ".join(exc.format_message().split())
        ctx = getattr(exc, "ctx", None)
        if isinstance(exc, click.UsageError) and ctx is not None:
            message += f" (see '{ctx.command_path} --help')"
        click.echo(f"maildiag: {translate(message, lang)}", file=env.stderr)
        return EXIT_UNKNOWN
    except click.Abort:
        click.echo(f"maildiag: {translate('aborted', lang)}", file=env.stderr)
        return EXIT_UNKNOWN
    except KeyboardInterrupt:
        click.echo(f"maildiag: {translate('interrupted', lang)}", file=env.stderr)
        return EXIT_UNKNOWN
    return 0


if __name__ == "__main__":
    sys.exit(main())
