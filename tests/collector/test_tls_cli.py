"""``hush-collector serve`` TLS flags and ``hush-collector tls selfsigned``, as an operator runs them."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.collector.collector_testkit import CLI, Hush, one_line_error, serving


@pytest.fixture
def hush(tmp_path: Path) -> Hush:
    h = Hush(tmp_path)
    h.ok("init")
    return h


def health(address: str, credentials: grpc.ChannelCredentials | None) -> int:
    channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    with channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    return int(reply.status)


def test_selfsigned_then_serve_mutual_tls_from_a_config_file(hush: Hush, tmp_path: Path) -> None:
    made = hush("tls", "selfsigned", "--out", "pki", db=False)
    assert made.code == 0, made
    assert [Path(p).name for p in made.out.split()] == [
        "ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key",
    ]  # fmt: skip
    assert "--client-ca" in made.err
    assert "client_cert" in made.err
    assert all(
        (tmp_path / "pki" / k).stat().st_mode & 0o077 == 0 for k in ("ca.key", "server.key", "client.key")
    )
    one_line_error(hush("tls", "selfsigned", "--out", "pki", db=False), 2, r"ca\.pem: exists; pass --force")

    # TLS files in a config file are relative to its directory, wherever serve is started from.
    conf = tmp_path / "etc"
    conf.mkdir()
    (tmp_path / "pki").rename(conf / "pki")
    (conf / "collector.toml").write_text(
        'tls_cert = "pki/server.pem"\ntls_key = "pki/server.key"\nclient_ca = "pki/ca.pem"\n'
    )
    pki = conf / "pki"
    with serving(hush, "--config", str(conf / "collector.toml")) as served:
        assert served.proc.stderr is not None
        assert "mutual TLS on the gRPC port" in served.proc.stderr.readline()
        root = (pki / "ca.pem").read_bytes()
        mtls = grpc.ssl_channel_credentials(
            root, (pki / "client.key").read_bytes(), (pki / "client.pem").read_bytes()
        )
        assert health(served.address, mtls) == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as refused:
            health(served.address, grpc.ssl_channel_credentials(root))  # no client certificate
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        served.proc.send_signal(signal.SIGHUP)  # reload on request; the server keeps serving
        assert health(served.address, mtls) == health_pb2.HealthCheckResponse.SERVING
    assert served.proc.returncode == 0


def test_serve_tls_errors_are_one_line(hush: Hush) -> None:
    assert hush("tls", "selfsigned", "--out", "pki", db=False).code == 0
    one_line_error(
        hush(
            "serve", "--listen", "127.0.0.1:0", "--tls-cert", "pki/server.pem", "--tls-key", "pki/client.key"
        ),
        2,
        r"--tls-key: does not match the certificate",
    )
    one_line_error(hush("serve", "--listen", "127.0.0.1:0", "--tls-cert", "pki/server.pem"), 2, "go together")
    one_line_error(
        hush("serve", "--listen", "127.0.0.1:0", "--client-ca", "pki/ca.pem"),
        2,
        "needs --tls-cert and --tls-key",
    )


def test_plaintext_beyond_loopback_needs_insecure_and_warns(hush: Hush) -> None:
    one_line_error(hush("serve", "--listen", "0.0.0.0:0"), 2, r"refusing plaintext gRPC on 0\.0\.0\.0:0")
    proc = subprocess.Popen(
        [*CLI, "serve", "--listen", "0.0.0.0:0", "--insecure", "--db", str(hush.db)],
        cwd=hush.cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        assert re.fullmatch(r"0\.0\.0\.0:\d+", address), address
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "WARNING: serving plaintext gRPC on 0.0.0.0:0 (--insecure)" in err
