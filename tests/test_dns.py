"""The resolver wrapper and domain-name handling, against the lab DNS server.

Every query goes to a loopback nameserver given explicitly; the system
resolver is never asked.
"""

from __future__ import annotations

import socket
import threading
import time

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from maildiag.deadline import Deadline
from maildiag.dns import DnsLookupError, InvalidDomain, Resolver, to_ascii, to_unicode
from tests.lab.dns_server import DnsServer

ZONES = {
    "example.test": {
        "@": {"MX": ["10 mx.example.test.", "20 mx2.example.test."], "A": ["127.0.0.31"]},
        "_imaps._tcp": {"SRV": ["0 1 993 mail.example.test."]},
        "mail": {"A": ["127.0.0.31", "127.0.0.32"], "AAAA": ["::1"]},
        "v6only": {"AAAA": ["::1"]},
        "textonly": {"TXT": ['"hello"']},
        "big": {"A": [f"127.0.1.{i}" for i in range(1, 201)]},
        "www": {"CNAME": ["mail"]},
        "dangling": {"CNAME": ["nothing-here"]},
        "broken": "SERVFAIL",
        "refusing": "REFUSED",
        "silent": "DROP",
        "half": {"A": ["127.0.0.33"], "MX": "SERVFAIL"},
    },
    "müller.test": {"@": {"MX": ["10 mail.müller.test."]}, "mail": {"A": ["127.0.0.34"]}},
}


@pytest.fixture(scope="module")
def server():
    with DnsServer(ZONES, address="127.0.0.50") as srv:
        yield srv


@pytest.fixture
def resolver(server):
    return Resolver(server.nameserver, timeout=1.0)


def _free_port(address: str) -> int:
    # A UDP port nobody listens on: bind, read the number, close.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((address, 0))
        return s.getsockname()[1]


# -- answers -----------------------------------------------------------------


def test_mx_records(resolver):
    records = resolver.query("example.test", "MX")
    assert sorted((r.preference, r.exchange.to_text()) for r in records) == [
        (10, "mx.example.test."),
        (20, "mx2.example.test."),
    ]


def test_missing_type_is_nodata(resolver):
    with pytest.raises(DnsLookupError) as info:
        resolver.query("mail.example.test", "MX")
    assert info.value.kind == "nodata"
    assert info.value.query == "mail.example.test MX"


def test_missing_name_is_nxdomain(resolver):
    with pytest.raises(DnsLookupError) as info:
        resolver.query("nothing.example.test", "A")
    assert info.value.kind == "nxdomain"


def test_empty_non_terminal_exists(resolver):
    # RFC 8020: _tcp.example.test exists because _imaps._tcp.example.test does.
    with pytest.raises(DnsLookupError) as info:
        resolver.query("_tcp.example.test", "SRV")
    assert info.value.kind == "nodata"


def test_srv_record(resolver):
    (record,) = resolver.query("_imaps._tcp.example.test", "SRV")
    assert (record.priority, record.weight, record.port) == (0, 1, 993)
    assert record.target.to_text() == "mail.example.test."


def test_apex_soa_is_served(resolver):
    (soa,) = resolver.query("example.test", "SOA")
    assert soa.mname.to_text() == "ns.example.test."


def test_cname_is_followed(resolver):
    assert sorted(r.address for r in resolver.query("www.example.test", "A")) == [
        "127.0.0.31",
        "127.0.0.32",
    ]


def test_dangling_cname_is_nxdomain(resolver):
    with pytest.raises(DnsLookupError) as info:
        resolver.query("dangling.example.test", "A")
    assert info.value.kind == "nxdomain"
    assert "nothing-here.example.test" in info.value.detail


def test_idn_names_in_either_form(resolver):
    for name in ("müller.test", "MÜLLER.test", "xn--mller-kva.test"):
        (mx,) = resolver.query(name, "MX")
        assert mx.exchange.to_text() == "mail.xn--mller-kva.test."


# -- faults ------------------------------------------------------------------


def test_servfail(resolver):
    with pytest.raises(DnsLookupError) as info:
        resolver.query("broken.example.test", "A")
    assert info.value.kind == "servfail"
    assert "SERVFAIL" in info.value.detail


