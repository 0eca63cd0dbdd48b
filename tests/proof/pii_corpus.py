"""A seeded corpus of realistic log lines, with and without personal data, for the PII recall proof.

``pii_lines(n_per_detector, seed)`` yields ``Sample(detector, line, value)``: a log line carrying one
known value of that detector's kind, in one of many formats (Faker across several locales, spacing
and case variants) and contexts (access logs, JSON, key=value, prose, URLs, quotes, brackets).
``clean_lines(n, seed)`` yields realistic lines without personal data: timestamps, durations, ids,
UUIDs, hashes, versions, paths, user agents, SQL, stack frames, amounts.

Formats we do not claim to detect are deliberately absent and documented in ``agent/redact.py``'s
known gaps: a bare run of 10 digits with neither a leading ``+``/``0`` nor a phone word before it
(indistinguishable from epoch seconds and order ids; bare ``00…`` runs look like barcodes), obfuscated emails ("alice at example dot com"),
lower-case hex secrets.
"""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Callable, Iterator
from typing import NamedTuple

from faker import Faker

__all__ = ["DETECTORS", "Sample", "clean_lines", "pii_lines"]

DETECTORS = (
    "email",
    "phone",
    "ipv4",
    "ipv6",
    "mac",
    "card",
    "iban",
    "ssn",
    "jwt",
    "api_key",
    "secret",
    "url_credentials",
)

_PHONE_LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "nl_NL", "es_ES", "it_IT", "en_IN", "en_AU", "pt_BR"]
_IBAN_LOCALES = ["de_DE", "fr_FR", "en_GB", "nl_NL", "es_ES", "it_IT", "pl_PL", "de_AT", "fr_CH", "nl_BE"]
_CARD_TYPES = [
    "visa16",
    "visa13",
    "visa19",
    "mastercard",
    "amex",
    "discover",
    "diners",
    "jcb15",
    "jcb16",
    "maestro",
]
_PHONE_WORDS = ["phone", "tel", "mobile", "call", "Phone:", "Tel.", "cell", "contact", "SMS to", "fax"]


class Sample(NamedTuple):
    detector: str
    line: str
    value: str


def _ts(rng: random.Random) -> str:
    return (
        f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:"
        f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{rng.randint(0, 999):03d}Z"
    )


_CONTEXTS: list[Callable[[random.Random, str, str], str]] = [
    lambda r, k, v: f"{_ts(r)} INFO  [{k}] value={v} accepted",
    lambda r, k, v: f'{{"level":"warn","field":"{k}","value":"{v}","retry":{r.randint(0, 5)}}}',
    lambda r, k, v: f"{k}: {v}",
    lambda r, k, v: f"updated {k} to {v}.",
    lambda r, k, v: f"{_ts(r)} ERROR validation failed for {k} ({v}) after {r.randint(2, 900)} ms",
    lambda r, k, v: f"customer note: please use {v}, thanks!",
    lambda r, k, v: f"[{v}]",
    lambda r, k, v: f"'{v}'",
    lambda r, k, v: v,
    lambda r, k, v: f"{k}={v} status={r.choice(['ok', 'failed', 'pending'])} dur_ms={r.randint(1, 5000)}",
    lambda r, k, v: f"<{v}> bounced: mailbox unavailable",
    lambda r, k, v: f"Received {k} {v}\tfrom upstream",
]


