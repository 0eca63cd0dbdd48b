"""Air-gap bundles: a plain tar holding a signed manifest and one DSSE JSON envelope per batch.

Layout::

    manifest.json              DSSE JSON envelope (payloadType MANIFEST_PAYLOAD_TYPE) signed by the agent
    batches/<seq>.dsse.json    DSSE JSON envelope of one batch (payloadType BATCH_PAYLOAD_TYPE)
    certificate.dsse.json      optional: the agent's certificate (hushmetric.certificate), issue 14

The manifest payload is JSON: ``{"v": 1, "tenant", "agent", "created", "batches": [{"file", "seq",
"sha256"}], "certificate": sha256 | null}`` where ``sha256`` is the hex digest of the batch file's
bytes, and ``certificate`` that of the certificate member (absent in bundles written before it:
they still read, and a collector that predates it ignores the key). Reading never extracts to
disk, accepts only plain regular members (never sparse ones) and bounds the file, member count and
sizes, and the members' total against the file's length: a bundle is hostile input.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from tarfile import GNUTYPE_LONGLINK, GNUTYPE_LONGNAME, GNUTYPE_SPARSE, XGLTYPE, XHDTYPE
from typing import Annotated, Any, BinaryIO

import msgspec
import nacl.signing

from hushmetric import dsse
from hushmetric.certificate import MAX_CERTIFICATE_BYTES
from hushmetric.errors import ContractError

__all__ = [
    "CERTIFICATE_MEMBER",
    "MAX_BATCH_FILE_BYTES",
    "MAX_BUNDLE_BYTES",
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
#: The largest bundle file accepted, checked before anything is read. Reading holds one member at a
#: time, so this bounds the work of an import rather than its memory.
MAX_BUNDLE_BYTES = 4 << 30
#: The largest PAX extended header or GNU long-name record (tarfile reads one whole).
MAX_HEADER_BYTES = 64 << 10
_HEADER_TYPES = (XHDTYPE, XGLTYPE, tarfile.SOLARIS_XHDTYPE, GNUTYPE_LONGNAME, GNUTYPE_LONGLINK)
CERTIFICATE_MEMBER = "certificate.dsse.json"
_BATCH_NAME = re.compile(r"^batches/(\d{1,19})\.dsse\.json$")


class ManifestEntry(msgspec.Struct, frozen=True):
    file: Annotated[str, msgspec.Meta(max_length=64)]
    seq: Annotated[int, msgspec.Meta(ge=1)]
    sha256: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]


class Manifest(msgspec.Struct, frozen=True, omit_defaults=True):
    v: int
    tenant: str
    agent: str
    created: str
    batches: list[ManifestEntry]
    certificate: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")] | None = None


class Bundle(msgspec.Struct, frozen=True):
    """A parsed bundle. Nothing here is verified yet: the importer checks the manifest signature."""

    manifest_envelope: dsse.Envelope
    files: Mapping[str, bytes]  # member name -> raw bytes of the batch file (read on lookup)
    certificate: bytes | None = None  # the certificate member's bytes, when the bundle has one


def write_bundle(
    envelopes: Sequence[tuple[int, dsse.Envelope]],
    *,
    tenant: str,
    agent: str,
    created: str,
    key: nacl.signing.SigningKey,
    certificate: bytes | None = None,
) -> bytes:
    """Build the tar in memory: one file per (seq, envelope) plus a manifest signed with ``key``;
    ``certificate`` (a certificate file's bytes) becomes the optional certificate member."""
    files: list[tuple[str, bytes]] = []
    entries: list[ManifestEntry] = []
    for seq, envelope in envelopes:
        name = f"batches/{seq}.dsse.json"
        body = dsse.to_json(envelope)
        files.append((name, body))
        entries.append(ManifestEntry(name, seq, hashlib.sha256(body).hexdigest()))
    cert_digest = None
    if certificate is not None:
        files.append((CERTIFICATE_MEMBER, certificate))
        cert_digest = hashlib.sha256(certificate).hexdigest()
    manifest = msgspec.json.encode(Manifest(1, tenant, agent, created, entries, cert_digest))
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


class _StrictInfo(tarfile.TarInfo):
    """TarInfo that refuses, before :mod:`tarfile` acts on them, the headers a bundle never holds and
    whose processing alone costs memory: GNU sparse members of every form (tarfile would read their
    maps, and later expand their holes to the full "real" size) and PAX or GNU long-name header data
    larger than :data:`MAX_HEADER_BYTES` (tarfile reads such data whole)."""

    def _proc_member(self, tarfile: Any) -> Any:  # the documented hook ("can be overridden")
        if self.type == GNUTYPE_SPARSE:
            raise ContractError(f"bundle member {self.name[:80]!r} is a sparse file (GNU old-style)")
        if self.type in _HEADER_TYPES and self.size > MAX_HEADER_BYTES:
            raise ContractError(f"bundle has a tar header record larger than {MAX_HEADER_BYTES} bytes")
        return super()._proc_member(tarfile)  # type: ignore[misc]  # private in typeshed

    def _sparse(self, member: tarfile.TarInfo, pax_headers: dict[str, str], *_: object) -> None:
        name = pax_headers.get("GNU.sparse.name", member.name)
        raise ContractError(f"bundle member {name[:80]!r} is a sparse file (PAX GNU.sparse)")

    # PAX sparse formats 0.0, 0.1 and 1.0: refused instead of parsed (1.0 reads a map of any length).
    _proc_gnusparse_00 = _proc_gnusparse_01 = _proc_gnusparse_10 = _sparse


class _Members(Mapping[str, bytes]):
    """The batch files of a bundle, read one at a time from the tar on demand: the importer holds
    one member in memory, never the whole bundle."""

    def __init__(self, fh: BinaryIO, index: dict[str, tuple[int, int]]) -> None:
        self._fh = fh
        self._index = index

    def __getitem__(self, name: str) -> bytes:
        offset, size = self._index[name]
        return _read_at(self._fh, offset, size)

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


def _read_at(fh: BinaryIO, offset: int, size: int) -> bytes:
    fh.seek(offset)
    body = fh.read(size)
    if len(body) != size:  # cannot happen after the scan; a short file must never pass as complete
        raise ContractError("bundle is truncated")
    return body


def _refuse_member(member: tarfile.TarInfo) -> str | None:
    """Why ``member`` cannot be in a bundle, or None: only plain regular files, never sparse."""
    name = member.name[:80]
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        return f"bundle member {name!r} is not a regular file"
    if member.issparse() or any(k.startswith("GNU.sparse.") for k in member.pax_headers):
        return f"bundle member {name!r} is a sparse file"
    return None


def read_bundle(source: bytes | BinaryIO, *, max_bytes: int = MAX_BUNDLE_BYTES) -> Bundle:
    """Parse a bundle (its bytes, or a seekable binary file the caller keeps open while it uses
    ``files``) with bounds; any defect is a ContractError. Only the tar headers and the manifest are
    read here; each batch file is read when ``files[name]`` is looked up.

    Bounds, checked before anything is read into memory: the file is at most ``max_bytes``; members
    are plain regular files (no sparse file, whose expanded size can dwarf its bytes in the tar);
    each is within its size limit; and the members' sizes add up to no more than the file's length
    (what a member claims, the file must hold).
    """
    fh: BinaryIO = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    try:
        length = fh.seek(0, io.SEEK_END)
        fh.seek(0)
    except (OSError, ValueError) as exc:
        raise ContractError(f"bundle cannot be read: {exc}") from exc
    if length > max_bytes:
        raise ContractError(f"bundle is larger than {max_bytes} bytes")
    index: dict[str, tuple[int, int]] = {}
    total = 0
    try:
        tar = tarfile.open(fileobj=fh, mode="r:", tarinfo=_StrictInfo)  # noqa: SIM115 - closed by `with tar` below
    except (tarfile.TarError, EOFError, ValueError, OSError) as exc:
        raise ContractError(f"not a bundle (tar): {exc}") from exc
    with tar:
        try:
            for count, member in enumerate(tar, start=1):
                if count > MAX_BUNDLE_MEMBERS + 2:  # the batches, the manifest and a certificate
                    raise ContractError(f"bundle holds more than {MAX_BUNDLE_MEMBERS} batches")
                if (why := _refuse_member(member)) is not None:
                    raise ContractError(why)
                if member.name == "manifest.json":
                    limit = MAX_MANIFEST_BYTES
                elif member.name == CERTIFICATE_MEMBER:
                    limit = MAX_CERTIFICATE_BYTES
                elif _BATCH_NAME.match(member.name):
                    limit = MAX_BATCH_FILE_BYTES
                else:
                    raise ContractError(f"unexpected bundle member {member.name[:80]!r}")
                if member.size > limit:
                    raise ContractError(f"bundle member {member.name!r} is larger than {limit} bytes")
                if member.name in index:
                    raise ContractError(f"bundle member {member.name!r} appears twice")
                total += member.size
                if total > length:
                    raise ContractError("bundle members claim more bytes than the file holds")
                index[member.name] = (member.offset_data, member.size)
        except (tarfile.TarError, EOFError, UnicodeDecodeError, ValueError, OSError) as exc:  # PAX: UTF-8
            raise ContractError(f"bundle is truncated or corrupt: {exc}") from exc
    if "manifest.json" not in index:
        raise ContractError("bundle has no manifest.json")
    manifest = _read_at(fh, *index.pop("manifest.json"))
    cert = index.pop(CERTIFICATE_MEMBER, None)
    certificate = _read_at(fh, *cert) if cert is not None else None
    return Bundle(dsse.from_json(manifest, max_bytes=MAX_MANIFEST_BYTES), _Members(fh, index), certificate)


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
