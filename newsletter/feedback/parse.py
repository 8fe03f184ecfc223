"""A returned message into reports: what happened to which recipient, in the message's own
words, and the traces of our mail in it.

Read in this order, the most authoritative first: an ARF feedback report (RFC 5965) is a
complaint; a delivery status notification (RFC 3464) gives a recipient, an action and a
status per failed address; an auto-reply (RFC 3834's Auto-Submitted, vacation and
out-of-office notes) is nobody's failure; a message to our mailto: unsubscribe address is
an unsubscribe; then the bounces real MTAs send in prose (qmail, Exchange, old Sendmail,
providers' templates), through Mailman's `flufl.bounce`, whose detectors know dozens of
them. What none of these reads is `unrecognised`, kept for a person.

Nothing here believes the message: it is mail anyone can send to the bounce address.
identify.py decides, from the signed tokens collected here, whether it is about our mail.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from typing import Literal, get_args

from flufl.bounce import all_failures

from newsletter.delivery import row_tokens
from newsletter.delivery.row_tokens import RowToken
from newsletter.feedback.classify import Severity, normal_status, severity

# A detector that fails logs its traceback at ERROR; here it only means "not that format".
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)

ReportKind = Literal["hard", "soft", "complaint", "unsubscribe", "auto-reply", "unrecognised"]
KINDS: tuple[ReportKind, ...] = get_args(ReportKind)

# Bounds on hostile input: bytes of one message read at all, of text judged, of parts.
MAX_MESSAGE = 10_000_000
MAX_TEXT = 20_000
MAX_PARTS = 200
MAX_REPORTS = 100

_ADDRESS = re.compile(
    r"[^\s<>\"';,()\[\]\x00-\x1f\x7f]+@[^\s<>\"';,()\[\]\x00-\x1f\x7f]+\.[A-Za-z0-9-]+"
)
# opt-out: the reader asked a provider to take them off (a removal request): acted on as a
# complaint, which stops the mail. auth-failure and not-spam are not about the reader.
_COMPLAINT_TYPES = {"abuse", "fraud", "virus", "other", "dmarc", "opt-out", "opt-out-list"}
_AUTO_SUBJECT = re.compile(
    r"out of (?:the )?office|automatic reply|auto(?:matic)?[- ]?(?:reply|response|antwort)|"
    r"^auto:|vacation|away from|abwesen|absence|r[ée]ponse automatique|on leave|"
    r"autoreply|ooo\b",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|deliver(?:y|ed)? (?:status|failure|fail|notification|problem|report)|"
    r"returned mail|failure notice|mail delivery|non[- ]?deliver|delivery has failed|"
    r"could not be delivered|rejected|nicht zustellbar|mail system error|"
    r"not delivered|failed|warning: could not send",
    re.IGNORECASE,
)
# Where a bounce's own words end and the returned message begins.
_ORIGINAL_STARTS = re.compile(
    # ("The original message was received at ..." opens Sendmail's report: not a copy.)
    r"^.{0,10}(?:original message(?! was received)|returned message|message headers follow|"
    r"this is a copy of|"
    r"below this line is a copy|unsent message below|text of (?:the )?(?:original|returned)|"
    r"message follows|content-type: message/rfc822|received: from)",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass(frozen=True)
class Report:
    """One recipient's fate as the message tells it. `index` numbers the reports of one
    message (the fingerprint of a report is the message's and its index)."""

    kind: ReportKind
    recipient: str | None = None
    status: str | None = None
    diagnostic: str | None = None
    counts: bool = True  # False for a delay warning: not a failure, nothing to count
    index: int = 0


@dataclass
class Traces:
    """Our signed tokens where they prove something: in the returned copy's headers or the
    report's envelope fields (`tokens`: Message-ID `m-`, envelope sender `b-`), and in the
    address this message was delivered to (`addressed`: the VERP `b-` or mailto `u-`
    address). A token anywhere else (a counted link's `r-`, the footer link's `u-` mark,
    a reply's In-Reply-To) was in a body or a header anyone who read the issue could
    quote; feedback/identify.py says which kind proves what."""

    tokens: list[RowToken] = field(default_factory=list)
    addressed: list[RowToken] = field(default_factory=list)


@dataclass
class Parsed:
    reports: list[Report]
    traces: Traces
    subject: str = ""


def parse(raw: bytes, key: bytes, newsletter: str, envelope_to: str | None = None) -> Parsed:
    """Reports and traces of one message. `envelope_to` is the address the MTA delivered it
    to, when the caller knows it (a pipe transport's recipient)."""
    raw = raw[:MAX_MESSAGE]
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    traces = _traces(message, key, newsletter, envelope_to)
    subject = _header(message, "Subject")
    reports = _reports(message, traces, subject)
    return Parsed([_numbered(r, i) for i, r in enumerate(reports[:MAX_REPORTS])], traces, subject)


def _numbered(report: Report, index: int) -> Report:
    return Report(
        report.kind, report.recipient, report.status, report.diagnostic, report.counts, index
    )


def _reports(message: Message, traces: Traces, subject: str) -> list[Report]:
    parts = list(_walk(message))
    feedback = [p for p in parts if p.get_content_type() == "message/feedback-report"]
    if feedback or _report_type(message) == "feedback-report":
        return _complaints(feedback)
    jmrp = _jmrp_recipient(message, parts, subject)
    if jmrp is not None:
        return [Report("complaint", jmrp or None, diagnostic="feedback type abuse (JMRP)")]
    human = _human_text(message)  # the bounce's own words, read once for every reader below
    status = [p for p in parts if p.get_content_type() in _DSN_TYPES]
    if not status:
        # A gateway that wraps the bounce it got (a security appliance, a forwarder): the
        # DSN inside the returned message is the bounce's own (our issues carry none).
        status = [p for p in _returned_parts(parts) if p.get_content_type() in _DSN_TYPES]
    if status:
        found = _delivery_status(status, human)
        if found:
            return found
    if _is_auto_reply(message, subject):
        return [Report("auto-reply", _sender_address(message), counts=False)]
    if any(t.kind == "u" for t in traces.addressed) and not _auto_submitted(message):
        return [Report("unsubscribe", recipient=_sender_address(message))]
    if _reads_like_away(message, subject, human):
        return [Report("auto-reply", _sender_address(message), counts=False)]
    prose = _prose(message, traces, subject, human)
    if prose:
        return prose
    return [Report("unrecognised", counts=False)]


_AWAY = re.compile(
    r"out of (?:the )?office|on (?:vacation|holiday|leave|annual leave|parental leave)|"
    r"away from (?:the|my) (?:office|desk|email)|limited access to (?:my )?e-?mail|"
    r"(?:i am|i'm) (?:currently )?(?:away|travel+ing)|will (?:be back|return) on|"
    r"no longer (?:work|with)|abwesend|absent(?:e)? du bureau|fuera de la oficina",
    re.IGNORECASE,
)


def _reads_like_away(message: Message, subject: str, human: str) -> bool:
    """An auto-reply without the headers that say so: a short note from a person's
    address, not a mail system, that reads like one."""
    if _BOUNCE_SUBJECT.search(subject) or _sender_is_daemon(message):
        return False
    return bool(_AWAY.search(subject + "\n" + human[:3000]))


_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")


def _walk(message: Message) -> Iterator[Message]:
    """The parts, at most MAX_PARTS of them, not descending into returned messages."""
    stack = [message]
    count = 0
    while stack and count < MAX_PARTS:
        part = stack.pop(0)
        count += 1
        yield part
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            continue
        payload = part.get_payload()
        if part.is_multipart() and isinstance(payload, list):
            stack.extend(p for p in payload if isinstance(p, Message))


def _returned_parts(parts: list[Message]) -> list[Message]:
    """The parts of the messages returned inside these (one level down)."""
    found: list[Message] = []
    for part in parts:
        if part.get_content_type() != "message/rfc822":
            continue
        payload = part.get_payload()
        for inner in payload if isinstance(payload, list) else []:
            if isinstance(inner, Message):
                found += list(_walk(inner))
    return found[:MAX_PARTS]


def _report_type(message: Message) -> str:
    return str(message.get_param("report-type", "", header="content-type") or "").lower()


def _complaints(feedback: list[Message]) -> list[Report]:
    fields = _fields(feedback[0]) if feedback else {}
    kind = fields.get("feedback-type", "abuse").strip().lower()
    recipient = _address(fields.get("original-rcpt-to") or fields.get("removal-recipient") or "")
    if kind not in _COMPLAINT_TYPES:  # "not-spam", "auth-failure": not a complaint
        return [Report("unrecognised", recipient, diagnostic=f"feedback type {kind}", counts=False)]
    return [Report("complaint", recipient, diagnostic=f"feedback type {kind}")]


_JMRP_SUBJECT = re.compile(r"^\s*complaint about message from", re.IGNORECASE)


def _jmrp_recipient(message: Message, parts: list[Message], subject: str) -> str | None:
    """Microsoft's Junk Mail Reporting Program (Outlook.com, Hotmail) reports a complaint
    without ARF: "complaint about message from <ip>", the message attached, its recipient
    in X-HmXmrOriginalRecipient. The recipient ("" when unnamed), or None when it is not
    one."""
    attached = _returned_parts(parts)
    if not _JMRP_SUBJECT.search(subject) or not attached:
        return None
    named = attached[0].get("X-HmXmrOriginalRecipient") or attached[0].get("To") or ""
    return _address(str(named)) or ""


def _fields(part: Message) -> dict[str, str]:
    """The fields of a report part: its payload parsed as header blocks."""
    found: dict[str, str] = {}
    for block in _blocks(part):
        for name in block.keys():
            found.setdefault(name.lower(), " ".join(_value(block, name).split()))
    return found


def _value(block: Message, name: str) -> str:
    """A field of a report block as text: UTF-8 (RFC 6533's global DSNs, and servers that
    write their language into Diagnostic-Code) arrives as escaped bytes."""
    value = block.get(name)
    if value is None:
        return ""
    if isinstance(value, email.header.Header):  # 8-bit bytes: compat32 keeps them raw
        return "".join(
            part.decode("utf-8", "replace") if isinstance(part, bytes) else part
            for part, _ in email.header.decode_header(value)
        )
    text = str(value)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text


def _blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        found: list[Message] = []
        for block in payload:
            if not isinstance(block, Message):
                continue
            if len(block.get_all("final-recipient") or []) < 2:
                found.append(block)
                continue
            fields = "".join(f"{name}: {value}\n" for name, value in block.items())
            found += [email.message_from_string(piece) for piece in _per_recipient(fields)]
        return found
    text = payload if isinstance(payload, str) else ""
    if part.get("content-transfer-encoding", "").lower() in ("base64", "quoted-printable"):
        data = part.get_payload(decode=True)
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else text
    blocks = [
        piece
        for block in re.split(r"\r?\n[ \t]*\r?\n", text.strip())
        for piece in _per_recipient(block)
    ]
    return [email.message_from_string(block.strip() + "\n") for block in blocks if block.strip()]


_FINAL = re.compile(r"^final-recipient[ \t]*:", re.IGNORECASE | re.MULTILINE)


def _per_recipient(block: str) -> list[str]:
    """A block naming several Final-Recipients (servers that leave out the blank line
    between recipients) split before each, so no recipient hides behind the first."""
    starts = [match.start() for match in _FINAL.finditer(block)]
    if len(starts) < 2:
        return [block]
    cuts = [0, *starts[1:], len(block)]
    return [block[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]


def _delivery_status(parts: list[Message], human: str) -> list[Report]:
    reports: list[Report] = []
    for part in parts:
        blocks = _blocks(part)
        # The first block is about the message (no recipient, no action: passed over
        # below), unless a server ran the recipients' fields into it.
        for block in blocks:
            recipient = _address(
                _value(block, "original-recipient") or _value(block, "final-recipient")
            )
            action = _value(block, "action").strip().lower()
            if action in ("delivered", "relayed", "expanded") or not (recipient or action):
                continue
            status = normal_status(_value(block, "status"))
            diagnostic = " ".join(_value(block, "diagnostic-code").split())
            diagnostic = re.sub(r"^(?:smtp|x-[a-z-]+)\s*;\s*", "", diagnostic, flags=re.I)
            text = diagnostic or human
            judged = severity(status, text, permanent=None if action != "delayed" else False)
            kind: ReportKind = "soft" if judged == "delayed" else judged
            shown = (diagnostic or _first_line(human) or "")[:500] or None
            if any(r.recipient == recipient and r.status == status for r in reports):
                continue  # the same recipient in several blocks (a DSN of DSNs)
            reports.append(Report(kind, recipient, status, shown, counts=judged != "delayed"))
    return reports


def _prose(message: Message, traces: Traces, subject: str, text: str) -> list[Report]:
    """Bounces without a DSN: flufl.bounce finds the failed addresses; the words around
    them judge hard or soft."""
    if message.get("From") is None:  # some detectors need one
        message["From"] = "unknown@invalid"
    try:
        temporary, permanent = all_failures(message)
    except Exception:  # a detector that trips over a hostile message reads nothing
        temporary, permanent = frozenset(), frozenset()
    reports = [
        Report("soft", _address(_text(a)), diagnostic=_first_line(text), counts=False)
        for a in sorted(temporary)
    ]
    failed_addresses = [_address(_text(a)) for a in sorted(permanent)]
    inner: dict[str, str] | None = None
    for recipient in failed_addresses:
        others = [a for a in failed_addresses if a and a != recipient]
        words = _near(text, recipient, others) if recipient else text
        if recipient and not _SAYS_WHY.search(words):
            # "Unable to deliver message to <x>" and no reason: a gateway passing on the
            # bounce it got; the returned copy's transcript may say why.
            inner = _recipient_lines(_returned_text(message)) if inner is None else inner
            words = f"{words}\n{inner.get(recipient.lower(), '')}"
        reports.append(
            Report(
                _failure(severity(None, words)), recipient, normal_status(words), _first_line(words)
            )
        )
    if reports:
        return reports
    looks_returned = _BOUNCE_SUBJECT.search(subject) or _sender_is_daemon(message)
    lines = _recipient_lines(text) if looks_returned else {}
    if lines:
        # Addresses flufl.bounce did not know how to find, each on its line with the
        # server's reply (OpenSMTPD's "addr: 550 ...", Active!Hunter's ">>> addr" then it).
        return [
            Report(
                _failure(severity(None, words)), address, normal_status(words), _first_line(words)
            )
            for address, words in lines.items()
        ]
    if looks_returned and (any(t.kind == "b" for t in traces.addressed) or text.strip()):
        # A bounce naming no recipient we could read: the returned copy's To names the
        # address (our VERP token, if any, names the row); the words judge it.
        recipient = _returned_to(message)
        judged = severity(None, text)
        return [Report(_failure(judged), recipient, normal_status(text), _first_line(text))]
    return []


_SAYS_WHY = re.compile(r"\b[45]\d\d\b|\b[45]\.\d{1,3}\.\d{1,3}\b")
_LINE_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def _recipient_lines(text: str) -> dict[str, str]:
    """Addresses named on a line of the bounce's words together with a server's reply (a
    reply code or status on that line or the two indented or following ones), each with
    those words, in order; lower-cased keys."""
    found: dict[str, str] = {}
    lines = text.splitlines()[:2000]
    for at, line in enumerate(lines):
        addresses = _LINE_ADDRESS.findall(line)
        if not addresses:
            continue
        block = [line]
        for follow in lines[at + 1 : at + 3]:
            if not follow.strip() or _LINE_ADDRESS.search(follow):
                break
            block.append(follow)
        words = " ".join(" ".join(block).split())
        if not _SAYS_WHY.search(words):
            continue
        address = addresses[0].lower().strip(".")
        found.setdefault(address, words)
    return found


def _returned_text(message: Message) -> str:
    """The text of the messages returned inside this one (bounded)."""
    chunks: list[str] = []
    for part in _returned_parts(list(_walk(message))):
        if part.get_content_maintype() != "text":
            continue
        data = part.get_payload(decode=True)
        if isinstance(data, bytes):
            chunks.append(data[:MAX_TEXT].decode("utf-8", "replace"))
    return "\n".join(chunks)[:MAX_TEXT]


def _returned_to(message: Message) -> str | None:
    """The To of the returned copy of our message, when the bounce carries one."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message) and inner.get("To"):
                return _address(str(inner.get("To")))
        elif kind == "text/rfc822-headers":
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                found = re.search(rb"^To:[ \t]*(.+)$", data, re.MULTILINE | re.IGNORECASE)
                if found:
                    return _address(found.group(1).decode("utf-8", "replace"))
    body = message.get_payload(decode=True) if not message.is_multipart() else None
    if isinstance(body, bytes):
        text = body[:MAX_MESSAGE].decode("utf-8", "replace")
        cut = _ORIGINAL_STARTS.search(text)
        if cut:
            rest = text[cut.end() :]
            line = re.search(r"^To:[ \t]*(.+)$", rest, re.MULTILINE | re.IGNORECASE)
            if line:
                return _address(line.group(1))
    return None


def _failure(judged: Severity) -> ReportKind:
    return "hard" if judged == "hard" else "soft"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _near(text: str, recipient: str, others: list[str]) -> str:
    """The bounce's words about one address. Alone, all of them (the reason may come
    before the address or after it); beside other failed addresses, from the line that
    names it up to the next of them, so that a neighbour's reason is not taken for its."""
    lower = text.lower()
    at = lower.find(recipient.lower())
    if at < 0 or not others:
        return text
    start = lower.rfind("\n", 0, at) + 1
    after = at + len(recipient)
    ends = [lower.find(other.lower(), after) for other in others]
    end = min([e for e in ends if e >= 0] + [after + 800])
    return text[start:end]


def _human_text(message: Message) -> str:
    """The bounce's own words: its text parts, outside any returned message, cut where a
    copy of the original starts (whose words are ours, not the server's)."""
    chunks: list[str] = []
    size = 0
    for part in _walk(message):
        # A multipart whose boundary the parser could not read (a header line folded
        # without indentation) is left as text: its words are still the bounce's.
        broken = part.get_content_maintype() == "multipart" and not part.is_multipart()
        if not broken and (
            part.get_content_maintype() != "text"
            or part.get_content_type() == "text/rfc822-headers"
        ):
            continue
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            continue
        charset = part.get_content_charset() or "utf-8"
        try:
            text = data[:MAX_TEXT].decode(charset, "replace")
        except LookupError:
            text = data[:MAX_TEXT].decode("utf-8", "replace")
        if part.get_content_subtype() == "html":
            text = re.sub(r"<[^>]{0,2000}>", " ", text)
        cut = _ORIGINAL_STARTS.search(text)
        chunks.append(text[: cut.start()] if cut else text)
        size += len(chunks[-1])
        if cut or size > MAX_TEXT:
            break
    return "\n".join(chunks)[:MAX_TEXT]


def _first_line(text: str) -> str | None:
    """A short diagnostic: the first line that says something about a failure."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    for line in lines:
        if re.search(
            r"\b[45]\d\d\b|\b[45]\.\d|unknown|not exist|no such|rejected|full|quota|"
            r"blocked|refused|failed|denied|invalid",
            line,
            re.IGNORECASE,
        ):
            return line[:500]
    useful = [line for line in lines if line]
    return useful[0][:500] if useful else None


def _is_auto_reply(message: Message, subject: str) -> bool:
    if _BOUNCE_SUBJECT.search(subject) or _sender_is_daemon(message):
        return False
    if _auto_submitted(message) == "auto-replied":
        return True
    if message.get("X-Autoreply") or message.get("X-Autorespond") or message.get("X-Autoresponder"):
        return True
    precedence = _header(message, "Precedence").lower()
    return precedence == "auto_reply" or bool(_AUTO_SUBJECT.search(subject))


def _auto_submitted(message: Message) -> str:
    value = _header(message, "Auto-Submitted").lower().split(";")[0].strip()
    return "" if value == "no" else value


def _sender_is_daemon(message: Message) -> bool:
    sender = (_header(message, "From") + " " + _header(message, "Return-Path")).lower()
    return bool(re.search(r"mailer-daemon|post_?master|<>|mail delivery (?:sub)?system", sender))


def _sender_address(message: Message) -> str | None:
    return _address(_header(message, "From"))


def _header(message: Message, name: str) -> str:
    value = message.get(name)
    if value is None:
        return ""
    try:
        return str(email.header.make_header(email.header.decode_header(str(value))))[:1000]
    except (ValueError, LookupError, UnicodeError):
        return str(value)[:1000]


def _address(text: str) -> str | None:
    """The address in `rfc822; a@b`, `<a@b>` or prose, lower-cased; None without one."""
    text = text.rsplit(";", 1)[-1] if ";" in text[:20] else text
    match = _ADDRESS.search(text)
    return match.group(0).strip(".").lower()[:320] if match else None


# Headers the delivering MTA writes with the address it delivered to: the envelope.
_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To", "Cc")
# The header fields of our message that carry a token, and the one kind each may carry:
# anything else in a returned copy (a link in its body, a reply's In-Reply-To) is text
# anyone who read or forwarded the issue holds, and proves nothing.
_HEADER_PROOF = {"message-id": "m", "return-path": "b"}
# A report's own fields that name our envelope sender (ARF, Postfix's DSN).
_REPORT_PROOF = {"original-mail-from": "b", "x-postfix-sender": "b"}
_INLINE_HEADER = re.compile(
    r"^(message-id|return-path)[ \t]*:([^\r\n]{0,1000}(?:\r?\n[ \t][^\r\n]{0,1000}){0,5})",
    re.IGNORECASE | re.MULTILINE,
)
_INLINE_SPAN = 64_000  # characters after a returned copy starts searched for its headers


def _traces(message: Message, key: bytes, newsletter: str, envelope_to: str | None) -> Traces:
    traces = Traces()
    for kind, value in _proof_fields(message):
        for token in row_tokens.find(key, newsletter, value.encode("utf-8", "replace")):
            if token.kind == kind and token not in traces.tokens:
                traces.tokens.append(token)
    heads = [envelope_to or ""] + [
        str(value) for name in _ENVELOPE_HEADERS for value in message.get_all(name) or []
    ]
    for value in heads:
        for token in row_tokens.find(key, newsletter, value.encode("utf-8", "replace")):
            if token.kind in ("b", "u") and token not in traces.addressed:
                traces.addressed.append(token)
    return traces


def _proof_fields(message: Message) -> Iterator[tuple[str, str]]:
    """(kind, value) of every field where a token of that kind proves the report is about
    our message: the returned copy's Message-ID and Return-Path (a message/rfc822 part, a
    text/rfc822-headers part, or a copy quoted below a bounce's words) and the report's
    fields that name the envelope sender."""
    for part, in_copy in _placed_parts(message):
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            for inner in payload if isinstance(payload, list) else []:
                if isinstance(inner, Message):
                    for name, proof in _HEADER_PROOF.items():
                        for value in inner.get_all(name) or []:
                            yield proof, str(value)[:1000]
        elif kind == "text/rfc822-headers":
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                yield from _inline_headers(data[:_INLINE_SPAN].decode("utf-8", "replace"))
        elif kind in _DSN_TYPES or kind == "message/feedback-report":
            for block in _blocks(part)[:MAX_REPORTS]:
                for name, proof in _REPORT_PROOF.items():
                    yield proof, _value(block, name)[:1000]
        elif part.get_content_maintype() == "text" and not in_copy:
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                text = data[:MAX_MESSAGE].decode("utf-8", "replace")
                cut = _ORIGINAL_STARTS.search(text)
                if cut:
                    yield from _inline_headers(text[cut.start() : cut.start() + _INLINE_SPAN])


def _inline_headers(text: str) -> Iterator[tuple[str, str]]:
    for match in _INLINE_HEADER.finditer(text):
        yield _HEADER_PROOF[match.group(1).lower()], match.group(2)


def _placed_parts(message: Message) -> Iterator[tuple[Message, bool]]:
    """Every part (at most MAX_PARTS) and whether it belongs to a returned message, whose
    own words are the issue's, not the bounce's (its headers are read at its rfc822 part)."""
    stack: list[tuple[Message, bool]] = [(message, False)]
    count = 0
    while stack and count < MAX_PARTS:
        part, in_copy = stack.pop(0)
        count += 1
        yield part, in_copy
        payload = part.get_payload()
        if isinstance(payload, list):
            inside = in_copy or part.get_content_type() == "message/rfc822"
            stack.extend((p, inside) for p in payload if isinstance(p, Message))
