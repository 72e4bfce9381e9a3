"""No thread outlives its run: the deadline ends work by closing its sockets, not by walking away.

Probes are threads over blocking sockets. Every network step is bounded by
the run's deadline, and when the deadline passes ``Deadline.cancel()``
shuts down every socket the run still has open, so a ``recv`` or
``connect`` blocked in another thread returns at once; ``diagnose()`` then
waits for all of them. The tests stall every server there is (silent after
accept, silent in the middle of a TLS handshake, SYNs dropped, an
autoconfig server that never answers) and look for threads afterwards.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

import maildiag
from maildiag.deadline import Deadline, DeadlineExceeded
from maildiag.dns import DnsLookupError, Resolver
from maildiag.model import Outcome
from maildiag.protocols import imap
from maildiag.runner import CheckRequest, diagnose
from maildiag.tasks import ThreadPool
from maildiag.tls import client_context
from maildiag.transport import Connection
from tests.lab.dns_server import DnsServer
from tests.lab.fake_servers import ENDPOINTS, Behaviour, FakeMailHost, FakeMailServer
from tests.lab.faults import ScriptedServer

DOMAIN = "kunde.test"
HOST = "mail.kunde.test"
DNS_ADDRESS = "127.0.6.1"
WEB_ADDRESS = "127.0.6.2"  # autoconfig.kunde.test:443
DEADLINE = 2.0
MARGIN = 0.5  # past the deadline, for diagnose() to return

_OURS = (str(Path(maildiag.__file__).parent), str(Path(threading.__file__).parent / "concurrent"))


def maildiag_threads() -> list[str]:
    """Threads other than this one that are running maildiag code or idle in a thread pool.

    Told apart by their stacks rather than their names: the lab's servers run
    threads of their own, and a leaked thread need not have a telling name.
    """
    frames = sys._current_frames()
    found = []
    for thread in threading.enumerate():
        frame = frames.get(thread.ident or -1)
        if thread is threading.current_thread() or frame is None:
            continue
        files = []
        while frame is not None:
            files.append(frame.f_code.co_filename)
            frame = frame.f_back
        if any(f.startswith(_OURS) for f in files):
            found.append(thread.name)
    return found


def _zone(address: str) -> dict:
    return {
        "@": {"MX": ["10 mail"]},
        "mail": {"A": [address]},
        "_imap._tcp": {"SRV": ["0 1 143 mail"]},
        "_imaps._tcp": {"SRV": ["0 1 993 mail"]},
        "_pop3._tcp": {"SRV": ["0 1 110 mail"]},
        "_pop3s._tcp": {"SRV": ["0 1 995 mail"]},
        "_submission._tcp": {"SRV": ["0 1 587 mail"]},
        "_submissions._tcp": {"SRV": ["0 1 465 mail"]},
        "autoconfig": {"A": [WEB_ADDRESS]},
        # Guessed host names whose lookups never come back: discovery too must
        # end on its share of the deadline and wait for its threads.
        "imap": "DROP",
        "pop3": "DROP",
        "smtp": "DROP",
    }


@pytest.fixture
def world(pki, loopback_address) -> Iterator[World]:
    with ExitStack() as stack:
        dns = stack.enter_context(DnsServer({DOMAIN: _zone(loopback_address)}, DNS_ADDRESS))
        yield World(stack, dns.nameserver)


@dataclass
class World:
    servers: ExitStack
    nameserver: str

    def request(self, **options: object) -> CheckRequest:
        return _request(self.nameserver, **options)


def _request(nameserver: str, **options: object) -> CheckRequest:
    defaults: dict[str, object] = {
        "nameserver": nameserver,
        "timeout": 30.0,  # longer than the run: only the deadline can end it
        "deadline": DEADLINE,
    }
    defaults.update(options)
    return CheckRequest(DOMAIN, **defaults)  # type: ignore[arg-type]


def _stalling_host(pki, address: str, behaviour: Behaviour) -> FakeMailHost:
    return FakeMailHost(
        address,
        pki.good([HOST]).server_context(),
        hostname=HOST,
        behaviours=dict.fromkeys(ENDPOINTS, behaviour),
        idle_timeout=60,
    )


@pytest.mark.parametrize(
    "behaviour",
    [Behaviour.NEVER_GREET, Behaviour.TLS_STALL],
    ids=["silent_after_accept", "stalled_mid_tls_handshake"],
)
def test_no_thread_outlives_a_run_where_every_server_stalls(
    world, pki, loopback_address, behaviour
):
    world.servers.enter_context(_stalling_host(pki, loopback_address, behaviour))
    # Autoconfig over HTTPS: accepted, and the TLS handshake never answered.
    world.servers.enter_context(ScriptedServer(WEB_ADDRESS, 443, lambda conn: conn.hold()))
    assert maildiag_threads() == []
    started = time.monotonic()
    diagnosis = diagnose(world.request(ca_file=str(pki.ca_pem_path)))
    seconds = time.monotonic() - started
    assert maildiag_threads() == []
    assert seconds < DEADLINE + MARGIN
    assert len(diagnosis.results) == 6
    assert {r.outcome for r in diagnosis.results} <= {
        Outcome.DEADLINE,
        Outcome.NO_GREETING,
        Outcome.STALLED,
    }
    assert any(r.outcome is Outcome.DEADLINE for r in diagnosis.results)


def _running_maildiag_code() -> list[str]:
    """Threads running maildiag code now, other than a pool's threads waiting for a task."""
    frames = sys._current_frames()
    running = []
    for thread in threading.enumerate():
        frame = frames.get(thread.ident or -1)
        if thread is threading.current_thread():
            continue
        ours = set()
        while frame is not None:
            if frame.f_code.co_filename.startswith(_OURS[0]):
                ours.add((Path(frame.f_code.co_filename).name, frame.f_code.co_name))
            frame = frame.f_back
        if ours and ours != {("tasks.py", "_work")}:
            running.append(thread.name)
    return running


