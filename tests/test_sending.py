"""The verdict of the sending check, from the replies to MAIL FROM and RCPT TO."""

from __future__ import annotations

import pytest

from maildiag.model import SendStatus
from maildiag.probes.sending import judge, sender_for
from maildiag.protocols import smtp

OK_MAIL = smtp.Reply(250, ("2.1.0 Ok",))
OK_RCPT = smtp.Reply(250, ("2.1.5 Ok",))
POSTFIX_MISMATCH = smtp.Reply(
    553, ("5.7.1 <info@kunde.example>: Sender address rejected: not owned by user web1",)
)
UNKNOWN_USER = smtp.Reply(550, ("5.1.1 <info@kunde.example>: Recipient address rejected",))


@pytest.mark.parametrize(
    ("mail", "rcpt", "expected"),
    [
        (OK_MAIL, OK_RCPT, SendStatus.ACCEPTED),
        (OK_MAIL, POSTFIX_MISMATCH, SendStatus.SENDER_REJECTED),
        (OK_MAIL, UNKNOWN_USER, SendStatus.REFUSED),
        (OK_MAIL, smtp.Reply(451, ("4.3.0 Temporary lookup failure",)), SendStatus.TEMPORARY),
        # A refused MAIL FROM is about the sender, whatever its words.
        (
            smtp.Reply(550, ("5.7.60 SMTP; Client does not have permissions",)),
            None,
            SendStatus.SENDER_REJECTED,
        ),
        (smtp.Reply(553, ("sorry, that domain isn't allowed",)), None, SendStatus.SENDER_REJECTED),
        (smtp.Reply(421, ("4.7.0 Try again later",)), None, SendStatus.TEMPORARY),
    ],
)
def test_judge(mail: smtp.Reply, rcpt: smtp.Reply | None, expected: SendStatus) -> None:
    assert judge(mail, rcpt) is expected


def test_the_sender_is_a_login_that_is_an_address_else_the_address_given() -> None:
    assert sender_for("info@kunde.example") == "info@kunde.example"
    assert sender_for("info@kunde.example", "other@kunde.example") == "info@kunde.example"
    assert sender_for("web123p1") is None
    assert sender_for("web123p1", "info@kunde.example") == "info@kunde.example"
