"""The catalogue of every finding maildiag can report.

Codes are a public API: monitoring rules and scripts match on them, so a code
is never renamed or reused for another meaning. Texts are templates filled
with the facts of one case (``{host}``, ``{port}``, ...); they are written for
a support technician who has to pass the fix on to a customer.
"""

from __future__ import annotations

import enum
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from msgspec import Struct

from .finding_codes import FindingCode
from .model import Endpoint, Finding, LoginHint, Severity


class FindingSpec(Struct, frozen=True):
    code: FindingCode
    severity: Severity  # the usual severity; analysis may raise or lower it per case
    title: str
    explanation: str
    fix: str


_S = Severity
_C = FindingCode

# Appended to the explanation of every certificate failure a client warns
# about: the FAQ pages of hosting providers tell customers to click it away.
CLICK_OK = (
    " Confirming the certificate warning (OK, Continue, Trust) is not a fix: the client then "
    "trusts whoever answers under this name, and Outlook asks again on every start."
)

_SPECS = (
    # --- the domain and its DNS -------------------------------------------------
    FindingSpec(
        _C.DOMAIN_NOT_FOUND,
        _S.CRITICAL,
        "The domain does not exist in DNS",
        "The name servers answer that {domain} does not exist (NXDOMAIN). No mail client and "
        "no sending server can find anything for it.",
        "Check the spelling of the domain. If it is right, check that the domain is registered "
        "and delegated to working name servers (whois, the registrar's control panel).",
    ),
    FindingSpec(
        _C.DNS_LOOKUP_FAILED,
        _S.WARNING,
        "A DNS lookup failed",
        "DNS lookups failed ({query}): {detail}. Discovery may have missed endpoints.",
        "Retry; if it persists, check the domain's name servers (SERVFAIL often means a broken "
        "DNSSEC signature or an unreachable authoritative server).",
    ),
    FindingSpec(
        _C.MX_MISSING,
        _S.WARNING,
        "The domain has no MX record",
        "{domain} has no MX record, so other servers do not know where to deliver mail for it "
        "(they fall back to the domain's address, if any). Incoming mail may not arrive.",
        "Publish an MX record that points to the provider's mail server, for example "
        "'{domain}. IN MX 10 mx.<provider>.'.",
    ),
    FindingSpec(
        _C.NO_MAIL_ENDPOINTS,
        _S.CRITICAL,
        "No mail server found for the domain",
        "Neither SRV records, autoconfig, the usual host names (imap., pop3., smtp., mail.) nor "
        "MX records lead to a host with an address, so there was nothing to probe.",
        "Find out from the provider which server names to use and pass them with --imap-host, "
        "--pop3-host and --smtp-host; publish SRV records (RFC 6186) so clients can find them.",
    ),
    FindingSpec(
        _C.AUTOCONFIG_FOREIGN_HOST,
        _S.WARNING,
        "Autoconfig names a server of another domain",
        "The autoconfig document {url} names {hosts}, which belong(s) neither to {domain} nor "
        "to the provider of its MX records.{redirect} Thunderbird asks the user before it "
        "uses such settings: whoever controls that document receives every customer's "
        "password. maildiag checked these servers but did not send the password there.",
        "If the provider really runs the mail service on {hosts}, pass the server explicitly "
        "(--imap-host, --pop3-host, --smtp-host) to check the login. Otherwise correct the "
        "autoconfig document or the redirect on the web server of autoconfig.{domain}.",
    ),
    FindingSpec(
        _C.SRV_NOT_OFFERED,
        _S.INFO,
        "A service is declared as not offered",
        "The SRV record {service} has the target '.', which by RFC 2782 means the domain "
        "deliberately does not offer {what}.",
        "Nothing to do if that is intended. Otherwise replace the record with one that names "
        "the server and port.",
    ),
    FindingSpec(
        _C.SRV_INVALID,
        _S.WARNING,
        "An SRV record names port 0",
        "The SRV record {service} points to {target} on port 0. Port 0 is not a service port "
        "(RFC 6335), so clients that configure themselves from SRV records (RFC 6186) cannot "
        "use it and fall back to guessing. maildiag ignored the record and probed the usual "
        "names and ports for {what} instead.",
        "Correct the record to the real port, for example '{service}.{domain}. IN SRV 0 1 "
        "{standard_port} {target}.'; or, if {what} is not offered, use the target '.' "
        "('0 0 0 .').",
    ),
    FindingSpec(
        _C.DISCOVERY_CONTRADICTION,
        _S.WARNING,
        "Published settings point to a dead endpoint",
        "The {source} announces {host}:{port} for {what}, but nothing usable answers there "
        "({outcome}). Clients that configure themselves from this record will fail.",
        "Correct the {source} or make the service answer on that port.",
    ),
    FindingSpec(
        _C.HOST_UNRESOLVED,
        _S.CRITICAL,
        "The server name does not resolve",
        "The host name {host} has no address in DNS ({detail}), so clients cannot connect.",
        "Create the A/AAAA record for {host}, or configure the mail client with a server name "
        "that exists.",
    ),
    # --- where incoming mail goes (MX) --------------------------------------------
    FindingSpec(
        _C.MX_NULL,
        _S.WARNING,
        "The domain declares that it receives no mail (null MX)",
        "{domain} publishes the null MX record '{domain}. IN MX 0 .' (RFC 7505). It tells "
        "every sending server that the domain accepts no mail at all, so mail to any address "
        "at {domain} bounces at once, without a delivery attempt.",
        "If the domain has mailboxes, replace the null MX with an MX record that names the "
        "provider's mail server, for example '{domain}. IN MX 10 mx.<provider>.'. A null MX "
        "is only right for a domain that never receives mail.",
    ),
    FindingSpec(
        _C.MX_HOST_UNRESOLVED,
        _S.CRITICAL,
        "An MX record names a host without an address",
        "The MX record of {domain} names {mx_host}, which has no address in DNS ({detail}). "
        "Sending servers cannot deliver mail there; when no other MX of the domain works, "
        "mail for {domain} is not delivered (senders retry for a few days, then bounce it).",
        "Create the A/AAAA record for {mx_host}, or correct the MX record to the name of the "
        "provider's mail server.",
    ),
    FindingSpec(
        _C.MX_CNAME,
        _S.WARNING,
        "An MX record names an alias (CNAME)",
        "The MX record of {domain} names {mx_host}, which is an alias (CNAME) of {cname}. "
        "RFC 2181 §10.3 and RFC 5321 §5.1 forbid this. Most sending servers follow the alias "
        "anyway, but some refuse, so mail from some senders may not arrive.",
        "Point the MX record directly at the real name: '{domain}. IN MX {preference} {cname}.'.",
    ),
    FindingSpec(
        _C.MX_OTHER_PROVIDER,
        _S.WARNING,
        "Incoming mail goes to another provider than the mailbox",
        "The MX record of {domain} sends incoming mail to {mx_host} ({mx_provider}), but the "
        "mailbox is read on {mailbox_hosts} ({mailbox_provider}). Sending servers deliver to "
        "the MX, so mail ends up at {mx_provider} — typically the old provider after a move — "
        "and never appears in this mailbox. (Judged from host names and addresses: a "
        "provider that names its servers under different domains looks the same.)",
        "If the mailbox has moved to {mailbox_provider}, change the MX record of {domain} to "
        "the mail server that {mailbox_provider} names for receiving mail (see its setup "
        "instructions). Until then, mail keeps arriving at {mx_provider}; fetch it from there "
        "before that account is closed.",
    ),
    # --- the inbound path: would the MX accept mail for the address? ---------------
    FindingSpec(
        _C.INBOUND_ACCEPTED,
        _S.OK,
        "The MX accepts mail for the address",
        "{mx_host} ({mx_address}), the MX of {domain} that answered first, accepts mail for "
        "{address} ({reply}). Nothing was delivered: maildiag ended the dialogue before DATA.",
        "Nothing to do on the receiving side. If mail still does not arrive, look at the "
        "sender's bounce message, the spam folder and the mailbox's filter and forwarding "
        "rules.",
    ),
    FindingSpec(
        _C.INBOUND_UNKNOWN_USER,
        _S.CRITICAL,
        "The MX does not know the address",
        "{mx_host} ({mx_address}), the MX of {domain}, refuses mail for {address} as an "
        "unknown recipient: '{reply}'. Senders get a bounce saying the address does not exist.",
        "Check the spelling of the address. If it is right, create the mailbox or an alias for "
        "{address} at the provider; if it was created only recently, ask the provider whether "
        "its receiving servers know it yet.",
    ),
    FindingSpec(
        _C.INBOUND_MAILBOX_FULL,
        _S.CRITICAL,
        "The mailbox is full: incoming mail is refused",
        "{mx_host} ({mx_address}) refuses mail for {address} because the mailbox is over its "
        "quota: '{reply}'. Senders get a bounce (after a temporary refusal, their mail waits "
        "on their side and bounces after a few days).",
        "Free space in the mailbox (delete or archive old mail, large attachments first, and "
        "empty Trash and Junk) or have the provider raise its quota. Mail refused so far has to "
        "be sent again by its senders.",
    ),
    FindingSpec(
        _C.INBOUND_RELAY_DENIED,
        _S.CRITICAL,
        "The MX does not accept mail for the domain",
        "{mx_host} ({mx_address}) answers RCPT TO:<{address}> with '{reply}': it does not "
        "consider itself responsible for {domain}. The MX record points to a server that is not "
        "set up to receive mail for this domain (the domain is missing from that server's mail "
        "domains, or the MX names the wrong server).",
        "Add {domain} as a mail domain on the server {mx_host} (at its provider), or correct "
        "the MX record of {domain} to the server that holds the mailbox.",
    ),
    FindingSpec(
        _C.INBOUND_GREYLISTED,
        _S.INFO,
        "Greylisting: the first delivery attempt is deferred",
        "{mx_host} ({mx_address}) answers RCPT TO:<{address}> with a temporary refusal "
        "('{reply}'). This is greylisting: the MX defers mail from a sender it does not know yet "
        "and accepts it when the sender tries again, usually after 5 to 30 minutes. That is "
        "normal and delays only the first mail from a new sender.",
        "Nothing to do if a delay of some minutes for new senders is acceptable. If mail must "
        "arrive at once, ask the provider to turn greylisting off for {address} or to let the "
        "important senders through.",
    ),
    FindingSpec(
        _C.INBOUND_BLOCKED,
        _S.WARNING,
        "The MX refuses this network",
        "{mx_host} ({mx_address}) refused maildiag's connection before it could ask about "
        "{address}: '{reply}'. The refusal is about the client (its address is on a blocklist, "
        "has no reverse DNS, or its HELO name is not accepted), not about the mailbox: other "
        "mail servers may well get through, so this says nothing about the address.",
        "Run the check from another network (a server with a clean address and reverse DNS), "
        "or look up the address maildiag ran from on the blocklist the reply names.",
    ),
    FindingSpec(
        _C.INBOUND_NULL_SENDER_REFUSED,
        _S.WARNING,
        "The MX refuses the empty sender (bounces)",
        "{mx_host} ({mx_address}) answers MAIL FROM:<> with '{reply}'. RFC 5321 §4.5.5 requires "
        "every MX to accept the empty sender: bounces and delivery notifications travel with "
        "it. Bounces to {address} are lost, and servers that verify senders with a callout "
        "cannot verify it.",
        "Ask the provider that runs {mx_host} to accept the empty sender (null reverse-path) "
        "for {domain}.",
    ),
    FindingSpec(
        _C.INBOUND_REJECTED,
        _S.WARNING,
        "The MX refuses mail for the address",
        "{mx_host} ({mx_address}) refuses mail for {address}: '{reply}'. The reply is none of "
        "the common causes maildiag recognises; senders get it as a bounce.",
        "Read the server's reply for the reason and ask the provider that runs {mx_host} about it.",
    ),
    FindingSpec(
        _C.INBOUND_DEFERRED,
        _S.WARNING,
        "The MX temporarily refuses mail for the address",
        "{mx_host} ({mx_address}) refuses mail for {address} for now: '{reply}'. Senders keep "
        "the mail and try again for a few days; if the cause lasts, it bounces.",
        "Run the check again in a few minutes. If the refusal stays, ask the provider that runs "
        "{mx_host} about the reason in its reply.",
    ),
    FindingSpec(
        _C.INBOUND_INCONCLUSIVE,
        _S.INFO,
        "Inbound check inconclusive: port 25 seems blocked from this network",
        "No MX of {domain} answered on port 25 ({mx_hosts}): every connection timed out or got "
        "no banner. Many networks (home and mobile access providers, cloud hosts, company "
        "firewalls) block outgoing connections to port 25, so this says nothing about whether "
        "the MX servers are up.",
        "Run the check from a network that may connect to port 25 (a mail or hosting server), "
        "or check the MX servers with an external tool.",
    ),
    FindingSpec(
        _C.INBOUND_MX_UNREACHABLE,
        _S.CRITICAL,
        "No MX of the domain takes mail",
        "None of the MX servers of {domain} could be asked about {address}: {failures}. Sending "
        "servers cannot deliver mail either; they retry for a few days, then bounce it. (If "
        "this network blocks port 25, the cause may be local: check from another network.)",
        "Make sure the mail server named in the MX record runs and accepts connections on port "
        "25 from the internet, or correct the MX record.",
    ),
    FindingSpec(
        _C.INBOUND_NOT_FINISHED,
        _S.INFO,
        "The inbound check did not finish in time",
        "The run's deadline ended the dialogue with the MX servers of {domain} ({mx_hosts}) "
        "before they said whether they accept mail for {address}.",
        "Run the check again with a longer --deadline.",
    ),
    # --- reaching the service ---------------------------------------------------
    FindingSpec(
        _C.PORT_CLOSED,
        _S.WARNING,
        "Connection refused: the service is not running",
        "{host} answered the connection to port {port} with a refusal. The machine is "
        "reachable, but no program listens on that port: the service is down or not offered "
        "on this port.",
        "If {what} should be offered: start the service or open the port on {host}. "
        "Otherwise configure clients to use one of the ports that work.",
    ),
    FindingSpec(
        _C.PORT_FILTERED,
        _S.WARNING,
        "No answer: a firewall drops the connection",
        "The connection to {host}:{port} got no answer within {timeout:g} s. A refused port "
        "answers at once; silence means a firewall on the way (the server's, the provider's "
        "or the customer's network) drops the packets.",
        "Test from another network (mobile hotspot): if it works there, the customer's "
        "network blocks port {port}; otherwise ask the provider to open it.",
    ),
    FindingSpec(
        _C.NO_GREETING,
        _S.WARNING,
        "The server accepted the connection but never greeted",
        "{host}:{port} accepted the TCP connection but sent no greeting within {timeout:g} s. "
        "The server is overloaded or hung, or a different service (or a TLS-only port) "
        "listens there.",
        "Check the mail service on {host} (load, logs). If the port speaks implicit TLS, "
        "configure the client for SSL/TLS instead of STARTTLS.",
    ),
    FindingSpec(
        _C.CONNECTION_CLOSED,
        _S.WARNING,
        "The server hung up",
        "{host}:{port} closed the connection during {phase}. Clients see this as a sudden "
        "'connection lost' error.",
        "Check the server's log for the reason (crash, connection limits, a tcpwrapper or "
        "fail2ban rule against this address).",
    ),
    FindingSpec(
        _C.SERVER_STALLED,
        _S.WARNING,
        "The server stopped answering",
        "{host}:{port} stopped answering during {phase} (nothing within {timeout:g} s). "
        "Clients hang at this step and then report a timeout.",
        "Check the load and the log of the mail service on {host}.",
    ),
    FindingSpec(
        _C.SERVICE_UNAVAILABLE,
        _S.CRITICAL,
        "The server refuses service",
        '{host}:{port} answered, but refused to serve: "{reply}".',
        "The provider has to re-enable the service, or the client must use another server.",
    ),
    FindingSpec(
        _C.SMTP_THROTTLED,
        _S.WARNING,
        "The mail server is throttling this check (inconclusive)",
        '{host}:{port} answered with a temporary refusal: "{reply}". This is an SMTP server, '
        "but it limits connections from this address right now, so this result says nothing "
        "about whether it works for the customer.",
        "Repeat the check later or from another address; if customers see the same, ask the "
        "provider about connection limits or a block on their address.",
    ),
    FindingSpec(
        _C.SERVER_THROTTLED,
        _S.WARNING,
        "The server is temporarily refusing connections",
        '{host}:{port} refused the session temporarily: "{reply}". The result is inconclusive.',
        "Repeat the check later; if it persists, the server is overloaded or limits this address.",
    ),
    FindingSpec(
        _C.IPV6_FAILS,
        _S.WARNING,
        "Works over IPv4, fails over IPv6",
        "{host} has an IPv4 and an IPv6 address. {what} on port {port} works over IPv4 "
        "({works_address}) but not over IPv6 ({fails_address}: {failure}). Mail clients on a "
        "network with IPv6 (more and more mobile, cable and fibre lines) try IPv6 first, so "
        "some customers get timeouts or errors while others have no problem, and the same "
        "laptop works at home and fails at the office.",
        "Make the mail service listen on {fails_address} as well and allow its ports over IPv6 "
        "in the firewall (ip6tables/nftables rules are separate from the IPv4 ones, and "
        "fail2ban may ban IPv6 addresses separately); or remove the AAAA record of {host} "
        "until IPv6 works.",
    ),
    FindingSpec(
        _C.IPV4_FAILS,
        _S.WARNING,
        "Works over IPv6, fails over IPv4",
        "{host} has an IPv4 and an IPv6 address. {what} on port {port} works over IPv6 "
        "({works_address}) but not over IPv4 ({fails_address}: {failure}). Customers on a "
        "network without IPv6 (many office, hotel and older home connections) cannot use it, "
        "while those with IPv6 have no problem.",
        "Make the mail service listen on {fails_address} as well and allow its ports over IPv4 "
        "in the firewall, or correct the A record of {host} if it points to the wrong "
        "machine.",
    ),
    FindingSpec(
        _C.CLIENT_ADDRESS_BLOCKED,
        _S.CRITICAL,
        "The server seems to block this client's address",
        "{seen}{families} That is how a mail server looks from an address it has banned: "
        "fail2ban bans an address after a few failed logins (one phone or old PC with an "
        "outdated password is enough), and a firewall rule can do the same. maildiag "
        "connected from {local_address}; behind a router (NAT) the server sees the router's "
        "public address instead. The failures of the single ports of {hosts} follow from "
        "this: they do not mean that the service is down for other customers.",
        "Ask the provider to lift the ban on this address (fail2ban: 'fail2ban-client set "
        "dovecot unbanip {local_address}', or the jail of the mail server concerned, such as "
        "postfix-sasl), and check from another network, such as a mobile hotspot. If it works "
        "there, find the device that keeps logging in with an old password, or the ban comes "
        "back.",
    ),
    FindingSpec(
        _C.PROTOCOL_ERROR,
        _S.CRITICAL,
        "The server did not speak the expected protocol",
        "{host}:{port} did not answer like a {what} server: {detail}.",
        "Check that the port is forwarded to the mail service and not to another program, "
        "and that the client uses the right port for the protocol.",
    ),
    FindingSpec(
        _C.DEADLINE_EXCEEDED,
        _S.WARNING,
        "The check ran out of time",
        "The probe of {host}:{port} was stopped in phase {phase} because the run's deadline "
        "of {deadline:g} s had passed.",
        "Repeat with a longer --deadline; a server this slow will also time out in clients.",
    ),
    # --- encryption ---------------------------------------------------------------
    FindingSpec(
        _C.STARTTLS_MISSING,
        _S.CRITICAL,
        "No encryption offered on this port",
        "{host}:{port} does not offer {command}, so a client on this port sends the password "
        "and all mail unencrypted, or refuses to connect.",
        "Enable TLS in the server ({command} on port {port}), or have clients use port "
        "{tls_port} with SSL/TLS.",
    ),
    FindingSpec(
        _C.STARTTLS_FAILED,
        _S.CRITICAL,
        "The encryption upgrade was refused",
        '{host}:{port} announces {command} but answered it with "{reply}". Clients that '
        "require encryption cannot log in here.",
        "Check the server's TLS configuration (certificate and key files readable, TLS "
        "enabled); the server log names the reason.",
    ),
    FindingSpec(
        _C.STARTTLS_INJECTION,
        _S.CRITICAL,
        "Plaintext was slipped in after the encryption upgrade",
        "{host}:{port} agreed to {command}, but before the encryption started it sent more "
        'plaintext: "{injected}". A mail client must throw such bytes away; some read them '
        "as if they had come over the encrypted connection (CVE-2011-0411; in 2021 many mail "
        "clients were found doing so: Poddebniak et al., 'Why TLS is better without "
        "STARTTLS', USENIX Security 2021). That is how an attacker on the network path "
        "feeds a client forged replies, to make it send the password unencrypted or show "
        "forged mail. Either something on the path between this check and the server tampers "
        "with the connection, or the server (or a proxy in front of it) is broken. maildiag "
        "stopped there and sent no password.",
        "Repeat the check from another network. If the same happens there, the server or a "
        "proxy or load balancer in front of it answers {command} wrongly: update or fix it, "
        "it must send nothing after its go-ahead until the TLS handshake. If not, a firewall, "
        "a 'mail security' proxy or the local network tampers with mail connections. Until "
        "then have clients use port {tls_port} with SSL/TLS, where there is no unencrypted "
        "phase to slip anything into.",
    ),
    FindingSpec(
        _C.IMAP_PREAUTH,
        _S.CRITICAL,
        "The IMAP server logs clients in before any password (PREAUTH)",
        '{host}:{port} greeted with PREAUTH: "{greeting}". The session counts as logged in '
        "from the first line, without user name or password, and STARTTLS is only allowed "
        "before login (RFC 3501 §6.2.1), so on a plaintext port this connection can never be "
        "encrypted: a client set to STARTTLS fails, one that carries on reads mail "
        "unencrypted. A PREAUTH greeting is also how an attacker on the network path keeps "
        "clients from encrypting (Poddebniak et al., 'Why TLS is better without STARTTLS', "
        "USENIX Security 2021), so the client may be talking to an attacker's session. "
        "maildiag sent no password there.",
        "Make the server greet with '* OK' and require a login. PREAUTH is only for "
        "connections authenticated by other means, such as an imapd started over ssh or from "
        "a local pipe, which must not listen on a network port (check inetd/xinetd entries "
        "and systemd socket units that start the imapd binary directly). If the server's log "
        "shows no such session, something on the network path rewrites the greeting: use "
        "port {tls_port} with SSL/TLS.",
    ),
    FindingSpec(
        _C.PLAINTEXT_AUTH_ALLOWED,
        _S.WARNING,
        "Login is allowed before encryption",
        "{host}:{port} offers login ({mechanisms}) on the unencrypted connection, before "
        "{command}; these send the password itself. A misconfigured client can send the "
        "password in clear text.",
        "Allow password logins only after TLS ({setting}).",
    ),
    FindingSpec(
        _C.PLAINTEXT_AUTH_UNCLEAR,
        _S.INFO,
        "Login before encryption may be possible",
        "{host}:{port} lists {mechanisms} on the unencrypted connection, before {command}. "
        "That only says the command exists: many servers still refuse it until after "
        "{command} (Courier with POP3_TLS_REQUIRED=1, for one). maildiag does not send a "
        "user name or password to find out.",
        "Nothing to do if the server refuses password logins before {command}; check its "
        "configuration to be sure ({setting}).",
    ),
    FindingSpec(
        _C.TLS_HANDSHAKE_FAILED,
        _S.CRITICAL,
        "The TLS handshake failed",
        "The encrypted connection to {host}:{port} could not be set up: {detail}.",
        "Check the server's TLS configuration: certificate and key match, protocols and "
        "ciphers that current clients support (TLS 1.2 or 1.3).",
    ),
    FindingSpec(
        _C.TLS_HANDSHAKE_TIMEOUT,
        _S.CRITICAL,
        "The TLS handshake stalled",
        "{host}:{port} accepted the connection but did not complete the TLS handshake within "
        "{timeout:g} s. A middlebox may be interfering, or a plaintext service listens on a "
        "port that clients expect to speak TLS.",
        "Check that port {port} really speaks implicit TLS; if it speaks plaintext, configure "
        "clients for STARTTLS on it or fix the server.",
    ),
    FindingSpec(
        _C.TLS_PORT_SPEAKS_PLAINTEXT,
        _S.CRITICAL,
        "This TLS port speaks plaintext",
        "{host}:{port} is where clients expect {what} over implicit TLS (SSL/TLS from the "
        "first byte, RFC 8314), but the server answered the TLS handshake in plaintext: "
        '"{greeting}". This port speaks plaintext {plain_name}, not {tls_name}: clients set '
        "to SSL/TLS here fail with a handshake error ('wrong version number').",
        "Either set the mail client to STARTTLS on this port (or to port {starttls_port} with "
        "STARTTLS), or make the server speak implicit TLS on port {tls_port}: {setting}.",
    ),
    FindingSpec(
        _C.TLS_HOSTNAME_MISMATCH,
        _S.CRITICAL,
        "The certificate is for another server name",
        "The certificate of {host}:{port} is not valid for '{hostname}'. It is valid for: "
        "{valid_for}. Mail clients show a certificate warning (Outlook: 'The name on the "
        "security certificate is invalid'); people who click it away can be attacked unseen."
        + CLICK_OK,
        "Configure the mail client with the server name {suggestion} instead of "
        "'{hostname}' — that is the name the certificate is valid for. Or have the provider "
        "issue a certificate that includes '{hostname}'.",
    ),
    FindingSpec(
        _C.TLS_CERT_EXPIRED,
        _S.CRITICAL,
        "The certificate has expired",
        "The certificate of {host}:{port} expired on {not_after} ({days_ago} days ago). "
        "Clients refuse the connection or show a warning." + CLICK_OK,
        "Renew the certificate and reload the mail service (with Let's Encrypt, check that "
        "the renewal job runs and that the service is reloaded afterwards).",
    ),
    FindingSpec(
        _C.TLS_CERT_EXPIRING,
        _S.WARNING,
        "The certificate expires soon",
        "The certificate of {host}:{port} expires on {not_after}, in {days_left} days.",
        "Renew it before then and reload the mail service; check that automatic renewal works.",
    ),
    FindingSpec(
        _C.TLS_CERT_NOT_YET_VALID,
        _S.CRITICAL,
        "The certificate is not valid yet",
        "The certificate of {host}:{port} is valid only from {not_before}. Either it was "
        "installed too early or a clock is wrong." + CLICK_OK,
        "Check the server's clock (and this machine's); install a certificate that is valid now.",
    ),
    FindingSpec(
        _C.TLS_CERT_SELF_SIGNED,
        _S.CRITICAL,
        "The certificate is self-signed",
        "{host}:{port} presents a self-signed certificate ({subject}). No client trusts it, so "
        "every client warns; telling customers to confirm such warnings trains them to accept "
        "an attacker's certificate too." + CLICK_OK,
        "Install a certificate from a public CA (Let's Encrypt is free) for the server name "
        "clients use.",
    ),
    FindingSpec(
        _C.TLS_CERT_UNTRUSTED,
        _S.CRITICAL,
        "The certificate is not from a trusted authority",
        "The certificate of {host}:{port} could not be verified: {detail}." + CLICK_OK,
        "Use a certificate from a public CA. For a company CA, distribute its root to the "
        "clients (and pass it to maildiag with --ca-file).",
    ),
    FindingSpec(
        _C.TLS_CHAIN_INCOMPLETE,
        _S.WARNING,
        "The server does not send the intermediate certificate",
        "{host}:{port} sends its certificate without the intermediate certificate(s) that "
        "link it to a trusted root: {detail}. {clients}" + CLICK_OK,
        "Configure the full chain file on the server (Let's Encrypt: fullchain.pem, not cert.pem).",
    ),
    FindingSpec(
        _C.TLS_CERT_INVALID,
        _S.CRITICAL,
        "The certificate is invalid",
        "The certificate of {host}:{port} is not valid: {detail}." + CLICK_OK,
        "Install a correctly issued certificate for the server name.",
    ),
    FindingSpec(
        _C.TLS_CERT_NO_SAN,
        _S.CRITICAL,
        "The certificate names its server only in the common name",
        "The certificate of {host}:{port} ({subject}) has no subjectAltName; the server name "
        "appears only as its common name ({common_name}). Current clients ignore the common "
        "name (RFC 9525; Chrome, Thunderbird, Apple Mail since iOS 13 and macOS 10.15) and "
        "refuse the certificate as not valid for '{hostname}'.",
        "Have the certificate reissued with '{hostname}' (and every other name clients use) as "
        "a subjectAltName DNS name. Public CAs always do this; for a self-made certificate add "
        "'-addext \"subjectAltName = DNS:{hostname}\"' to the openssl req command.",
    ),
    FindingSpec(
        _C.TLS_KEY_WEAK,
        _S.CRITICAL,
        "The certificate's key is too weak",
        "{host}:{port} presents a certificate with a key that current clients refuse: "
        "{weak_keys}. OpenSSL at its default security level (2, on Debian, Ubuntu and RHEL) "
        "rejects RSA keys below 2048 bits and elliptic-curve keys below 224 bits, and DSA "
        "keys are not supported by TLS 1.3 and current clients; the connection fails with a "
        "certificate or handshake error.",
        "Create a new key (RSA 2048 bits or more, or EC P-256) and have the certificate "
        "reissued for it (certbot: --key-type ecdsa or --rsa-key-size 4096; openssl req "
        "-newkey rsa:3072), then install it and reload the mail service.",
    ),
    FindingSpec(
        _C.TLS_SIGNATURE_WEAK,
        _S.CRITICAL,
        "The certificate is signed with SHA-1 or MD5",
        "{host}:{port} presents {weak_signatures}. Such signatures can be forged, and current "
        "clients (OpenSSL at its default security level, Chrome, Firefox, Apple and Microsoft "
        "since 2017) reject the certificate, so the connection fails with a certificate error.",
        "Have the certificate reissued with a SHA-256 signature and install the new chain "
        "(a public CA reissues for free; a private CA must sign with -sha256, and an "
        "intermediate signed with SHA-1 must be replaced too).",
    ),
    FindingSpec(
        _C.TLS_PROTOCOL_OUTDATED,
        _S.CRITICAL,
        "The server speaks only an outdated TLS version",
        "{host}:{port} offers nothing newer than {version}, although maildiag asks for TLS 1.3 "
        "and accepts every version down to TLS 1.0. TLS versions below 1.2 are insecure and "
        "current clients (Outlook, Apple Mail, Thunderbird, iOS) refuse them, so they cannot "
        "connect at all.",
        "Enable TLS 1.2 and 1.3 on the server and switch the old versions off: {setting}.",
    ),
    FindingSpec(
        _C.TLS_CIPHER_WEAK,
        _S.WARNING,
        "A weak cipher was negotiated",
        "{host}:{port} negotiated the cipher {cipher} ({bits} bit), which is no longer "
        "considered secure.",
        "Restrict the server to modern AEAD ciphers (AES-GCM, ChaCha20-Poly1305).",
    ),
    # --- summary per endpoint and protocol ---------------------------------------
    FindingSpec(
        _C.ENDPOINT_OK,
        _S.OK,
        "The endpoint works",
        "{what} on {host}:{port} ({security}) answered correctly with a valid certificate.",
        "Nothing to do.",
    ),
    FindingSpec(
        _C.IMAP_UNREACHABLE,
        _S.CRITICAL,
        "No working IMAP server",
        "None of the IMAP endpoints (143 with STARTTLS, 993 with TLS) works, so no device can "
        "read mail with IMAP.",
        "Fix the IMAP findings above; until then, customers cannot use IMAP.",
    ),
    FindingSpec(
        _C.POP3_UNREACHABLE,
        _S.WARNING,
        "No working POP3 server",
        "None of the POP3 endpoints (110 with STLS, 995 with TLS) works.",
        "If POP3 is meant to be offered, fix the POP3 findings above; otherwise clients should "
        "use IMAP, which keeps mail on the server for every device.",
    ),
    FindingSpec(
        _C.SUBMISSION_NO_AUTH,
        _S.CRITICAL,
        "Nobody can log in to send mail here",
        "{host}:{port} is a mail submission port, but its EHLO reply{where} offers no AUTH. "
        "Mail clients cannot log in, so they cannot send through it: the server refuses to "
        "relay mail for clients that are not logged in (RFC 6409 §4.3), and clients report "
        "that the server does not support authentication. Only networks the server trusts "
        "without a login (if any) can send here.",
        "Enable SMTP authentication on the submission service, offered after TLS: {setting}.",
    ),
    FindingSpec(
        _C.SUBMISSION_UNREACHABLE,
        _S.CRITICAL,
        "No working server for sending mail",
        "Neither submission port (587 with STARTTLS, 465 with TLS) works, so mail clients "
        "cannot send.",
        "Fix the SMTP findings above. Port 25 is not an alternative: many networks block it "
        "for clients and it is meant for server-to-server delivery.",
    ),
    # --- login (with --user) ---------------------------------------------------------
    FindingSpec(
        _C.AUTH_OK,
        _S.OK,
        "Login works",
        "{user} logged in to {what} on {host}:{port} ({mechanism}).",
        "Nothing to do.",
    ),
    FindingSpec(
        _C.IMAP_ALERT,
        _S.WARNING,
        "The provider has a notice for the user",
        "{host}:{port} accepted the login of {user} and sent a notice that the mail program "
        'must show to the user (IMAP [ALERT], RFC 3501 §7.1): "{alert}". Providers send such '
        "notices when the mailbox is almost full, the password expires soon or the account "
        "is about to be closed. Many mail programs, phones in particular, never show it, so "
        "the customer may not have seen it.",
        "Read the message to the customer: it is the provider's notice, e.g. that the mailbox "
        "is almost full, that the password expires in a few days or that the account will be "
        "closed. Then do what it asks (free space, set a new password in the webmail, settle "
        "the contract with the provider); the provider stops sending it once the cause is "
        "gone.",
    ),
    FindingSpec(
        _C.IMAP_SERVER_NOTIFY_ERROR,
        _S.WARNING,
        "The IMAP server cannot watch mailboxes for changes",
        "{host}:{port} accepted the login of {user} and then sent, as a notice for the user "
        '(IMAP [ALERT]): "{alert}". This is not about the mailbox: the Courier IMAP server '
        "could not start its file-change notification (FAM or Gamin). It sends this notice on "
        "every login, so mail programs that show notices (Thunderbird, Outlook) pop it up "
        "again and again, and push (IDLE) falls back to looking again at intervals, so new "
        "mail can show up late on phones.",
        "Nothing to change in the mail program: the customer can close the message, the "
        "mailbox works. The provider has to repair the server: on Debian and Ubuntu install "
        "the package gamin (`apt install gamin`) next to courier-imap, or repair the FAM "
        "daemon; the notice is gone with the next login.",
    ),
    FindingSpec(
        _C.AUTH_FAILED,
        _S.CRITICAL,
        "Wrong user name or password",
        '{host}:{port} refused the login of {user}: "{reply}". The user name or the password '
        "is wrong.{user_form}",
        "Check the user name and the password; if in doubt, set a new password in the "
        "provider's control panel and enter it on every device. A device that keeps trying an "
        "old password can get the customer's address blocked (fail2ban).{hint}",
    ),
    FindingSpec(
        _C.AUTH_ACCOUNT_DISABLED,
        _S.CRITICAL,
        "The account is disabled",
        '{host}:{port} does not let {user} log in: "{reply}". The server says the account '
        "itself is blocked (disabled, expired or locked), not that the password is wrong.",
        "The provider or the mail administrator has to re-enable the account (common causes: "
        "an unpaid invoice, an abuse or spam block, an expired password).",
    ),
    FindingSpec(
        _C.AUTH_PLAINTEXT_REFUSED,
        _S.OK,
        "No login before encryption (good)",
        "{host}:{port} does not accept a password before the connection is encrypted "
        "({command}), so a misconfigured client cannot send it in clear text. That is how it "
        "should be; maildiag did not send the password there.",
        "Nothing to do. Clients must use {command} on port {port} or SSL/TLS on port {tls_port}.",
    ),
    FindingSpec(
        _C.AUTH_MECHANISM_UNAVAILABLE,
        _S.WARNING,
        "No usable login method",
        "{host}:{port} offers no login method that maildiag and common mail clients use "
        "({detail}). Clients cannot log in here.",
        "Enable password logins over TLS (Dovecot: auth_mechanisms = plain login; Postfix: "
        "smtpd_sasl_auth_enable = yes), or configure clients for the method the provider "
        "documents.",
    ),
    FindingSpec(
        _C.AUTH_TEMPORARY_FAILURE,
        _S.WARNING,
        "The login failed temporarily",
        '{host}:{port} answered the login with a temporary failure: "{reply}". The password '
        "was not judged: the server's user database is unreachable, it is overloaded, or the "
        "mailbox is locked by another session.",
        "Repeat the check in a few minutes. If it persists, the provider has to check the "
        "authentication backend (LDAP, SQL) and the server log.",
    ),
    FindingSpec(
        _C.AUTH_APP_PASSWORD_REQUIRED,
        _S.CRITICAL,
        "An app password is required",
        '{host}:{port} refused the login of {user}: "{reply}". The account uses two-step '
        "verification (Google: 2-Step Verification), and then the provider no longer accepts "
        "the normal password in mail programs, however correctly it is typed.",
        "Create an app password in the account's security settings (Google: "
        "myaccount.google.com → Security → 2-Step Verification → App passwords) and enter it "
        "in the mail client instead of the normal password. Or use a mail client that signs "
        "in with the provider's login window (OAuth2).",
    ),
    FindingSpec(
        _C.AUTH_SMTP_AUTH_DISABLED_M365,
        _S.CRITICAL,
        "Microsoft 365 does not allow SMTP AUTH here",
        '{host}:{port} refused the login of {user}: "{reply}". Microsoft 365 has SMTP AUTH '
        "(Authenticated SMTP, the login mail programs use to send) turned off for this tenant "
        "or this mailbox. The account is not disabled and the password may be right; "
        "receiving mail is not affected.",
        "Enable Authenticated SMTP for this mailbox in the Microsoft 365 admin center (Users → "
        "Active users → the user → Mail → Manage email apps → Authenticated SMTP). If the "
        "reply says 'for the Tenant', an administrator must also allow SMTP AUTH for the "
        "organisation (Exchange admin center → Settings → Mail flow, or Set-TransportConfig "
        "-SmtpClientAuthenticationDisabled $false). Or use a mail client that signs in with "
        "OAuth (modern authentication).",
    ),
    FindingSpec(
        _C.AUTH_OAUTH_ONLY,
        _S.CRITICAL,
        "Only OAuth2 sign-in is accepted",
        "{host}:{port} accepts only OAuth2 / modern authentication for {what} ({reply}): no "
        "login with a user name and password. The mail client must sign in with the "
        "provider's login window.",
        "Set up the account in the mail client so that it signs in with the provider's login "
        "window (OAuth2 / modern authentication; Outlook, Thunderbird and Apple Mail do so "
        "when the account is added again), or use an app password where the provider offers "
        "one. Typing the password again does not help.",
    ),
    FindingSpec(
        _C.AUTH_WEB_LOGIN_REQUIRED,
        _S.CRITICAL,
        "The provider blocks the sign-in until it is confirmed on the web",
        '{host}:{port} refused the login of {user}: "{reply}". The provider has blocked '
        "sign-ins from mail programs for this account until the account holder confirms "
        "them on its website (an unusual sign-in, or a security check); the password may be "
        "right.",
        "Sign in once at the provider's webmail in a browser and confirm the sign-in or "
        "complete the check it asks for; then use an app password or a mail client that "
        "signs in with the provider's login window (OAuth2). Repeating the same login keeps "
        "the block in place.",
    ),
    FindingSpec(
        _C.AUTH_PASSWORD_EXPIRED,
        _S.CRITICAL,
        "The password has expired",
        '{host}:{port} no longer accepts the password of {user}: "{reply}". The password has '
        "expired (RFC 5530 EXPIRED): the server refuses it even when it is typed correctly.",
        "Set a new password in the provider's webmail or control panel (the webmail usually "
        "asks for it at the next sign-in), then enter the new password on every device.",
    ),
    FindingSpec(
        _C.AUTH_CONTACT_ADMIN,
        _S.CRITICAL,
        "The provider has to be asked about this account",
        '{host}:{port} does not let {user} log in: "{reply}". The server asks the user to '
        "contact the administrator or support (RFC 5530 CONTACTADMIN, or an organisation's "
        "policy such as Microsoft 365 conditional access). The cause lies with the provider, "
        "not in the mail client.",
        "Ask the provider or the organisation's mail administrator why this account may not "
        "log in; the server log (Microsoft 365: the Entra sign-in logs) names the policy.",
    ),
    FindingSpec(
        _C.AUTH_NOT_AUTHORIZED,
        _S.CRITICAL,
        "This login may not use the mailbox",
        '{host}:{port} does not let the login {user} act on this mailbox: "{reply}" (RFC 5530 '
        "AUTHORIZATIONFAILED). The credentials may be right, but they belong to a user who "
        "has no right to this mailbox, as with shared mailboxes or master-user logins.",
        "Log in with the mailbox's own user name, or have the provider grant this login "
        "access to the mailbox.",
    ),
    FindingSpec(
        _C.AUTH_IN_USE,
        _S.WARNING,
        "The mailbox is locked by another session",
        '{host}:{port} answered the login of {user} with "{reply}". Another session holds '
        "the mailbox: with POP3 only one client at a time may open it, so another device or "
        "program (a second computer, a phone, a tool that collects mail) is fetching right "
        "now. This is not a password problem.",
        "Find the other device or program that fetches this mailbox and stop it or let it "
        "check less often; better, use IMAP on every device, which allows several sessions "
        "at once.",
    ),
    FindingSpec(
        _C.AUTH_LOGIN_DELAY,
        _S.WARNING,
        "The mailbox is checked too often",
        '{host}:{port} answered the login of {user} with "{reply}". The server allows one '
        "login per interval (RFC 2449 LOGIN-DELAY) and the last one was too recent: a mail "
        "client checks too often, or several devices check the same mailbox.",
        "Set every mail client of this mailbox to check for new mail less often than the "
        "server allows (the CAPA reply names the interval in seconds after LOGIN-DELAY), or "
        "use IMAP.",
    ),
    FindingSpec(
        _C.AUTH_TOO_MANY_CONNECTIONS,
        _S.WARNING,
        "Too many connections for this mailbox",
        '{host}:{port} refused the login of {user} for now: "{reply}". The server limits '
        "how many connections one user (or one user from one address) may hold at once, and "
        "the limit is reached: every device keeps several connections open, one per watched "
        "folder.",
        "Close mail clients that are not needed or lower their connection count "
        "(Thunderbird: Account Settings → Server Settings → Advanced → 'Maximum number of "
        "server connections to cache'); the provider can raise the limit (Dovecot: "
        "mail_max_userip_connections).",
    ),
    FindingSpec(
        _C.AUTH_RATE_LIMITED,
        _S.WARNING,
        "The server limits logins from this address",
        '{host}:{port} refused the login for now: "{reply}". The server has counted too many '
        "errors or failed logins from this address and throttles or blocks it; the password "
        "was not judged. maildiag did not try it on any other endpoint, so as not to make a "
        "block (fail2ban) worse.",
        "Wait (usually ten minutes to an hour) and check again. Find the device that keeps "
        "trying an old password (a phone, a second computer, a printer or scanner that sends "
        "mail) and correct it, or the block comes back. The provider can lift the block for "
        "the address (fail2ban-client set <jail> unbanip <address>).",
    ),
    FindingSpec(
        _C.AUTH_REFUSED_AS_UNENCRYPTED,
        _S.CRITICAL,
        "The server treats the encrypted connection as unencrypted",
        "{host}:{port} refused the login as if the connection were unencrypted: "
        '"{reply}". maildiag\'s connection was encrypted (TLS), so something in front of the '
        "mail service ends TLS and passes the login on unencrypted (a TLS proxy or load "
        "balancer), and the mail service refuses passwords on that leg. No client can log in "
        "here.",
        "Let the mail service trust the proxy's connections (Dovecot: login_trusted_networks, "
        "or the HAProxy PROXY protocol with haproxy_trusted_networks) or let TLS reach the "
        "mail service itself.",
    ),
    FindingSpec(
        _C.AUTH_NO_ANSWER,
        _S.WARNING,
        "The login got no answer in time",
        "{host}:{port} did not answer the login of {user} ({reply}). Some servers answer a "
        "wrong password only after a pause (Courier's authdaemon waits about 5 seconds), so the "
        "server may well have counted a failed login. maildiag therefore did not try the "
        "password on any other endpoint in this check.",
        "Check again with a longer timeout per step (--timeout 15). If the login then fails, "
        "check the password; if it still gets no answer, the provider has to check the "
        "authentication backend (authdaemon, LDAP, SQL) and the server log.",
    ),
    FindingSpec(
        _C.AUTH_REFUSED,
        _S.WARNING,
        "The server refused the login",
        "{host}:{port} refused the login of {user} for a reason other than the password: "
        '"{reply}".',
        "Look up the server's answer in its documentation or log; the provider can tell what "
        "it means for this account.",
    ),
    FindingSpec(
        _C.AUTH_SKIPPED_LOCKOUT,
        _S.INFO,
        "Login not tried, to avoid a lockout",
        "maildiag did not try the password on {host}:{port}: {reason}. Hosting servers block "
        "an address after a few failed logins (fail2ban), so a refused password is tried only "
        "once per check.",
        "Fix the credentials (see the login finding above) and check again.",
    ),
    FindingSpec(
        _C.AUTH_SKIPPED_FOREIGN_HOST,
        _S.INFO,
        "Login not tried: the server belongs to another domain",
        "maildiag did not send the password to {host}:{port}: {reason}.",
        "If this is the right server, check the login with --imap-host, --pop3-host or "
        "--smtp-host {host}; see the autoconfig finding above.",
    ),
    FindingSpec(
        _C.AUTH_SKIPPED_UNTRUSTED,
        _S.INFO,
        "Login not tried: the certificate did not verify",
        "The certificate of {host}:{port} did not verify, so the other end could be an "
        "impostor; maildiag does not send a password there.",
        "Fix the certificate findings above. A mail client that was told to accept this "
        "certificate sends its password to whoever presents it.",
    ),
    FindingSpec(
        _C.AUTH_SKIPPED_PLAINTEXT,
        _S.INFO,
        "Login not tried on an unencrypted connection",
        "{host}:{port} would take the password unencrypted; maildiag does not send it there "
        "unless asked to with --allow-plaintext.",
        "Use the encrypted ports. Only on a trusted network, repeat with --allow-plaintext to "
        "test this port.",
    ),
    # --- quota and mailbox size (with --user) ------------------------------------------
    FindingSpec(
        _C.QUOTA_OK,
        _S.OK,
        "The mailbox has room",
        "The mailbox of {user} uses {percent:.0f} % of its {resource} quota ({used} of {limit}).",
        "Nothing to do.",
    ),
    FindingSpec(
        _C.QUOTA_NEAR_LIMIT,
        _S.WARNING,
        "The mailbox is almost full",
        "The mailbox of {user} uses {percent:.0f} % of its {resource} quota ({used} of "
        "{limit}). Once it is full, the server rejects new mail: senders get a 'mailbox full' "
        "bounce (SMTP 552) and the customer does not learn that mail was lost.",
        "{advice} Or have the provider raise the quota.",
    ),
    FindingSpec(
        _C.QUOTA_FULL,
        _S.CRITICAL,
        "The mailbox is full: new mail is rejected",
        "The mailbox of {user} uses {percent:.0f} % of its {resource} quota ({used} of "
        "{limit}). The server now rejects or bounces new mail: senders get 'mailbox full' "
        "(SMTP 552 5.2.2, 'quota exceeded') and the messages never arrive. Sending can fail "
        "too, because the copy for the Sent folder cannot be saved.",
        "{advice} Or have the provider raise the quota. Ask important senders to send again.",
    ),
    FindingSpec(
        _C.QUOTA_UNSUPPORTED,
        _S.INFO,
        "The server does not report the quota",
        "The IMAP server does not announce QUOTA (RFC 9208), so the mailbox's quota cannot be "
        "read. That is not an error: many servers keep the quota to their web interface.",
        "Look at the quota in the provider's webmail or control panel.",
    ),
    FindingSpec(
        _C.INBOX_LARGE,
        _S.WARNING,
        "The INBOX is very large",
        "The INBOX of {user} holds {messages} messages ({size}). Beyond about {max_messages} "
        "messages or {max_size}, clients on slow links (phones, hotel Wi-Fi) take long to "
        "synchronise, time out, and show stale mail.",
        "Move older mail into archive folders (for example one per year); most clients have "
        "an archive function for this.",
    ),
    # --- folders and push (after an IMAP login) --------------------------------
    FindingSpec(
        _C.FOLDERS_SPECIAL_USE_OK,
        _S.OK,
        "The special folders are marked",
        "The IMAP server marks the folders for sent mail, drafts, deleted mail and spam "
        "(RFC 6154 special use): {marked}. Mail clients find them without being told.",
        "Nothing to do.",
    ),
    FindingSpec(
        _C.FOLDERS_SPECIAL_USE_MISSING,
        _S.WARNING,
        "The server does not mark the special folders",
        "The IMAP server marks no folder as {missing} (RFC 6154 special use). Without the mark "
        "each mail client picks these folders by name or creates its own (Outlook: 'Sent Items' "
        "and 'Deleted Items', in German 'Gesendete Elemente' and 'Gelöschte Elemente'; Apple "
        "Mail: 'Sent Messages'), so sent and deleted mail ends up in a different folder on each "
        "device and seems to vanish. The account's folders: {folders}.",
        "Have the provider mark the folders (Dovecot: special_use = \\Sent, \\Trash, "
        "\\Drafts, \\Junk in the mailbox sections of the inbox namespace). Until then, choose "
        "the folders by hand in every mail client: Thunderbird under Account Settings, Copies & "
        "Folders; iPhone and Apple Mail under the account's Mailbox Behaviors; Outlook under "
        "the account's IMAP settings (folder for sent and deleted items).",
    ),
    FindingSpec(
        _C.IMAP_IDLE_MISSING,
        _S.INFO,
        "The server offers no push (IDLE)",
        "The IMAP server does not offer IDLE (RFC 2177), so it cannot tell a mail client about "
        "new mail at once: clients have to ask at intervals. Phones then show new mail only "
        "every 15 minutes or more, or when the app is opened.",
        "Ask the provider to enable IDLE (Dovecot and Cyrus offer it by default). Until then, "
        "set a shorter fetch interval on the phone, at some cost in battery.",
    ),
    # --- sending (after a submission login) ----------------------------------
    FindingSpec(
        _C.SEND_OK,
        _S.OK,
        "The server accepts mail from the address",
        "After the login as {user}, {host}:{port} accepts {sender} as sender and as recipient "
        "(checked with MAIL FROM and RCPT TO, then RSET: nothing was sent).",
        "Nothing to do.",
    ),
    FindingSpec(
        _C.SEND_SENDER_REJECTED,
        _S.CRITICAL,
        "The server refuses the address as sender for this login",
        "The login as {user} works, but {host}:{port} refuses {sender} as the sender: "
        "'{reply}'. The server lets a login send only from the addresses assigned to it "
        "(Postfix: smtpd_sender_login_maps with reject_sender_login_mismatch; Microsoft 365: "
        "'Send As' permission). The mail client connects and logs in without complaint, but "
        "every message with this sender is rejected when it is sent.",
        "Set the sender address (From) of this account in the mail client to an address the "
        "login {user} owns, or have the provider assign {sender} to the login (as an alias, a "
        "'Send As' permission, or an entry in the sender login map). An additional sender "
        "address in the client needs its own account or such a permission.",
    ),
    FindingSpec(
        _C.SEND_REFUSED,
        _S.WARNING,
        "The server did not accept the address for sending",
        "After the login as {user}, {host}:{port} did not accept {sender} as sender and "
        "recipient: '{reply}'. Sending mail from or to this address may fail.",
        "A refused recipient means the server does not know the address (check the spelling, "
        "and whether mail for the domain is hosted here); a temporary refusal (4xx) usually "
        "clears by itself, so check again later. If it persists, give the provider the "
        "server's answer.",
    ),
    FindingSpec(
        _C.SEND_SKIPPED,
        _S.INFO,
        "Sending was not checked",
        "The sending check on {host}:{port} was not made: {reason}.",
        "To check whether the login may send as its address, give the full e-mail address as "
        "--user, or with --address.",
    ),
    FindingSpec(
        _C.SEND_SIZE_LIMIT,
        _S.OK,
        "Message size limit",
        "{host}:{port} accepts messages up to {size} (EHLO SIZE), that is attachments up to "
        "about {attachments} in total (base64 makes files about a third larger when sent).",
        "Nothing to do.",
    ),
    FindingSpec(
        _C.SEND_SIZE_SMALL,
        _S.WARNING,
        "The server accepts only small messages",
        "{host}:{port} announces a size limit of {size} per message (EHLO SIZE). Files grow by "
        "about a third when sent (base64), so attachments larger than about {attachments} in "
        "total bounce: the message is refused with 'message size exceeds fixed limit' (SMTP "
        "552 5.3.4), and phones often only show that sending failed.",
        "Send large files as a download link (cloud storage), or have the provider raise the "
        "limit (Postfix: message_size_limit, Exim: message_size_limit); 25 MB or more is "
        "usual today.",
    ),
    FindingSpec(
        _C.ADVICE_USE_IMAP,
        _S.INFO,
        "IMAP or POP3",
        "{situation} POP3 downloads mail to one device and by default deletes it from the "
        "server, so the other devices (phone, webmail, a second computer) stop seeing it.",
        "{advice}",
    ),
    # --- sync latency (with --sync) ----------------------------------------------------
    FindingSpec(
        _C.SYNC_OK,
        _S.OK,
        "Delivery and synchronisation are quick",
        "A test message reached the INBOX {delivery:.2f} s after it was sent "
        "({delivery_method}); a flag set in one session reached another in {flag:.2f} s "
        "({flag_method}).",
        "Nothing to do.",
    ),
    FindingSpec(
        _C.SYNC_DELIVERY_SLOW,
        _S.WARNING,
        "New mail arrives late",
        "A test message sent to {user} through submission reached the INBOX only after "
        "{delivery:.1f} s ({delivery_method}; more than {limit:g} s is slow). Customers see "
        "mail arrive late: a long queue, slow spam or virus filtering, or greylisting between "
        "the provider's own servers.",
        "Ask the provider to look at the mail queue (postqueue -p, mailq) and the delivery "
        "log for the test message's delays.",
    ),
    FindingSpec(
        _C.SYNC_FLAG_SLOW,
        _S.WARNING,
        "Changes reach other devices late",
        "A flag set in one IMAP session reached a second session only after {flag:.1f} s "
        "({flag_method}; more than {limit:g} s is slow). Read/unread marks, moves and "
        "deletions show up late on the customer's other devices.",
        "Ask the provider about replication lag between its servers and the IDLE "
        "notification settings (Dovecot: mailbox_idle_check_interval).",
    ),
    FindingSpec(
        _C.SYNC_FAILED,
        _S.WARNING,
        "The sync test did not complete",
        "The delivery and synchronisation test did not complete: {reason}.",
        "Fix the findings above (login, submission) and repeat with --sync. If they are all "
        "fine, the provider has to follow the test message in its delivery log.",
    ),
    FindingSpec(
        _C.SYNC_CLEANUP_FAILED,
        _S.WARNING,
        "The test message was left in the mailbox",
        "maildiag could not remove its test message: {reason}.",
        "Delete the message whose subject starts with 'maildiag sync probe' by hand; it is "
        "harmless.",
    ),
    # --- what the customer typed (check --typed) ------------------------------------
    FindingSpec(
        _C.TYPED_WORKS,
        _S.OK,
        "The setting works as typed",
        "{what} on {host}:{port} with {encryption} works as the customer typed it.",
        "Nothing to do.",
    ),
    FindingSpec(
        _C.TYPED_SSL_ON_STARTTLS_PORT,
        _S.CRITICAL,
        "SSL/TLS chosen on a STARTTLS port",
        "The client is set to SSL/TLS (encrypted from the first byte) on {host}:{port}, but "
        "the server answers there in plaintext and expects STARTTLS. The client waits for a TLS "
        "handshake the server never starts and reports an error such as 'The server does not "
        "support encrypted connections' or 'wrong version number'.",
        "Type instead: {suggestion}.",
    ),
    FindingSpec(
        _C.TYPED_STARTTLS_ON_TLS_PORT,
        _S.CRITICAL,
        "STARTTLS chosen on an SSL/TLS port",
        "The client is set to STARTTLS on {host}:{port}, but the server there expects "
        "encryption from the first byte (SSL/TLS) and does not greet in plaintext. The client "
        "waits for a greeting that never comes and gives up with a timeout.",
        "Type instead: {suggestion}.",
    ),
    FindingSpec(
        _C.TYPED_NO_ENCRYPTION,
        _S.CRITICAL,
        "No encryption chosen: the password would go in clear text",
        "The client is set to no encryption on {host}:{port}, and the server accepts a login "
        "there: the password and every mail cross the network unencrypted, readable for anyone "
        "on the way (public Wi-Fi, a hotel network).",
        "Type instead: {suggestion}. Then change the password, as it may have been read.",
    ),
    FindingSpec(
        _C.TYPED_NO_ENCRYPTION_REFUSED,
        _S.CRITICAL,
        "No encryption chosen: the server refuses the login",
        "The client is set to no encryption on {host}:{port}. The server does not accept a "
        "password before the connection is encrypted ({command} first), so the client cannot "
        "log in and reports a wrong password or that the server does not allow the login.",
        "Type instead: {suggestion}.",
    ),
    FindingSpec(
        _C.TYPED_PORT_25,
        _S.CRITICAL,
        "Port 25 chosen for sending",
        "Port 25 ({host}) is for delivery between mail servers. Customers cannot log in there "
        "(or the server does not relay their mail), and many access providers block port 25 "
        "for their customers, so sending fails, or works only in some networks.",
        "Type instead: {suggestion}.",
    ),
    FindingSpec(
        _C.TYPED_USE_IMAP,
        _S.WARNING,
        "POP3 chosen although IMAP works",
        "The client is set to POP3 ({host}:{port}). POP3 downloads the mail to this one device "
        "and usually deletes it from the server, so the customer's other devices (phone, "
        "webmail, a second computer) stop seeing it. IMAP works for this mailbox and keeps the "
        "mail on the server for every device.",
        "Type instead: {suggestion}. Check first that the mail this device downloaded is still "
        "on the server (or copy it back).",
    ),
)

