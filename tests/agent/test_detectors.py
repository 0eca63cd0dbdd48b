"""Unit tests of each detector: what it finds, in which span, and what it must leave alone."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.detectors import DETECTOR_NAMES, Finding, Scanner, features, generalize, normalize
from agent.detectors._checks import iban_ok, identifier_like, ipv4_ok, ipv6_ok, looks_random, luhn_ok, ssn_ok

SCANNER = Scanner()


def found(text: str) -> list[tuple[str, str]]:
    return [(f.detector, text[f.start : f.end]) for f in SCANNER.scan(text)]


def test_names_in_priority_order() -> None:
    assert DETECTOR_NAMES == (
        "url_credentials",
        "jwt",
        "api_key",
        "email",
        "iban",
        "card",
        "ssn",
        "mac",
        "ipv6",
        "ipv4",
        "phone",
        "secret",
    )
    assert SCANNER.names == DETECTOR_NAMES


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # email
        ("mail alice.smith@example.com now", [("email", "alice.smith@example.com")]),
        ("<BOB+news@Mail.Example.CO.UK>.", [("email", "BOB+news@Mail.Example.CO.UK")]),
        ("mailto:carol_o'neil@sub.example.org", [("email", "carol_o'neil@sub.example.org")]),
        # phone
        ("call +1-555-123-4567 ok", [("phone", "+1-555-123-4567")]),
        ("(555) 123-4567 x204", [("phone", "(555) 123-4567 x204")]),
        ("tel 555.123.4567", [("phone", "555.123.4567")]),
        ("+44 20 7946 0958", [("phone", "+44 20 7946 0958")]),
        ("020 7946 0958", [("phone", "020 7946 0958")]),
        ("07700900123", [("phone", "07700900123")]),
        ("+49(0)3012345678", [("phone", "+49(0)3012345678")]),
        ("01 23 45 67 89", [("phone", "01 23 45 67 89")]),
        ("+33 (0)1 23 45 67 89", [("phone", "+33 (0)1 23 45 67 89")]),
        ("phone: 5551234567", [("phone", "5551234567")]),
        ("tel:+14155550123", [("phone", "+14155550123")]),
        ("mobile +61.438.089.995", [("phone", "+61.438.089.995")]),
        ("+0 1.0.10.100", [("ipv4", "1.0.10.100")]),
        # network
        ("from 192.168.1.20:8080", [("ipv4", "192.168.1.20")]),
        ("http://10.0.0.1/admin", [("ipv4", "10.0.0.1")]),
        ("v6 2001:db8:85a3::8a2e:370:7334 x", [("ipv6", "2001:db8:85a3::8a2e:370:7334")]),
        ("[fe80::1%eth0]:443", [("ipv6", "fe80::1%eth0")]),
        ("::ffff:192.0.2.1", [("ipv6", "::ffff:192.0.2.1")]),
        ("peer 2001:db8::1: refused", [("ipv6", "2001:db8::1")]),
        ("mac 00:1A:2B:3C:4D:5E", [("mac", "00:1A:2B:3C:4D:5E")]),
        ("mac 00-1a-2b-3c-4d-5e", [("mac", "00-1a-2b-3c-4d-5e")]),
        ("mac 001a.2b3c.4d5e", [("mac", "001a.2b3c.4d5e")]),
        # payment and identity
        ("card 4111 1111 1111 1111", [("card", "4111 1111 1111 1111")]),
        ("card 4111-1111-1111-1111.", [("card", "4111-1111-1111-1111")]),
        ("amex 378282246310005", [("card", "378282246310005")]),
        ("amex 3782 822463 10005", [("card", "3782 822463 10005")]),
        ("iban DE89 3704 0044 0532 0130 00.", [("iban", "DE89 3704 0044 0532 0130 00")]),
        ("iban=GB29NWBK60161331926819", [("iban", "GB29NWBK60161331926819")]),
        ("iban gb29 nwbk 6016 1331 9268 19", [("iban", "gb29 nwbk 6016 1331 9268 19")]),
        ("ssn 123-45-6789", [("ssn", "123-45-6789")]),
        ("SSN: 123456789", [("ssn", "123456789")]),
        # secrets
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            [("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U")],
        ),
        ("key sk_live_4eC39HqLyjWDarjtT1zdp7dc", [("api_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc")]),
        ("AKIAIOSFODNN7EXAMPLE", [("api_key", "AKIAIOSFODNN7EXAMPLE")]),
        (
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            [("api_key", "ghp_abcdefghijklmnopqrstuvwxyz0123456789")],
        ),
        ("slack xoxb-1234567890-abcdefghijkl", [("api_key", "xoxb-1234567890-abcdefghijkl")]),
        ("password=hunter22 user=bob", [("secret", "hunter22")]),
        ('{"db_password": "s3cr3t-Value"}', [("secret", "s3cr3t-Value")]),
        ("Authorization: Bearer abc123.def456-ghi", [("secret", "abc123.def456-ghi")]),
        ("cookie d8fNYvvDbzDZST6IaXqA2h9Uz0T1SaQ6", [("secret", "d8fNYvvDbzDZST6IaXqA2h9Uz0T1SaQ6")]),
        ("cookie /J/MRBjxf1cZZAK7tsXkJA/LpUmU8s1C4", [("secret", "/J/MRBjxf1cZZAK7tsXkJA/LpUmU8s1C4")]),
        ("postgres://bob:s3cret@db.local:5432/x", [("url_credentials", "bob:s3cret")]),
    ],
)
def test_finds(text: str, expected: list[tuple[str, str]]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize("word", ["version", "Ver", "release", "build", "rv:"])
def test_a_dotted_quad_after_a_version_word_is_still_an_address(word: str) -> None:
    # Privacy over precision: "ver 10.0.0.1" may be a version, but an address must never slip through.
    assert found(f"{word} 10.0.0.1") == [("ipv4", "10.0.0.1")]


@pytest.mark.parametrize(
    "text",
    [
        "version 1.2.3",
        "v2.10.4-rc1",
        "build 10.0.19041.1",
        "build 20240517.3",
        "Chrome/120.0.0.0 Safari/537.36",
        "uuid 550e8400-e29b-41d4-a716-446655440000",
        "order ORD-2024-001234 shipped",
        "order 4829301847 at 1732623131",
        "latency 123.45 ms p99=872ms",
        "at 2024-05-17T13:45:12.123Z",
        "2024-05-17 13:45:12,123 INFO",
        "2024/05/17 13:45:12",
        "date 17.05.2024",
        "elapsed 00:01:23.456",
        "ts=1732623131 dur_ms=1732623131000",
        "sha256=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
        "listening on 0.0.0.0:8080",
        "connected to [::1]:5432",
        "listening on [::]:443",
        "netmask 255.255.255.0",
        "GET /api/v1/users/48213/orders?page=2 HTTP/1.1",
        "processed 1,234,567 rows in 12.3s",
        "std::vector<int> overflow in Foo::bar",
        "ORA-00942: table or view does not exist",
        "token: expired",
        "password: incorrect",
        "password=***",
        "Bearer authentication required",
        "sku=6198335053670 qty=14",
        "ISBN 978-3-16-148410-0",
        "pages 120-180 of 2400",
        "AbstractSingletonProxyFactoryBean",
        "Created symlink /etc/systemd/system/getty.target.wants/getty@tty1.service",
        "log(s): /var/log/rabbitmq/rabbit@localhost.log",
        "install alsa-topology-conf:all <none> 1.2.5.1-2",
        "--install /usr/share/postgresql/15/man/man7/ABORT",
        "Adding debian:AffirmTrust_Premium_ECC.pem",
        "Adding debian:GlobalSign_Root_CA_-_R3.pem",
        "the quick brown fox jumps over the lazy dog",
        "ssh://git@",
        "12:30:45",
        "",
    ],
)
def test_leaves_alone(text: str) -> None:
    assert found(text) == []


# Issue 9, point 10: shapes of real log formats that were findings or misses before.
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Java's host/address, with and without a port (Hadoop, Spark, ZooKeeper)
        ("Connecting to ResourceManager at msra-sa-41/10.190.173.170:8030", [("ipv4", "10.190.173.170")]),
        ("Old: msra-sa-41/10.190.173.170:9000 New: msra-sa-41:9000", [("ipv4", "10.190.173.170")]),
        ("Received connection request /10.10.34.11:45307", [("ipv4", "10.10.34.11")]),
        ("block BP-1347369012-10.190.173.170-1444972147527:blk_1", [("ipv4", "10.190.173.170")]),
        # credentials with an empty user name
        ("connecting to redis://:hunter2pass@cache:6379/0", [("url_credentials", ":hunter2pass")]),
        ("amqp://:s3cr3tPw@mq:5672", [("url_credentials", ":s3cr3tPw")]),
        # digit-only national ids next to their context word
        ("SSN is 123456789", [("ssn", "123456789")]),
        ("tin=123456789", [("ssn", "123456789")]),
        ("taxpayer id: 123456789", [("ssn", "123456789")]),
        ("Social Security No. 123456789", [("ssn", "123456789")]),
        # key-value secrets whose key names a key or a secret
        ("secret_key: 3be4d306cda54f03a5f77dc3538fe687", [("secret", "3be4d306cda54f03a5f77dc3538fe687")]),
        ("client_secret=f1834162f2b1ed20", [("secret", "f1834162f2b1ed20")]),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            [("secret", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")],
        ),
        # a card word before a bare run wins over an id word
        ("order 12 card 4111111111111111", [("card", "4111111111111111")]),
        ("payment card id 4111111111111111", [("card", "4111111111111111")]),
        # phones that keep being phones
        ("1 800 555 0199", [("phone", "1 800 555 0199")]),
        ("call 555 123 4567 12:30", [("phone", "555 123 4567")]),
    ],
)
def test_finds_in_real_log_shapes(text: str, expected: list[tuple[str, str]]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        # compact timestamps (HDFS, HealthApp, OpenStack) and the numbers next to them
        "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38865049064139660",
        "20171223-22:15:29:606|Step_LSC|30002312|onStandStepChanged 3579",
        "nova-api.log.1.2017-05-16_13:53:08 2017-05-16 00:00:00.008 25746 INFO nova.osapi_compute.wsgi.server",
        "20240517T134512 job done",
        # an access log's status, size and duration; columns of counters
        '"GET /index.html HTTP/1.1" 200 1048576 "-"',
        '"GET / HTTP/1.1" 200 4381815 863',
        "vmstat: 9 8 107555 91281 930 9506498 0 0 44 541 4893 5933 6 4 76 0 0",
        # long numeric ids that pass Luhn
        "txn 5258829904922689 committed",
        "order_id=4929123456789012 status=paid",
        "cluster_timestamp: 5105105105105100",
        # class names, printed objects and nested assignments are not secrets
        "AppleThunderboltNHIType2::prePCIWake - power up complete",
        "Registered Log4jLoggerFactoryBinding and Http11NioProtocolHandler",
        "wtoken = AppWindowToken{9f4ef63 token=Token{a64f992 ActivityRecord{de9231d u0 t761}}}",
        "org.apache.hadoop.security.token.Token: token=Token{kind: HDFS_DELEGATION_TOKEN}",
        "Failed to renew lease for [DFSClient_NONMAPREDUCE_1537864556_1] for 30 seconds",
        "Priority: 20, Token: Token { kind: ContainerToken, service: x }",
        "fileName is [2017-07-03_15,47,15.246620]-AirPortBrcm4360_Logs-007.txt",
        "Fan speeds ( 3552 3534 3375 **** 3515 3479 )",
        # versions glued to a package name, a Windows package identity, Gecko's rv:
        "Package_for_KB3177467~31bf3856ad364e35~amd64~~6.1.1.1, ApplicableState: 112",
        "installed openssl-1.0.2.15 from base",
        "Mozilla/5.0 (Windows; U; Windows NT 6.1; en-US; rv:1.9.2.13) Gecko/20101203 Firefox/3.6.13",
        # a user name in a URL is not a mailbox
        "Connecting to driver: spark://CoarseGrainedScheduler@driver.example.com:7077",
    ],
)
def test_leaves_real_log_shapes_alone(text: str) -> None:
    assert found(text) == []


def test_overlaps_merge_under_the_higher_priority_detector() -> None:
    text = "https://alice:pw@example.com/"
    # url_credentials owns the user-info; the email rule does not claim "pw@example.com".
    assert found(text) == [("url_credentials", "alice:pw")]
    spans = SCANNER.scan("x 4111 1111 1111 1111 y")
    assert spans == [Finding("card", 2, 21)]


def test_failed_candidate_does_not_hide_a_later_finding() -> None:
    # "1234 4111 1111 1111" fails Luhn; the card starting inside the same digit run is still found.
    text = "ref 1234 4111 1111 1111 1111"
    card = text.index("4111")
    assert [(f.detector, f.start <= card, f.end) for f in SCANNER.scan(text)] == [("card", True, len(text))]


def test_unicode_digits_do_not_extend_or_trigger() -> None:
    assert found("٤١١١١١١١١١١١١١١١") == []
    assert found("٣ 4111 1111 1111 1111") == [("card", "4111 1111 1111 1111")]


def test_features_gate_cheaply() -> None:
    assert features("plain words only") == 0
    assert features("a@b") != 0
    assert features("x" * 5) == 0


def test_checks() -> None:
    assert luhn_ok("4111111111111111")
    assert not luhn_ok("4111111111111112")
    assert iban_ok("DE89370400440532013000")
    assert not iban_ok("DE89370400440532013001")
    assert not iban_ok("XX89370400440532013000")
    assert ssn_ok("123", "45", "6789")
    assert not ssn_ok("666", "45", "6789")
    assert not ssn_ok("900", "45", "6789")
    assert not ssn_ok("123", "00", "6789")
    assert not ssn_ok("123", "45", "0000")
    assert ipv4_ok("8.8.8.8")
    assert not ipv4_ok("127.0.0.1")
    assert not ipv4_ok("256.1.1.1")
    assert not ipv4_ok("01.02.03.04")
    assert ipv6_ok("2001:db8::1")
    assert not ipv6_ok("::1")
    assert not ipv6_ok("12:30:45")
    assert looks_random("aZ3kP9qLmN2xR7vT1yW5bC8d")
    assert not looks_random("4bf92f3577b34da6a3ce929d0e0e4736")
    assert not looks_random("MAX_CONNECTIONS_PER_HOST_2")
    assert identifier_like("AppleThunderboltNHIType2")
    assert identifier_like("Http11NioProtocolHandler")
    assert not identifier_like("d8fNYvvDbzDZST6IaXqA2h9Uz0T1SaQ6")
    assert not identifier_like("QmFzZTY0RW5jb2RlZFN0cmluZzEy")


def test_normalize_and_generalize() -> None:
    assert normalize("email", "Alice@Example.COM") == "alice@example.com"
    assert normalize("card", "4111-1111 1111 1111") == "4111111111111111"
    assert normalize("phone", "+1 (555) 123-4567") == "+15551234567"
    assert normalize("iban", "de89 3704 0044 0532 0130 00") == "DE89370400440532013000"
    assert normalize("mac", "00-1A-2B-3C-4D-5E") == normalize("mac", "001a.2b3c.4d5e")
    assert normalize("ipv6", "2001:DB8:0::1") == "2001:db8::1"
    assert generalize("ipv4", "192.168.1.20") == "192.168.1.0/24"
    assert generalize("ipv6", "2001:db8:85a3::8a2e:370:7334") == "2001:db8:85a3::/48"
    assert generalize("email", "a@b.cd") is None
    assert generalize("ipv4", "not an ip") is None


def test_custom_detector_set() -> None:
    only_email = Scanner([d for d in Scanner().detectors if d.name == "email"])
    assert only_email.names == ("email",)
    assert [f.detector for f in only_email.scan("a@example.com 4111 1111 1111 1111")] == ["email"]


# --- properties over real log shapes --------------------------------------------------------------------

_WHEN = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2039, 12, 31))


@settings(max_examples=300, deadline=None)
@given(_WHEN, st.integers(0, 99999), st.integers(1, 32768), st.sampled_from(["INFO", "WARN", "ERROR"]))
def test_log_timestamps_are_never_findings(when: datetime, n: int, pid: int, level: str) -> None:
    lines = [
        f"{when:%y%m%d %H%M%S} {n} {level} dfs.DataNode: PacketResponder {n % 3} terminating",  # HDFS
        f"{when:%Y%m%d-%H:%M:%S}:{when.microsecond // 1000}|Step_LSC|{n}|onStandStepChanged {pid}",  # HealthApp
        f"{when:%Y-%m-%d %H:%M:%S}.{when.microsecond // 1000:03d} {pid} {level} nova.compute.manager",  # OpenStack
        f"{when:%Y-%m-%d %H:%M:%S},{when.microsecond // 1000:03d} {level} [main] Job: {n} maps",  # Hadoop
        f"{when:%m-%d %H:%M:%S}.{when.microsecond // 1000:03d}  {pid}  {n} D WindowManager: frozen",  # logcat
        f"{when:%Y%m%dT%H%M%S} {n} rows",
    ]
    for line in lines:
        assert found(line) == [], line


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 500, 502, 503]),
    st.integers(0, 10**10),
    st.integers(0, 10**7),
)
def test_access_log_status_size_and_duration_are_not_phones(status: int, size: int, micros: int) -> None:
    assert found(f'"GET /index.html HTTP/1.1" {status} {size} "-" "curl/8.4.0"') == []
    assert found(f'"POST /api/v1/orders HTTP/2.0" {status} {size} {micros}') == []


@pytest.mark.parametrize("text", ["0 (200) 200-0000", "size 5 (415) 555-0142 today"])
def test_an_area_code_in_parentheses_after_a_number_is_still_a_phone(text: str) -> None:
    """Found by the redaction property test: the counter-column rule hid "(200) 200-0000" after "0 "."""
    assert [f.detector for f in Scanner().scan(text)] == ["phone"]
