"""Air-gap export: move the outbox's batches into a signed bundle file (``hush-agent export``).

The whole export is one ``BEGIN IMMEDIATE`` transaction on the state database: read the waiting
batches, write the bundle (temporary file, fsync, link into place, fsync the directory), record each
batch in the egress ledger as ``bundle:<file name>`` and remove it from the outbox, commit. Holding
the write lock keeps the sender from acknowledging a batch that is being exported.

If the process dies after the file is in place but before the commit, the batches are still in the
outbox and the next export carries them again; the collector's import is idempotent, so this costs
a duplicate, never a loss. An existing file is never overwritten (it may be a bundle not yet carried
across). Quarantined batches are not exported.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from pathlib import Path

import msgspec
import nacl.signing

from agent import egress, outbox
from agent.state import transaction
from hushmetric.bundle import MAX_BUNDLE_MEMBERS, write_bundle
from hushmetric.certificate import open_envelope, statement_problem, verify_certificate
from hushmetric.errors import HushError
from hushmetric.timefmt import format_rfc3339

__all__ = ["ExportError", "ExportReport", "export_bundle"]


class ExportError(HushError):
    """An export that cannot go ahead. ``code``: ``egress_stopped``, ``exists``, ``io`` or ``certificate``."""

    code = "export"


class ExportReport(msgspec.Struct, frozen=True):
    path: str | None  # the bundle written; None when the outbox was empty
    batches: int
    bytes: int  # size of the bundle file
    rows: int
    first_seq: int | None
    last_seq: int | None
    remaining: int  # batches left in the outbox (more than one bundle holds)
    certificate: bool = False  # the bundle carries the agent's certificate (issue 14)

    @property
    def message(self) -> str:
        if self.path is None:
            return "outbox is empty: nothing to export, no bundle written"
        more = f"; {self.remaining} batches remain, export again" if self.remaining else ""
        cert = ", with the agent certificate" if self.certificate else ""
        if not self.batches:
            return f"exported the agent certificate only to {self.path}"
        return (
            f"exported {self.batches} batches (seq {self.first_seq}..{self.last_seq}, {self.rows} rows)"
            f"{cert} to {self.path}{more}"
        )


def _write_new_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0644) atomically; refuse if ``path`` exists."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, 0o644)  # umask may have narrowed it; the bundle is not secret
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)  # unlike rename, fails if the target exists
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def export_bundle(
    conn: sqlite3.Connection,
    key: nacl.signing.SigningKey,
    out_path: Path,
    *,
    tenant: str,
    agent: str,
    at: float,
    limit: int = MAX_BUNDLE_MEMBERS,
    certificate: bytes | None = None,
) -> ExportReport:
    """Move up to ``limit`` waiting batches into the bundle ``out_path``. Owns its transaction.

    ``certificate`` (a ``hush-agent certify --out`` file) travels as the bundle's certificate
    member; it must be this agent's, signed with ``key``, and still valid at ``at``.
    Raises ExportError when egress is stopped, when ``out_path`` exists or cannot be written.
    An empty outbox (and no certificate) writes nothing and returns a report with ``path=None``.
    """
    if certificate is not None:
        _check_certificate(certificate, key, agent, at)
    with transaction(conn):
        switch = egress.state(conn)
        if switch.stopped:
            raise ExportError(
                f"egress is stopped ({switch.reason}); nothing leaves until `hush-agent egress resume`",
                code="egress_stopped",
            )
        batches = outbox.pending(conn, limit)
        if not batches and certificate is None:
            return ExportReport(None, 0, 0, 0, None, None, 0)
        if out_path.exists():
            raise ExportError(f"{out_path} exists; choose a new file name", code="exists")
        data = write_bundle(
            [(b.seq, b.envelope) for b in batches],
            tenant=tenant,
            agent=agent,
            created=format_rfc3339(at),
            key=key,
            certificate=certificate,
        )
        try:
            _write_new_file(out_path, data)
        except FileExistsError as exc:
            raise ExportError(f"{out_path} exists; choose a new file name", code="exists") from exc
        except OSError as exc:
            raise ExportError(f"cannot write {out_path}: {exc.strerror or exc}", code="io") from exc
        destination = f"bundle:{out_path.name}"
        try:
            for b in batches:
                egress.record(
                    conn,
                    destination=destination,
                    seq=b.seq,
                    digest=b.digest,
                    nbytes=len(b.payload),
                    rows=b.rows,
                    at=at,
                )
            if certificate is not None:
                egress.record_certificate(
                    conn,
                    destination=destination,
                    digest=hashlib.sha256(certificate).hexdigest(),
                    nbytes=len(certificate),
                    at=at,
                )
            outbox.remove(conn, [b.seq for b in batches])
        except BaseException:
            out_path.unlink(missing_ok=True)  # the transaction rolls back: no bundle without a record
            raise
        remaining = outbox.depth(conn).count
    return ExportReport(
        str(out_path),
        len(batches),
        len(data),
        sum(b.rows for b in batches),
        batches[0].seq if batches else None,
        batches[-1].seq if batches else None,
        remaining,
        certificate is not None,
    )


def _check_certificate(data: bytes, key: nacl.signing.SigningKey, agent: str, at: float) -> None:
    """Refuse, before anything is written, a certificate the collector would refuse anyway."""
    try:
        cert = verify_certificate(open_envelope(data), bytes(key.verify_key))
    except HushError as exc:
        raise ExportError(f"not this agent's certificate: {exc.message}", code="certificate") from exc
    problem = statement_problem(cert, at)
    if cert.agent != agent:
        problem = ("agent_mismatch", f"it certifies agent {cert.agent!r}")
    if problem is not None:
        raise ExportError(f"certificate not exported: {problem[1]}", code="certificate")