CATALOGUE: Mapping[FindingCode, FindingSpec] = {spec.code: spec for spec in _SPECS}


class _LenientFormatter(string.Formatter):
    """Leaves a placeholder visible instead of raising when a fact is missing."""

    def get_value(self, key, args, kwargs):  # type: ignore[no-untyped-def]
        if isinstance(key, str) and key not in kwargs:
            return "{" + key + "}"
        return super().get_value(key, args, kwargs)

    def format_field(self, value, format_spec):  # type: ignore[no-untyped-def]
        try:
            return super().format_field(value, format_spec)
        except (ValueError, TypeError):
            return str(value)


_FORMATTER = _LenientFormatter()


def render_text(template: str, facts: Mapping[str, Any]) -> str:
    """A catalogue text (in any language) filled in with the facts of one case."""
    return _FORMATTER.format(template, **facts)


# The {clients} sentence of TLS_CHAIN_INCOMPLETE: whether a client can repair
# the chain depends on the leaf's Authority Information Access extension.
CHAIN_INCOMPLETE_CLIENTS: Mapping[bool, str] = {
    True: "The certificate names where its issuer can be downloaded ({ca_issuers}), so "
    "clients that fetch missing intermediates (Windows and Outlook, Apple Mail) work, while "
    "others (Thunderbird, Android, most mail libraries) refuse it — so only some customers "
    "complain.",
    False: "The certificate does not say where its issuer can be downloaded (it has no "
    "Authority Information Access caIssuers URL), so no client can fetch the missing "
    "certificate: clients refuse the connection unless they happen to have that "
    "intermediate stored already.",
}


