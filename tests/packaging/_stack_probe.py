"""Exercise what the daemons rely on at run time; print one JSON object ``{step: "ok" | error}``.

Run by test_systemd.py twice, plainly and under the units' memory and system call restrictions, so a
directive that breaks Python, gRPC, OpenDP, PyNaCl, uvloop or SQLite shows up as a step that differs.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib
import json
import pkgutil
import sqlite3
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path


def imports() -> str:
    names, failed = [], []
    for top in ("hushmetric", "agent", "collector"):
        pkg = importlib.import_module(top)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{top}."):
            if info.name.rsplit(".", 1)[-1] in ("__main__", "demo"):
                continue  # entry points that run on import
            try:
                importlib.import_module(info.name)
            except Exception as exc:  # compared between runs, not judged here
                failed.append(f"{info.name}: {type(exc).__name__}")
            else:
                names.append(info.name)
    return f"ok ({len(names)} modules)" + (f"; failed: {', '.join(failed)}" if failed else "")


def opendp() -> str:
    import opendp.prelude as dp

    dp.enable_features("contrib")
    space = dp.vector_domain(dp.atom_domain(T=int)), dp.l2_distance(T=int)
    gaussian = dp.m.make_gaussian(*space, scale=2.0)
    laplace = dp.m.make_laplace(dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int), scale=2.0)
    assert len(gaussian([1, 2, 3])) == 3
    assert len(laplace([4, 5])) == 2
    assert gaussian.map(1) > 0  # type: ignore[no-untyped-call]  # opendp's map is untyped
    return "ok"


def nacl() -> str:
    from nacl.signing import SigningKey

    key = SigningKey.generate()
    key.verify_key.verify(key.sign(b"batch"))
    return "ok"


def ffi_callback() -> str:
    callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1)
    assert callback(41) == 42
    return "ok"


def sqlite_wal() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "s.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (x)")
        conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (100,)
        conn.close()
    return "ok"


async def _grpc_health() -> str:
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(grace=1)
    return "ok"


def grpc_asyncio() -> str:
    return asyncio.run(_grpc_health())


def grpc_uvloop() -> str:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_grpc_health())


STEPS: dict[str, Callable[[], str]] = {
    "imports": imports,
    "opendp": opendp,
    "nacl": nacl,
    "ffi_callback": ffi_callback,
    "sqlite_wal": sqlite_wal,
    "grpc_asyncio": grpc_asyncio,
    "grpc_uvloop": grpc_uvloop,
}


def main() -> None:
    results: dict[str, str] = {}
    for name, step in STEPS.items():
        try:
            results[name] = step()
        except BaseException as exc:  # every failure is a result to compare
            results[name] = "".join(traceback.format_exception_only(exc)).strip()[-500:]
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
