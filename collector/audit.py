"""The collector's audit log: hash-chained entries signed with the collector's Ed25519 key. Pure.

Each entry's ``hash`` is the SHA-256 of a canonical JSON body (sorted keys) that includes ``prev``,
the previous entry's hash; the signature covers ``(i, prev, hash)``. An export is JSON lines:
every entry in order (entries of other tenants reduced to signed *stubs* when the export is filtered,
so the chain stays checkable without revealing them), closed by a signed *end* line naming the count
and the head hash. :func:`verify` needs only the public key; deleting, editing or reordering any
line breaks it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence

import msgspec
import nacl.exceptions
import nacl.signing

from collector.errors import AuditError
from hushmetric.timefmt import format_rfc3339

__all__ = [
    "GENESIS",
    "AuditEntry",
    "Detail",
    "End",
    "Stub",
    "Verified",
    "export_lines",
    "make_entry",
    "next_entry",
    "verify",
]

GENESIS = "0" * 64
_DOMAIN = b"hushmetric.audit.v1"
Detail = str | int | float | bool | None


class AuditEntry(msgspec.Struct, frozen=True, tag="entry", tag_field="t"):
    i: int
    ts: str
    action: str
    tenant: str | None
    details: dict[str, Detail]
    prev: str
    hash: str
    sig: str  # hex Ed25519 signature over (i, prev, hash)


class Stub(msgspec.Struct, frozen=True, tag="stub", tag_field="t"):
    """An entry of another tenant in a filtered export: chain and signature checkable, body withheld."""

    i: int
    prev: str
    hash: str
    sig: str


class End(msgspec.Struct, frozen=True, tag="end", tag_field="t"):
    """The last line of an export: the number of entries and the head hash, signed."""

    count: int
    head: str
    ts: str
    sig: str


class Verified(msgspec.Struct, frozen=True):
    count: int
    head: str


Line = AuditEntry | Stub | End
_canonical = msgspec.json.Encoder(order="sorted")
_line_encoder = msgspec.json.Encoder()
_line_decoder = msgspec.json.Decoder(Line)


def _body(
    i: int, ts: str, action: str, tenant: str | None, details: Mapping[str, Detail], prev: str
) -> bytes:
    return _canonical.encode(
        {"i": i, "ts": ts, "action": action, "tenant": tenant, "details": dict(details), "prev": prev}
    )


def _entry_message(i: int, prev: str, hash_: str) -> bytes:
    return b"%b entry %d %b %b" % (_DOMAIN, i, prev.encode(), hash_.encode())


def _end_message(count: int, head: str, ts: str) -> bytes:
    return b"%b end %d %b %b" % (_DOMAIN, count, head.encode(), ts.encode())


def make_entry(
    *,
    index: int,
    prev: str,
    ts: str,
    action: str,
    tenant: str | None,
    details: Mapping[str, Detail],
    key: nacl.signing.SigningKey,
) -> AuditEntry:
    """The entry that follows an entry with hash ``prev`` (``GENESIS`` for the first, ``index`` 1)."""
    hash_ = hashlib.sha256(_body(index, ts, action, tenant, details, prev)).hexdigest()
    sig = key.sign(_entry_message(index, prev, hash_)).signature.hex()
    return AuditEntry(index, ts, action, tenant, dict(details), prev, hash_, sig)


def next_entry(
    head: tuple[int, str] | None,
    *,
    now: float,
    action: str,
    tenant: str | None,
    details: Mapping[str, Detail],
    key: nacl.signing.SigningKey,
) -> AuditEntry:
    """The entry to append after ``head`` (the last entry's index and hash; None for an empty log):
    what both stores write, read from the head inside their transaction."""
    index, prev = (int(head[0]) + 1, str(head[1])) if head is not None else (1, GENESIS)
    return make_entry(
        index=index,
        prev=prev,
        ts=format_rfc3339(now),
        action=action,
        tenant=tenant,
        details=details,
        key=key,
    )


def export_lines(
    entries: Sequence[AuditEntry],
    key: nacl.signing.SigningKey,
    *,
    ts: str,
    tenant: str | None = None,
) -> Iterator[bytes]:
    """JSON lines (without newlines) of a full or tenant-filtered export, ending with a signed End."""
    head = GENESIS
    for entry in entries:
        if tenant is None or entry.tenant == tenant:
            yield _line_encoder.encode(entry)
        else:
            yield _line_encoder.encode(Stub(entry.i, entry.prev, entry.hash, entry.sig))
        head = entry.hash
    sig = key.sign(_end_message(len(entries), head, ts)).signature.hex()
    yield _line_encoder.encode(End(len(entries), head, ts, sig))


def _check_sig(verify_key: nacl.signing.VerifyKey, message: bytes, sig_hex: str, line: int) -> None:
    try:
        verify_key.verify(message, bytes.fromhex(sig_hex))
    except (ValueError, nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError) as exc:
        raise AuditError("signature does not verify", line=line) from exc


def verify(lines: Iterable[bytes], public_key: bytes) -> Verified:
    """Check every line of an export; return count and head, or raise AuditError for the first bad line."""
    verify_key = nacl.signing.VerifyKey(public_key)
    head, count, line_no = GENESIS, 0, 0
    ended = False
    for line_no, raw in enumerate(lines, start=1):
        if not raw.strip():
            raise AuditError("empty line", line=line_no)
        if ended:
            raise AuditError("entry after the end line", line=line_no)
        try:
            item = _line_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            raise AuditError(f"not an audit line: {exc}", line=line_no) from exc
        except (UnicodeDecodeError, RecursionError) as exc:  # not UTF-8, or nested past the stack
            raise AuditError("not an audit line: not UTF-8 or nested too deeply", line=line_no) from exc
        if isinstance(item, End):
            _check_sig(verify_key, _end_message(item.count, item.head, item.ts), item.sig, line_no)
            if item.count != count or item.head != head:
                raise AuditError(f"end line names {item.count} entries, found {count}", line=line_no)
            ended = True
            continue
        if item.i != count + 1:
            raise AuditError(f"entry {item.i} out of sequence (expected {count + 1})", line=line_no)
        if item.prev != head:
            raise AuditError("chain broken: prev does not match the previous entry's hash", line=line_no)
        if isinstance(item, AuditEntry):
            body = _body(item.i, item.ts, item.action, item.tenant, item.details, item.prev)
            if hashlib.sha256(body).hexdigest() != item.hash:
                raise AuditError("entry content does not match its hash", line=line_no)
        _check_sig(verify_key, _entry_message(item.i, item.prev, item.hash), item.sig, line_no)
        head, count = item.hash, count + 1
    if not ended:
        raise AuditError("export is truncated: no end line", line=line_no + 1)
    return Verified(count, head)