class BlockEvidence(enum.StrEnum):
    """The sign that a server blocks this client (the fact ``evidence``)."""

    WEB_ANSWERS = "web_answers"  # the mail ports fail, the web port of the address answers
    DROPPED = "dropped"  # every mail port accepts and closes at once
    REPLY = "reply"  # the server's refusal names this client's address

    def __str__(self) -> str:
        return self.value


# The {seen} of CLIENT_ADDRESS_BLOCKED, per sign of a block (maildiag.blocking).
BLOCK_EVIDENCE: Mapping[BlockEvidence, str] = {
    BlockEvidence.WEB_ANSWERS: "Every mail port of {hosts} ({server_address}: {ports}) refused the "
    "connection or did not answer, yet the same address answers on port {web_port} (its web "
    "server): the machine is up, and refuses only mail connections from here.",
    BlockEvidence.DROPPED: "Every mail port of {hosts} ({server_address}: {ports}) accepted "
    "the connection and closed it again at once, before any login.",
    BlockEvidence.REPLY: "{hosts} ({server_address}) refused the connection on port "
    '{first_port} with: "{reply}".',
}

# The {families} of CLIENT_ADDRESS_BLOCKED when the same endpoints work over
# the host's other IP family: the block is of one client address, not of the client.
BLOCK_FAMILIES = (
    " Over {working_family} ({working_address}) the same server works from here (ports "
    "{working_ports}, connected from {working_local_address}): what is blocked is this "
    "client's {blocked_family_name} address {local_address}, not the client as such "
    "(fail2ban bans each address on its own). Mail programs that connect over "
    "{working_family} get through, those over {blocked_family_name} do not, so the customer "
    "may see it work one moment and fail the next. If other networks fail over "
    "{blocked_family_name} as well, the server takes no mail connections over "
    "{blocked_family_name} at all."
)

