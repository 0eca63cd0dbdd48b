"""Online enrollment: exchange a one-time token from the collector for a key binding."""

from __future__ import annotations

from pathlib import Path

import grpc

from agent.config import CollectorConfig
from agent.transport import channel_for, explain_transport
from hushmetric.errors import HushError
from hushmetric.v1 import ingest_pb2, ingest_pb2_grpc

__all__ = ["enroll"]


async def enroll(
    cfg: CollectorConfig,
    endpoint: str,
    *,
    token: str,
    agent: str,
    public_key: bytes,
    base_dir: Path | None = None,
) -> tuple[str, str]:
    """Returns (tenant, key id). Raises HushError with the collector's reason on refusal.
    ``base_dir`` (the config file's directory) resolves relative TLS file names, as the sender does."""
    async with channel_for(cfg, endpoint, base_dir=base_dir) as channel:
        stub = ingest_pb2_grpc.IngestStub(channel)  # type: ignore[no-untyped-call]  # generated stub
        try:
            reply = await stub.Enroll(
                ingest_pb2.EnrollRequest(token=token, agent=agent, public_key=public_key),
                timeout=float(cfg.timeout),
            )
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name.lower()
            details = " ".join((exc.details() or "").split())
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                details = explain_transport(details, cfg, endpoint)
            raise HushError(f"enrollment refused by {endpoint}: {code}: {details}", code=code) from exc
    return reply.tenant, reply.key_id
