"""TLS and mutual TLS on the collector's gRPC port, with certificate reload without a restart.

- **Credentials.** :func:`server_credentials` reads the certificate chain, its key and (for mutual
  TLS) the CA bundle agents' certificates must chain to, checks them with the standard library's TLS
  stack (the key matches the certificate; the bundle holds certificates) so a bad file is one clear
  start-up error, and builds ``grpc.dynamic_ssl_server_credentials``. gRPC's TLS stack negotiates
  TLS 1.2 or 1.3 only (its minimum is 1.2), which ``tests/collector/test_tls.py`` checks.
- **Reload.** gRPC asks :meth:`Reloader.fetch` before every new handshake. It compares the files'
  (inode, size, mtime) with what it loaded and reloads when they changed — certificates rotated by
  certbot, cert-manager or a copy — or when ``SIGHUP`` asked for it (:meth:`Reloader.request`).
  A file that is half written or a key that does not match the new certificate is logged and the
  current credentials stay in use; a later handshake tries again. Established connections keep the
  certificate they were opened with. Turning client authentication on or off needs a restart.
- **Plaintext.** :func:`plaintext_warning` refuses plaintext on an address other hosts can reach
  unless the operator passed ``--insecure``, and then returns the warning to print.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from hushmetric.errors import ConfigError

if TYPE_CHECKING:  # gRPC loads only when the server starts, not for every admin command
    import grpc

__all__ = ["Reloader", "ServerTls", "is_loopback", "plaintext_warning", "server_credentials"]

log = logging.getLogger("hush.collector.tls")


class ServerTls(msgspec.Struct, frozen=True):
    cert: Path  # PEM certificate chain, leaf first
    key: Path  # its PEM private key (unencrypted; keep it 0600)
    client_ca: Path | None = None  # PEM CA bundle for agents' certificates: mutual TLS when set


class _Material(msgspec.Struct, frozen=True):
    key: bytes
    chain: bytes
    client_ca: bytes | None
    stamp: tuple[tuple[int, int, int], ...]


_FLAGS = {"cert": "--tls-cert", "key": "--tls-key", "client_ca": "--client-ca"}


def _stamp(paths: list[Path]) -> tuple[tuple[int, int, int], ...]:
    out = []
    for p in paths:
        st = p.stat()
        out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=str(path), key=_FLAGS[what]) from exc


def _load(tls: ServerTls) -> _Material:
    """Read and check the files; ConfigError naming the file and the flag when they cannot serve."""
    paths = [tls.cert, tls.key] + ([tls.client_ca] if tls.client_ca else [])
    try:
        before = _stamp(paths)
    except OSError as exc:
        missing = next((p for p in paths if not p.exists()), paths[0])
        what = "cert" if missing == tls.cert else "key" if missing == tls.key else "client_ca"
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=str(missing), key=_FLAGS[what]) from exc
    chain, key = _read(tls.cert, "cert"), _read(tls.key, "key")
    if b"-----BEGIN CERTIFICATE-----" not in chain:
        raise ConfigError("not a PEM certificate", path=str(tls.cert), key="--tls-cert")
    if b"PRIVATE KEY-----" not in key:
        raise ConfigError("not a PEM private key", path=str(tls.key), key="--tls-key")
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        probe.load_cert_chain(tls.cert, tls.key)
    except ssl.SSLError as exc:
        reason = "does not match the certificate" if "KEY_VALUES_MISMATCH" in str(exc) else exc.reason
        raise ConfigError(f"{reason or exc} ({tls.cert.name})", path=str(tls.key), key="--tls-key") from exc
    client_ca = None
    if tls.client_ca is not None:
        client_ca = _read(tls.client_ca, "client_ca")
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cadata=client_ca.decode("ascii"))
        except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(
                "not a PEM bundle of CA certificates", path=str(tls.client_ca), key="--client-ca"
            ) from exc
    if _stamp(paths) != before:  # changed while we read: the caller tries again later
        raise ConfigError("changed while being read", path=str(tls.cert), key="--tls-cert")
    return _Material(key, chain, client_ca, before)


def _configuration(m: _Material) -> Any:
    import grpc

    return grpc.ssl_server_certificate_configuration([(m.key, m.chain)], root_certificates=m.client_ca)


class Reloader:
    """The certificate fetcher gRPC calls before each handshake; see the module docstring."""

    def __init__(self, tls: ServerTls, material: _Material) -> None:
        self._tls = tls
        self._paths = [tls.cert, tls.key] + ([tls.client_ca] if tls.client_ca else [])
        self._stamp = material.stamp
        self._failed: tuple[tuple[int, int, int], ...] | None = None  # logged once per bad state
        self._forced = threading.Event()
        self.reloads = 0

    def request(self) -> None:
        """Reload on the next handshake even if the files look unchanged (SIGHUP)."""
        self._forced.set()

    def fetch(self) -> Any:
        """A new certificate configuration, or None to keep the current one. Never raises: gRPC
        calls this from its own threads, and a failure must not take the listener down."""
        try:
            stamp = _stamp(self._paths)
        except OSError:
            return None  # mid-rotation (a file renamed away); the next handshake looks again
        if stamp == self._stamp and not self._forced.is_set():
            return None
        if stamp == self._failed and not self._forced.is_set():
            return None
        self._forced.clear()
        try:
            material = _load(self._tls)
        except ConfigError as exc:
            self._failed = stamp
            log.error("TLS reload failed, still serving the previous certificate: %s", exc.message)
            return None
        except Exception:  # see the docstring: never raise into gRPC
            log.exception("TLS reload failed, still serving the previous certificate")
            return None
        self._stamp, self._failed = material.stamp, None
        self.reloads += 1
        log.warning("TLS certificate reloaded from %s", self._tls.cert)
        return _configuration(material)


def server_credentials(tls: ServerTls) -> tuple[grpc.ServerCredentials, Reloader]:
    """Credentials for ``add_secure_port`` and the reloader behind them (ConfigError if the files
    cannot serve TLS now)."""
    import grpc

    material = _load(tls)
    reloader = Reloader(tls, material)
    credentials = grpc.dynamic_ssl_server_credentials(
        _configuration(material), reloader.fetch, require_client_authentication=tls.client_ca is not None
    )
    return credentials, reloader


def is_loopback(listen: str) -> bool:
    """True when ``HOST:PORT`` binds an address only this host can reach."""
    host = listen.rpartition(":")[0].strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a wildcard ("", "0.0.0.0", "::") or a name that may resolve anywhere


def plaintext_warning(listen: str, *, insecure: bool) -> str | None:
    """None for loopback; the warning to print when ``insecure`` allows plaintext elsewhere;
    ConfigError otherwise (the operator must choose TLS or say ``--insecure``)."""
    if is_loopback(listen):
        return None
    if not insecure:
        raise ConfigError(
            f"refusing plaintext gRPC on {listen}, which other hosts can reach: pass --tls-cert and "
            "--tls-key (see `hush-collector tls selfsigned`), or --insecure behind a TLS-terminating proxy",
            key="--listen",
        )
    return (
        f"WARNING: serving plaintext gRPC on {listen} (--insecure): batches are signed, but anyone on the "
        "path can read them; terminate TLS in front of this port"
    )
