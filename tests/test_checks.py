"""The checks of an endpoint as a registry, and their attempts (issue 10, item 4).

The runner runs what the registry lists, in its order, and records every
check it did not run with the reason; a check that broke off keeps its enum
reason next to the finding it led to.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from maildiag.analysis import analyse
from maildiag.credentials_input import Credentials, Secret
from maildiag.deadline import Deadline
from maildiag.finding_codes import FindingCode
from maildiag.model import (
    AttemptStatus,
    AuthStatus,
    CheckAttempt,
    CheckError,
    CheckId,
    Discovery,
    Endpoint,
    FamilyProbe,
    Outcome,
    ProbeResult,
    Protocol,
    Security,
)
from maildiag.probes.checks import BY_ID, REGISTRY, Stage, checks_of
from maildiag.probes.endpoint import ProbeSettings
from maildiag.probes.mailbox import MailboxChecks
from maildiag.runner import run_probes
from tests.lab.fake_servers import Behaviour, FakeMailServer

USER = "alice@kunde.test"
PASSWORD = "Wonder-Land-7"


# -- the registry ------------------------------------------------------------------


def test_every_check_id_is_registered_once():
    assert [spec.id for spec in REGISTRY] == list(dict.fromkeys(spec.id for spec in REGISTRY))
    assert set(BY_ID) == set(CheckId)


def test_each_check_needs_only_checks_registered_before_it():
    seen: set[CheckId] = set()
    for spec in REGISTRY:
        assert set(spec.needs) <= seen, f"{spec.id} needs {spec.needs}, before it: {seen}"
        seen.add(spec.id)


def test_a_check_needs_nothing_that_runs_on_other_protocols_only():
    for spec in REGISTRY:
        for need in spec.needs:
            assert spec.protocols <= BY_ID[need].protocols, (spec.id, need)


def test_session_checks_follow_the_endpoint_and_login_checks_run_in_the_session():
    assert REGISTRY[0].id is CheckId.ENDPOINT and REGISTRY[0].stage is Stage.PROBE
    for spec in REGISTRY:
        if spec.stage is Stage.SESSION:
            assert spec.needs, spec.id
        if spec.login:
            assert spec.stage is Stage.SESSION, spec.id


def test_which_checks_run_where():
    assert [s.id for s in checks_of(Stage.SESSION, Protocol.IMAP)] == [
        CheckId.AUTH,
        CheckId.MAILBOX,
    ]
    assert [s.id for s in checks_of(Stage.SESSION, Protocol.SMTP)] == [CheckId.AUTH, CheckId.SEND]
    assert [s.id for s in checks_of(Stage.BESIDE, Protocol.POP3)] == [CheckId.OTHER_FAMILY]


# -- ProbeResult holds attempts ------------------------------------------------------

IMAPS = Endpoint(Protocol.IMAP, "mail.kunde.test", 993, Security.TLS, ("srv:_imaps._tcp",))


def test_results_by_name_become_attempts_and_read_back():
    other = FamilyProbe("2001:db8::1", Outcome.REFUSED)
    result = ProbeResult.of(IMAPS, Outcome.OK, other_family=other)
    assert result.attempts == {
        CheckId.OTHER_FAMILY: CheckAttempt(CheckId.OTHER_FAMILY, AttemptStatus.COMPLETED, other)
    }
    assert result.other_family is other and result.auth is None
    with pytest.raises(TypeError):
        ProbeResult.of(IMAPS, Outcome.OK, quota=1)


def test_a_result_given_as_none_removes_its_attempt():
    other = FamilyProbe("2001:db8::1", Outcome.REFUSED)
    attempts = {CheckId.OTHER_FAMILY: CheckAttempt.completed(CheckId.OTHER_FAMILY, other)}
    result = ProbeResult.of(IMAPS, Outcome.OK, attempts=attempts, other_family=None)
    assert result.attempts == {} and result.other_family is None


def test_an_attempt_without_a_result_reads_as_none():
    skipped = CheckAttempt(
        CheckId.MAILBOX, AttemptStatus.NOT_SCHEDULED, error_reason=CheckError.NEEDS_UNMET
    )
    result = ProbeResult(IMAPS, Outcome.OK, attempts={CheckId.MAILBOX: skipped})
    assert result.mailbox is None


# -- the runner runs the registry ----------------------------------------------------


@pytest.fixture
def plain_imap(loopback_address: str) -> Iterator[FakeMailServer]:
    # Unencrypted (--allow-plaintext): the attempts, not TLS, are under test here.
    server = FakeMailServer(
        "imap",
        loopback_address,
        0,
        implicit_tls=False,
        behaviour=Behaviour.PLAINTEXT_LOGIN,
        users={USER: PASSWORD},
        login_failure_delay=3.0,
    ).start()
    yield server
    server.stop()


def _run(server: FakeMailServer, password: str, timeout: float = 3.0) -> ProbeResult:
    endpoint = Endpoint(Protocol.IMAP, server.address, server.port, Security.PLAIN, ("option",))
    checks = MailboxChecks(Credentials(USER, Secret(password)), allow_plaintext=True)
    (result,) = run_probes(
        (endpoint,),
        lambda _host, _deadline: [server.address],  # type: ignore[arg-type]
        ProbeSettings(timeout=timeout),
        Deadline(15),
        checks.hook_for,
    )
    return result


def _findings(result: ProbeResult) -> list[FindingCode]:
    discovery = Discovery("kunde.test", "kunde.test", True, endpoints=(result.endpoint,))
    return [f.code for f in analyse(discovery, [result], user=USER) if f.endpoint is not None]


def test_the_runner_runs_every_registered_check_of_the_endpoint_in_order(plain_imap):
    result = _run(plain_imap, PASSWORD)
    assert result.outcome is Outcome.OK
    expected = [
        s.id for s in REGISTRY if s.stage is not Stage.PROBE and Protocol.IMAP in s.protocols
    ]
    assert sorted(result.attempts, key=expected.index) == expected
    assert result.attempts[CheckId.AUTH].status is AttemptStatus.COMPLETED
    assert result.attempts[CheckId.MAILBOX].status is AttemptStatus.COMPLETED
    assert result.mailbox is not None and result.mailbox.inbox_messages == 3
    # One address on loopback: nothing to probe over the other family, and it says so.
    family = result.attempts[CheckId.OTHER_FAMILY]
    assert family.status is AttemptStatus.NOT_SCHEDULED
    assert family.error_reason is CheckError.NOT_APPLICABLE


def test_a_refused_login_leaves_the_mailbox_check_unscheduled_with_its_reason(plain_imap):
    result = _run(plain_imap, "wrong", timeout=6.0)
    assert result.auth is not None and result.auth.status is AuthStatus.WRONG_CREDENTIALS
    mailbox = result.attempts[CheckId.MAILBOX]
    assert mailbox.status is AttemptStatus.NOT_SCHEDULED
    assert mailbox.error_reason is CheckError.NEEDS_UNMET and mailbox.result is None
    assert result.mailbox is None
    assert FindingCode.AUTH_FAILED in _findings(result)


def test_a_login_that_breaks_off_carries_its_reason_through_to_the_finding(plain_imap):
    # The server answers a wrong password only after 3 s; the step's timeout is 1 s.
    result = _run(plain_imap, "wrong", timeout=1.0)
    login = result.attempts[CheckId.AUTH]
    assert login.status is AttemptStatus.ERROR
    assert login.error_reason is CheckError.NO_ANSWER
    assert login.result is not None and login.result.status is AuthStatus.NO_ANSWER
    assert result.attempts[CheckId.MAILBOX].error_reason is CheckError.NEEDS_UNMET
    # The endpoint itself worked: only the login has no verdict.
    assert result.outcome is Outcome.OK
    assert FindingCode.AUTH_NO_ANSWER in _findings(result)
