"""Hard or soft: is the address itself dead, or did something else refuse the message?

A hard bounce suppresses a reader for good, so a hard call needs evidence about the address
(RFC 3463's 5.1.1 bad mailbox, 5.1.2 bad domain, 5.1.3 bad syntax, 5.1.6 moved, 5.1.10 null
MX, 5.2.1 disabled, or a server's words for the same) and nothing that points elsewhere:
a block list, spam or content filter, policy, authentication (SPF, DKIM, DMARC), a rate
limit, a full mailbox, a message too large. Those are soft, even with a 5xx and even with
5.1.1 beside them (some servers put 5.1.1 on every refusal): the reader is not at fault,
and suppressing them is the costlier mistake. Delays are not failures at all.
"""

from __future__ import annotations

import re
from typing import Literal

Severity = Literal["hard", "soft", "delayed"]

STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
REPLY_CODE = re.compile(r"(?:^|[\s(:;])([245])\d\d(?=[\s-]|$)")

# Status codes that are about the address itself (RFC 3463 and its registry): bad mailbox,
# bad domain, bad syntax, moved, null MX (RFC 7505), disabled; and 5.4.4, "unable to route":
# no MX and no address for the recipient's domain, in its permanent form. Read before the
# words, and the same whichever system wrote them.
_DEAD_STATUSES = {"5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10", "5.2.1", "5.4.4"}

# Words that mean the refusal is about us, the message or the mailbox's state, not the
# address. Checked first: any of them makes the call soft.
_NOT_THE_ADDRESS = re.compile(
    r"block ?list|black ?list|blocked|\bbanned|spamhaus|spamcop|barracuda|\brbl\b|\bdnsbl|"
    r"reputation|\bspam\b|junk|content (?:filter|rejected)|message content|virus|malware|"
    r"\bpolicy\b|policies|\bdmarc\b|\bspf\b|\bdkim\b|authenticat|not authori[sz]ed|"
    r"relay(?:ing)? (?:denied|not permitted|access denied)|rate limit|too many|try again|"
    r"temporar|throttl|quota|mailbox (?:is )?full|over ?quota|storage|insufficient|"
    r"exceed|too (?:large|big)|size limit|message size|greylist|"
    r"access denied|refused to talk|connection refused|timed? ?out|tls|certificate|"
    r"hop count|unsolicited|suspicious|bulk|"
    # a lookup that failed says nothing about the address (5.4.4 comes with these too; a
    # name that does not exist, "Host or domain name not found", is another matter)
    r"name server (?:reply|error|failure)|servfail|"
    r"dns (?:error|failure|timeout|lookup failed)|lookup (?:error|failure|timed out)|"
    # about our side: the sender's address or domain, our server's name or address
    r"sender (?:address |domain )?rejected|sender address|sender domain|client host|"
    r"reverse (?:dns|hostname|lookup)|\bptr\b|\bhelo\b|\brdns\b|not accepting mail from|"
    r"after mail from|\b5\.1\.[78]\b|(?:does not|doesn't) accept (?:e-?)?mail from|"
    # a server that says it is not sure (a group that "may not exist, or you may not have
    # permission to post"): when in doubt, soft
    r"may not exist|might not exist|probably does not exist|permission to (?:post|send)|"
    r"ймовірно|не маєте дозволу",
    re.IGNORECASE,
)

# A server's words for "this address does not exist (any more)".
_DEAD_ADDRESS = re.compile(
    r"user(?:name)? (?:is )?unknown|unknown (?:user|recipient|local[- ]part|mailbox|address|"
    r"alias)|no such (?:user|person|recipient|mailbox|account|address|local user)|"
    r"(?:user|recipient|mailbox|account|address|addressee)(?: name)? (?:does not|doesn't|"
    r"did not) exist|does not exist|doesn't exist|not (?:a )?(?:valid|known) (?:user|"
    r"recipient|mailbox|address)|invalid (?:user|recipient|mailbox|address)|"
    r"(?:recipient|user|mailbox|address) (?:not found|not known|unknown|invalid)|"
    r"mailbox (?:is )?(?:unavailable|not available|disabled|has been disabled|removed|"
    r"deleted|closed|inactive)|account (?:has been |is )?(?:disabled|deactivated|closed|deleted|"
    r"removed|suspended|inactive|expired)|(?:is|has been) (?:disabled|deactivated)|"
    r"no longer (?:active|valid|in use|available|exists|with)|"
    r"unrouteable address|undeliverable address|addressee unknown|"
    r"host (?:or domain name )?not found|domain (?:not found|does not exist|not exist)|"
    r"host unknown|unknown (?:host|domain)|no mx|nxdomain|name or service not known|"
    r"no mailbox here|recipient rejected|(?:recipient )?address rejected|"
    r"bad (?:destination )?(?:mailbox|address)|"
    r"(?:user|recipient|mailbox|address|account) not exists?\b|no such (?:domain|host)|"
    # the recipient's domain takes no mail: RFC 7505's null MX, or no MX or address at all
    r"no smtp service|null mx|does not accept (?:e-?)?mail|"
    r"(?:couldn't|could not|unable to) find (?:a |any )?(?:mail exchanger|mx)|"
    r"unable to route|"
    r"user not found|rejected: user|not listed in|not a valid user|invalid (?:final delivery )?"
    r"user ?id|(?:does not|doesn't) have an? [\w.-]{0,40} ?account|no account|"
    r"no final (?:e-?mail )?delivery point|does not have a final|no matches? (?:to|in) "
    r"(?:the )?(?:nameserver|directory)|"
    # the same in the languages bounces most often come in after English
    r"n'existe pas|existiert nicht|unbekannt|no existe|non esiste|n[aã]o existe|inconnu|"
    r"inexistant|desconocido|sconosciuto|desconhecido|нет такого|не найден|не существует|"
    r"не існує|не знайдено",
    re.IGNORECASE,
)