# The {advice} of QUOTA_NEAR_LIMIT and QUOTA_FULL, per RFC 9208 §5 resource:
# what frees a storage quota (size) does little for a message-count quota.
QUOTA_ADVICE: Mapping[str, str] = {
    "STORAGE": "Free space: delete or archive old mail, large attachments first, and empty "
    "Trash and Junk (deleted mail counts until those folders are emptied).",
    "MESSAGE": "The limit is on the number of messages, not their size: delete or archive "
    "many small mails (old newsletters, notifications, automatic reports — sort by sender or "
    "date and remove them in bulk) and empty Trash and Junk, which count too. Deleting a few "
    "large mails does not help.",
    "MAILBOX": "The limit is on the number of folders: delete or merge folders that are no "
    "longer needed.",
    "": "Delete or archive old mail and empty Trash and Junk (deleted mail counts until those "
    "folders are emptied).",
}

# Sentences added to the {advice} of QUOTA_NEAR_LIMIT and QUOTA_FULL when
# the folder sizes (or message counts) were measured: where the space is.
QUOTA_FOLDER_TEXTS: Mapping[str, str] = {
    "empty": "Here, emptying {folders} frees the most.",
    "largest": "The largest other folders: {folders}.",
    "messages": "{count} messages",
}


def quota_advice(
    advice_for: Sequence[str],
    folder_space: Sequence[Mapping[str, Any]],
    translate: Callable[[str, str], str],
) -> str:
    """The {advice} of the quota findings, in the language ``translate`` gives.

    ``folder_space`` lists folders worst first, each with ``name``, ``size``
    (a formatted size, or None when only ``messages`` is known) and whether
    it is a folder to ``empty`` (Trash, Junk).
    """
    parts = [translate(f"QUOTA_ADVICE/{key or 'other'}", QUOTA_ADVICE[key]) for key in advice_for]
    for group, empty in (("empty", True), ("largest", False)):
        named = [
            "{} ({})".format(
                space["name"],
                space["size"]
                or render_text(
                    translate("QUOTA_FOLDERS/messages", QUOTA_FOLDER_TEXTS["messages"]),
                    {"count": space["messages"]},
                ),
            )
            for space in folder_space
            if bool(space.get("empty")) is empty
        ]
        if named:
            sentence = translate(f"QUOTA_FOLDERS/{group}", QUOTA_FOLDER_TEXTS[group])
            parts.append(render_text(sentence, {"folders": ", ".join(named)}))
    return " ".join(parts)


