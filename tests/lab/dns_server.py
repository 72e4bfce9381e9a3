"""A small authoritative DNS server for tests, the demo and the benchmarks.

Zones are plain Python::

    DnsServer({
        "example.test": {
            "@": {"MX": ["10 mx.example.test."]},
            "_imaps._tcp": {"SRV": ["0 1 993 mail.example.test."]},
            "mail": {"A": ["127.0.0.31"]},
            "broken": "SERVFAIL",            # every query for this name
            "slow": {"A": "DROP"},           # only A queries for this name
        },
        "down.test": "DROP",                 # the whole zone
    })

Names are relative to the zone ("@" is the apex) unless they end in a dot;
zone and record names may be Unicode (stored as IDNA A-labels). Faults:
"SERVFAIL" and "REFUSED" answer with that rcode, "DROP" never answers.
Names outside every zone are REFUSED, as an authoritative-only server does.
"""

from __future__ import annotations

import collections
import selectors
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import idna

FAULTS = ("SERVFAIL", "REFUSED", "DROP")
TTL = 300
_IN = dns.rdataclass.IN
_MAX_CNAME_CHAIN = 8
_CACHE_LIMIT = 100_000


@dataclass
class _Zone:
    origin: dns.name.Name
    soa: dns.rrset.RRset
    fault: str | None = None
    names: set[dns.name.Name] = field(default_factory=set)  # including empty non-terminals
    rrsets: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = field(default_factory=dict)
    name_faults: dict[dns.name.Name, str] = field(default_factory=dict)
    type_faults: dict[tuple[dns.name.Name, int], str] = field(default_factory=dict)


def _ascii(text: str) -> str:
    """*text* with Unicode labels in A-label form (dnspython's own IDNA
    support depends on the installed idna version; this does not)."""
    if text.isascii():
        return text
    labels = text.split(".")
    return ".".join(
        label if label.isascii() else idna.encode(label, uts46=True).decode("ascii")
        for label in labels
    )


def _name(text: str, origin: dns.name.Name = dns.name.root) -> dns.name.Name:
    return dns.name.from_text(_ascii(text), origin=origin)


def _rdata_text(text: str) -> str:
    return text if text.isascii() else " ".join(_ascii(token) for token in text.split())


def _check_fault(value: str, where: str) -> str:
    if value not in FAULTS:
        raise ValueError(f"{where}: unknown fault {value!r}; use one of {', '.join(FAULTS)}")
    return value


def _compile_zone(origin_text: str, data: Mapping | str) -> _Zone:
    origin = _name(origin_text)
    soa_text = f"ns.{origin} hostmaster.{origin} 1 3600 600 86400 {TTL}"
    soa = dns.rrset.from_text(origin, TTL, _IN, dns.rdatatype.SOA, soa_text)
    zone = _Zone(origin, soa)
    zone.names.add(origin)
    zone.rrsets[(origin, dns.rdatatype.SOA)] = soa
    if isinstance(data, str):
        zone.fault = _check_fault(data, origin_text)
        return zone
    for name_text, records in data.items():
        name = _name(name_text, origin)
        if not name.is_subdomain(origin):
            raise ValueError(f"{name_text!r} is outside the zone {origin_text!r}")
        # RFC 8020: every ancestor up to the apex exists (empty non-terminals).
        ancestor = name
        while ancestor != origin and ancestor not in zone.names:
            zone.names.add(ancestor)
            ancestor = ancestor.parent()
        if isinstance(records, str):
            zone.name_faults[name] = _check_fault(records, name_text)
            continue
        for type_text, values in records.items():
            rdtype = dns.rdatatype.from_text(type_text)
            if isinstance(values, str):
                zone.type_faults[(name, rdtype)] = _check_fault(values, f"{name_text} {type_text}")
                continue
            rrset = dns.rrset.RRset(name, _IN, rdtype)
            for value in values:
                rdata = dns.rdata.from_text(
                    _IN, rdtype, _rdata_text(value), origin=origin, relativize=False
                )
                rrset.add(rdata, TTL)
            zone.rrsets[(name, rdtype)] = rrset
            if rdtype == dns.rdatatype.SOA and name == origin:
                zone.soa = rrset
    return zone