# The grammar of "this address is not there", whatever the system's own phrase: a word for
# the address (user, recipient, mailbox, userid, host, domain...) within three words of a
# word for absence (unknown, invalid, not exist, not found), in either order. "User not
# exist", "Invalid final delivery userid", "unknown host" are its instances; the phrase list
# above holds what this cannot read.
_THING = (
    r"(?:user(?:name|id)?|recipients?|mailbox(?:es)?|address(?:ee)?|account|local[- ]part|"
    r"host|domain)"
)
_ABSENT = (
    r"(?:unknown|invalid|non-?existent|not (?:exists?|found|known|valid)|"
    r"(?:does|did)(?: not|n't) exists?)"
)
_ABSENT_THING = re.compile(
    # Words apart by spaces only: "host said: 554 INVALID IP" is two statements, not one.
    rf"\b{_THING}(?:\s+[\w-]+){{0,3}}?\s+{_ABSENT}\b|\b{_ABSENT}(?:\s+[\w-]+){{0,3}}?\s+{_THING}\b",
    re.IGNORECASE,
)


def _dead_words(words: str) -> bool:
    return bool(_DEAD_ADDRESS.search(words) or _ABSENT_THING.search(words))


# Microsoft 365 (Exchange Online) refuses an address its directory does not hold with
# "550 5.4.1 Recipient address rejected: Access denied" (its documented NDR for a recipient
# that does not exist); the words alone would read as a policy refusal.
_NO_SUCH_RECIPIENT_365 = re.compile(r"recipient address rejected: access denied", re.IGNORECASE)


_QUOTED_HEADER = re.compile(r"^[ \t>]*(?:subject|to|cc|sent|from|date)[ \t]*:.*$", re.I | re.M)


def severity(status: str | None, text: str, *, permanent: bool | None = None) -> Severity:
    """The call for one failed recipient. `status` is the enhanced status code if the report
    gives one; `text` the server's words (Diagnostic-Code, or the bounce's prose);
    `permanent` what the report itself says (a DSN's Action: failed or delayed), if it does."""
    # Our own message's header lines quoted back ("Subject: ... virus ...") are our words,
    # not the server's.
    words = " ".join(_QUOTED_HEADER.sub(" ", text).split())[:2000]
    code = status or _status_in(words)
    if permanent is False or (code is not None and code[0] == "4"):
        return "delayed" if permanent is False else "soft"
    if code == "5.4.1" and _NO_SUCH_RECIPIENT_365.search(words):
        return "hard"  # Microsoft 365's directory check: the address is not in the domain
    if _NOT_THE_ADDRESS.search(words):
        return "soft"
    if code is not None and code[0] == "5":
        if code in _DEAD_STATUSES:
            # 5.2.1 is also "rate limited" at some providers: only with words that agree.
            return "hard" if code != "5.2.1" or _dead_words(words) else "soft"
        # 5.7.27 is RFC 7505's null MX ("does not accept mail"): about the recipient's
        # domain when the words say so (a sender's null MX names the sender, soft above).
        elsewhere = (code.startswith("5.7.") and code != "5.7.27") or code in ("5.2.2", "5.3.4")
        return "hard" if _dead_words(words) and not elsewhere else "soft"
    reply = REPLY_CODE.search(words)
    if reply and reply.group(1) == "4":
        return "soft"
    return "hard" if _dead_words(words) else "soft"


def _status_in(text: str) -> str | None:
    match = STATUS.search(text)
    return ".".join(match.groups()) if match else None


def normal_status(value: str | None) -> str | None:
    """`5.1.1` out of a DSN's Status field (which may carry a comment), or None."""
    if not value:
        return None
    match = STATUS.search(value)
    return ".".join(str(int(part)) for part in match.groups()) if match else None
