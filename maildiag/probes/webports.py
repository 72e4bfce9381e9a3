"""The web ports of a mail server, asked only when its mail ports do not connect.

A host whose every mail port refuses or drops connections while its web
server answers on 443 or 80 is up, and refuses *this client*: that is what a
fail2ban ban or a firewall rule against one address looks like from outside
(``maildiag.blocking`` judges it). Nothing is asked while the mail ports
connect. The check of an address starts as soon as one connect to it has
failed, or has had no answer for ``SLOW_CONNECT`` seconds, so it runs
alongside the mail probes instead of after them.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from msgspec import Struct

from ..deadline import Deadline, DeadlineExceeded
from ..model import PortCheck
from ..transport import check_ports

WEB_PORTS = (443, 80)
# A connect without an answer after this long is far more often a dropped SYN
# than a slow path (a connect round trip across the world is ~0.3 s). Waiting
# for the connect timeout (10 s) before asking the web ports would add that
# much to a run whose every port is filtered.
SLOW_CONNECT = 1.0


class _Address(Struct):
    first_attempt: float
    connected: bool = False  # one mail port connected: the host does not refuse this client
    failed: bool = False  # one mail connect was refused or had no answer
    future: Future[tuple[PortCheck, ...]] | None = None


class WebPortWatch:
    """Watches the mail probes' connects and checks the web ports of addresses that fail.

    A ``maildiag.probes.endpoint.ConnectWatcher``. ``results()`` ends the
    watch: it waits for the checks that were started (each bounded by the
    deadline) and returns what they found.
    """

    def __init__(self, timeout: float, deadline: Deadline, ports: tuple[int, ...] = WEB_PORTS):
        self.timeout = timeout
        self.deadline = deadline
        self.ports = ports
        self._cond = threading.Condition()
        self._addresses: dict[str, _Address] = {}
        self._closed = False
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="webports")

    def connecting(self, address: str) -> None:
        with self._cond:
            if self._closed or address in self._addresses:
                return
            state = self._addresses[address] = _Address(time.monotonic())
            state.future = self._pool.submit(self._watch, address, state)

    def connected(self, address: str, ok: bool) -> None:
        with self._cond:
            state = self._addresses.get(address)
            if state is None:
                return
            if ok:
                state.connected = True
            else:
                state.failed = True
            self._cond.notify_all()

    def _watch(self, address: str, state: _Address) -> tuple[PortCheck, ...]:
        with self._cond:
            due = state.first_attempt + SLOW_CONNECT
            while not (state.connected or state.failed or self._closed):
                wait = min(due - time.monotonic(), self.deadline.remaining())
                if wait <= 0:
                    break
                self._cond.wait(wait)
            if state.connected or (self._closed and not state.failed):
                return ()
        try:
            return check_ports(address, self.ports, timeout=self.timeout, deadline=self.deadline)
        except (DeadlineExceeded, OSError):
            return ()

    def results(self) -> tuple[PortCheck, ...]:
        """Every check made, in the order the addresses were first connected to."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            futures = [s.future for s in self._addresses.values() if s.future is not None]
        # Every check is bounded by the deadline: waiting for them leaves no thread behind.
        self._pool.shutdown(wait=True)
        return tuple(check for future in futures for check in future.result())
