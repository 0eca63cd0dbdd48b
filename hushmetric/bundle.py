"""Air-gap bundles: a plain tar holding a signed manifest and one DSSE JSON envelope per batch.

Layout::

    manifest.json              DSSE JSON envelope (payloadType MANIFEST_PAYLOAD_TYPE) signed by the agent
    batches/<seq>.dsse.json    DSSE JSON envelope of one batch (payloadType BATCH_PAYLOAD_TYPE)

The manifest payload is JSON: ``{"v": 1, "tenant", "agent", "created", "batches": [{"file", "seq",
"sha256"}]}`` where ``sha256`` is the hex digest of the batch file's bytes. Reading never extracts to
disk and bounds member count and sizes: a bundle is hostile input.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from collections.abc import Sequence
from typing import Annotated

import msgspec
import nacl.signing

from hushmetric import dsse
from hushmetric.errors import ContractError

__all__ = [
    "MAX_BATCH_FILE_BYTES",
    "MAX_BUNDLE_MEMBERS",
    "Bundle",
    "Manifest",
    "ManifestEntry",
    "decode_manifest",
    "read_bundle",
    "write_bundle",
]

MAX_BUNDLE_MEMBERS = 100_000
MAX_BATCH_FILE_BYTES = 16 << 20
MAX_MANIFEST_BYTES = 32 << 20
_BATCH_NAME = re.compile(r"^batches/(\d{1,19})\.dsse\.json$")


class ManifestEntry(msgspec.Struct, frozen=True):
    file: Annotated[str, msgspec.Meta(max_length=64)]
    seq: Annotated[int, msgspec.Meta(ge=1)]
    sha256: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]


class Manifest(msgspec.Struct, frozen=True):
    v: int
    tenant: str
    agent: str
    created: str
    batches: list[ManifestEntry]


class Bundle(msgspec.Struct, frozen=True):
    """A parsed bundle. Nothing here is verified yet: the importer checks the manifest signature."""

    manifest_envelope: dsse.Envelope
    files: dict[str, bytes]  # member name -> raw bytes of the batch file


def write_bundle(
    envelopes: Sequence[tuple[int, dsse.Envelope]],
    *,
    tenant: str,
    agent: str,
    created: str,
    key: nacl.signing.SigningKey,
) -> bytes:
    """Build the tar in memory: one file per (seq, envelope) plus a manifest signed with ``key``."""
    files: list[tuple[str, bytes]] = []
    entries: list[ManifestEntry] = []
    for seq, envelope in envelopes:
        name = f"batches/{seq}.dsse.json"
        body = dsse.to_json(envelope)
        files.append((name, body))
        entries.append(ManifestEntry(name, seq, hashlib.sha256(body).hexdigest()))
    manifest = msgspec.json.encode(Manifest(1, tenant, agent, created, entries))
    signed = dsse.to_json(dsse.sign(manifest, dsse.MANIFEST_PAYLOAD_TYPE, key))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, body in [("manifest.json", signed), *files]:
            info = tarfile.TarInfo(name)
            info.size = len(body)
            info.mode = 0o644
            info.mtime = 0  # reproducible bytes for the same batches
            tar.addfile(info, io.BytesIO(body))
    return out.getvalue()


def read_bundle(data: bytes) -> Bundle:
    """Parse a bundle's tar bytes with bounds; any defect is a ContractError."""
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:")  # noqa: SIM115 - closed by `with tar` below
    except (tarfile.TarError, EOFError) as exc:
        raise ContractError(f"not a bundle (tar): {exc}") from exc
    manifest: bytes | None = None
    files: dict[str, bytes] = {}
    with tar:
        try:
            for count, member in enumerate(tar, start=1):
                if count > MAX_BUNDLE_MEMBERS + 1:
                    raise ContractError(f"bundle holds more than {MAX_BUNDLE_MEMBERS} batches")
                if not member.isreg():
                    raise ContractError(f"bundle member {member.name[:80]!r} is not a regular file")
                if member.name == "manifest.json":
                    limit = MAX_MANIFEST_BYTES
                elif _BATCH_NAME.match(member.name):
                    limit = MAX_BATCH_FILE_BYTES
                else:
                    raise ContractError(f"unexpected bundle member {member.name[:80]!r}")
                if member.size > limit:
                    raise ContractError(f"bundle member {member.name!r} is larger than {limit} bytes")
                if member.name in files or (member.name == "manifest.json" and manifest is not None):
                    raise ContractError(f"bundle member {member.name!r} appears twice")
                fh = tar.extractfile(member)
                assert fh is not None  # regular file
                body = fh.read()
                if member.name == "manifest.json":
                    manifest = body
                else:
                    files[member.name] = body
        except (tarfile.TarError, EOFError, UnicodeDecodeError) as exc:  # PAX headers must be UTF-8
            raise ContractError(f"bundle is truncated or corrupt: {exc}") from exc
    if manifest is None:
        raise ContractError("bundle has no manifest.json")
    return Bundle(dsse.from_json(manifest, max_bytes=MAX_MANIFEST_BYTES), files)


def decode_manifest(payload: bytes) -> Manifest:
    """Decode a manifest payload that has already been verified."""
    try:
        return msgspec.json.decode(payload, type=Manifest)
    except msgspec.DecodeError as exc:
        raise ContractError(f"malformed manifest: {exc}") from exc
    except UnicodeDecodeError as exc:  # msgspec raises it for a string that is not UTF-8
        raise ContractError("malformed manifest: a string is not valid UTF-8") from exc
    except RecursionError as exc:
        raise ContractError("malformed manifest: nested too deeply") from exc