# The quota resources of RFC 9208 §5, as the {resource} fact names them.
QUOTA_RESOURCES = ("STORAGE", "MESSAGE", "MAILBOX", "ANNOTATION-STORAGE")

# The {situation} and {advice} of ADVICE_USE_IMAP; {where} is e.g.
# "mail.example.org, port 993, SSL/TLS" (see WHERE).
USE_IMAP_TEXTS: Mapping[str, str] = {
    "imap_works": "IMAP works ({where}).",
    "imap_and_pop3_work": "IMAP works ({where}), and so does POP3.",
    "use_imap": "Use IMAP on every device ({where}). A device set up with POP3 should be set "
    "up again with IMAP, after checking that the mail it downloaded is still on the server (or "
    "copying it back).",
    "only_pop3": "Only POP3 works for this mailbox ({where}); IMAP does not.",
    "keep_copy": "Until IMAP works, set every POP3 client to leave a copy of each message on "
    "the server (Outlook: 'Leave a copy of messages on the server'; Thunderbird: 'Leave "
    "messages on server'; Apple Mail: do not 'Remove copy from server'), and fix IMAP (see the "
    "findings above).",
}
WHERE = "{host}, port {port}, {encryption}"

# The {user_form} sentence of AUTH_FAILED: the other form of the user name, by
# whether the login had an "@". maildiag never tries it: one more failed login.
USER_FORM_TEXTS: Mapping[str, str] = {
    "address": " Some providers want only the part before the @ (or a customer number) as "
    "the user name, not the complete address; maildiag did not try another form, to spare "
    "the account a failed login.",
    "local_part": " Most providers want the complete e-mail address as the user name, not "
    "just '{user}'; maildiag did not try another form, to spare the account a failed login.",
}


