"""Seeded generators of PII values and of the clean fields real logs are full of.

Written without Faker (the held-out corpus takes most of its values from Faker instead, so the two
corpora do not share one writer's idea of what a phone number looks like).
"""

from __future__ import annotations

import base64
import json
import random
import string

__all__ = [
    "api_key",
    "card",
    "email",
    "hexs",
    "iban",
    "ipv4",
    "ipv6",
    "jwt",
    "luhn_complete",
    "mac",
    "phone",
    "rand",
    "secret_value",
    "ssn",
    "url_credentials",
]

ALNUM = string.ascii_letters + string.digits
_FIRST = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory"]
_LAST = ["smith", "jones", "nguyen", "garcia", "müller", "rossi", "kowalski", "dubois", "tanaka", "ohara"]
_DOMAINS = [
    "example.com",
    "mail.example.org",
    "corp.example.net",
    "uni-hamburg.de",
    "gmail.com",
    "yahoo.co.uk",
]


def rand(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def hexs(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def email(rng: random.Random) -> str:
    first, last = rng.choice(_FIRST).replace("ü", "ue"), rng.choice(_LAST).replace("ü", "ue")
    local = rng.choice(
        [f"{first}.{last}", f"{first}{rng.randint(1, 99)}", f"{first[0]}{last}", f"{first}+ops"]
    )
    addr = f"{local}@{rng.choice(_DOMAINS)}"
    return addr.upper() if rng.random() < 0.05 else addr


def phone(rng: random.Random) -> str:
    d = lambda n: "".join(rng.choice(string.digits) for _ in range(n))  # noqa: E731 - local shorthand
    a = lambda: str(rng.randint(2, 9)) + d(2)  # noqa: E731 - US area/exchange: never starts 0 or 1
    return rng.choice(
        [
            lambda: f"+1 {a()}-{a()}-{d(4)}",
            lambda: f"({a()}) {a()}-{d(4)}",
            lambda: f"{a()}-{a()}-{d(4)}",
            lambda: f"{a()}.{a()}.{d(4)}",
            lambda: f"+44 20 {d(4)} {d(4)}",
            lambda: f"020 {d(4)} {d(4)}",
            lambda: f"07{d(3)} {d(6)}",
            lambda: f"+49 30 {d(7)}",
            lambda: f"+33 6 {d(2)} {d(2)} {d(2)} {d(2)}",
            lambda: f"06 {d(2)} {d(2)} {d(2)} {d(2)}",
            lambda: f"+31612{d(6)}",
            lambda: f"{a()}{a()}{d(4)}",  # bare: needs a phone word
        ]
    )()


def luhn_complete(body: str) -> str:
    for check in "0123456789":
        total = 0
        for i, ch in enumerate(reversed(body + check)):
            v = int(ch) * (2 if i % 2 else 1)
            total += v - 9 if v > 9 else v
        if total % 10 == 0:
            return body + check
    raise AssertionError("unreachable")


_IINS = [("4", 16), ("4", 16), ("51", 16), ("55", 16), ("2223", 16), ("34", 15), ("37", 15), ("6011", 16), ("65", 16), ("36", 14), ("3530", 16)]  # fmt: skip


def card(rng: random.Random) -> str:
    prefix, n = rng.choice(_IINS)
    number = luhn_complete(prefix + "".join(rng.choice(string.digits) for _ in range(n - len(prefix) - 1)))
    style = rng.randrange(3)
    if style == 0:
        return number
    groups = (
        [number[:4], number[4:10], number[10:]] if n == 15 else [number[i : i + 4] for i in range(0, n, 4)]
    )
    return (" " if style == 1 else "-").join(groups)


_IBAN_SHAPES = {"DE": "n" * 18, "GB": "aaaa" + "n" * 14, "FR": "n" * 10 + "c" * 11 + "n" * 2, "NL": "aaaa" + "n" * 10, "ES": "n" * 20, "IT": "a" + "n" * 10 + "c" * 12, "BE": "n" * 12, "PL": "n" * 24}  # fmt: skip


def iban(rng: random.Random) -> str:
    country = rng.choice(sorted(_IBAN_SHAPES))
    alphabet = {"n": string.digits, "a": string.ascii_uppercase, "c": string.digits + string.ascii_uppercase}
    bban = "".join(rng.choice(alphabet[k]) for k in _IBAN_SHAPES[country])
    num = int("".join(str(int(ch, 36)) for ch in bban + country + "00"))
    value = f"{country}{98 - num % 97:02d}{bban}"
    if rng.random() < 0.5:
        value = " ".join(value[i : i + 4] for i in range(0, len(value), 4))
    return value


def ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    parts = (f"{area:03d}", f"{rng.randint(1, 99):02d}", f"{rng.randint(1, 9999):04d}")
    return rng.choice(["-", "-", " ", ""]).join(parts)


def ipv4(rng: random.Random) -> str:
    first = rng.choice([10, 172, 192, rng.randint(1, 223)])
    while first in (0, 127):
        first = rng.randint(1, 223)
    return f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def ipv6(rng: random.Random) -> str:
    groups = [f"{rng.getrandbits(16):x}" for _ in range(8)]
    style = rng.randrange(3)
    if style == 0:
        return ":".join(groups)
    if style == 1:
        return f"2001:db8:{groups[2]}::{groups[7]}"
    return f"fe80::{groups[4]}:{groups[5]}:{groups[6]}:{groups[7]}"


def mac(rng: random.Random) -> str:
    octets = [f"{rng.getrandbits(8):02x}" for _ in range(6)]
    style = rng.randrange(3)
    if style == 2:
        return "-".join(octets).upper()
    text = ":".join(octets)
    return text.upper() if style else text


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(rng: random.Random) -> str:
    header = {"alg": rng.choice(["HS256", "RS256"]), "typ": "JWT"}
    payload = {"sub": str(rng.randint(1, 10**6)), "iat": rng.randint(1_600_000_000, 1_800_000_000)}
    sig = bytes(rng.getrandbits(8) for _ in range(32))
    return ".".join(
        (_b64url(json.dumps(header).encode()), _b64url(json.dumps(payload).encode()), _b64url(sig))
    )


def api_key(rng: random.Random) -> str:
    return rng.choice(
        [
            lambda: f"sk_live_{rand(rng, 24)}",
            lambda: f"AKIA{rand(rng, 16, string.ascii_uppercase + string.digits)}",
            lambda: f"ghp_{rand(rng, 36)}",
            lambda: f"xoxb-{rng.randint(10**10, 10**11)}-{rand(rng, 24)}",
            lambda: f"AIza{rand(rng, 35)}",
            lambda: f"glpat-{rand(rng, 20)}",
        ]
    )()


def secret_value(rng: random.Random) -> str:
    return rng.choice(
        [
            lambda: hexs(rng, rng.choice([32, 40, 64])),
            lambda: rand(rng, rng.randint(12, 40)),
            lambda: rand(rng, 8, string.ascii_lowercase) + str(rng.randint(10, 99)),
            lambda: base64.b64encode(rng.getrandbits(240).to_bytes(30, "big")).decode(),
        ]
    )()


def url_credentials(rng: random.Random) -> str:
    """The user-info of a URL (``user:password``, or ``:password`` with an empty user)."""
    password = rand(rng, rng.randint(8, 20))
    user = rng.choice(["", "admin", "svc_etl", "default", rng.choice(_FIRST)])
    return f"{user}:{password}"