def test_a_check_on_a_shared_pool_leaves_no_task_running(world, pki, loopback_address):
    # The checks of a batch worker run on one pool that outlives each check;
    # what a check started there must still have ended when diagnose() returns.
    world.servers.enter_context(_stalling_host(pki, loopback_address, Behaviour.NEVER_GREET))
    world.servers.enter_context(ScriptedServer(WEB_ADDRESS, 443, lambda conn: conn.hold()))
    with ThreadPool("shared") as pool:
        diagnosis = diagnose(world.request(ca_file=str(pki.ca_pem_path)), threads=pool)
        assert _running_maildiag_code() == []
    assert maildiag_threads() == []
    assert {r.outcome for r in diagnosis.results} <= {Outcome.DEADLINE, Outcome.NO_GREETING}


def test_the_healthy_twin_also_leaves_no_thread(world, pki, loopback_address):
    world.servers.enter_context(
        FakeMailHost(loopback_address, pki.good([HOST]).server_context(), hostname=HOST)
    )
    diagnosis = diagnose(world.request(ca_file=str(pki.ca_pem_path), autoconfig=False, timeout=5.0))
    assert maildiag_threads() == []
    assert [r.outcome for r in diagnosis.results] == [Outcome.OK] * 6


def test_a_check_alone_probes_on_a_pool_of_its_own_and_closes_it(world, pki, loopback_address):
    world.servers.enter_context(
        FakeMailHost(loopback_address, pki.good([HOST]).server_context(), hostname=HOST)
    )
    probed_on: list[str] = []

    def hook_for(_endpoint):
        return lambda _session, _recorder: probed_on.append(threading.current_thread().name)

    diagnosis = diagnose(
        world.request(ca_file=str(pki.ca_pem_path), autoconfig=False, timeout=5.0),
        session_hook_factory=hook_for,
    )
    assert [r.outcome for r in diagnosis.results] == [Outcome.OK] * 6
    assert len(probed_on) == 6
    assert all(name.startswith("check_") for name in probed_on), probed_on
    assert maildiag_threads() == []


def test_a_run_whose_syns_are_dropped_ends_on_time(world, pki, loopback_address):
    world.servers.enter_context(_stalling_host(pki, loopback_address, Behaviour.FILTERED))
    started = time.monotonic()
    diagnosis = diagnose(world.request(autoconfig=False))
    assert time.monotonic() - started < DEADLINE + MARGIN
    assert maildiag_threads() == []
    assert {r.outcome for r in diagnosis.results} <= {Outcome.DEADLINE, Outcome.TIMEOUT}


# --------------------------------------------------------------------------
# Cancelling is closing: a blocked call returns at once, long before its timeout