# The {hint} sentence of AUTH_FAILED: what usually lies behind the refusal at
# this provider (maildiag.model.LoginHint, set by the rule that read the reply).
LOGIN_HINTS: Mapping[LoginHint, str] = {
    LoginHint.GOOGLE_APP_PASSWORD: (
        " At Google (Gmail, Google Workspace) the usual cause of this reply is not a mistyped "
        "password but the account's normal password: Google no longer accepts it in mail "
        "programs. Check whether an app password was used. If not, create one (it needs "
        "2-Step Verification: myaccount.google.com → Security → 2-Step Verification → App "
        "passwords) and enter it instead of the normal password, or set the account up in a "
        "mail program that signs in with Google's login window (OAuth2). An app password that "
        "was revoked or mistyped gets the same reply: then create a new one."
    ),
}


def make_finding(
    code: FindingCode,
    endpoint: Endpoint | None = None,
    *,
    severity: Severity | None = None,
    **facts: Any,
) -> Finding:
    """A finding from the catalogue, its texts filled in with ``facts``."""
    spec = CATALOGUE[code]
    if endpoint is not None:
        facts = {
            "host": endpoint.host,
            "port": endpoint.port,
            "security": endpoint.security.value,
            **facts,
        }
    return Finding(
        code=spec.code,
        severity=severity or spec.severity,
        title=spec.title,
        explanation=render_text(spec.explanation, facts),
        fix=render_text(spec.fix, facts),
        endpoint=endpoint,
        details={k: v for k, v in facts.items() if k not in ("host", "port", "security")},
    )
