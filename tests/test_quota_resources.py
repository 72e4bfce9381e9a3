# ruff: noqa: F811 -- the fixtures imported below are the parameters of the tests
"""The quota advice follows the resource that is full (issue #11).

RFC 9208 §5 defines STORAGE (KiB) and MESSAGE (a number of messages). A
full MESSAGE quota used to get the storage advice ("large attachments
first"), which frees nothing. The fake IMAP server answers GETQUOTAROOT
with the resources each test scripts; the fixtures come from
tests/test_mailbox_fake.py.
"""

from __future__ import annotations

import pytest

from tests.test_mailbox_fake import check, fake  # noqa: F401 (fixtures)

MESSAGE_ADVICE = "number of messages, not their size"
STORAGE_ADVICE = "large attachments first"


def _finding(report: dict, code: str) -> dict:
    found = [f for f in report["findings"] if f["code"] == code]
    assert len(found) == 1, [f["code"] for f in report["findings"]]
    return found[0]


def test_full_message_quota_advises_deleting_many_mails(fake, check):
    _, dns = fake(quota=(("STORAGE", 2048, 1048576), ("MESSAGE", 1000, 1000)))
    code, report = check(dns)
    full = _finding(report, "QUOTA_FULL")
    assert code == 2 and full["severity"] == "critical"
    assert full["details"]["resource"] == "MESSAGE"
    assert "1000 messages of 1000 messages" in full["explanation"]
    assert MESSAGE_ADVICE in full["fix"] and "empty Trash" in full["fix"]
    assert STORAGE_ADVICE not in full["fix"]


def test_full_storage_quota_is_the_twin_with_the_storage_advice(fake, check):
    _, dns = fake(quota=(("STORAGE", 1024, 1024), ("MESSAGE", 3, 1000)))
    code, report = check(dns)
    full = _finding(report, "QUOTA_FULL")
    assert code == 2 and full["details"]["resource"] == "STORAGE"
    assert STORAGE_ADVICE in full["fix"]
    assert MESSAGE_ADVICE not in full["fix"]


def test_both_quotas_full_gives_both_advices_once(fake, check):
    _, dns = fake(quota=(("STORAGE", 1024, 1024), ("MESSAGE", 1000, 1000)))
    _, report = check(dns)
    fix = _finding(report, "QUOTA_FULL")["fix"]
    assert fix.count(MESSAGE_ADVICE) == 1 and fix.count(STORAGE_ADVICE) == 1


@pytest.mark.parametrize(
    ("quota", "advice", "other"),
    [
        ((("STORAGE", 10, 1048576), ("MESSAGE", 950, 1000)), MESSAGE_ADVICE, STORAGE_ADVICE),
        ((("STORAGE", 950, 1000), ("MESSAGE", 3, 1000)), STORAGE_ADVICE, MESSAGE_ADVICE),
    ],
)
def test_near_limit_advice_follows_the_resource_too(fake, check, quota, advice, other):
    _, dns = fake(quota=quota)
    code, report = check(dns)
    near = _finding(report, "QUOTA_NEAR_LIMIT")
    assert code == 1
    assert advice in near["fix"] and other not in near["fix"]


def test_message_quota_with_room_is_ok(fake, check):
    _, dns = fake(quota=(("STORAGE", 10, 1048576), ("MESSAGE", 3, 1000)))
    code, report = check(dns)
    assert code == 0
    assert _finding(report, "QUOTA_OK")["severity"] == "ok"
