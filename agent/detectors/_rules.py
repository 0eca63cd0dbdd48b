"""The built-in detectors: one precompiled pattern each, validated in Python only on candidates.

Patterns use ASCII classes (``[0-9]``, not ``\\d``) so that digits of other scripts neither trigger
nor extend a match. A candidate that fails validation does not hide a finding that starts later
inside it: the search resumes one character after the failed candidate's start.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from agent.detectors._checks import (
    IBAN_LENGTHS,
    iban_ok,
    identifier_like,
    ipv4_ok,
    ipv6_ok,
    looks_random,
    luhn_ok,
    ssn_ok,
)

__all__ = [
    "AT",
    "BUILTIN",
    "COLON",
    "DIGITS",
    "DOT",
    "EQ",
    "JWT",
    "KEYWORD",
    "LONG",
    "MACLIKE",
    "URL",
    "RegexDetector",
    "features",
]

Span = tuple[int, int]
Check = Callable[[str, "re.Match[str]"], Span | None]

# Cheap features of a text, computed once per text; a detector runs only when the text has one of
# the features in its ``trigger`` mask (0: always run). Each is a necessary condition of a finding.
AT, COLON, DOT, EQ, DIGITS, LONG, JWT, URL, KEYWORD, MACLIKE = (1 << i for i in range(10))
_DIGITS7 = re.compile(r"[0-9](?:[ ().+-]{0,2}[0-9]){6}")  # seven digits, short separators between
_LONG16 = re.compile(r"[A-Za-z0-9+/_-]{16}")


def features(text: str) -> int:
    f = 0
    if "@" in text:
        f |= AT
    if ":" in text:
        f |= COLON | URL if "://" in text else COLON
    if "." in text:
        f |= DOT
    if "=" in text:
        f |= EQ
    if "eyJ" in text:
        f |= JWT
    if _DIGITS7.search(text) is not None:
        f |= DIGITS
    if len(text) >= 16:
        if _LONG16.search(text) is not None:
            f |= LONG
        if "earer" in text or "asic" in text or "EARER" in text or "ASIC" in text or "BEGIN" in text:
            f |= KEYWORD
    if (
        len(text) >= 14
        and (f & (COLON | DOT) or "-" in text)
        and (text.count(":") >= 5 or text.count("-") >= 5 or text.count(".") >= 2)
    ):
        f |= MACLIKE
    return f


@dataclass(frozen=True, slots=True)
class RegexDetector:
    """A detector made of one pattern, an optional validator and a cheap prefilter.

    The scanner runs it only on texts of at least ``min_len`` characters having one of the
    ``trigger`` features (see ``features``); 0 means always.
    """

    name: str
    pattern: re.Pattern[str]
    check: Check | None = None
    trigger: int = 0
    min_len: int = 0

    def find(self, text: str, covered: list[Span] | None = None) -> list[Span]:
        """Spans found in ``text``. Candidates lying wholly inside a ``covered`` span (found by a
        detector of higher priority) are skipped without validation: they would merge into it."""
        search = self.pattern.search
        m = search(text)
        if m is None:
            return []  # the common case, kept cheap: one search, no generator
        check = self.check
        out: list[Span] = []
        n = len(text)
        while m is not None:
            start, end = m.span()
            if covered and any(s <= start and end <= e for s, e in covered):
                pos = end
            else:
                span = (start, end) if check is None else check(text, m)
                if span is None:
                    pos = start + 1
                else:
                    out.append(span)
                    pos = max(span[1], start + 1)
            m = search(text, pos) if pos < n else None
        return out


def _group(index: int | str) -> Check:
    def check(text: str, m: re.Match[str]) -> Span | None:
        return m.span(index)

    return check


# --- email, URLs, tokens ----------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-][A-Za-z0-9._%+'-]{0,63}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)


# Unit and file suffixes that follow "@" in logs without being mail domains: "getty@tty1.service",
# "rabbit@localhost.log".
_NOT_TLD = frozenset(  # none of these is delegated as a top-level domain
    {
        "service",
        "socket",
        "target",
        "timer",
        "mount",
        "slice",
        "scope",
        "device",
        "path",
        "log",
        "txt",
        "conf",
        "cfg",
        "ini",
        "json",
        "yaml",
        "yml",
        "xml",
        "html",
        "js",
        "gz",
        "tgz",
        "tar",
        "lock",
        "pid",
        "sock",
        "tmp",
        "bak",
        "swp",
    }
)


def _email(text: str, m: re.Match[str]) -> Span | None:
    start = m.start()
    if m.group().rsplit(".", 1)[1].lower() in _NOT_TLD:
        return None
    if start >= 3 and text[start - 3 : start] == "://":
        return None  # "spark://CoarseGrainedScheduler@host:7077": a user name in a URL, not a mailbox
    if start and text[start - 1] == ":":
        token_start = max(text.rfind(" ", 0, start), text.rfind("\t", 0, start)) + 1
        if "://" in text[token_start:start]:
            return None  # the password of scheme://user:password@host: url_credentials owns it
    return m.span()


# scheme://user:password@host — the finding is the user-info (user and password), the host stays.
# The user may be empty: "redis://:password@host" is how Redis and AMQP clients pass a password alone.
_URL_CREDS = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{1,20}://([^\s:/@?#]*:[^\s/@?#]+)@")

_JWT = re.compile(r"eyJ(?<![A-Za-z0-9_-]eyJ)[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")

_API_KEY = re.compile(
    r"(?:"
    r"(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{10,}"
    r"|(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA)[A-Z0-9]{16}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|github_pat_[A-Za-z0-9_]{20,}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"
    r"|AIza[A-Za-z0-9_-]{30,}"
    r"|glpat-[A-Za-z0-9_-]{20,}"
    r"|sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"
    r"|SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"
    r"|(?:npm|hf)_[A-Za-z0-9]{30,}"
    r"|shp(?:at|ss|ca)_[A-Fa-f0-9]{32}"
    r")(?![A-Za-z0-9_])"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----(?:.*?-----END [A-Z ]*PRIVATE KEY-----|.*)",
    re.DOTALL,
)


def _api_key(text: str, m: re.Match[str]) -> Span | None:
    return m.span() if m.group().startswith("-") or _word_start(text, m.start()) else None


# Long tokens of base64/base62 alphabet; validated by the entropy rule.
_TOKEN = re.compile(r"(?<![A-Za-z0-9+/_=-])[A-Za-z0-9+/_-]{20,}={0,2}(?![A-Za-z0-9+/_=-])")


# Segments between separators that read as words ("usr", "Premium", "TrustedRoot", "DFSClient",
# "AirPortBrcm4360", "ECC"), short tags ("R3", "2011") or numbers: a token made only of those is an
# identifier or a path ("DFSClient_NONMAPREDUCE_1537864556_1"), not random.
_WORDY = re.compile(
    r"(?:[A-Z]{2,}|[A-Z]?[a-z]{2,})*(?:[A-Z]?[a-z]{2,})[0-9]*|[A-Z]{2,}|[A-Za-z0-9]{0,4}|[A-Z]{1,3}[0-9]{1,9}|[0-9]+"
)
_SEGMENTS = re.compile(r"[/_-]")


def _random_token(text: str, m: re.Match[str]) -> Span | None:
    token = m.group()
    if _SEGMENTS.search(token) and all(_WORDY.fullmatch(seg) for seg in _SEGMENTS.split(token)):
        return None  # "AffirmTrust_Premium_ECC", "GlobalSign_Root_CA_-_R3", "share/man/man7"
    if not looks_random(token.rstrip("=")) or identifier_like(token):
        return None  # "AppleThunderboltNHIType2", "Log4jLoggerFactoryBinding": names, not secrets
    return m.span()


# `password=…`, `api_key: …`, `Authorization: Bearer …`: the value is a secret whatever it looks like.
# Found operator-first (`=`/`:` are cheap to scan for), then the key before it is checked.
_ASSIGN_OP = re.compile(r"([=:])[ \t]{0,3}[\"']?([^\s\"',;&]{3,})")
_SECRET_KEY = re.compile(
    r"(?<![a-z0-9])(?:pass(?:word|wd|phrase)?|pwd|secret|api[_-]?key|apikey|access[_-]?key|private[_-]?key"
    r"|(?:secret|signing|encryption|master|client|app|shared|hmac)[_-]?key"
    r"|(?:client|app|api|shared|consumer)[_-]?secret"
    r"|(?:access|auth|refresh|session|bearer|id|api)?[_-]?token)$"
)
_BEARER = re.compile(r"(?:[Bb]earer|BEARER|[Bb]asic|BASIC)\s+([A-Za-z0-9._~+/=-]{8,})")
_PLACEHOLDER = re.compile(
    r"(?i)^(?:\*+|x+|\.+|<[^>]*>|\[[^\]]*\]|null|none|nil|true|false|redacted|hidden|unset)$"
)


# A printed object after the key, "token=Token{a64f992 …}" (Android), "key=KeyImpl@1b6d3586" (Java):
# a class name then a brace, bracket or "@" — a reference to a secret, not its value.
_OBJECT_REPR = re.compile(r"[A-Z][A-Za-z0-9_$.]*[a-z][A-Za-z0-9_$]*[{(\[<@]")


# "Token: token=Token{…}": the value is itself an assignment, judged at its own "=".
_NESTED = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*=[^=]")


def _assigned(text: str, m: re.Match[str]) -> Span | None:
    start = m.start()
    head = text[max(0, start - 28) : start].rstrip(" \t\"'").lower()
    if not ("pass" in head or "pwd" in head or "secret" in head or "key" in head or "token" in head):
        return None  # cheap test first: most `=`/`:` in logs are not secrets
    if not _SECRET_KEY.search(head):
        return None
    value = m.group(2)
    if _PLACEHOLDER.match(value) or _OBJECT_REPR.match(value) or _NESTED.match(value):
        return None
    if m.group(1) == ":" and value.isalpha() and (value.islower() or value.istitle()):
        return None  # "password: incorrect", "token: expired", "Token: Token {…}" — prose or a type
    return m.span(2)


def _bearer(text: str, m: re.Match[str]) -> Span | None:
    # A credential has digits or symbols, or is long and mixed-case; "Bearer authentication" is not.
    if not _word_start(text, m.start()):
        return None
    token = m.group(1)
    if token.isalpha() and (len(token) < 16 or token.islower() or token.istitle()):
        return None
    return m.span(1)


# --- numbers: cards, IBAN, SSN, phones ----------------------------------------------------------------

_CARD = re.compile(r"[0-9](?<![A-Za-z0-9_.+-][0-9])(?:[ -]?[0-9]){11,18}(?![0-9A-Za-z_]|[.-][0-9])")


_BARCODE_BEFORE = re.compile(r"(?i)(?:sku|ean|gtin|upc|barcode|isbn|article)\W{0,3}$")


_PAIRS = re.compile(r"[0-9]{2}(?:[ -][0-9]{2})+")


def _cuts(text: str, start: int, end: int, seps: str) -> Iterator[int]:
    """Ends to try for a candidate, longest first: its end, then before each separator (at most 6).

    Spaces also join a finding to unrelated numbers after it ("4111 1111 1111 1111 2 items"); trying
    shorter ends finds the number the candidate starts with. Hyphens are not cut at: a hyphenated run
    that fails as a whole is an id (a UUID's digit groups), not a number followed by another.
    """
    yield end
    tried = 0
    for i in range(end - 1, start, -1):
        if text[i] in seps and text[i - 1] not in seps:
            yield i
            tried += 1
            if tried == 6:
                return


def _card(text: str, m: re.Match[str]) -> Span | None:
    start = m.start()
    if _PAIRS.fullmatch(m.group()):
        return None  # "56-00-32-36-15-71": a MAC address or a date, never how cards are written
    for end in _cuts(text, start, m.end(), " "):
        digits = text[start:end].replace(" ", "").replace("-", "")
        n = len(digits)
        if n < 12:
            return None
        if n != end - start and not _card_groups(text[start:end]):
            continue  # "0 44 541 4893 5933 6 4": columns of counters, not a card in its groups
        if digits.count(digits[0]) == n or not luhn_ok(digits):
            continue
        first = digits[0]
        if n == 12:  # only Maestro issues 12-digit cards
            ok = digits.startswith(("50", "56", "57", "58", "6", "0604"))
        elif n == 13:  # only Visa issues 13-digit cards; EAN-13 barcodes have the same length
            ok = first == "4" and not _BARCODE_BEFORE.search(text, max(0, start - 16), start)
        else:
            ok = _iin_ok(digits, n)
        if ok and n == len(m.group()) and _ID_BEFORE.search(text, max(0, start - 24), start):
            ok = _CARD_WORD.search(text, max(0, start - 40), start) is not None
        if ok:
            return (start, end)
    return None


_GROUP_SEPS = re.compile(r"[ -]")


def _card_groups(number: str) -> bool:
    """A card written with separators is in groups of four (the last may be shorter), or 4-6-5
    (American Express) or 4-6-4 (Diners): how cards are printed, unlike columns of numbers."""
    sizes = [len(g) for g in _GROUP_SEPS.split(number)]
    if sizes in ([4, 6, 5], [4, 6, 4]):
        return True
    return all(k == 4 for k in sizes[:-1]) and 1 <= sizes[-1] <= 4


def _iin_ok(digits: str, n: int) -> bool:
    """The issuer prefix allows this length (ISO/IEC 7812 ranges of the networks in use)."""
    first = digits[0]
    if first == "4":
        return n in (16, 19)  # 13: see above
    if first == "6" or digits.startswith(("50", "56", "57", "58", "59")):
        return True  # Maestro, Discover, UnionPay, RuPay: 12 to 19 digits
    if first == "5":
        return n == 16  # Mastercard 51-55
    if first == "2":
        if n == 15:
            return digits.startswith("2131")  # JCB's 15-digit range
        return n == 16 and (2221 <= int(digits[:4]) <= 2720 or 2200 <= int(digits[:4]) <= 2204)  # MC, Mir
    if first == "3":
        if digits[1] in "47":
            return n == 15  # American Express
        return n >= 14 if digits[1] in "0689" else digits[1] == "5" and n >= 15  # Diners, JCB
    return digits.startswith(("1800", "0604"))


# A bare run of digits right after an id's name is that id ("txn 5258829904922689", "order_id=…"),
# however Luhn happens to come out (one in ten does); unless a card word is just before it.
_ID_BEFORE = re.compile(
    r"(?i)(?<![A-Za-z])(?:id|txn|tx|transaction|order|request|req|seq|sequence|job|task|trace|span|msg|event"
    r"|offset|block|blk|nonce|ref|session|batch|invoice|ticket|user|uid|device|imei|serial"
    r"|timestamp|ts|time|epoch|millis|nanos|size|bytes|count|len|length)"
    r"[^A-Za-z0-9\n]{1,3}$"
)
_CARD_WORD = re.compile(r"(?i)card|(?<![A-Za-z])(?:cc|pan|visa|mastercard|amex|payment)(?![A-Za-z])")


# Found from its check digits (a digit class the engine scans for quickly); the country code is
# the two letters before them, at a word start.
_IBAN = re.compile(
    r"[0-9](?<=[A-Za-z]{2}[0-9])(?<![A-Za-z0-9][A-Za-z]{2}[0-9])[0-9](?:[ -]?[A-Za-z0-9]){11,30}"
)


def _iban(text: str, m: re.Match[str]) -> Span | None:
    start = m.start() - 2
    length = IBAN_LENGTHS.get(text[start : start + 2].upper())
    if length is None:
        return None
    chars: list[str] = []
    i, end = start, m.end()
    while i < end and len(chars) < length:
        ch = text[i]
        if ch not in " -":
            chars.append(ch.upper())
        i += 1
    if len(chars) < length or (i < len(text) and text[i].isalnum()):
        return None
    if "-" in text[start:i] and any(len(g.strip()) != 4 for g in text[start:i].split("-")[:-1]):
        return None  # hyphens only between groups of four: "ee74682f-440a-…" is a UUID
    return (start, i) if iban_ok("".join(chars)) else None


# The end of an access log's request line: the numbers after it are a status, a size and a duration.
_REQUEST_BEFORE = re.compile(r"HTTP/[0-9.]{1,3}\"? {1,2}$")

_SSN = re.compile(
    r"([0-9](?<![A-Za-z0-9_.-][0-9])[0-9]{2})([- ])([0-9]{2})\2([0-9]{4})(?![0-9A-Za-z_]|[.-][0-9])"
)
# Nine digits without separators are an SSN or a US taxpayer id only next to a word that says so
# (Presidio's context words): "SSN is 123456789", "tin=123456789", "taxpayer id: 123456789". The
# digits are found first (a digit class the engine scans for quickly), the word before them after.
_NINE_DIGITS = re.compile(r"[0-9](?<![0-9][0-9])[0-9]{8}(?![0-9])")
_SSN_WORD_BEFORE = re.compile(
    r"(?i)(?<![A-Za-z0-9])(?:ssn|ss#|social security(?: number| no\.?| #)?|i?tin"
    r"|tax(?:payer)?[ _-]?id(?:entification)?(?:[ _-]?(?:number|no\.?|#))?|national[ _-]?id)"
    r"(?:[^0-9A-Za-z\n]{1,4}(?:is|was|number|no|nr|of)(?![A-Za-z]))?[^0-9A-Za-z\n]{0,4}$"
)


def _ssn(text: str, m: re.Match[str]) -> Span | None:
    if not ssn_ok(m.group(1), m.group(3), m.group(4)):
        return None
    start = m.start()
    if m.group(2) == " " and start >= 10 and _REQUEST_BEFORE.search(text, start - 16, start):
        return None  # '"GET / HTTP/1.1" 200 10 1000': status, size and duration, not "200 10 1000"
    return m.span()


def _word_start(text: str, start: int) -> bool:
    """Nothing alphanumeric (or ``_``) right before ``start``: the check a leading lookbehind would do,
    kept out of patterns whose first character class then lets the regex engine skip ahead fast."""
    return start == 0 or not (text[start - 1].isalnum() or text[start - 1] == "_")


def _ssn_context(text: str, m: re.Match[str]) -> Span | None:
    start = m.start()
    if start and (text[start - 1].isalpha() or text[start - 1] == "_"):
        return None  # "SSN:" yes, "x123456789" or "id_123456789" no
    d = m.group()
    if not ssn_ok(d[:3], d[3:5], d[5:]):
        return None
    return m.span() if _SSN_WORD_BEFORE.search(text, max(0, start - 40), start) else None


_PHONE = re.compile(
    r"[+(0-9](?<![A-Za-z0-9_+./-][+(0-9])(?:(?<=\+)\(?[0-9]|(?<=\()[0-9]|(?<=[0-9]))"
    r"(?:[0-9]|[ .-](?=[0-9(])|\((?=[0-9])|\)(?=[ .-]?[0-9])){5,24}"
    r"(?P<x>\s?(?:x|ext\.?|extension)\s?[0-9]{1,6})?"
    r"(?![0-9A-Za-z_]|[.-][0-9])"
)
_PHONE_CONTEXT = re.compile(
    r"(?i)(?<![A-Za-z])(?:phone|tel|mobile|mob|cell|fax|call|sms|whatsapp|contact|dial)\b[^0-9\n]{0,12}$"
)
_QUAD = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")
_DATEISH = re.compile(
    r"(?:19|20)[0-9]{2}[-./ ][01]?[0-9][-./ ][0-3]?[0-9]|[0-3]?[0-9][-./ ][01]?[0-9][-./ ](?:19|20)[0-9]{2}"
)


# A date and a time written compactly: "081109 203615" (HDFS), "20171223-221529", "20240517T134512".
_COMPACT_TS = re.compile(
    r"(?:[0-9]{2})?[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[ T_-](?:[01][0-9]|2[0-3])[0-5][0-9]"
)


_COMPACT_DATE_BEFORE = re.compile(
    r"(?<![0-9])(?:[0-9]{2})?[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[ T_-]$"
)
_HHMM = re.compile(r"(?:[01][0-9]|2[0-3])[0-5][0-9]")


def _runs_into_time(text: str, end: int) -> bool:
    """The digits before ``end`` are the hour of a time: ":30" follows them."""
    return end + 1 < len(text) and text[end] == ":" and "0" <= text[end + 1] <= "9"


def _phone(text: str, m: re.Match[str]) -> Span | None:
    start = m.start()
    if m.group("x") is not None and _phone_ok(text[start : m.start("x")]) == _YES:
        return m.span()
    if start >= 2 and text[start - 1] == ":" and "0" <= text[start - 2] <= "9":
        return None  # continues a time: "13:53:08 2017-05-16 00"
    if start >= 2 and text[start - 1] == " " and "0" <= text[start - 2] <= "9" and text[start] not in "+(":
        # inside a column of numbers, "0 0 44 541 4893 5933" (vmstat, counters); a "+" or an area
        # code in parentheses, "0 (200) 200-0000", is a phone whatever number stands before it
        return None
    if start >= 10 and _REQUEST_BEFORE.search(text, start - 16, start):
        return None  # '"GET / HTTP/1.1" 200 100 100': an access log's status, size and duration
    if _HHMM.match(text, start) and _COMPACT_DATE_BEFORE.search(text, max(0, start - 10), start):
        return None  # the time of "081109 203615 148" (HDFS), the date before it
    context: bool | None = None  # a phone word before the number; looked up only when it decides
    for end in _cuts(text, start, m.end() if m.group("x") is None else m.start("x"), " ()"):
        if _runs_into_time(text, end):
            continue  # "20171223-22" of "20171223-22:15:29": a date and the hour of a time
        verdict = _phone_ok(text[start:end])
        if verdict == _MAYBE:
            if context is None:
                head = text[max(0, start - 30) : start]
                context = _PHONE_CONTEXT.search(head) is not None
            if context:
                return (start, end)
        elif verdict == _YES:
            return (start, end)
    return None


_NO, _YES, _MAYBE = 0, 1, 2  # _MAYBE: a phone only with a phone word before it


def _phone_ok(core: str) -> int:
    if "." in core:
        quad = _QUAD.search(core)
        if quad is not None and ipv4_ok(quad.group()):
            return _NO  # an address with numbers around it, not a phone ("+61.438.089.995" is one)
    n = sum(1 for ch in core if "0" <= ch <= "9")
    if core[0] != "+" and (_DATEISH.search(core) or _COMPACT_TS.match(core)):
        return _NO  # a date, with or without the time after it, is never a phone number
    opens = core.count("(")
    if opens != core.count(")") or opens > 1 or n > 15 or n < 7:
        return _NO
    if core[0] == "+":
        return _YES if n >= 8 else _MAYBE
    return _YES if _phone_shape(core, n) else _MAYBE


def _phone_shape(core: str, n: int) -> bool:
    """A national or ``00`` number that needs no phone word before it."""
    if core[0] == "(":
        return 10 <= n <= 12
    seps = {ch for ch in core if ch in " .-"}
    if not seps:  # a bare run of digits: only a national number with trunk prefix 0 (0 + area code)
        return core[0] == "0" and core[1] != "0" and 9 <= n <= 11
    if "." in seps and len(seps) > 1:
        return False  # dots mixed with other separators: numbers next to an address or a version
    groups = re.split(r"[ .-]+", core)
    if len(groups[0]) == 1 and not (groups[0] == "1" and n == 11):
        return False  # "8 107555 91281": a column of counters; only NANP's "1 800 555 0199" starts so
    if any(len(g) < 2 for g in groups[1:]) or (seps == {"."} and (len(groups[0]) < 2 or len(groups[0]) > 4)):
        return False  # "20240517.3", "10.0.19045.3693": a one-digit group after the first is a version
    if seps == {"."} and (len(groups) == 2 or (len(groups) <= 4 and all(len(g) <= 3 for g in groups))):
        return False  # a decimal number, or dotted groups of an (invalid) IP or a version, not a phone
    if core.startswith("00"):
        return 10 <= n <= 15
    if core[0] != "0":
        # "200 1048576", "200 4381815 863", "3552 3534 3375": a status, a size, a duration, fan speeds
        # — not a number. Without a trunk 0 a national number is three or more groups of two to four
        # digits, nine to eleven in all (US 3-3-4, Brazil 2-4-4, Spain 3-3-3).
        return len(groups) >= 3 and max(len(g) for g in groups) <= 4 and 9 <= n <= 11
    return 9 <= n <= 12


# --- network identifiers --------------------------------------------------------------------------------

_MAC = re.compile(
    r"[0-9A-Fa-f](?<![A-Za-z0-9_:.-][0-9A-Fa-f])(?:[0-9A-Fa-f]([:-])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}"
    r"|[0-9A-Fa-f]{3}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4})(?![A-Za-z0-9_]|[:.-][0-9A-Fa-f])"
)

# IPv6 is found from its colons (a literal the regex engine scans for quickly): the tail from the first
# colon on, then at most four hex digits before it.
_IPV6_TAIL = re.compile(r"(?::[0-9A-Fa-f]{0,4}){2,8}(?:\.[0-9]{1,3}){0,3}(?:%[A-Za-z0-9_.]{1,16})?")
_HEX = frozenset("0123456789abcdefABCDEF")
_V6_LEFT_STOP = frozenset("ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ_:.")


def _ipv6(text: str, m: re.Match[str]) -> Span | None:
    start, end = m.span()
    floor = max(0, start - 4)
    while start > floor and text[start - 1] in _HEX:
        start -= 1
    if start and (text[start - 1] in _HEX or text[start - 1] in _V6_LEFT_STOP):
        return None
    if end < len(text) and (text[end].isalnum() or text[end] in "_:"):
        return None
    if text[end - 1] == ":" and text[end - 2] != ":":
        end -= 1  # "2001:db8::1: connection refused" — the colon belongs to the prose
    cand = text[start:end]
    colons = cand.count(":")
    if "::" not in cand and colons != 7 and not (colons == 6 and "." in cand):
        return None  # "13:45:12", "a:b:c": too few groups to be an address
    return (start, end) if ipv6_ok(cand) else None


# Not followed by ".digit" (a longer dotted run); "-digit" is decided in _ipv4.
_IPV4 = re.compile(
    r"[0-9](?<![A-Za-z0-9_.][0-9])[0-9]{0,2}\.(?:[0-9]{1,3}\.){2}[0-9]{1,3}(?![A-Za-z0-9_]|\.[0-9])"
)


def _ipv4(text: str, m: re.Match[str]) -> Span | None:
    if not ipv4_ok(m.group()):
        return None
    start, end = m.span()
    # "1.2.5.1-2" is a package version; but between two numbers glued by hyphens it is an address:
    # Hadoop's block-pool id "BP-1347369012-10.190.173.170-1444972147527".
    versioned = end + 1 < len(text) and text[end] == "-" and "0" <= text[end + 1] <= "9"
    if versioned and not (start >= 2 and text[start - 1] == "-" and "0" <= text[start - 2] <= "9"):
        return None
    # No "version 1.2.3.4" exemption: a word before a dotted quad is no proof it is not an address,
    # and masking a four-part version number costs less than letting an address through.
    if start >= 2 and (text[start - 1] == "~" or (text[start - 1] == "-" and text[start - 2].isalpha())):
        return None  # glued to a name: "openssl-1.0.2.15", "~amd64~~6.1.1.1" (a package's version)
    if start >= 3 and text[start - 3 : start] == "rv:":
        return None  # Gecko's "rv:1.9.2.13" in a user agent ("rv: 10.0.0.1", spaced, is still an address)
    if start >= 2 and text[start - 1] == "/" and text[start - 2].isalpha() and m.group().endswith(".0"):
        # "Chrome/120.0.0.0" is a product token; "msra-sa-41/10.190.173.170:8030" (Java's host/address)
        # and "http://10.0.0.1" are addresses. A host's address rarely ends in .0 and a product's
        # version nearly always does, so only that pair after a word of letters is let through.
        word = start - 1
        while word and text[word - 1].isalpha():
            word -= 1
        if word == 0 or not (text[word - 1].isalnum() or text[word - 1] in "-_./"):
            return None
    return m.span()


# Priority order: when findings overlap, they merge into one finding named after the earliest here.
BUILTIN: tuple[RegexDetector, ...] = (
    RegexDetector("url_credentials", _URL_CREDS, _group(1), trigger=URL),
    RegexDetector("jwt", _JWT, trigger=JWT, min_len=20),
    RegexDetector("api_key", _API_KEY, _api_key, trigger=LONG | KEYWORD, min_len=16),
    RegexDetector("email", _EMAIL, _email, trigger=AT),
    RegexDetector("iban", _IBAN, _iban, trigger=DIGITS, min_len=15),
    RegexDetector("card", _CARD, _card, trigger=DIGITS, min_len=12),
    RegexDetector("ssn", _SSN, _ssn, trigger=DIGITS, min_len=9),
    RegexDetector("ssn", _NINE_DIGITS, _ssn_context, trigger=DIGITS, min_len=12),
    RegexDetector("mac", _MAC, trigger=MACLIKE, min_len=14),
    RegexDetector("ipv6", _IPV6_TAIL, _ipv6, trigger=COLON),
    RegexDetector("ipv4", _IPV4, _ipv4, trigger=DOT, min_len=7),
    RegexDetector("phone", _PHONE, _phone, trigger=DIGITS, min_len=7),
    RegexDetector("secret", _ASSIGN_OP, _assigned, trigger=EQ | COLON, min_len=8),
    RegexDetector("secret", _BEARER, _bearer, trigger=KEYWORD, min_len=12),
    RegexDetector("secret", _TOKEN, _random_token, trigger=LONG, min_len=20),
)