def test_servfail_for_one_type_only(resolver):
    assert [r.address for r in resolver.query("half.example.test", "A")] == ["127.0.0.33"]
    with pytest.raises(DnsLookupError) as info:
        resolver.query("half.example.test", "MX")
    assert info.value.kind == "servfail"


def test_refused_name(resolver):
    with pytest.raises(DnsLookupError) as info:
        resolver.query("refusing.example.test", "A")
    assert info.value.kind == "refused"


def test_name_outside_every_zone_is_refused(resolver):
    with pytest.raises(DnsLookupError) as info:
        resolver.query("example.org", "A")
    assert info.value.kind == "refused"


def test_dropped_query_times_out_within_the_timeout(server):
    resolver = Resolver(server.nameserver, timeout=0.4)
    started = time.monotonic()
    with pytest.raises(DnsLookupError) as info:
        resolver.query("silent.example.test", "A")
    elapsed = time.monotonic() - started
    assert info.value.kind == "timeout"
    assert 0.35 < elapsed < 1.0


def test_deadline_cuts_the_timeout_short(server):
    resolver = Resolver(server.nameserver, timeout=10.0)
    started = time.monotonic()
    with pytest.raises(DnsLookupError) as info:
        resolver.query("silent.example.test", "A", Deadline(0.3))
    assert info.value.kind == "timeout"
    assert time.monotonic() - started < 0.8


def test_expired_deadline_sends_nothing(server, resolver):
    deadline = Deadline(0.0)
    server.log.clear()
    with pytest.raises(DnsLookupError) as info:
        resolver.query("example.test", "MX", deadline)
    assert info.value.kind == "timeout"
    assert "deadline" in info.value.detail
    assert not server.log


def test_nothing_listening_fails_fast():
    # Connected UDP socket: the ICMP port-unreachable comes back at once.
    resolver = Resolver(f"127.0.0.59:{_free_port('127.0.0.59')}", timeout=5.0)
    started = time.monotonic()
    with pytest.raises(DnsLookupError) as info:
        resolver.query("example.test", "MX")
    assert info.value.kind == "no_nameservers"
    assert "connection refused" in info.value.detail
    assert time.monotonic() - started < 0.5


