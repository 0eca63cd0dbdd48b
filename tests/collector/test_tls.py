"""collector.tls and collector.pki: real TLS handshakes on loopback between the real collector server and
the agent's sender, with throw-away CAs. Every refusal reaches the agent as one clear line."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from agent import egress, outbox
from agent.config import CollectorConfig
from agent.seal import seal
from agent.sender import Sender
from agent.state import open_state, transaction
from agent.transport import explain_transport
from collector.ingest import IngestSettings
from collector.pki import Issued, issue, new_ca, write_selfsigned
from collector.server import serve
from collector.store.sqlite.store import SqliteStore
from collector.tls import Reloader, ServerTls, is_loopback, plaintext_warning, server_credentials
from hushmetric.batch import Noise, Privacy, Row
from hushmetric.config import Duration
from hushmetric.errors import ConfigError

NOW = dt.datetime.now(dt.UTC)
VALID = {"not_before": NOW - dt.timedelta(hours=1), "not_after": NOW + dt.timedelta(days=1)}
SCHEMAS = (outbox.SCHEMA, egress.SCHEMA)
KEY = nacl.signing.SigningKey(b"\x05" * 32)


class Pki:
    """CAs and certificates written as files, as an operator would have them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.ca = new_ca("site CA", **VALID)
        self.other_ca = new_ca("someone else's CA", **VALID)
        self.server = issue(self.ca, "localhost", sans=["localhost", "127.0.0.1"], **VALID)
        self.client = issue(self.ca, "edge-1", client=True, **VALID)
        self.other_client = issue(self.other_ca, "edge-2", client=True, **VALID)
        for name, issued in (
            ("ca", self.ca),
            ("other-ca", self.other_ca),
            ("server", self.server),
            ("client", self.client),
            ("other-client", self.other_client),
        ):
            self.write(name, issued)

    def write(self, name: str, issued: Issued) -> None:
        (self.root / f"{name}.pem").write_bytes(issued.cert_pem)
        (self.root / f"{name}.key").write_bytes(issued.key_pem)
        (self.root / f"{name}.key").chmod(0o600)

    def path(self, name: str) -> str:
        return str(self.root / name)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(
        tmp_path / "collector.db", signing_key=nacl.signing.SigningKey.generate(), create=True
    )
    await s.create_tenant("acme", now=NOW.timestamp())
    await s.add_key("acme", "edge-1", bytes(KEY.verify_key), now=NOW.timestamp())
    try:
        yield s
    finally:
        await s.close()


class Running:
    def __init__(self, address: str, reloader: Reloader | None) -> None:
        self.address, self.reloader = address, reloader


Serve = Callable[..., Any]


@pytest.fixture
async def collector(store: SqliteStore) -> AsyncIterator[Serve]:
    """Start the real collector server with the given TLS files (ServerTls) on a free loopback port."""
    stops: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(tls: ServerTls | None) -> Running:
        credentials, reloader = server_credentials(tls) if tls is not None else (None, None)
        stop = asyncio.Event()
        bound: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            serve(
                store,
                "127.0.0.1:0",
                stop=stop,
                on_bound=bound.set_result,
                settings=IngestSettings(),
                grace_seconds=0.5,
                credentials=credentials,
            )
        )
        stops.append((stop, task))
        return Running(await asyncio.wait_for(bound, 10), reloader)

    yield start
    for stop, task in stops:
        stop.set()
        await asyncio.wait_for(task, 10)


def _put_batch(conn: Any) -> None:
    with transaction(conn):
        seq, prev = outbox.next_seq(conn)
        created = NOW.timestamp() - 60
        outbox.put(
            conn,
            seal(
                tenant="acme",
                agent="edge-1",
                seq=seq,
                prev=prev,
                created=created,
                window=(int(created) - 60, int(created)),
                policy_digest="ab" * 32,
                privacy=Privacy("user", rho=0.01),
                rows=[Row("visits", "count", {}, 1.0, Noise("gaussian", 1.0))],
                key=KEY,
            ),
        )


@pytest.fixture
def agent_db(tmp_path: Path) -> Callable[[], Any]:
    def connect() -> Any:
        return open_state(tmp_path / "agent", SCHEMAS)

    return connect


async def deliver(agent_db: Callable[[], Any], address: str, **tls: Any) -> tuple[int, str | None]:
    """One delivery pass of the real sender with one batch waiting; (batches delivered, its error)."""
    conn = agent_db()
    try:
        if outbox.depth(conn).count == 0:
            _put_batch(conn)
    finally:
        conn.close()
    cfg = CollectorConfig(endpoints=[address], timeout=Duration(5), **tls)
    async with Sender(agent_db, cfg) as sender:
        report = await sender.drain_once()
    return report.delivered, report.last_error


def one_line(error: str | None, *needles: str) -> None:
    assert error is not None
    assert "\n" not in error
    assert "Traceback" not in error
    assert error.startswith("UNAVAILABLE: 127.0.0.1:")
    for needle in needles:
        assert needle in error, error


