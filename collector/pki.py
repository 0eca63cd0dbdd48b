"""A throw-away certificate authority for trying TLS and mutual TLS: ``hush-collector tls selfsigned``.

One CA (ECDSA P-256), a server certificate (SAN ``localhost``, ``127.0.0.1`` and any names given) and a
client certificate for agents (mTLS), all signed by that CA. Private keys are written with mode 0600.
This is for trials and tests; production certificates come from the customer's own PKI. The PEM
building is pure (:func:`new_ca`, :func:`issue`); :func:`write_selfsigned` is the one I/O step.

Needs the ``cryptography`` package (``pip install 'hushmetric[tls]'``); without it the CLI says so and
points at the ``openssl`` recipe in docs/operations.md.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from hushmetric.errors import ConfigError

__all__ = ["Issued", "issue", "new_ca", "write_selfsigned"]

_LOCAL_NAMES = ("localhost", "127.0.0.1")


class Issued(msgspec.Struct, frozen=True):
    cert_pem: bytes
    key_pem: bytes


def _x509() -> Any:
    try:
        from cryptography import x509
    except ImportError as exc:
        raise ConfigError(
            "needs the cryptography package: pip install 'hushmetric[tls]' "
            "(or follow the openssl recipe in docs/operations.md)",
            key="tls selfsigned",
        ) from exc
    return x509


def _pem(cert: Any, key: Any) -> Issued:
    from cryptography.hazmat.primitives import serialization

    return Issued(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def _builder(
    subject: str, issuer: Any, public_key: Any, not_before: dt.datetime, not_after: dt.datetime
) -> Any:
    x509 = _x509()
    from cryptography.x509.oid import NameOID

    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def new_ca(name: str, *, not_before: dt.datetime, not_after: dt.datetime) -> Issued:
    """A self-signed CA certificate and its key."""
    x509 = _x509()
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(name, subject, key.public_key(), not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _pem(cert, key)


def issue(
    ca: Issued,
    name: str,
    *,
    sans: Sequence[str] = (),
    client: bool = False,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> Issued:
    """A leaf certificate signed by ``ca``: for a server (SANs: DNS names and IP addresses) or, with
    ``client``, for an agent presenting itself in mutual TLS."""
    x509 = _x509()
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[Any] = []
    for san in sans:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            alt.append(x509.DNSName(san))
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        _builder(name, ca_cert.subject, key.public_key(), not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),
            critical=False,
        )
    )
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return _pem(builder.sign(ca_key, hashes.SHA256()), key)


def _write(path: Path, data: bytes, mode: int, *, force: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError as exc:
        raise ConfigError("exists; pass --force to overwrite", path=str(path)) from exc
    except OSError as exc:
        raise ConfigError(f"cannot write: {exc.strerror or exc}", path=str(path)) from exc
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    path.chmod(mode)  # an existing file keeps its old mode through O_TRUNC


def write_selfsigned(
    out: Path,
    *,
    names: Sequence[str] = (),
    days: int = 30,
    now: dt.datetime | None = None,
    force: bool = False,
) -> list[Path]:
    """Write ca.pem/ca.key, server.pem/server.key and client.pem/client.key into ``out``; keys 0600."""
    if days < 1:
        raise ConfigError("must be at least 1", key="--days")
    start = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(minutes=5)  # tolerate small clock skew
    end = start + dt.timedelta(days=days)
    ca = new_ca("hushmetric throw-away CA", not_before=start, not_after=end)
    sans = list(dict.fromkeys([*_LOCAL_NAMES, *names]))
    server = issue(ca, sans[-1] if names else "localhost", sans=sans, not_before=start, not_after=end)
    client = issue(ca, "hush-agent", client=True, not_before=start, not_after=end)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create: {exc.strerror or exc}", path=str(out)) from exc
    written = []
    for stem, issued in (("ca", ca), ("server", server), ("client", client)):
        for suffix, data, mode in ((".pem", issued.cert_pem, 0o644), (".key", issued.key_pem, 0o600)):
            path = out / f"{stem}{suffix}"
            _write(path, data, mode, force=force)
            written.append(path)
    return written
