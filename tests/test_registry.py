"""The protocol registry: the one place ports, SRV services and names are written down."""

from __future__ import annotations

from click.testing import CliRunner

from maildiag.cli import cli
from maildiag.model import Protocol, Security
from maildiag.protocols.registry import SLOTS, SRV_SERVICES, spec


def test_the_six_slots_are_the_standard_ports_starttls_first() -> None:
    assert [(p.value, s.value, port) for p, s, port in SLOTS] == [
        ("imap", "starttls", 143),
        ("imap", "tls", 993),
        ("pop3", "starttls", 110),
        ("pop3", "tls", 995),
        ("smtp", "starttls", 587),
        ("smtp", "tls", 465),
    ]


def test_every_srv_service_of_rfc_6186_and_8314_names_its_slot() -> None:
    assert SRV_SERVICES == {
        "_imap._tcp": (Protocol.IMAP, Security.STARTTLS),
        "_imaps._tcp": (Protocol.IMAP, Security.TLS),
        "_pop3._tcp": (Protocol.POP3, Security.STARTTLS),
        "_pop3s._tcp": (Protocol.POP3, Security.TLS),
        "_submission._tcp": (Protocol.SMTP, Security.STARTTLS),
        "_submissions._tcp": (Protocol.SMTP, Security.TLS),
    }


def test_the_command_line_offers_a_host_and_port_override_for_every_slot() -> None:
    help_text = CliRunner().invoke(cli, ["check", "--help"], terminal_width=200).output
    for protocol, security, port in SLOTS:
        assert f"--{spec(protocol).key}-host" in help_text
        assert f"--{spec(protocol).slot_name(security)}-port" in help_text
        assert f"[{port}]" in help_text