# -- the refusals, each seen clearly by the agent ----------------------------------------------------


async def test_plain_tls_delivers_with_the_right_ca(agent_db: Any, collector: Serve, pki: Pki) -> None:
    srv = await collector(ServerTls(pki.root / "server.pem", pki.root / "server.key"))
    assert await deliver(agent_db, srv.address, tls=True, ca_file=pki.path("ca.pem")) == (1, None)


async def test_a_plaintext_agent_or_one_without_the_ca_is_refused(
    agent_db: Any, collector: Serve, pki: Pki
) -> None:
    srv = await collector(ServerTls(pki.root / "server.pem", pki.root / "server.key"))
    sent, error = await deliver(agent_db, srv.address)
    assert sent == 0
    one_line(error, "closed the connection: does it require TLS? (collector.tls = true)")
    sent, error = await deliver(agent_db, srv.address, tls=True)  # no ca_file: the system trust store
    assert sent == 0
    one_line(error, "not signed by a CA this agent trusts (the system trust store; set collector.ca_file)")


async def test_a_certificate_of_another_ca_is_refused(agent_db: Any, collector: Serve, pki: Pki) -> None:
    srv = await collector(ServerTls(pki.root / "server.pem", pki.root / "server.key"))
    sent, error = await deliver(agent_db, srv.address, tls=True, ca_file=pki.path("other-ca.pem"))
    assert sent == 0
    one_line(
        error, "TLS handshake failed: the collector's certificate is not signed by a CA this agent trusts"
    )


async def test_an_expired_certificate_is_refused(agent_db: Any, collector: Serve, pki: Pki) -> None:
    old = {"not_before": NOW - dt.timedelta(days=30), "not_after": NOW - dt.timedelta(days=1)}
    pki.write("expired", issue(pki.ca, "localhost", sans=["localhost", "127.0.0.1"], **old))
    srv = await collector(ServerTls(pki.root / "expired.pem", pki.root / "expired.key"))
    sent, error = await deliver(agent_db, srv.address, tls=True, ca_file=pki.path("ca.pem"))
    assert sent == 0
    one_line(error, "TLS handshake failed: the collector's certificate has expired")


async def test_a_certificate_for_another_name_is_refused(agent_db: Any, collector: Serve, pki: Pki) -> None:
    srv = await collector(ServerTls(pki.root / "server.pem", pki.root / "server.key"))
    sent, error = await deliver(
        agent_db, srv.address, tls=True, ca_file=pki.path("ca.pem"), server_name="collector.example"
    )
    assert sent == 0
    one_line(error, "not valid for the name collector.example (collector.server_name)")
    pinned = await deliver(
        agent_db, srv.address, tls=True, ca_file=pki.path("ca.pem"), server_name="localhost"
    )
    assert pinned == (1, None)


async def test_mutual_tls_refuses_agents_without_a_certificate_or_with_one_of_another_ca(
    agent_db: Any, collector: Serve, pki: Pki
) -> None:
    srv = await collector(
        ServerTls(pki.root / "server.pem", pki.root / "server.key", client_ca=pki.root / "ca.pem")
    )
    common = {"tls": True, "ca_file": pki.path("ca.pem")}
    sent, error = await deliver(agent_db, srv.address, **common)
    assert sent == 0
    one_line(error, "may require a client certificate (mutual TLS: set collector.client_cert")
    sent, error = await deliver(
        agent_db,
        srv.address,
        **common,
        client_cert=pki.path("other-client.pem"),
        client_key=pki.path("other-client.key"),
    )
    assert sent == 0
    one_line(error, "does not accept this agent's client certificate")
    ok = await deliver(
        agent_db, srv.address, **common, client_cert=pki.path("client.pem"), client_key=pki.path("client.key")
    )
    assert ok == (1, None)


async def test_a_ca_removed_from_the_client_bundle_is_refused_from_the_next_handshake(
    agent_db: Any, collector: Serve, pki: Pki
) -> None:
    """Revocation by removal: the operator drops a CA from --client-ca; no restart."""
    bundle = pki.root / "agents.pem"
    bundle.write_bytes(pki.ca.cert_pem + pki.other_ca.cert_pem)
    srv = await collector(ServerTls(pki.root / "server.pem", pki.root / "server.key", client_ca=bundle))
    second = {
        "tls": True,
        "ca_file": pki.path("ca.pem"),
        "client_cert": pki.path("other-client.pem"),
        "client_key": pki.path("other-client.key"),
    }
    ok = await deliver(agent_db, srv.address, **second)
    assert ok == (1, None)
    bundle.write_bytes(pki.ca.cert_pem)  # the other CA is no longer trusted
    sent, error = await deliver(agent_db, srv.address, **second)
    assert sent == 0
    one_line(error, "does not accept this agent's client certificate")
    assert srv.reloader is not None
    assert srv.reloader.reloads == 1


