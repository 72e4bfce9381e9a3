"""`make demo`: a small hosting provider on loopback, checked by the real maildiag.

Two customer domains are served by local DNS and mail servers on 127.0.0.x.
``kunde.test`` has the tickets support sees every day: the certificate is
issued for the provider's server name, POP3 offers no encryption and lets
clients log in in plaintext, one port is closed, one is firewalled and the
submission server throttles. ``gut.test`` is a healthy domain for contrast.
Nothing leaves this machine; everything is shut down afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from contextlib import ExitStack

from tests.lab.certs import TestPKI
from tests.lab.dns_server import DnsServer
from tests.lab.fake_servers import Behaviour, FakeMailHost

DNS_ADDRESS = "127.0.0.240"
BROKEN_HOST = "127.0.0.241"  # mail.kunde.test, really web123.provider.test
HEALTHY_HOST = "127.0.0.242"  # mail.gut.test

DEMO_USER, DEMO_PASSWORD = "alice@example.test", "wonderland"  # the fake servers' account

ZONES = {
    "kunde.test": {
        "@": {"MX": ["10 mail.kunde.test."]},
        "mail": {"A": [BROKEN_HOST]},
        "_imaps._tcp": {"SRV": ["0 1 993 mail.kunde.test."]},
        "_submissions._tcp": {"SRV": ["0 1 465 mail.kunde.test."]},
    },
    "gut.test": {
        "@": {"MX": ["10 mail.gut.test."]},
        "mail": {"A": [HEALTHY_HOST]},
        "imap": {"CNAME": ["mail.gut.test."]},
        "smtp": {"CNAME": ["mail.gut.test."]},
        "_imaps._tcp": {"SRV": ["0 1 993 mail.gut.test."]},
        "_submission._tcp": {"SRV": ["0 1 587 mail.gut.test."]},
        "_pop3._tcp": {"SRV": ["0 0 0 ."]},
        "_pop3s._tcp": {"SRV": ["0 1 995 mail.gut.test."]},
    },
}


def check(
    domain: str, dns: DnsServer, pki: TestPKI, *extra: str, password: str | None = None
) -> int:
    env = dict(os.environ, **({"MAILDIAG_PASSWORD": password} if password else {}))
    command = [
        sys.executable,
        "-m",
        "maildiag",
        "check",
        domain,
        "--nameserver",
        dns.nameserver,
        "--ca-file",
        str(pki.ca_pem_path),
        "--timeout",
        "3",
        "--no-autoconfig",
        *extra,
    ]
    print(f"\n$ maildiag check {domain} {' '.join(extra)}".rstrip(), flush=True)
    return subprocess.run(command, check=False, env=env).returncode


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="maildiag-demo-") as directory, ExitStack() as stack:
        pki = TestPKI(directory)
        provider_cert = pki.wrong_host(["web123.provider.test"])
        healthy_cert = pki.good(["mail.gut.test", "imap.gut.test", "smtp.gut.test"])
        stack.enter_context(
            FakeMailHost(
                BROKEN_HOST,
                provider_cert.server_context(),
                hostname="web123.provider.test",
                behaviours={
                    "pop3": Behaviour.PLAINTEXT_LOGIN,
                    "pop3s": None,  # nothing listens: connection refused
                    "submission": Behaviour.THROTTLE,
                    "submissions": Behaviour.FILTERED,
                },
            )
        )
        stack.enter_context(
            FakeMailHost(
                HEALTHY_HOST,
                healthy_cert.server_context(),
                hostname="mail.gut.test",
                behaviours={"pop3": None},
            )
        )
        dns = stack.enter_context(DnsServer(ZONES, DNS_ADDRESS))
        print(
            "maildiag demo: DNS on",
            dns.nameserver,
            "- mail servers on",
            BROKEN_HOST,
            "and",
            HEALTHY_HOST,
        )
        codes = [check("kunde.test", dns, pki), check("gut.test", dns, pki)]
        check("gut.test", dns, pki, "--user", DEMO_USER, password=DEMO_PASSWORD)
        check("gut.test", dns, pki, "--format", "json")
        print(f"\nexit codes: kunde.test {codes[0]} (CRITICAL), gut.test {codes[1]} (OK)")
        return 0 if codes == [2, 0] else 1


if __name__ == "__main__":
    raise SystemExit(main())
