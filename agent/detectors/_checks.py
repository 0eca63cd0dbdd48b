"""Pure validators run on regex candidates only: checksums, ranges and the entropy rule."""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter

__all__ = [
    "IBAN_LENGTHS",
    "iban_ok",
    "identifier_like",
    "ipv4_ok",
    "ipv6_ok",
    "looks_random",
    "luhn_ok",
    "shannon_bits",
    "ssn_ok",
]

# ISO 13616 registry: country code -> full IBAN length (check digits included).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
    "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def luhn_ok(digits: str) -> bool:
    """Luhn (mod 10) check over a string of ASCII digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 7064 mod-97 over an upper-case IBAN without separators, length checked per country."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit():
        return False
    rearranged = iban[4:] + iban[:4]
    num = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(num) % 97 == 1


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """US SSN ranges: no 000/666/9xx area, no 00 group, no 0000 serial."""
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def ipv4_ok(text: str) -> bool:
    """A dotted quad naming a host that can identify someone (not 0.0.0.0, loopback or a netmask)."""
    parts = text.split(".")
    if len(parts) != 4:
        return False
    octets = []
    for p in parts:
        if len(p) > 1 and p[0] == "0":
            return False  # leading zeros: a date or a version, not an address
        n = int(p)
        if n > 255:
            return False
        octets.append(n)
    return not (octets[0] in (0, 127, 255) or octets == [0, 0, 0, 0])


def ipv6_ok(text: str) -> bool:
    """Parses as IPv6 (zone id allowed) and is neither unspecified nor loopback."""
    if text.count(":") < 2:
        return False
    try:
        addr = ipaddress.IPv6Address(text.split("%", 1)[0])
    except ValueError:
        return False
    return not (addr.is_unspecified or addr.is_loopback)


_C_LOG2_C = [0.0] + [c * math.log2(c) for c in range(1, 513)]


def shannon_bits(text: str) -> float:
    """Shannon entropy in bits per character: log2(n) - sum(c·log2 c)/n over character counts c."""
    n = len(text)
    if n == 0:
        return 0.0
    table = _C_LOG2_C
    total = sum(table[c] if c < 513 else c * math.log2(c) for c in Counter(text).values())
    return math.log2(n) - total / n


def looks_random(token: str) -> bool:
    """The entropy rule for secrets: long, mixes upper, lower and digits, and is close to uniform.

    Lower-case hex (trace ids, hashes, UUIDs) is deliberately not flagged: it is far more often an
    identifier than a secret, and flagging it would drown operators in false positives.
    """
    n = len(token)
    upper = lower = digit = 0
    for ch in token:
        if "A" <= ch <= "Z":
            upper += 1
        elif "a" <= ch <= "z":
            lower += 1
        elif "0" <= ch <= "9":
            digit += 1
    if not (upper and lower) or upper * 10 < n or lower * 10 < n:
        return False  # camelCase words and CONSTANT_NAMES are mostly one case
    if not digit and (upper * 4 < n or lower * 4 < n):
        return False  # without digits, only a near-even mix of cases is random enough
    # Random base62/base64 tokens sit near log2(n) bits for short tokens; 0.78·log2(n), capped at
    # 4.2 bits, keeps more than 99.9 % of them (measured for n = 20…96) and leaves words out.
    return shannon_bits(token) >= min(0.78 * math.log2(n), 4.2)


# Chunks of an identifier by its casing: acronyms ("NHI" of "NHIType"), words ("Type"), digit runs.
_CHUNKS = re.compile(r"[A-Z]{2,}(?![a-z])|[A-Z]?[a-z]+|[0-9]+|[A-Z]")
_CONSONANTS4 = re.compile(r"[^aeiouy]{4}")


# Abbreviations written as words in class names ("Http11NioProtocol", "JdbcTemplate", "XmlMapper").
_ABBREVIATIONS = frozenset(
    {
        *("http", "https", "html", "xml", "json", "sql", "tcp", "udp", "dns", "ssl", "tls", "jdbc", "rpc"),
        *("grpc", "ssh", "nfs", "cpu", "gpu", "jvm", "url", "uri", "ldap", "smtp", "xsd", "css", "svg"),
        *("png", "jpg", "pdf", "utf", "mgr", "svc", "ctx", "cfg", "req", "resp", "src", "dst", "tmp"),
        *("pkg", "lib", "std", "str", "msg", "impl", "db", "io", "os", "ui", "id", "ip", "mq", "rx", "tx"),
    }
)


def _wordlike(chunk: str) -> bool:
    """A lower-case run (after an optional capital) that reads like a word: 3+ letters, a normal share
    of vowels and no four consonants in a row ("Thunderbolt" is one, "xqzt" and "bCdw" are not)."""
    low = chunk.lower()
    if low in _ABBREVIATIONS:
        return True
    if len(chunk) < 3:
        return False
    vowels = sum(ch in "aeiouy" for ch in low)
    return 0.2 * len(low) <= vowels <= 0.75 * len(low) and _CONSONANTS4.search(low) is None


def identifier_like(token: str) -> bool:
    """Reads as a CamelCase identifier: "AppleThunderboltNHIType2", "Log4jLoggerFactoryBinding".

    At least 60 % of the characters are in word-like chunks and 85 % in words, short acronyms
    (2-5 capitals) or short numbers (1-3 digits). Random base62/base64 tokens that pass
    ``looks_random`` meet both only rarely (measured: 0.4 % at 20 characters, 0.1 % at 24, 0.02 %
    at 32, under 0.01 % at 40), so the entropy rule keeps its recall on real secrets.
    """
    words = other = 0
    for chunk in _CHUNKS.findall(token):
        if chunk.isdigit():
            other += len(chunk) if len(chunk) <= 3 else 0
        elif chunk.isupper():
            other += len(chunk) if len(chunk) <= 5 else 0
        elif _wordlike(chunk):
            words += len(chunk)
    n = sum(ch.isalnum() for ch in token)
    return words >= 0.6 * n and words + other >= 0.85 * n