def _email(fake: Faker, rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return str(fake.free_email())
    if kind == 1:
        return str(fake.company_email()).upper()
    if kind == 2:
        user = str(fake.user_name())
        return f"{user}+{rng.choice(['news', 'billing', 'x1'])}@{fake.domain_name(levels=2)}"
    if kind == 3:
        return f"{fake.first_name().lower()}.{fake.last_name().lower()}@{fake.domain_name()}".replace(" ", "")
    return str(fake.email())


def _phone(fakes: dict[str, Faker], rng: random.Random) -> tuple[str, bool]:
    """A phone number and whether it needs a phone word before it to be recognisable at all."""
    loc = rng.choice(_PHONE_LOCALES)
    number = str(fakes[loc].phone_number())
    digits = [c for c in number if c.isdigit()]
    bare = not any(c in number for c in " .-()+") and (number[0] != "0" or number[1] == "0")
    return number, bare or len(digits) < 9


def _card(fake: Faker, rng: random.Random) -> str:
    number = str(fake.credit_card_number(card_type=rng.choice(_CARD_TYPES)))
    style = rng.randrange(4)
    if style == 0 or len(number) < 14:
        return number
    if number[:2] in ("34", "37") and len(number) == 15:
        groups = [number[:4], number[4:10], number[10:]]
    else:
        groups = [number[i : i + 4] for i in range(0, len(number), 4)]
    return (" " if style in (1, 2) else "-").join(groups)


def _iban(fakes: dict[str, Faker], rng: random.Random) -> str:
    iban = str(fakes[rng.choice(_IBAN_LOCALES)].iban())
    style = rng.randrange(3)
    if style == 0:
        return iban
    spaced = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return spaced if style == 1 else spaced.lower()


def _ssn(fake: Faker, rng: random.Random) -> str:
    ssn = str(fake.ssn())
    return ssn.replace("-", " ") if rng.random() < 0.2 else ssn


def _mac(fake: Faker, rng: random.Random) -> str:
    mac = str(fake.mac_address())
    style = rng.randrange(4)
    if style == 1:
        return mac.upper()
    if style == 2:
        return mac.replace(":", "-").upper()
    if style == 3:
        h = mac.replace(":", "")
        return f"{h[:4]}.{h[4:8]}.{h[8:]}"
    return mac


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(fake: Faker, rng: random.Random) -> str:
    header = {"alg": rng.choice(["HS256", "RS256", "ES256"]), "typ": "JWT"}
    payload = {
        "sub": str(fake.uuid4()),
        "email": fake.email(),
        "iat": rng.randint(1_700_000_000, 1_800_000_000),
    }
    sig = bytes(rng.getrandbits(8) for _ in range(rng.choice([32, 64, 256])))
    return ".".join(
        (_b64url(json.dumps(header).encode()), _b64url(json.dumps(payload).encode()), _b64url(sig))
    )


def _rand(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def api_key(rng: random.Random) -> str:
    up = string.ascii_uppercase + string.digits
    return rng.choice(
        [
            lambda: f"sk_live_{_rand(rng, 24)}",
            lambda: f"pk_test_{_rand(rng, 24)}",
            lambda: f"AKIA{_rand(rng, 16, up)}",
            lambda: f"ghp_{_rand(rng, 36)}",
            lambda: f"github_pat_{_rand(rng, 22)}_{_rand(rng, 59)}",
            lambda: f"xoxb-{rng.randint(10**10, 10**11)}-{rng.randint(10**10, 10**11)}-{_rand(rng, 24)}",
            lambda: f"AIza{_rand(rng, 35, string.ascii_letters + string.digits + '_-')}",
            lambda: f"glpat-{_rand(rng, 20)}",
            lambda: f"sk-proj-{_rand(rng, 48)}",
            lambda: f"SG.{_rand(rng, 22)}.{_rand(rng, 43)}",
            lambda: f"npm_{_rand(rng, 36)}",
        ]
    )()


def _secret(fake: Faker, rng: random.Random) -> tuple[str, str]:
    """A line with a secret and the secret itself (the line is built here: the context is the clue)."""
    kind = rng.randrange(5)
    if kind == 0:
        pw = str(fake.password(length=rng.randint(10, 18), special_chars=False))
        return f"login attempt user={fake.user_name()} password={pw}", pw
    if kind == 1:
        tok = _rand(rng, rng.randint(24, 48))
        return f"Authorization: Bearer {tok}", tok
    if kind == 2:
        tok = _rand(rng, rng.randint(28, 64), string.ascii_letters + string.digits + "+/")
        return f"{_ts(rng)} DEBUG session restored from cookie {tok}", tok
    if kind == 3:
        pw = str(fake.password(length=14, special_chars=False))
        return f'config: {{"db_password": "{pw}", "pool": {rng.randint(2, 20)}}}', pw
    tok = _rand(rng, 32)
    return f"client_secret={tok}&grant_type=client_credentials", tok


def _url_creds(fake: Faker, rng: random.Random) -> tuple[str, str]:
    user = str(fake.user_name())
    pw = str(fake.password(length=rng.randint(8, 16), special_chars=False))
    scheme = rng.choice(["https", "postgres", "mysql", "redis", "amqp", "ftp", "mongodb+srv"])
    url = f"{scheme}://{user}:{pw}@{fake.domain_name()}:{rng.randint(1000, 9999)}/{fake.word()}"
    return f"connecting to {url} (attempt {rng.randint(1, 3)})", f"{user}:{pw}"


def pii_lines(n_per_detector: int, seed: int = 1) -> Iterator[Sample]:
    rng = random.Random(seed)
    Faker.seed(seed)
    fakes = {loc: Faker(loc) for loc in sorted({*_PHONE_LOCALES, *_IBAN_LOCALES})}
    for f in fakes.values():
        f.seed_instance(rng.getrandbits(32))
    fake = fakes["en_US"]
    for _ in range(n_per_detector):
        for det in DETECTORS:
            ctx = rng.choice(_CONTEXTS)
            if det == "secret":
                line, value = _secret(fake, rng)
                yield Sample(det, line, value)
                continue
            if det == "url_credentials":
                line, value = _url_creds(fake, rng)
                yield Sample(det, line, value)
                continue
            if det == "phone":
                value, needs_word = _phone(fakes, rng)
                if needs_word:
                    line = f"{rng.choice(_PHONE_WORDS)} {value}"
                    yield Sample(det, ctx(rng, "note", line), value)
                    continue
            elif det == "email":
                value = _email(fake, rng)
            elif det == "ipv4":
                value = str(fake.ipv4_public() if rng.random() < 0.7 else fake.ipv4_private())
            elif det == "ipv6":
                value = str(fake.ipv6())
            elif det == "mac":
                value = _mac(fake, rng)
            elif det == "card":
                value = _card(fake, rng)
            elif det == "iban":
                value = _iban(fakes, rng)
            elif det == "ssn":
                value = _ssn(fake, rng)
            elif det == "jwt":
                value = _jwt(fake, rng)
            else:
                value = api_key(rng)
            yield Sample(det, ctx(rng, det, value), value)


def clean_lines(n: int, seed: int = 2) -> Iterator[str]:
    rng = random.Random(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    services = ["checkout", "orders", "billing", "search", "auth", "inventory", "gateway"]
    gens: list[Callable[[], str]] = [
        lambda: (
            f"{_ts(rng)} {rng.choice(methods)} {fake.uri_path()}?page={rng.randint(1, 40)} "
            f"{rng.choice([200, 201, 204, 301, 404, 500])} {rng.randint(1, 9000)}ms"
        ),
        lambda: (
            f"{_ts(rng)} INFO {rng.choice(services)} request_id={fake.uuid4()} completed in {rng.random() * 900:.2f} ms"
        ),
        lambda: (
            f"order ORD-{rng.randint(2020, 2026)}-{rng.randint(0, 999999):06d} shipped, {rng.randint(1, 9)} items"
        ),
        lambda: f"trace_id={rng.getrandbits(128):032x} span_id={rng.getrandbits(64):016x} sampled=1",
        lambda: (
            f"deployed {rng.choice(services)} v{rng.randint(0, 9)}.{rng.randint(0, 40)}.{rng.randint(0, 99)} (commit {rng.getrandbits(160):040x})"
        ),
        lambda: (
            f"ts={rng.randint(1_700_000_000, 1_800_000_000)} dur_ms={rng.randint(0, 10**6)} bytes={rng.randint(0, 10**9)}"
        ),
        lambda: (
            f'File "/srv/app/{fake.word()}/{fake.word()}.py", line {rng.randint(1, 2000)}, in {fake.word()}_handler'
        ),
        lambda: (
            f"\tat com.example.{fake.word()}.{fake.word().capitalize()}Service.handle({fake.word().capitalize()}Service.java:{rng.randint(10, 900)})"
        ),
        lambda: (
            f"SELECT id, total FROM orders WHERE customer_id = {rng.randint(1, 10**6)} AND created_at > '2026-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}' LIMIT {rng.randint(1, 500)}"
        ),
        lambda: f"user agent: {fake.user_agent()}",
        lambda: fake.sentence(nb_words=rng.randint(5, 14)),
        lambda: (
            f"cpu={rng.random():.2f} mem={rng.randint(64, 8192)}MiB gc_pause={rng.random() * 50:.3f}ms goroutines={rng.randint(10, 5000)}"
        ),
        lambda: (
            f"pod {rng.choice(services)}-{rng.getrandbits(40):010x}-{_rand(rng, 5, string.ascii_lowercase + string.digits)} restarted (exit code {rng.choice([0, 1, 137, 143])})"
        ),
        lambda: (
            f"payment of {rng.randint(1, 5000)}.{rng.randint(0, 99):02d} {rng.choice(['EUR', 'USD', 'GBP'])} captured for invoice INV-{rng.randint(10000, 99999)}"
        ),
        lambda: f"cache hit ratio {rng.random() * 100:.1f}% over {rng.randint(1000, 10**7):,} lookups",
        lambda: f"listening on 0.0.0.0:{rng.randint(1024, 65535)} and [::]:{rng.randint(1024, 65535)}",
        lambda: f"image sha256:{rng.getrandbits(256):064x} pulled in {rng.randint(1, 90)}s",
        lambda: (
            f"retry {rng.randint(1, 5)}/5 in {rng.randint(1, 60)}s: upstream {fake.domain_name()} returned {rng.choice([502, 503, 504])}"
        ),
        lambda: (
            f"{fake.date(pattern=rng.choice(['%Y-%m-%d', '%d.%m.%Y', '%m/%d/%Y', '%Y%m%d']))} batch {rng.randint(1, 99999)} closed with {rng.randint(0, 10**6)} rows"
        ),
        lambda: (
            f"elapsed {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{rng.randint(0, 999):03d}"
        ),
        lambda: f"sku={fake.ean13()} qty={rng.randint(1, 20)} warehouse=WH{rng.randint(1, 40):02d}",
        lambda: f"fetched {fake.url()}{fake.uri_path()} in {rng.randint(1, 2000)} ms",
        lambda: f"feature flag {fake.word()}_{fake.word()} enabled for {rng.randint(1, 100)}% of tenants",
        lambda: f"session {fake.uuid4()} expired after {rng.randint(1, 48)}h",
        lambda: (
            f"ptr=0x{rng.getrandbits(48):012x} len={rng.randint(1, 4096)} flags=0x{rng.getrandbits(8):02x}"
        ),
        lambda: f"java.lang.IllegalStateException: {fake.sentence(nb_words=6)}",
        lambda: (
            f"latency p50={rng.randint(1, 100)}ms p99={rng.randint(100, 3000)}ms n={rng.randint(1, 10**6)}"
        ),
        lambda: (
            f"build {rng.randint(2024, 2026)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}.{rng.randint(1, 9)} of {fake.word()} finished"
        ),
        lambda: (
            f"lat={rng.uniform(-90, 90):.4f} lon={rng.uniform(-180, 180):.4f} accuracy={rng.randint(1, 99)}m"
        ),
        lambda: f"isbn {fake.isbn13()} added to catalogue",
        lambda: f"os=Windows 10.0.{rng.randint(10000, 22631)}.{rng.randint(1, 4000)} arch=x64",
        lambda: f"theme color #{rng.getrandbits(24):06X} applied",
        lambda: f"container {rng.getrandbits(48):012x} exited",
        lambda: (
            f"version {rng.randint(0, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 30)}+build.{rng.randint(1, 999)}"
        ),
        lambda: f"resources: cpu={rng.randint(100, 4000)}m memory={rng.randint(128, 16384)}Mi",
        lambda: f"pages {rng.randint(1, 500)}-{rng.randint(500, 999)} of {rng.randint(1000, 9999)}",
        lambda: (
            f"{fake.month_name()[:3]} {rng.randint(1, 28)} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} web-{rng.randint(1, 9)} sshd[{rng.randint(100, 99999)}]: session opened"
        ),
        lambda: f"x-request-start: t={rng.randint(1_700_000_000_000, 1_800_000_000_000)}",
        lambda: f"pid={rng.randint(100, 99999)} tid={rng.randint(100, 99999)} errno=-{rng.randint(1, 130)}",
        lambda: (
            f"total ${rng.randint(1, 999)},{rng.randint(0, 999):03d}.{rng.randint(0, 99):02d} across {rng.randint(1, 999)} orders"
        ),
        lambda: (
            f"{_ts(rng)} WARN db pool exhausted: {rng.randint(1, 200)}/{rng.randint(200, 400)} connections in use"
        ),
        lambda: f"user_id={rng.randint(1, 10**9)} account={rng.randint(10**10, 10**11)} plan={fake.word()}",
        lambda: (
            f"HTTP/1.1 {rng.choice([200, 404, 503])} {fake.word()} (content-length: {rng.randint(0, 10**7)})"
        ),
    ]
    for _ in range(n):
        yield rng.choice(gens)()