async def test_a_swapped_certificate_is_served_to_new_handshakes_without_a_restart(
    agent_db: Any, collector: Serve, pki: Pki, tmp_path: Path
) -> None:
    srv = await collector(ServerTls(pki.root / "server.pem", pki.root / "server.key"))
    new_ca_files = {"tls": True, "ca_file": pki.path("other-ca.pem")}
    sent, _error = await deliver(agent_db, srv.address, **new_ca_files)
    assert sent == 0  # still the old certificate
    # Rotation: a half-written key first (kept serving the old pair), then the matching pair.
    renewed = issue(pki.other_ca, "localhost", sans=["localhost", "127.0.0.1"], **VALID)
    (pki.root / "server.pem").write_bytes(renewed.cert_pem)
    sent, _error = await deliver(agent_db, srv.address, **new_ca_files)
    assert sent == 0
    assert srv.reloader is not None
    assert srv.reloader.reloads == 0
    (pki.root / "server.key").write_bytes(renewed.key_pem)
    assert await deliver(agent_db, srv.address, **new_ca_files) == (1, None)
    assert srv.reloader.reloads == 1


async def test_sighup_forces_a_reload_of_unchanged_looking_files(pki: Pki) -> None:
    _credentials, reloader = server_credentials(ServerTls(pki.root / "server.pem", pki.root / "server.key"))
    assert reloader.fetch() is None  # nothing changed
    reloader.request()
    assert reloader.fetch() is not None
    assert reloader.reloads == 1
    assert reloader.fetch() is None


def _tls_handshake(port: int, version: ssl.TLSVersion) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with warnings.catch_warnings():  # the old versions are deprecated: that is what we offer here
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.maximum_version = version
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer old versions; the server must refuse
    ctx.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return str(tls.version())


async def test_only_tls_1_2_and_newer_are_negotiated(collector: Serve, pki: Pki) -> None:
    srv = await collector(ServerTls(pki.root / "server.pem", pki.root / "server.key"))
    port = int(srv.address.rpartition(":")[2])
    assert await asyncio.to_thread(_tls_handshake, port, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert await asyncio.to_thread(_tls_handshake, port, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    with pytest.raises((ssl.SSLError, ConnectionError)) as refused:
        await asyncio.to_thread(_tls_handshake, port, ssl.TLSVersion.TLSv1_1)
    assert "NO_PROTOCOLS_AVAILABLE" not in str(refused.value)  # offered by the client, refused by the server


# -- configuration errors at start -------------------------------------------------------------------


def test_bad_tls_files_are_one_clear_config_error(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--tls-key: does not match the certificate"):
        server_credentials(ServerTls(pki.root / "server.pem", pki.root / "client.key"))
    with pytest.raises(ConfigError, match=r"missing\.pem: --tls-cert: cannot read"):
        server_credentials(ServerTls(pki.root / "missing.pem", pki.root / "server.key"))
    (tmp_path / "junk.pem").write_text("not a bundle\n")
    with pytest.raises(ConfigError, match=r"--client-ca: not a PEM bundle"):
        server_credentials(ServerTls(pki.root / "server.pem", pki.root / "server.key", tmp_path / "junk.pem"))
    with pytest.raises(ConfigError, match=r"--tls-cert: not a PEM certificate"):
        server_credentials(ServerTls(tmp_path / "junk.pem", pki.root / "server.key"))


def test_plaintext_is_refused_beyond_loopback_unless_insecure() -> None:
    assert [is_loopback(a) for a in ("127.0.0.1:1", "[::1]:1", "localhost:1", "0.0.0.0:1", ":1", "h:1")] == [
        True, True, True, False, False, False,
    ]  # fmt: skip
    assert plaintext_warning("127.0.0.1:7443", insecure=False) is None
    with pytest.raises(ConfigError, match=r"--listen: refusing plaintext gRPC on 0\.0\.0\.0:7443"):
        plaintext_warning("0.0.0.0:7443", insecure=False)
    warning = plaintext_warning("0.0.0.0:7443", insecure=True)
    assert warning is not None
    assert warning.startswith("WARNING: serving plaintext")


def test_selfsigned_writes_a_ca_server_and_client_with_private_keys(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    written = write_selfsigned(out, names=["collector.lan"], days=2)
    assert sorted(p.name for p in written) == sorted(
        f"{s}.{e}" for s in ("ca", "server", "client") for e in ("pem", "key")
    )
    for p in written:
        assert (p.stat().st_mode & 0o777) == (0o600 if p.suffix == ".key" else 0o644)
    ctx = ssl.create_default_context(cafile=str(out / "ca.pem"))
    ctx.load_cert_chain(out / "client.pem", out / "client.key")  # the client pair matches
    with pytest.raises(ConfigError, match="exists; pass --force"):
        write_selfsigned(out)
    write_selfsigned(out, force=True)


def test_transport_errors_without_a_known_cause_are_passed_through() -> None:
    cfg = CollectorConfig(endpoints=["h:1"])
    assert explain_transport("Deadline Exceeded", cfg, "h:1") == "Deadline Exceeded"
