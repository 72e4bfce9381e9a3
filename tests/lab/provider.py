"""A small hosting provider on loopback: many customer domains, a few mail servers.

Providers host thousands of domains on a handful of machines; batch tests and
benchmarks need exactly that shape. ``Provider`` starts one ``FakeMailHost``
per address (each with a certificate for ``mailN.provider.test``), and one
``DnsServer`` whose zone gives every customer domain an MX record pointing
at one of the hosts, round robin::

    with Provider(tmp_path, ["127.0.0.87", "127.0.0.88"], domains=200) as lab:
        lab.domains        # ["d0000.kunden.test", ...]
        lab.cli_options()  # --nameserver ... --ca-file ... --no-autoconfig

``extra_zones`` adds zones as ``DnsServer`` takes them (broken ones too), and
``behaviours`` gives a host's endpoints faults (``{1: {"submission":
Behaviour.NO_STARTTLS}}``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from .certs import TestPKI
from .dns_server import DnsServer
from .fake_servers import Behaviour, FakeMailHost, FakeMailServer

CUSTOMER_ZONE = "kunden.test"
PROVIDER_ZONE = "provider.test"


class Provider:
    def __init__(
        self,
        directory: str | os.PathLike[str],
        addresses: Sequence[str],
        *,
        domains: int,
        dns_address: str | None = None,
        extra_zones: Mapping[str, Mapping | str] | None = None,
        behaviours: Mapping[int, Mapping[str, Behaviour | None]] | None = None,
        idle_timeout: float = 30.0,
    ) -> None:
        self.pki = TestPKI(Path(directory) / "pki")
        self.addresses = list(addresses)
        self.hostnames = [f"mail{n}.{PROVIDER_ZONE}" for n in range(len(addresses))]
        self.domains = [f"d{n:04d}.{CUSTOMER_ZONE}" for n in range(domains)]
        customers: dict[str, object] = {
            name.removesuffix("." + CUSTOMER_ZONE): {
                "MX": [f"10 {self.hostnames[n % len(self.hostnames)]}."]
            }
            for n, name in enumerate(self.domains)
        }
        provider = {
            name.removesuffix("." + PROVIDER_ZONE): {"A": [address]}
            for name, address in zip(self.hostnames, self.addresses, strict=True)
        }
        zones: dict[str, Mapping | str] = {CUSTOMER_ZONE: customers, PROVIDER_ZONE: provider}
        zones.update(extra_zones or {})
        self.dns = DnsServer(zones, dns_address or self.addresses[0])
        self.hosts = [
            FakeMailHost(
                address,
                self.pki.good(hostname).server_context(),
                hostname=hostname,
                behaviours=(behaviours or {}).get(n),
                idle_timeout=idle_timeout,
            )
            for n, (address, hostname) in enumerate(zip(addresses, self.hostnames, strict=True))
        ]

    def host_of(self, domain: str) -> FakeMailHost:
        return self.hosts[self.domains.index(domain) % len(self.hosts)]

    def cli_options(self) -> list[str]:
        return [
            "--nameserver",
            self.dns.nameserver,
            "--ca-file",
            str(self.pki.ca_pem_path),
            "--no-autoconfig",
        ]

    def start(self) -> Provider:
        self.dns.start()
        started = []
        try:
            for host in self.hosts:
                started.append(host.start())
        except BaseException:
            for host in started:
                host.stop()
            self.dns.stop()
            raise
        return self

    def stop(self) -> None:
        for host in self.hosts:
            host.stop()
        self.dns.stop()

    def __enter__(self) -> Provider:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def command_overlap(server: FakeMailServer) -> int:
    """The most connections a server provably had open at once, from its command log.

    The log is appended in arrival order under the server's lock, so when
    connection A sends a command after connection B's first command, both
    were open at that moment. That makes this a lower bound of the real
    peak, never an over-count; ``max_concurrent_connections`` can over-count,
    because the server's thread notices a client's close a moment late.
    """
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for index, command in enumerate(server.received):
        first.setdefault(command.connection, index)
        last[command.connection] = index
    events = sorted(
        [(index, 1) for index in first.values()] + [(index, -1) for index in last.values()],
        key=lambda e: (e[0], -e[1]),
    )
    open_now = peak = 0
    for _, change in events:
        open_now += change
        peak = max(peak, open_now)
    return peak
