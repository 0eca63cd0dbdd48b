"""Ed25519 identities: key ids, base64 forms, and key files written with mode 0600."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

import nacl.exceptions
import nacl.signing

from hushmetric.errors import ConfigError, ContractError

__all__ = [
    "PUBLIC_KEY_BYTES",
    "generate_signing_key",
    "key_id",
    "load_signing_key",
    "parse_public_key",
    "public_key_b64",
    "read_public_key_arg",
    "write_secret_file",
]

PUBLIC_KEY_BYTES = 32
_SEED_BYTES = 32


def key_id(public_key: bytes) -> str:
    """Key id of the wire contract: lowercase hex SHA-256 of the raw 32-byte public key."""
    return hashlib.sha256(public_key).hexdigest()


def public_key_b64(public_key: bytes) -> str:
    return base64.b64encode(public_key).decode("ascii")


def parse_public_key(text: str) -> bytes:
    """Decode a standard-base64 Ed25519 public key; anything but 32 valid bytes is a ContractError."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ContractError("public key is not valid base64") from exc
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ContractError(f"public key must be {PUBLIC_KEY_BYTES} bytes, got {len(raw)}")
    try:
        nacl.signing.VerifyKey(raw)
    except (nacl.exceptions.ValueError, nacl.exceptions.TypeError) as exc:
        raise ContractError("public key is not a valid Ed25519 point") from exc
    return raw


def read_public_key_arg(arg: str) -> bytes:
    """A CLI argument that is either the base64 key itself or ``@FILE`` holding it."""
    if arg.startswith("@"):
        path = Path(arg[1:])
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read public key file: {exc}", path=str(path)) from exc
        return parse_public_key(text)
    return parse_public_key(arg)


def write_secret_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the start (no window where it is world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    path.chmod(0o600)  # umask or a pre-existing file may have widened it


def generate_signing_key(path: Path) -> nacl.signing.SigningKey:
    """Generate a key pair and store its seed as base64 in ``path`` (0600)."""
    key = nacl.signing.SigningKey.generate()
    write_secret_file(path, base64.b64encode(bytes(key)) + b"\n")
    return key


def load_signing_key(path: Path) -> nacl.signing.SigningKey:
    """Load a signing key written by :func:`generate_signing_key`; refuse group/world-readable files."""
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read signing key: {exc.strerror or exc}", path=str(path)) from exc
    if mode & 0o077:
        raise ConfigError(f"signing key is readable by others (mode {mode:o}); chmod 600 it", path=str(path))
    try:
        seed = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError("signing key file is not base64", path=str(path)) from exc
    if len(seed) != _SEED_BYTES:
        raise ConfigError(f"signing key must hold a {_SEED_BYTES}-byte seed", path=str(path))
    return nacl.signing.SigningKey(seed)