def _blocked_in(call, deadline: Deadline) -> tuple[BaseException | None, float]:
    """Runs ``call`` in a thread, cancels ``deadline`` 0.3 s later; its error and the time taken."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run)
    started = time.monotonic()
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive()  # really blocked: 30 s timeouts, 60 s deadline
    deadline.cancel()
    thread.join(5)
    seconds = time.monotonic() - started
    assert not thread.is_alive()
    return outcome[0], seconds


@pytest.fixture
def silent_server(loopback_address) -> Iterator[FakeMailServer]:
    server = FakeMailServer(
        "imap", loopback_address, 0, implicit_tls=False, behaviour=Behaviour.NEVER_GREET
    )
    with server:
        yield server


def test_cancel_wakes_a_blocked_read(silent_server):
    deadline = Deadline(60)
    conn = Connection.open(silent_server.address, silent_server.port, timeout=30, deadline=deadline)
    parser = imap.ResponseParser()
    try:
        error, seconds = _blocked_in(
            lambda: conn.receive(parser.next_response, parser.feed), deadline
        )
    finally:
        conn.close()
    assert isinstance(error, DeadlineExceeded), error
    assert seconds < 1.0


def test_cancel_wakes_a_stalled_tls_handshake(pki, loopback_address):
    server = FakeMailServer(
        "imap", loopback_address, 0, implicit_tls=True, behaviour=Behaviour.TLS_STALL
    )
    with server:
        deadline = Deadline(60)
        conn = Connection.open(server.address, server.port, timeout=30, deadline=deadline)
        context = client_context(str(pki.ca_pem_path))
        try:
            error, seconds = _blocked_in(lambda: conn.start_tls(context, HOST), deadline)
        finally:
            conn.close()
    assert isinstance(error, DeadlineExceeded), error
    assert seconds < 1.0


def test_cancel_wakes_a_connect_whose_syn_is_dropped(loopback_address):
    server = FakeMailServer(
        "imap", loopback_address, 0, implicit_tls=False, behaviour=Behaviour.FILTERED
    )
    with server:
        deadline = Deadline(60)
        error, seconds = _blocked_in(
            lambda: Connection.open(server.address, server.port, timeout=30, deadline=deadline),
            deadline,
        )
    assert isinstance(error, DeadlineExceeded), error
    assert seconds < 1.0


def test_cancelling_one_run_leaves_another_runs_connection_alone(pki, loopback_address):
    healthy = FakeMailServer("imap", loopback_address, 0, implicit_tls=False)
    with healthy:
        ours, theirs = Deadline(60), Deadline(60)
        conn = Connection.open(healthy.address, healthy.port, timeout=5, deadline=theirs)
        try:
            ours.cancel()
            parser = imap.ResponseParser()
            greeting = conn.receive(parser.next_response, parser.feed)
        finally:
            conn.close()
    assert greeting is not None


def test_a_cancelled_run_opens_nothing_new(silent_server):
    deadline = Deadline(60)
    deadline.cancel()
    fds_before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(DeadlineExceeded):
        Connection.open(silent_server.address, silent_server.port, timeout=5, deadline=deadline)
    assert len(os.listdir("/proc/self/fd")) <= fds_before


def test_cancelling_a_run_cancels_its_discovery_share():
    run = Deadline(60)
    discovery = run.share(0.5)
    assert not discovery.expired
    run.cancel()
    assert discovery.cancelled and discovery.expired and discovery.remaining() == 0.0
    assert run.share(0.5).cancelled  # a part taken later is born cancelled


def test_cancel_wakes_a_dns_lookup_that_gets_no_answer():
    with DnsServer({"dropped.test": "DROP"}, "127.0.6.3") as dns:
        resolver = Resolver(dns.nameserver, timeout=30)
        deadline = Deadline(60)
        error, seconds = _blocked_in(
            lambda: resolver.addresses("mail.dropped.test", deadline), deadline
        )
    assert isinstance(error, DnsLookupError) and error.kind == "timeout", error
    assert seconds < 1.0


def test_cancelling_a_batch_cancels_the_checks_within_it(world, pki, loopback_address):
    world.servers.enter_context(_stalling_host(pki, loopback_address, Behaviour.NEVER_GREET))
    batch = Deadline.unlimited()
    request = world.request(autoconfig=False, deadline=60.0)
    error, seconds = _blocked_in(lambda: diagnose(request, within=batch), batch)
    assert error is None and seconds < 1.5
    assert maildiag_threads() == []
