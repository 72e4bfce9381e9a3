"""The command line: click options → a request → the library → a renderer → an exit code.

Heavy modules (dnspython, cryptography) are imported inside the commands so
that ``maildiag --version`` and ``--help`` start fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

from . import __version__

EXIT_CODES_HELP = (
    "Exit status (monitoring-plugins convention): 0 OK, 1 WARNING, 2 CRITICAL, "
    "3 UNKNOWN (the domain does not exist, DNS failed completely, or bad arguments)."
)
EXIT_UNKNOWN = 3


def _host_port(value: str | None) -> str | None:
    return value.strip() if value else None


def _use_colour(choice: str, stream: object) -> bool:
    if choice == "always":
        return True
    if choice == "never" or "NO_COLOR" in os.environ:
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, "-V", "--version", prog_name="maildiag")
def cli() -> None:
    """Explains why a mailbox does not work: discovers and probes IMAP, POP3 and SMTP
    submission endpoints, checks their TLS certificates and tells what to fix."""


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("domain")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Report for people (text) or for scripts (json).")
@click.option("--timeout", type=click.FloatRange(min=0.1, max=600), default=10.0,
              show_default=True, help="Seconds allowed for each network step.")
@click.option("--deadline", type=click.FloatRange(min=0.5, max=3600), default=60.0,
              show_default=True, help="Seconds allowed for the whole run.")
@click.option("--nameserver", metavar="ADDR[:PORT]",
              help="Ask this DNS server instead of the system's resolver.")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False),
              help="Also trust the CA certificates in this PEM file.")
@click.option("--imap-host", metavar="HOST", help="Use this IMAP server instead of discovery.")
@click.option("--pop3-host", metavar="HOST", help="Use this POP3 server instead of discovery.")
@click.option("--smtp-host", metavar="HOST", help="Use this submission server instead of discovery.")
@click.option("--imap-port", type=click.IntRange(1, 65535), help="IMAP STARTTLS port [143].")
@click.option("--imaps-port", type=click.IntRange(1, 65535), help="IMAP TLS port [993].")
@click.option("--pop3-port", type=click.IntRange(1, 65535), help="POP3 STLS port [110].")
@click.option("--pop3s-port", type=click.IntRange(1, 65535), help="POP3 TLS port [995].")
@click.option("--submission-port", type=click.IntRange(1, 65535),
              help="SMTP submission STARTTLS port [587].")
@click.option("--submissions-port", type=click.IntRange(1, 65535),
              help="SMTP submission TLS port [465].")
@click.option("--cert-warning-days", type=click.FloatRange(min=0), default=21.0,
              show_default=True, help="Warn when a certificate expires within this many days.")
@click.option("--cert-critical-days", type=click.FloatRange(min=0), default=7.0,
              show_default=True, help="Critical when a certificate expires within this many days.")
@click.option("--no-autoconfig", is_flag=True, help="Do not fetch Thunderbird autoconfig files.")
@click.option("--color", "colour", type=click.Choice(["auto", "always", "never"]),
              default="auto", show_default=True, help="Colour in the text report.")
@click.option("-v", "--verbose", is_flag=True, help="Also list what works.")
def check(domain: str, output_format: str, timeout: float, deadline: float,
          nameserver: str | None, ca_file: str | None, imap_host: str | None,
          pop3_host: str | None, smtp_host: str | None, imap_port: int | None,
          imaps_port: int | None, pop3_port: int | None, pop3s_port: int | None,
          submission_port: int | None, submissions_port: int | None,
          cert_warning_days: float, cert_critical_days: float, no_autoconfig: bool,
          colour: str, verbose: bool) -> None:
    """Check the mail endpoints of DOMAIN and explain every failure."""
    from .analysis import Thresholds
    from .discovery import Overrides
    from .dns import InvalidDomain, to_ascii
    from .model import Protocol, Security
    from .runner import CheckRequest, diagnose

    if cert_critical_days > cert_warning_days:
        raise click.UsageError("--cert-critical-days must not be larger than --cert-warning-days")
    try:
        hosts = {
            protocol: to_ascii(host)
            for protocol, host in ((Protocol.IMAP, imap_host), (Protocol.POP3, pop3_host),
                                   (Protocol.SMTP, smtp_host))
            if host
        }
    except InvalidDomain as exc:
        raise click.BadParameter(str(exc), param_hint="host") from exc
    ports = {
        slot: port
        for slot, port in (
            ((Protocol.IMAP, Security.STARTTLS), imap_port),
            ((Protocol.IMAP, Security.TLS), imaps_port),
            ((Protocol.POP3, Security.STARTTLS), pop3_port),
            ((Protocol.POP3, Security.TLS), pop3s_port),
            ((Protocol.SMTP, Security.STARTTLS), submission_port),
            ((Protocol.SMTP, Security.TLS), submissions_port),
        )
        if port
    }
    request = CheckRequest(
        domain=domain.strip(),
        overrides=Overrides(hosts=hosts, ports=ports),
        nameserver=_host_port(nameserver),
        ca_file=ca_file,
        timeout=timeout,
        deadline=max(deadline, timeout),
        thresholds=Thresholds(cert_warning_days, cert_critical_days),
        autoconfig=not no_autoconfig,
    )
    try:
        diagnosis = diagnose(request)
    except InvalidDomain as exc:
        click.echo(f"maildiag: {exc}", err=True)
        raise SystemExit(EXIT_UNKNOWN) from None

    stdout = click.get_text_stream("stdout")
    if output_format == "json":
        from .report import json as json_report

        click.echo(json_report.render(diagnosis), nl=False)
    else:
        from .report import text as text_report

        click.echo(text_report.render(diagnosis, _use_colour(colour, stdout), verbose))
    raise SystemExit(int(diagnosis.status))


@cli.command()
@click.option("--format", "output_format", type=click.Choice(["markdown", "json"]),
              default="markdown", show_default=True)
def codes(output_format: str) -> None:
    """List every finding code with its severity, explanation and fix."""
    from .report.codes import render

    click.echo(render(output_format), nl=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (usage errors are UNKNOWN, 3)."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="maildiag",
                 standalone_mode=False)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return EXIT_UNKNOWN
    except click.Abort:
        click.echo("maildiag: aborted", err=True)
        return EXIT_UNKNOWN
    except KeyboardInterrupt:
        click.echo("maildiag: interrupted", err=True)
        return EXIT_UNKNOWN
    return 0


if __name__ == "__main__":
    sys.exit(main())
