"""``hush-collector api-token`` and ``serve --http`` through the real CLI."""

from __future__ import annotations

import json
import re
import ssl
import urllib.request
from pathlib import Path

import pytest

from collector.cli.kit import MAX_NOTE
from collector.store.tokens import PREFIX
from tests.collector.collector_testkit import Hush, one_line_error, serving


def test_create_list_revoke(tmp_path: Path) -> None:
    hush = Hush(tmp_path)
    hush.ok("init")
    hush.ok("tenant", "create", "acme")
    r = hush(
        "api-token", "create", "--role", "viewer", "--tenant", "acme", "--ttl", "1h", "--note", "wall screen"
    )
    assert r.code == 0
    token = r.out.strip()
    assert re.fullmatch(rf"{PREFIX}[0-9a-f]{{16}}_[A-Za-z0-9_-]{{43}}", token)  # alone on its line
    assert "shown once" in r.err
    operator = hush.ok("api-token", "create", "--role", "operator", "--ttl", "none").strip()
    [viewer_doc, operator_doc] = json.loads(hush.ok("api-token", "list", "--json"))
    assert viewer_doc["role"] == "viewer"
    assert viewer_doc["tenant"] == "acme"
    assert viewer_doc["note"] == "wall screen"
    assert operator_doc["expires"] is None
    listed = hush.ok("api-token", "list")
    # the secret is everything after the id: it may hold "_" itself (split("_")[2] was "" when it
    # began with one, and "" is in every string)
    assert token.split("_", 2)[2] not in listed
    assert operator.split("_", 2)[2] not in listed  # never a secret
    assert hush.ok("api-token", "revoke", viewer_doc["id"]).strip() == f"API token {viewer_doc['id']} revoked"
    one_line_error(hush("api-token", "revoke", viewer_doc["id"]), 5, "already revoked")
    one_line_error(hush("api-token", "revoke", "0" * 16), 3, "not found")
    one_line_error(hush("api-token", "create", "--role", "viewer"), 2, "needs --tenant")
    one_line_error(hush("api-token", "create", "--role", "operator", "--tenant", "acme"), 2, "takes none")
    one_line_error(hush("api-token", "create", "--role", "viewer", "--tenant", "nope"), 3, "not found")
    one_line_error(
        hush("api-token", "create", "--role", "viewer", "--tenant", "acme", "--ttl", "soon"), 2, "--ttl"
    )
    actions = hush.ok("audit", "export")
    assert actions.count('"api_token.create"') == 2
    assert actions.count('"api_token.revoke"') == 1


def test_serve_prints_the_http_url_after_the_grpc_address(tmp_path: Path) -> None:
    hush = Hush(tmp_path)
    hush.ok("init")
    token = hush.ok("api-token", "create", "--role", "operator").strip()
    with serving(hush, "--http", "127.0.0.1:0") as served:
        assert served.proc.stdout is not None
        url = served.proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url), url
        headers = {"Authorization": f"Bearer {token}"}
        req = urllib.request.Request(url + "api/v1/me", headers=headers)  # noqa: S310  # loopback
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310  # a loopback http URL
            assert json.loads(r.read())["role"] == "operator"


def test_plaintext_http_beyond_loopback_is_refused(tmp_path: Path) -> None:
    hush = Hush(tmp_path)
    hush.ok("init")
    r = hush("serve", "--listen", "127.0.0.1:0", "--http", "0.0.0.0:0")
    one_line_error(r, 2, "refusing plaintext HTTP on 0.0.0.0:0")


def test_https_with_the_grpc_certificate(tmp_path: Path) -> None:
    hush = Hush(tmp_path)
    hush.ok("init")
    assert hush("tls", "selfsigned", "--out", "pki", db=False).code == 0
    pki = tmp_path / "pki"
    token = hush.ok("api-token", "create", "--role", "operator").strip()
    tls = ("--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"))
    with serving(hush, "--http", "127.0.0.1:0", *tls) as served:
        assert served.proc.stdout is not None
        url = served.proc.stdout.readline().strip()
        assert re.fullmatch(r"https://127\.0\.0\.1:\d+/", url), url
        context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        headers = {"Authorization": f"Bearer {token}"}
        req = urllib.request.Request(url + "api/v1/me", headers=headers)  # noqa: S310  # loopback
        with urllib.request.urlopen(req, timeout=30, context=context) as r:  # noqa: S310  # loopback
            assert json.loads(r.read())["role"] == "operator"
            assert r.headers["Strict-Transport-Security"].startswith("max-age=")
        with pytest.raises(ConnectionError):  # plaintext to the TLS port: no answer
            urllib.request.urlopen(url.replace("https", "http") + "login", timeout=30)  # noqa: S310  # loopback


def test_a_lifetime_beyond_a_century_is_refused(tmp_path: Path) -> None:
    """A token stored with an expiry no calendar can show made every later ``api-token list`` fail
    with a traceback; the enrollment token's ``--ttl`` takes the same bound."""
    hush = Hush(tmp_path)
    hush.ok("init")
    hush.ok("tenant", "create", "acme")
    one_line_error(hush("api-token", "create", "--role", "operator", "--ttl", "99999999999d"), 2, "--ttl")
    one_line_error(hush("enroll-token", "acme", "--ttl", "99999999999d"), 2, "--ttl")
    hush.ok("api-token", "create", "--role", "operator", "--ttl", "36500d")
    [doc] = json.loads(hush.ok("api-token", "list", "--json"))
    assert doc["expires"] is not None


def test_a_long_or_control_character_note_is_refused(tmp_path: Path) -> None:
    hush = Hush(tmp_path)
    hush.ok("init")
    for note in ("x" * (MAX_NOTE + 1), "two\nlines", "\x1b]0;title\x07", "\u2066isolate"):
        one_line_error(hush("api-token", "create", "--role", "operator", "--note", note), 2, "--note")
    assert json.loads(hush.ok("api-token", "list", "--json")) == []  # no token made
    hush.ok("api-token", "create", "--role", "operator", "--note", "n" * MAX_NOTE)
