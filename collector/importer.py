"""Air-gap import: verify a bundle's signed manifest and file hashes, then ingest each batch exactly
as online ingest would. Idempotent: a second import of the same bundle yields duplicates only.

A bundle file is streamed: :func:`hushmetric.bundle.read_bundle` bounds it before reading and hands
the batch files over one at a time. An optional certificate member (issue 14) is recorded with the
checks of the ``SubmitCertificate`` RPC (:func:`collector.certs.submit`), after the manifest verified,
and only when its hash is the manifest's and its signer is the manifest's agent.
"""

from __future__ import annotations

import hashlib
from typing import BinaryIO

import msgspec

from collector import certs
from collector.ingest import IngestSettings, Rejected, ingest, signers, speaker
from collector.store import UNATTRIBUTED, KeyRecord, Refusal, Store
from collector.store.vocab import IMPORT_REASONS, RefusalReason
from hushmetric import bundle, certificate, dsse
from hushmetric.errors import ContractError

__all__ = ["BUNDLE_REASONS", "ImportReport", "import_bundle"]

#: Reasons beyond :data:`collector.ingest.REASONS` that only bundles have.
BUNDLE_REASONS = IMPORT_REASONS


class ImportReport(msgspec.Struct):
    accepted: int = 0
    duplicate: int = 0
    refused: dict[str, int] = msgspec.field(default_factory=dict)
    error: str | None = None  # why the whole bundle was refused, if it was
    tenant: str | None = None  # the tenant of the manifest's key, once known
    # the bundle's certificate member (issue 14): "recorded", "duplicate", or why it was refused
    certificate: str | None = None

    def refuse(self, reason: RefusalReason, count: int = 1) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + count


async def _certificate(
    store: Store, data: bytes | None, manifest: bundle.Manifest, key: KeyRecord, now: float
) -> str:
    """Record the bundle's certificate member with the checks of ``SubmitCertificate``; the outcome."""
    if data is None or manifest.certificate is None:
        return "refused: bundle_mismatch (certificate member and manifest disagree)"
    if hashlib.sha256(data).hexdigest() != manifest.certificate:
        return "refused: bundle_hash_mismatch"
    try:
        envelope = certificate.open_envelope(data)
    except ContractError as exc:
        return f"refused: malformed ({exc.message})"
    _, cert_signers = await signers(store, envelope)
    if any((k.tenant, k.agent) != (key.tenant, key.agent) for k in cert_signers):
        return "refused: bundle_mismatch (another agent's certificate)"
    outcome = await certs.submit(store, envelope, now=now)
    if isinstance(outcome, certs.CertRejected):
        return f"refused: {outcome.reason} ({outcome.message})"
    return "duplicate" if outcome.duplicate else "recorded"


async def import_bundle(  # noqa: C901  # the bundle checks in the order they must run, then each entry
    store: Store, data: bytes | BinaryIO, *, now: float, settings: IngestSettings | None = None
) -> ImportReport:
    """Import one bundle: its bytes, or a seekable binary file kept open for the call (then read
    one member at a time, never whole)."""
    report = ImportReport()

    async def refuse_all(
        reason: RefusalReason, message: str, tenant: str = UNATTRIBUTED, count: int = 1
    ) -> ImportReport:
        await store.record_refusal(Refusal(tenant, reason), now=now)
        report.refuse(reason, count)
        report.error = message
        return report

    try:
        parsed = bundle.read_bundle(data)
    except ContractError as exc:
        return await refuse_all("bundle_malformed", exc.message)
    envelope = parsed.manifest_envelope
    if envelope.payload_type != dsse.MANIFEST_PAYLOAD_TYPE:
        return await refuse_all("bundle_malformed", "manifest has the wrong payloadType")
    # Like online ingest: only a signature that verifies decides whose bundle this is (a decoy
    # signature under another tenant's public key id decides nothing, and is charged to no one).
    known, verified = await signers(store, envelope)
    if not known:
        return await refuse_all("bundle_unknown_key", "manifest is signed by an unknown key")
    if not verified:
        return await refuse_all("bundle_bad_signature", "manifest signature does not verify")
    key = speaker(verified)
    if key is None:
        return await refuse_all("bundle_mismatch", "manifest is signed by keys of different agents")
    report.tenant = key.tenant
    if key.state == "revoked":
        return await refuse_all("bundle_revoked_key", f"manifest key {key.key_id} is revoked", key.tenant)
    try:
        manifest = bundle.decode_manifest(envelope.payload)  # verified above
    except ContractError as exc:
        return await refuse_all("bundle_malformed", exc.message, key.tenant)
    if manifest.tenant != key.tenant or manifest.agent != key.agent:
        return await refuse_all("bundle_mismatch", "manifest names another tenant or agent", key.tenant)
    if len(manifest.batches) > bundle.MAX_BUNDLE_MEMBERS:
        return await refuse_all(
            "bundle_malformed", f"manifest lists more than {bundle.MAX_BUNDLE_MEMBERS} batches", key.tenant
        )
    if parsed.certificate is not None or manifest.certificate is not None:
        report.certificate = await _certificate(store, parsed.certificate, manifest, key, now)
    listed = {entry.file for entry in manifest.batches}
    for extra in sorted(set(parsed.files) - listed):
        await store.record_refusal(Refusal(key.tenant, "bundle_mismatch", key.agent), now=now)
        report.refuse("bundle_mismatch")
        report.error = f"{extra} is not listed in the manifest"
    for entry in sorted(manifest.batches, key=lambda e: e.seq):
        body = parsed.files.get(entry.file)
        if (
            body is None
            or entry.file != f"batches/{entry.seq}.dsse.json"
            or hashlib.sha256(body).hexdigest() != entry.sha256
        ):
            await store.record_refusal(
                Refusal(key.tenant, "bundle_hash_mismatch", key.agent, entry.seq), now=now
            )
            report.refuse("bundle_hash_mismatch")
            continue
        try:
            envelope = dsse.from_json(body, max_bytes=bundle.MAX_BATCH_FILE_BYTES)
        except ContractError:
            await store.record_refusal(Refusal(key.tenant, "malformed", key.agent, entry.seq), now=now)
            report.refuse("malformed")
            continue
        _, batch_signers = await signers(store, envelope)
        if any((k.tenant, k.agent) != (key.tenant, key.agent) for k in batch_signers):
            # A bundle carries one agent's batches. A genuine batch of another agent (or tenant)
            # smuggled into it would otherwise be stored under that other agent on this import.
            # Only verified signatures count: an unverifiable one under a foreign key id is ignored.
            await store.record_refusal(Refusal(key.tenant, "bundle_mismatch", key.agent, entry.seq), now=now)
            report.refuse("bundle_mismatch")
            continue
        outcome = await ingest(store, envelope, now=now, settings=settings)
        if isinstance(outcome, Rejected):
            report.refuse(outcome.reason)
        elif outcome.duplicate:
            report.duplicate += 1
        else:
            report.accepted += 1
    return report