def test_nameserver_that_never_answers_is_bounded():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.58", 0))  # bound, so no ICMP error: packets just vanish
        resolver = Resolver(f"127.0.0.58:{silent.getsockname()[1]}", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(DnsLookupError) as info:
            resolver.query("example.test", "MX")
        assert info.value.kind == "timeout"
        assert time.monotonic() - started < 1.2


class _ForgetfulUdp:
    """Ignores the first query it receives and answers every later one."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                wire, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            self.received += 1
            if self.received == 1:
                continue
            response = dns.message.make_response(dns.message.from_wire(wire))
            response.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(response.to_wire(), peer)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join()
        self.sock.close()


def test_lost_query_is_sent_again_within_the_timeout():
    with _ForgetfulUdp("127.0.0.56") as fake:
        resolver = Resolver(f"127.0.0.56:{fake.port}", timeout=3.0)
        with pytest.raises(DnsLookupError) as info:
            resolver.query("example.test", "A")
    assert info.value.kind == "nxdomain"  # the answer to the second transmission
    assert fake.received == 2


def test_lost_query_is_not_sent_again_after_the_timeout():
    with _ForgetfulUdp("127.0.0.56") as fake:
        # Shorter than the first retransmission interval: one try only.
        resolver = Resolver(f"127.0.0.56:{fake.port}", timeout=0.3)
        with pytest.raises(DnsLookupError) as info:
            resolver.query("example.test", "A")
        time.sleep(0.1)
    assert info.value.kind == "timeout"
    assert fake.received == 1


class _NoisyUdp:
    """Sends junk before the answer: garbage, a reply with the wrong id, a
    reply to another question and a forged truncated one, then the answer.

    A stub resolver has to keep listening past all of them (CVE-2023-29483:
    one spoofed datagram must not end the query)."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                wire, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(wire)
            wrong_id = dns.message.make_response(query)
            wrong_id.id = (query.id + 1) % 65536
            other = dns.message.make_response(dns.message.make_query("other.test", "A"))
            other.id = query.id
            forged_tc = dns.message.make_response(query)
            forged_tc.id = (query.id + 2) % 65536
            forged_tc.flags |= dns.flags.TC
            answer = dns.message.make_response(query)
            answer.set_rcode(dns.rcode.NXDOMAIN)
            for junk in (b"\x00\x01garbage", wrong_id.to_wire(), other.to_wire()):
                self.sock.sendto(junk, peer)
            self.sock.sendto(forged_tc.to_wire(), peer)
            self.sock.sendto(answer.to_wire(), peer)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join()
        self.sock.close()


def test_datagrams_that_are_no_answer_are_skipped():
    # No TCP listener: a forged TC reply taken for the answer would end in an
    # "error" about TCP instead of the real answer.
    with _NoisyUdp("127.0.0.55") as fake:
        resolver = Resolver(f"127.0.0.55:{fake.port}", timeout=1.0)
        started = time.monotonic()
        with pytest.raises(DnsLookupError) as info:
            resolver.query("example.test", "A")
    assert info.value.kind == "nxdomain"
    assert time.monotonic() - started < 0.5


def test_answer_without_noise_twin():
    # The twin of the test above: the same answer without junk before it.
    with _ForgetfulUdp("127.0.0.55") as fake:
        fake.received = 1  # answer the first query
        resolver = Resolver(f"127.0.0.55:{fake.port}", timeout=1.0)
        with pytest.raises(DnsLookupError) as info:
            resolver.query("example.test", "A")
    assert info.value.kind == "nxdomain"


class _SlowUdp:
    """Answers every query after ``delay`` seconds, the latest first.

    Each name q<N>.test gets the A record 127.0.9.<N>, so an answer given to
    the wrong question shows.
    """

    def __init__(self, address: str, delay: float) -> None:
        self.delay = delay
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        held: list[tuple[float, bytes, object]] = []
        while not self.stopping.is_set():
            try:
                wire, peer = self.sock.recvfrom(4096)
                query = dns.message.from_wire(wire)
                answer = dns.message.make_response(query)
                number = query.question[0].name.labels[0].decode()[1:]
                answer.answer.append(
                    dns.rrset.from_text(query.question[0].name, 60, "IN", "A", f"127.0.9.{number}")
                )
                held.append((time.monotonic() + self.delay, answer.to_wire(), peer))
            except TimeoutError:
                pass
            due = [h for h in held if h[0] <= time.monotonic()]
            for item in reversed(due):
                held.remove(item)
                self.sock.sendto(item[1], item[2])

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join()
        self.sock.close()


def test_questions_in_flight_together_wait_for_the_slowest_only():
    with _SlowUdp("127.0.0.54", delay=0.3) as slow:
        resolver = Resolver(f"127.0.0.54:{slow.port}", timeout=3.0)
        started = time.monotonic()
        with resolver.lookups() as lookups:
            answers = {n: lookups.query(f"q{n}.test", "A") for n in range(1, 11)}
            found = {n: [r.address for r in answer.result()] for n, answer in answers.items()}
        elapsed = time.monotonic() - started
    assert found == {n: [f"127.0.9.{n}"] for n in range(1, 11)}
    assert elapsed < 1.0  # ten answers of 0.3 s each, waited for together


def test_question_answered_alone_twin():
    # The twin of the test above: one question takes the server's whole delay.
    with _SlowUdp("127.0.0.54", delay=0.3) as slow:
        resolver = Resolver(f"127.0.0.54:{slow.port}", timeout=3.0)
        started = time.monotonic()
        assert [r.address for r in resolver.query("q7.test", "A")] == ["127.0.9.7"]
        assert time.monotonic() - started >= 0.25


def test_a_refused_port_ends_every_question_in_flight_at_once():
    resolver = Resolver(f"127.0.0.59:{_free_port('127.0.0.59')}", timeout=5.0)
    started = time.monotonic()
    with resolver.lookups() as lookups:
        answers = [lookups.query(f"n{n}.example.test", "MX") for n in range(5)]
        answers.append(lookups.addresses_and_alias("mail.example.test"))
        kinds = []
        for answer in answers:
            with pytest.raises(DnsLookupError) as info:
                answer.result()
            kinds.append((info.value.kind, "connection refused" in info.value.detail))
    assert kinds == [("no_nameservers", True)] * 6
    assert time.monotonic() - started < 0.5


def test_a_failure_of_one_question_leaves_the_others_alone(server):
    resolver = Resolver(server.nameserver, timeout=1.0)
    with resolver.lookups() as lookups:
        broken = lookups.query("half.example.test", "MX")  # SERVFAIL for MX only
        silent = lookups.query("silent.example.test", "A")
        fine = lookups.query("half.example.test", "A")
        mx = lookups.query("example.test", "MX")
        with pytest.raises(DnsLookupError) as info:
            broken.result()
        assert info.value.kind == "servfail"
        assert [r.address for r in fine.result()] == ["127.0.0.33"]
        assert sorted(r.preference for r in mx.result()) == [10, 20]
        assert not silent.done  # still waiting, while the others were answered
        with pytest.raises(DnsLookupError) as info:
            silent.result()
        assert info.value.kind == "timeout"


def test_cancelling_the_deadline_ends_the_questions_in_flight(server):
    resolver = Resolver(server.nameserver, timeout=10.0)
    deadline = Deadline(30)
    threading.Timer(0.2, deadline.cancel).start()
    started = time.monotonic()
    with resolver.lookups(deadline) as lookups:
        answers = [lookups.query("silent.example.test", t) for t in ("A", "MX", "SOA")]
        for answer in answers:
            with pytest.raises(DnsLookupError) as info:
                answer.result()
            assert info.value.kind == "timeout"
            assert "deadline" in info.value.detail
    assert time.monotonic() - started < 1.0


def test_closing_the_lookups_ends_what_is_still_in_flight(server):
    resolver = Resolver(server.nameserver, timeout=10.0)
    started = time.monotonic()
    with resolver.lookups() as lookups:
        silent = lookups.addresses_and_alias("silent.example.test")
    with pytest.raises(DnsLookupError) as info:
        silent.result()
    assert info.value.kind == "timeout"
    assert time.monotonic() - started < 0.5


class _ByTypeUdp:
    """Answers A questions with ``a_rcode`` (no records) and never answers AAAA."""

    def __init__(self, address: str, a_rcode: dns.rcode.Rcode) -> None:
        self.a_rcode = a_rcode
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                wire, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(wire)
            if query.question[0].rdtype == dns.rdatatype.A:
                answer = dns.message.make_response(query)
                answer.set_rcode(self.a_rcode)
                self.sock.sendto(answer.to_wire(), peer)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join()
        self.sock.close()


def test_a_name_that_does_not_exist_needs_no_aaaa_answer():
    with _ByTypeUdp("127.0.0.53", dns.rcode.NXDOMAIN) as fake:
        resolver = Resolver(f"127.0.0.53:{fake.port}", timeout=2.0)
        started = time.monotonic()
        with pytest.raises(DnsLookupError) as info:
            resolver.addresses("gone.example.test")
        assert info.value.kind == "nxdomain"
        assert time.monotonic() - started < 1.0


def test_a_name_without_a_records_waits_for_aaaa_twin():
    # The twin: NODATA for A leaves the name open, so the silent AAAA is waited for.
    with _ByTypeUdp("127.0.0.53", dns.rcode.NOERROR) as fake:
        resolver = Resolver(f"127.0.0.53:{fake.port}", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(DnsLookupError) as info:
            resolver.addresses("v6only.example.test")
        assert info.value.kind == "timeout"
        assert time.monotonic() - started >= 0.45


def test_system_configuration_is_read_without_asking_anything():
    # Only /etc/resolv.conf is read here; no query is sent.
    resolver = Resolver(None)
    assert all(spec.rsplit(":", 1)[1].isdigit() for spec in resolver.nameservers)


def test_no_configured_nameserver(monkeypatch):
    monkeypatch.setattr("maildiag.dns._system_nameservers", lambda: [])
    resolver = Resolver(None)
    with pytest.raises(DnsLookupError) as info:
        resolver.query("example.test", "MX")
    assert info.value.kind == "no_nameservers"


# -- several nameservers (as /etc/resolv.conf lists them) ---------------------


def _system_resolver(monkeypatch, *servers: tuple[str, int], timeout: float = 3.0) -> Resolver:
    from maildiag.dns import _Nameserver

    listed = [_Nameserver(address, port) for address, port in servers]
    monkeypatch.setattr("maildiag.dns._system_nameservers", lambda: listed)
    return Resolver(None, timeout=timeout)


def test_a_refusing_first_nameserver_hands_over_to_the_next_at_once(monkeypatch, server):
    resolver = _system_resolver(
        monkeypatch, ("127.0.0.59", _free_port("127.0.0.59")), ("127.0.0.50", server.port)
    )
    started = time.monotonic()
    with resolver.lookups() as lookups:
        answers = [lookups.query("example.test", "MX"), lookups.query("mail.example.test", "A")]
        assert sorted(r.preference for r in answers[0].result()) == [10, 20]
        assert sorted(r.address for r in answers[1].result()) == ["127.0.0.31", "127.0.0.32"]
    assert time.monotonic() - started < 0.5


def test_a_silent_first_nameserver_gets_one_retry_interval(monkeypatch, server):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.58", 0))
        resolver = _system_resolver(
            monkeypatch, ("127.0.0.58", silent.getsockname()[1]), ("127.0.0.50", server.port)
        )
        started = time.monotonic()
        assert [r.address for r in resolver.query("half.example.test", "A")] == ["127.0.0.33"]
        elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 1.5  # the first server's second, then the next server


def test_servfail_from_the_first_nameserver_asks_the_next_at_once(monkeypatch):
    with (
        _ByTypeUdp("127.0.0.53", dns.rcode.SERVFAIL) as failing,
        _ByTypeUdp("127.0.0.52", dns.rcode.NXDOMAIN) as answering,
    ):
        resolver = _system_resolver(
            monkeypatch, ("127.0.0.53", failing.port), ("127.0.0.52", answering.port)
        )
        started = time.monotonic()
        with pytest.raises(DnsLookupError) as info:
            resolver.query("gone.example.test", "A")
    assert info.value.kind == "nxdomain"
    assert time.monotonic() - started < 0.5


def test_every_nameserver_failing_reports_the_most_telling_failure(monkeypatch):
    with _ByTypeUdp("127.0.0.53", dns.rcode.SERVFAIL) as failing:
        resolver = _system_resolver(
            monkeypatch,
            ("127.0.0.59", _free_port("127.0.0.59")),
            ("127.0.0.53", failing.port),
            timeout=1.0,
        )
        with pytest.raises(DnsLookupError) as info:
            resolver.query("gone.example.test", "A")
    assert info.value.kind == "servfail"  # an answer that says "broken" beats "nobody there"
    assert "127.0.0.53" in info.value.detail and "127.0.0.59" not in info.value.detail


# -- TCP fallback ------------------------------------------------------------


def test_truncated_answer_is_fetched_over_tcp(server, resolver):
    server.log.clear()
    records = resolver.query("big.example.test", "A")
    assert len(records) == 200
    assert ("udp", "big.example.test.", "A") in server.log
    assert ("tcp", "big.example.test.", "A") in server.log


class _TruncatingUdpOnly:
    """Answers every UDP query with TC set and has no TCP listener."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                wire, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            response = dns.message.make_response(dns.message.from_wire(wire))
            response.flags |= dns.flags.TC
            self.sock.sendto(response.to_wire(), peer)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join()
        self.sock.close()


def test_truncated_answer_without_tcp_is_an_error():
    with _TruncatingUdpOnly("127.0.0.57") as fake:
        resolver = Resolver(f"127.0.0.57:{fake.port}", timeout=1.0)
        started = time.monotonic()
        with pytest.raises(DnsLookupError) as info:
            resolver.query("example.test", "A")
    assert info.value.kind == "error"
    assert "TCP" in info.value.detail
    assert time.monotonic() - started < 0.5


# -- addresses ---------------------------------------------------------------


def test_addresses_ipv4_then_ipv6(resolver):
    found = resolver.addresses("mail.example.test")
    assert sorted(found[:2]) == ["127.0.0.31", "127.0.0.32"]
    assert found[2:] == ["::1"]


def test_addresses_ipv6_only(resolver):
    assert resolver.addresses("v6only.example.test") == ["::1"]


def test_addresses_of_ip_literals_need_no_dns():
    resolver = Resolver(f"127.0.0.59:{_free_port('127.0.0.59')}", timeout=0.5)
    assert resolver.addresses("127.0.0.31") == ["127.0.0.31"]
    assert resolver.addresses("[::1]") == ["::1"]


def test_addresses_of_a_name_without_any(resolver):
    with pytest.raises(DnsLookupError) as info:
        resolver.addresses("textonly.example.test")
    assert info.value.kind == "nodata"


def test_addresses_of_a_missing_name(resolver):
    with pytest.raises(DnsLookupError) as info:
        resolver.addresses("nothing.example.test")
    assert info.value.kind == "nxdomain"


def test_addresses_of_a_silent_name_cost_one_timeout(server):
    resolver = Resolver(server.nameserver, timeout=0.4)
    started = time.monotonic()
    with pytest.raises(DnsLookupError) as info:
        resolver.addresses("silent.example.test")
    assert info.value.kind == "timeout"
    assert time.monotonic() - started < 0.9


# -- nameserver specs --------------------------------------------------------


def test_ipv6_nameserver():
    with DnsServer(ZONES, address="::1") as srv:
        assert srv.nameserver.startswith("[::1]:")
        resolver = Resolver(srv.nameserver, timeout=1.0)
        assert "127.0.0.31" in resolver.addresses("mail.example.test")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("127.0.0.1", "127.0.0.1:53"),
        ("127.0.0.1:5353", "127.0.0.1:5353"),
        ("[::1]:53", "[::1]:53"),
        ("[::1]", "[::1]:53"),
        ("::1", "[::1]:53"),
    ],
)
def test_nameserver_specs(spec, expected):
    assert Resolver(spec).nameservers == (expected,)


@pytest.mark.parametrize("spec", ["localhost", "127.0.0.1:99999", "[::1", "127.0.0.1:x", ""])
def test_bad_nameserver_specs(spec):
    with pytest.raises(ValueError):
        Resolver(spec)


def test_lab_server_rejects_unknown_faults():
    with pytest.raises(ValueError, match="unknown fault"):
        DnsServer({"example.test": {"x": "EXPLODE"}})


# -- domain names ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.org", "example.org"),
        ("Example.ORG.", "example.org"),
        ("  example.org ", "example.org"),
        ("Müller.Example", "xn--mller-kva.example"),
        ("xn--mller-kva.example", "xn--mller-kva.example"),
        ("ｅｘａｍｐｌｅ．ｃｏｍ", "example.com"),  # full-width input (UTS #46 mapping)
        ("faß.de", "xn--fa-hia.de"),  # IDNA 2008: ß is kept, not mapped to "ss"
        ("a" * 63 + ".test", "a" * 63 + ".test"),
    ],
)
def test_to_ascii(text, expected):
    assert to_ascii(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        (".", "empty"),
        ("   ", "empty"),
        ("a..b", "empty label"),
        (".example.org", "empty label"),
        ("-bad.example", "hyphen"),
        ("bad-.example", "hyphen"),
        ("under_score.example", "'_'"),
        ("exa mple.com", "' '"),
        ("a" * 64 + ".test", "at most 63"),
        (".".join(["a" * 60] * 5), "at most 253"),
        ("xn--zz.example", "A-label"),
        ("☃.net", "not a valid internationalised label"),
    ],
)
def test_to_ascii_rejects(text, message):
    with pytest.raises(InvalidDomain, match=message):
        to_ascii(text)


def test_to_ascii_explains_an_email_address():
    with pytest.raises(InvalidDomain) as info:
        to_ascii("alice@example.org")
    assert "give the domain, not the address" in str(info.value)
    assert "'example.org'" in str(info.value)


@pytest.mark.parametrize(
    "url", ["https://example.org/", "http://example.org:8080/x", "example.org/mail"]
)
def test_to_ascii_explains_a_url(url):
    with pytest.raises(InvalidDomain) as info:
        to_ascii(url)
    assert "domain only" in str(info.value)
    assert "'example.org'" in str(info.value)


def test_to_unicode():
    assert to_unicode("xn--mller-kva.example.") == "müller.example"
    assert to_unicode("EXAMPLE.org") == "example.org"


def test_to_unicode_keeps_undecodable_labels():
    assert to_unicode("xn--zz.example") == "xn--zz.example"
