"""Which provider a host name belongs to, as far as names tell.

Used to compare where the MX sends incoming mail with where the mailbox
is read: after a move to a new provider the MX often still names the old
one, and mail is delivered there. Without a public-suffix list the
registrable domain is a guess (the last two labels, three under the usual
second-level labels of country domains, such as co.uk), and some providers
name their MX and mailbox servers under different domains; those are
listed as families.
"""

from __future__ import annotations

import ipaddress

# Second-level labels under which country-code TLDs register names
# (provider.co.uk, provider.com.au): the provider is the label before them.
_SECOND_LEVEL = frozenset({"co", "com", "net", "org", "ac", "gov", "edu", "or", "ne", "go"})

# Providers whose MX hosts and mailbox servers are named under different domains.
_FAMILIES = (
    frozenset({"google.com", "googlemail.com", "gmail.com"}),
    frozenset({"outlook.com", "office365.com", "hotmail.com", "live.com", "microsoft.com"}),
    frozenset({"yahoo.com", "yahoodns.net", "aol.com"}),
    frozenset({"icloud.com", "me.com", "apple.com"}),
    frozenset({"fastmail.com", "messagingengine.com"}),
    frozenset({"strato.de", "rzone.de"}),
)


def provider_domain(host: str) -> str:
    """The registrable-ish domain of ``host``: "mx1.provider.example" -> "provider.example"."""
    labels = host.lower().rstrip(".").split(".")
    keep = 2
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL:
        keep = 3
    return ".".join(labels[-keep:])


def same_provider(first: str, second: str) -> bool:
    """Whether two host names look like one provider's (by name only)."""
    a, b = provider_domain(first), provider_domain(second)
    return a == b or any(a in family and b in family for family in _FAMILIES)


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def inside(host: str, domain: str) -> bool:
    """``host`` is ``domain`` or a name below it."""
    return host == domain or host.endswith("." + domain)
