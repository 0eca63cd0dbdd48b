"""A bug in the collector answers INTERNAL with a fixed text, never the exception's own words: gRPC's
default (UNKNOWN, "Unexpected <class>: <text>") would hand any caller what the text holds."""

from __future__ import annotations

import grpc
import pytest

from collector.store import Store
from hushmetric.wire import envelope_to_proto
from tests.collector.collector_testkit import Agent, Server

SECRET = "postgresql://admin:hunter2@db.internal/prod"


async def test_an_unexpected_error_is_internal_and_says_nothing_of_itself(
    server: Server,
    store: Store,
    acme: Agent,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError(f"cannot reach {SECRET}")

    # a fault no real store can be made to raise on demand: the commit path itself breaks
    monkeypatch.setattr(store, "commit_batch", broken)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await server.stub.Submit(envelope_to_proto(acme.next()))
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    details = caught.value.details() or ""
    assert "hunter2" not in details
    assert "internal error" in details
    # the operator finds it in the collector's own log, with the traceback
    assert any(r.exc_info and "hunter2" in str(r.exc_info[1]) for r in caplog.records)
    # the server keeps serving: the next call is answered normally
    monkeypatch.undo()
    reply = await server.stub.Submit(envelope_to_proto(acme.next()))
    assert reply.seq >= 1
