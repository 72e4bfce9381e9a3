"""The checks of one endpoint, as a registry (issue 10, item 4; after sslyze's plugins).

Each check has a stable id (``CheckId``), says which checks it needs and
on which protocols it runs, and returns a ``CheckAttempt``: its status, an
enum reason when it did not run or did not finish, and its result. The
runner drives them from here: ``BESIDE`` checks start next to the
endpoint's probe, ``SESSION`` checks run in order inside its encrypted
session. A check whose needs are not met is recorded as not scheduled,
with the reason, instead of being left out in silence.

The implementations are imported only when a run uses them: a check
without credentials never loads the login code.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from msgspec import Struct

from ..deadline import DeadlineExceeded
from ..model import (
    AttemptStatus,
    AuthResult,
    AuthStatus,
    CheckAttempt,
    CheckError,
    CheckId,
    Protocol,
)
from ..protocols.lines import ProtocolError
from ..transport import TransportError
from .sessions import SessionRefused

if TYPE_CHECKING:
    from .families import BesideContext
    from .mailbox import SessionContext


class Stage(enum.Enum):
    """When a check runs, relative to the endpoint's own probe."""

    PROBE = "probe"  # the probe itself: connect, TLS, greeting, capabilities
    BESIDE = "beside"  # at the same time as the probe, over a connection of its own
    SESSION = "session"  # inside the probe's session, once its capabilities are known


class CheckSpec(Struct, frozen=True):
    id: CheckId
    stage: Stage
    needs: tuple[CheckId, ...] = ()
    protocols: frozenset[Protocol] = frozenset(Protocol)
    # Runs only when the run has credentials.
    login: bool = False
    # Whether a completed attempt lets the checks that need it run.
    passes: Callable[[Any], bool] = lambda _result: True


def _logged_in(result: AuthResult) -> bool:
    return result.status is AuthStatus.OK


REGISTRY: tuple[CheckSpec, ...] = (
    CheckSpec(CheckId.ENDPOINT, Stage.PROBE),
    CheckSpec(CheckId.OTHER_FAMILY, Stage.BESIDE),
    CheckSpec(
        CheckId.AUTH, Stage.SESSION, needs=(CheckId.ENDPOINT,), login=True, passes=_logged_in
    ),
    CheckSpec(
        CheckId.MAILBOX,
        Stage.SESSION,
        needs=(CheckId.AUTH,),
        protocols=frozenset({Protocol.IMAP, Protocol.POP3}),
        login=True,
    ),
    CheckSpec(
        CheckId.SEND,
        Stage.SESSION,
        needs=(CheckId.AUTH,),
        protocols=frozenset({Protocol.SMTP}),
        login=True,
    ),
)
BY_ID: Mapping[CheckId, CheckSpec] = {spec.id: spec for spec in REGISTRY}


def checks_of(stage: Stage, protocol: Protocol) -> tuple[CheckSpec, ...]:
    """The registered checks of ``stage`` that run on ``protocol``, in registry order."""
    return tuple(s for s in REGISTRY if s.stage is stage and protocol in s.protocols)


# --- the implementations, imported on first use ------------------------------------


def _run_beside(check: CheckId, ctx: BesideContext) -> CheckAttempt[Any]:
    from . import families

    implementations: Mapping[CheckId, Callable[[BesideContext], CheckAttempt[Any]]] = {
        CheckId.OTHER_FAMILY: families.other_family_check,
    }
    return implementations[check](ctx)


def _run_in_session(check: CheckId, ctx: SessionContext) -> CheckAttempt[Any]:
    from . import mailbox

    implementations: Mapping[CheckId, Callable[[SessionContext], CheckAttempt[Any]]] = {
        CheckId.AUTH: mailbox.login_check,
        CheckId.MAILBOX: mailbox.mailbox_check,
        CheckId.SEND: mailbox.send_check,
    }
    return implementations[check](ctx)


def run_beside(spec: CheckSpec, ctx: BesideContext) -> CheckAttempt[Any]:
    """One ``BESIDE`` check; whatever it raises becomes its attempt's error."""
    try:
        return _run_beside(spec.id, ctx)
    except Exception as exc:  # noqa: BLE001 - one failed check never hides the others
        return CheckAttempt(
            spec.id, AttemptStatus.ERROR, error_reason=reason_for(exc), error=str(exc)
        )


def run_session_checks(ctx: SessionContext) -> None:
    """The ``SESSION`` checks of the endpoint, in registry order, into ``ctx.attempts``.

    Called once the endpoint check has reached the session's capabilities
    (so ``ENDPOINT`` is met). A check that breaks the connection records
    its error and re-raises: the endpoint probe then classifies how the
    connection ended (STALLED in phase mailbox, ...), as it does for any step.
    """
    attempts = ctx.attempts
    for spec in checks_of(Stage.SESSION, ctx.endpoint.protocol):
        unmet = [need for need in spec.needs if not _met(need, attempts)]
        if unmet:
            attempts[spec.id] = CheckAttempt(
                spec.id,
                AttemptStatus.NOT_SCHEDULED,
                error_reason=CheckError.NEEDS_UNMET,
                error="needs " + ", ".join(unmet),
            )
            continue
        try:
            attempts[spec.id] = _run_in_session(spec.id, ctx)
        except Exception as exc:
            attempts.setdefault(
                spec.id,
                CheckAttempt(
                    spec.id, AttemptStatus.ERROR, error_reason=reason_for(exc), error=str(exc)
                ),
            )
            raise


def _met(need: CheckId, attempts: Mapping[CheckId, CheckAttempt[Any]]) -> bool:
    if need is CheckId.ENDPOINT:
        return True  # the session checks run only inside a working session
    attempt = attempts.get(need)
    return (
        attempt is not None
        and attempt.status is AttemptStatus.COMPLETED
        and BY_ID[need].passes(attempt.result)
    )


def reason_for(exc: BaseException) -> CheckError:
    """The enum reason of an exception that ended a check."""
    if isinstance(exc, DeadlineExceeded):
        return CheckError.DEADLINE
    if isinstance(exc, ProtocolError):
        return CheckError.BROKEN_REPLY
    if isinstance(exc, (TransportError, SessionRefused)):
        return CheckError.NO_ANSWER
    return CheckError.BUG
