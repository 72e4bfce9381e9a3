"""Words the reports share, and how a renderer looks up its own texts.

The English text is written here or in the renderer; the other languages
come from the gettext catalogue (``maildiag.i18n``), under a context per
renderer, so that ``tests/translations.py`` can list every text.
"""

from __future__ import annotations

from collections.abc import Mapping

from .. import i18n
from ..findings import render_text
from ..model import Diagnosis, InboundVerdict, MxAttempt, MxOutcome, Outcome

OUTCOMES: Mapping[Outcome, str] = {
    Outcome.OK: "ok",
    Outcome.UNRESOLVED: "unresolved",
    Outcome.REFUSED: "refused",
    Outcome.TIMEOUT: "timeout",
    Outcome.NO_GREETING: "no greeting",
    Outcome.CLOSED: "closed",
    Outcome.STALLED: "stalled",
    Outcome.UNAVAILABLE: "unavailable",
    Outcome.THROTTLED: "throttled",
    Outcome.PROTOCOL_ERROR: "protocol error",
    Outcome.STARTTLS_MISSING: "starttls missing",
    Outcome.STARTTLS_FAILED: "starttls failed",
    Outcome.TLS_FAILED: "tls failed",
    Outcome.PREAUTH: "preauth",
    Outcome.DEADLINE: "deadline",
}


def outcome_word(outcome: Outcome, lang: str) -> str:
    return i18n.text(lang, "report/outcome", OUTCOMES[outcome])


# What one MX said about the address (its verdict), or how talking to it ended.
MX_VERDICTS: Mapping[InboundVerdict, str] = {
    InboundVerdict.ACCEPTED: "accepted",
    InboundVerdict.UNKNOWN_USER: "unknown user",
    InboundVerdict.MAILBOX_FULL: "mailbox full",
    InboundVerdict.RELAY_DENIED: "relay denied",
    InboundVerdict.GREYLISTED: "greylisted",
    InboundVerdict.BLOCKED: "blocked",
    InboundVerdict.REJECTED: "rejected",
    InboundVerdict.DEFERRED: "deferred",
}
MX_OUTCOMES: Mapping[MxOutcome, str] = {
    MxOutcome.ANSWERED: "answered",
    MxOutcome.UNRESOLVED: "unresolved",
    MxOutcome.REFUSED: "refused",
    MxOutcome.TIMEOUT: "timeout",
    MxOutcome.NO_BANNER: "no banner",
    MxOutcome.CLOSED: "closed",
    MxOutcome.STALLED: "stalled",
    MxOutcome.PROTOCOL_ERROR: "protocol error",
    MxOutcome.DEADLINE: "deadline",
}


def mx_word(attempt: MxAttempt, lang: str) -> str:
    """The MX's verdict on the address, or how the dialogue with it ended, in ``lang``."""
    if attempt.verdict is not None:
        return i18n.text(lang, "report/outcome", MX_VERDICTS[attempt.verdict])
    return i18n.text(lang, "report/outcome", MX_OUTCOMES[attempt.outcome])


class Words:
    """The texts of one renderer in one language: ``words("key", fact=value)``.

    Rendering is strict (``render_text``): a fact the text names but the
    caller did not pass fails instead of showing ``{fact}`` to a customer.
    """

    def __init__(self, lang: str, context: str, texts: Mapping[str, str]) -> None:
        self.lang = lang
        self.context = context
        self.texts = texts

    def __call__(self, key: str, **facts: object) -> str:
        return render_text(i18n.text(self.lang, self.context, self.texts[key]), facts)


def localised(diagnosis: Diagnosis, lang: str) -> Diagnosis:
    """``diagnosis`` with every finding's title, explanation and fix in ``lang``."""
    if lang == "en":
        return diagnosis
    from msgspec.structs import replace

    return replace(diagnosis, findings=tuple(i18n.localise(f, lang) for f in diagnosis.findings))
