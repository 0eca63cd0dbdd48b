"""The output commands of ``hush-collector``: ``export`` (CSV/Parquet for analysts), ``push`` (a range to
Prometheus remote-write or an OTLP endpoint, on demand), and the pushers ``serve`` runs beside ingest."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from collector.cli.kit import Context, check_bound, open_for
from collector.errors import NotFound
from collector.outputs import files
from collector.outputs.push import Deliver, Pusher, push_range
from collector.outputs.remote_write import RefusedError, RetryableError
from collector.report.levels import level_view
from collector.store import Store
from hushmetric.errors import ConfigError
from hushmetric.exitcodes import ExitCode

if TYPE_CHECKING:  # gRPC loads only for an OTLP output
    import grpc

__all__ = ["OTLP", "REMOTE_WRITE", "export_cmd", "push_cmd", "pushers"]

REMOTE_WRITE = "remote-write"  # cursor names in output_cursors
OTLP = "otlp"


async def export_cmd(ctx: Context) -> int:
    a = ctx.args
    if a.format == "parquet" and not a.out:
        raise ConfigError("--format parquet writes a file: name it with --out", key="--out")
    since, until = check_bound(a.since, "--from"), check_bound(a.until, "--until")
    async with open_for(ctx, signed=False) as store:
        if await store.get_tenant(a.tenant) is None:
            raise NotFound("tenant", a.tenant)
        rows = await store.released_rows(a.tenant, since, until)
    if a.consistent:
        rows = level_view(rows).rows  # what the KPI and funnel reports use (issue 15)
    if not a.out:
        ctx.out.write(files.to_csv(rows))
        return ExitCode.OK
    try:
        await asyncio.to_thread(files.write, rows, a.format, Path(a.out))
    except OSError as exc:
        raise ConfigError(f"cannot write export: {exc.strerror or exc}", key="--out") from exc
    print(f"wrote {len(rows)} released rows ({a.format}) to {a.out}", file=ctx.err)
    return ExitCode.OK


def _check_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ConfigError("expected an http:// or https:// URL (…/api/v1/write)", key="--remote-write")
    return url


def _otlp_channel(target: str) -> grpc.aio.Channel:
    import grpc  # the OTLP output only

    host, sep, port = target.rpartition(":")
    if not (sep and host and port.isdigit()):
        raise ConfigError("expected HOST:PORT", key="--otlp-export")
    return grpc.aio.insecure_channel(target)


def _remote_write(url: str) -> Deliver:
    from collector.outputs.remote_write import compress, post

    compress(b"")  # fail at start-up, not at the first batch, when snappy is not installed
    return lambda samples: post(url, samples)


def _otlp(channel: grpc.aio.Channel) -> Deliver:
    from collector.outputs.otlp import export

    return lambda samples: export(channel, samples)


async def push_cmd(ctx: Context) -> int:
    a = ctx.args
    if bool(a.remote_write) == bool(a.otlp_export):
        raise ConfigError(
            "name one output: --remote-write URL or --otlp-export HOST:PORT", key="--remote-write"
        )
    since, until = check_bound(a.since, "--from"), check_bound(a.until, "--until")
    channel = _otlp_channel(a.otlp_export) if a.otlp_export else None
    deliver = _otlp(channel) if channel is not None else _remote_write(_check_url(a.remote_write))
    try:
        async with open_for(ctx, signed=False) as store:
            if await store.get_tenant(a.tenant) is None:
                raise NotFound("tenant", a.tenant)
            try:
                n = await push_range(store, a.tenant, since, until, deliver)
            except (RetryableError, RefusedError) as exc:
                print(f"hush-collector: push failed: {exc}", file=ctx.err)
                return ExitCode.FAILED
    finally:
        if channel is not None:
            await channel.close()
    ctx.say(str(n))
    print(f"hush-collector: pushed {n} released rows", file=ctx.err)
    return ExitCode.OK


@contextlib.asynccontextmanager
async def pushers(
    store: Store, *, remote_write: str | None, otlp_export: str | None, err: TextIO
) -> AsyncIterator[list[Pusher]]:
    """Run one :class:`Pusher` per configured output until the block ends (then stop them)."""
    outputs: list[Pusher] = []
    channel = _otlp_channel(otlp_export) if otlp_export else None
    if remote_write:
        outputs.append(Pusher(store, REMOTE_WRITE, _remote_write(_check_url(remote_write))))
    if channel is not None:
        outputs.append(Pusher(store, OTLP, _otlp(channel)))
    done = asyncio.Event()
    tasks = [asyncio.create_task(p.run(done), name=f"output-{p.name}") for p in outputs]
    for p in outputs:
        print(f"hush-collector: pushing released rows to {p.name}", file=err, flush=True)
    try:
        yield outputs
    finally:
        done.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        if channel is not None:
            await channel.close()