class DnsServer:
    """Serves *zones* over UDP and TCP on *address*:*port* from a thread.

    Use as a context manager; ``port`` 0 picks a free port (the same number
    for UDP and TCP). ``log`` keeps the last queries as
    ``(transport, name, type)`` for assertions.
    """

    def __init__(
        self, zones: Mapping[str, Mapping | str], address: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.address = address
        self._requested_port = port
        self.port = port
        compiled = (_compile_zone(origin, data) for origin, data in zones.items())
        self._zones = {zone.origin: zone for zone in compiled}
        self.log: collections.deque[tuple[str, str, str]] = collections.deque(maxlen=10_000)
        # Where each UDP query came from (address, port), as they arrived.
        self.udp_peers: collections.deque[tuple[str, int]] = collections.deque(maxlen=10_000)
        self._cache: dict[bytes, bytes | None] = {}
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------

    @property
    def nameserver(self) -> str:
        """The "address:port" string that maildiag's ``--nameserver`` takes."""
        if ":" in self.address:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"

    def start(self) -> DnsServer:
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        for _ in range(50):
            udp = socket.socket(family, socket.SOCK_DGRAM)
            tcp = socket.socket(family, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                udp.bind((self.address, self._requested_port))
                tcp.bind((self.address, udp.getsockname()[1]))
            except OSError:
                udp.close()
                tcp.close()
                if self._requested_port:
                    raise
                continue  # the TCP twin of a free UDP port was taken: pick again
            break
        else:
            raise OSError(f"no free port pair on {self.address}")
        tcp.listen(64)
        udp.setblocking(False)
        tcp.setblocking(False)
        self._udp, self._tcp = udp, tcp
        self.port = udp.getsockname()[1]
        self._thread = threading.Thread(
            target=self._serve, name=f"dns-{self.nameserver}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stopping.set()
        self._wake_w.send(b"x")
        self._thread.join(5)
        self._thread = None
        for sock in (self._udp, self._tcp, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        with self._lock:
            for conn in list(self._connections):
                _close_quietly(conn)
            self._connections.clear()

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving ------------------------------------------------------------

    def _serve(self) -> None:
        assert self._udp is not None and self._tcp is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._udp, selectors.EVENT_READ, "udp")
            selector.register(self._tcp, selectors.EVENT_READ, "tcp")
            selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.data == "udp":
                        self._serve_udp()
                    elif key.data == "tcp":
                        self._accept()

    def _serve_udp(self) -> None:
        assert self._udp is not None
        # Drain everything queued: the benchmarks send bursts.
        for _ in range(256):
            try:
                wire, peer = self._udp.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # e.g. a stale ICMP error for an earlier reply
            self.udp_peers.append(peer)
            reply = self._reply(wire, "udp")
            if reply is not None:
                try:
                    self._udp.sendto(reply, peer)
                except OSError:
                    pass

    def _accept(self) -> None:
        assert self._tcp is not None
        try:
            conn, _ = self._tcp.accept()
        except OSError:
            return
        conn.setblocking(True)
        conn.settimeout(10)
        with self._lock:
            self._connections.add(conn)
        threading.Thread(target=self._serve_tcp, args=(conn,), daemon=True).start()

    def _serve_tcp(self, conn: socket.socket) -> None:
        # RFC 7766 §6.2.1: several queries may follow on one connection.
        try:
            while True:
                header = _recv_exactly(conn, 2)
                if header is None:
                    return
                wire = _recv_exactly(conn, int.from_bytes(header, "big"))
                if wire is None:
                    return
                reply = self._reply(wire, "tcp")
                if reply is not None:
                    conn.sendall(len(reply).to_bytes(2, "big") + reply)
        except OSError:
            return
        finally:
            with self._lock:
                self._connections.discard(conn)
            _close_quietly(conn)

    # -- answering ----------------------------------------------------------

    def _reply(self, wire: bytes, transport: str) -> bytes | None:
        if len(wire) < 12:
            return None
        # Identical questions (apart from the message id) get identical
        # answers, so the answer is cached by the rest of the query's bytes.
        key = transport.encode() + wire[2:]
        if key in self._cache:
            cached = self._cache[key]
            self._log_from_wire(wire, transport)
            return None if cached is None else wire[:2] + cached
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        if query.flags & dns.flags.QR:
            return None
        if query.question:
            question = query.question[0]
            self.log.append(
                (transport, question.name.to_text(), dns.rdatatype.to_text(question.rdtype))
            )
        response = self._respond(query)
        if response is None:
            reply = None
        else:
            limit = 65535 if transport == "tcp" else (query.payload if query.edns >= 0 else 512)
            # RFC 1035 §4.2.1 / RFC 6891 §7: what does not fit over UDP is
            # cut and flagged TC, so the client asks again over TCP.
            reply = response.to_wire(max_size=limit, prefer_truncation=True)
        if len(self._cache) > _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = None if reply is None else reply[2:]
        return reply

    def _log_from_wire(self, wire: bytes, transport: str) -> None:
        try:
            question = dns.message.from_wire(wire, question_only=True).question[0]
        except (dns.exception.DNSException, IndexError):
            return
        self.log.append(
            (transport, question.name.to_text(), dns.rdatatype.to_text(question.rdtype))
        )

    def _zone_for(self, qname: dns.name.Name) -> _Zone | None:
        # The closest enclosing zone wins, as a child zone would be delegated.
        name = qname
        while len(name) > 1:  # stop before the root
            zone = self._zones.get(name)
            if zone is not None:
                return zone
            name = name.parent()
        return None

    def _respond(self, query: dns.message.Message) -> dns.message.Message | None:
        response = dns.message.make_response(query, our_payload=1232)
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        qname, qtype = question.name, question.rdtype
        zone = self._zone_for(qname)
        if zone is None or question.rdclass != _IN:
            response.set_rcode(dns.rcode.REFUSED)
            return response
        fault = zone.fault or zone.name_faults.get(qname) or zone.type_faults.get((qname, qtype))
        if fault == "DROP":
            return None
        if fault is not None:
            response.set_rcode(dns.rcode.from_text(fault))
            return response
        response.flags |= dns.flags.AA

        name = qname
        for _ in range(_MAX_CNAME_CHAIN):
            if qtype == dns.rdatatype.ANY:
                found = [r for (n, _t), r in zone.rrsets.items() if n == name]
                response.answer.extend(found)
                break
            rrset = zone.rrsets.get((name, qtype))
            if rrset is not None:
                response.answer.append(rrset)
                break
            cname = zone.rrsets.get((name, dns.rdatatype.CNAME))
            if cname is None:
                break
            response.answer.append(cname)
            name = cname[0].target
            if not name.is_subdomain(zone.origin):
                return response  # the client follows the CNAME elsewhere
        answered = any(r.rdtype == qtype or qtype == dns.rdatatype.ANY for r in response.answer)
        if not answered:
            if name not in zone.names:
                # RFC 2308 §2.1: NXDOMAIN carries the zone's SOA for caching.
                response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(zone.soa)
        return response


def _recv_exactly(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
