"""May this login send as its address? MAIL FROM and RCPT TO after the login, then RSET.

Run inside a submission session right after a successful AUTH. The envelope
is given to the server (the address as sender and as recipient) and then
reset: DATA is never sent, so nothing is queued or delivered. What the
server answers tells a working sender from a send-as refusal (Postfix
``reject_sender_login_mismatch``: "553 5.7.1 Sender address rejected: not
owned by user"), and the EHLO SIZE limit tells how large a message may be.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..deadline import DeadlineExceeded
from ..model import Protocol, SendCheck, SendStatus
from ..protocols import smtp
from ..protocols.capabilities import parse as parse_capabilities
from ..protocols.lines import ProtocolError
from ..transport import PeerClosed, ReadTimeout
from .sessions import SessionRefused, SmtpSession


def sender_for(login: str, address: str | None = None) -> str | None:
    """The address to try: the login when it is one, else the address given (--address)."""
    if "@" in login:
        return login
    return address or None


def judge(mail: smtp.Reply, rcpt: smtp.Reply | None) -> SendStatus:
    """The verdict of MAIL FROM (and RCPT TO when MAIL was accepted)."""
    answer = mail if rcpt is None or not mail.is_positive else rcpt
    if answer.is_positive:
        return SendStatus.ACCEPTED
    if answer.is_transient:
        return SendStatus.TEMPORARY
    if answer is mail or smtp.refuses_sender(answer):
        return SendStatus.SENDER_REJECTED
    return SendStatus.REFUSED


def check_sending(
    session: SmtpSession, sender: str | None, capabilities: Iterable[str], login: str
) -> SendCheck:
    """The sending check on a logged-in session; never raises for a rude server."""
    caps = parse_capabilities(Protocol.SMTP, capabilities)
    size = caps.size_limit
    if sender is None:
        detail = (
            f"not tried: the login {login!r} is not an e-mail address "
            "(give the address with --address, or as --user, to check sending)"
        )
        return SendCheck(SendStatus.SKIPPED, None, size, detail=detail)
    params: tuple[str, ...] = ()
    if not sender.isascii():
        # RFC 6531 §3.4: a UTF-8 address needs SMTPUTF8, announced and asked for.
        if not caps.smtputf8:
            detail = "not tried: the address is not ASCII and the server announces no SMTPUTF8"
            return SendCheck(SendStatus.SKIPPED, sender, size, detail=detail)
        params = ("SMTPUTF8",)
    try:
        mail_line = smtp.mail_from_command(sender, params)
        rcpt_line = smtp.rcpt_to_command(sender)
    except ValueError as exc:
        return SendCheck(SendStatus.SKIPPED, sender, size, detail=f"not tried: {exc}")
    mail: smtp.Reply | None = None
    rcpt: smtp.Reply | None = None
    try:
        mail = session.run(mail_line)
        if mail.is_positive:
            rcpt = session.run(rcpt_line)
        # RFC 5321 §4.1.1.5: RSET ends the transaction; no DATA ever follows.
        session.run(smtp.RSET_COMMAND)
    except SessionRefused as exc:  # 421: the server closes the connection
        return _broken(SendStatus.TEMPORARY, sender, size, mail, rcpt, exc.text)
    except (ReadTimeout, PeerClosed, ProtocolError, DeadlineExceeded) as exc:
        # The state of the transaction is unknown: give the connection up
        # rather than say QUIT behind an answer that may never come.
        session.conn.close()
        return _broken(SendStatus.NO_ANSWER, sender, size, mail, rcpt, str(exc))
    return SendCheck(
        judge(mail, rcpt),
        sender,
        size,
        mail_reply=str(mail),
        rcpt_reply=None if rcpt is None else str(rcpt),
    )


def _broken(
    status: SendStatus,
    sender: str,
    size: int | None,
    mail: smtp.Reply | None,
    rcpt: smtp.Reply | None,
    detail: str,
) -> SendCheck:
    if mail is not None and (rcpt is not None or not mail.is_positive):
        status = judge(mail, rcpt)  # the answers that count came before the break
    return SendCheck(
        status,
        sender,
        size,
        mail_reply=None if mail is None else str(mail),
        rcpt_reply=None if rcpt is None else str(rcpt),
        detail=detail,
    )
