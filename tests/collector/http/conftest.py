"""The HTTP API under test: a real aiohttp server on a free loopback port over the parametrised store,
real tokens, and batches ingested through the real gRPC server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest

from collector.http.app import HttpLimits, http_server
from collector.store import ApiToken, Store
from collector.store.tokens import new_token
from hushmetric.batch import Noise, Row
from tests.collector.collector_testkit import Agent, Clock, Server

STAGES = ("signup", "activated", "paid")


@dataclass
class FunnelAgent(Agent):
    """An agent whose batches release the funnel stages (and one dimensioned metric)."""

    values: tuple[float, ...] = (100.0, 60.0, 20.0)

    def rows(self, n: int) -> list[Row]:
        out = [
            Row(s, "count", {}, v, Noise("gaussian", 1.5)) for s, v in zip(STAGES, self.values, strict=True)
        ]
        return [*out, Row("latency", "count", {"region": "eu"}, 7.0, Noise("gaussian", 1.5))]


@dataclass
class Api:
    url: str
    session: aiohttp.ClientSession
    tokens: dict[str, str] = field(default_factory=dict)  # name -> token

    async def get(self, path: str, token: str | None = None, **kw: object) -> tuple[int, object]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.get(self.url + path.lstrip("/"), headers=headers, **kw) as r:  # type: ignore[arg-type]
            body = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, body


async def make_token(store: Store, clock: Clock, role: str, tenant: str | None) -> str:
    token_id, secret, digest = new_token()
    token = ApiToken(token_id, role, tenant, "test", clock(), None, None, digest)  # type: ignore[arg-type]
    await store.create_api_token(token, now=clock())
    return secret


@pytest.fixture
async def data(store: Store, server: Server, clock: Clock) -> dict[str, Agent]:
    """Tenants ``acme`` (agent a1, two funnel batches) and ``beta`` (agent b1, one batch)."""
    agents: dict[str, Agent] = {}
    for tenant, name, batches in (("acme", "a1", 2), ("beta", "b1", 1)):
        await store.create_tenant(tenant, now=clock())
        agent = FunnelAgent(tenant, name)
        await store.add_key(tenant, name, agent.public_key, now=clock())
        for _ in range(batches):
            await server.submit(agent.next())
            agent.created += 60
        agents[tenant] = agent
    return agents


@pytest.fixture
async def api(store: Store, clock: Clock, data: dict[str, Agent]) -> AsyncIterator[Api]:
    async with (
        http_server(store, "127.0.0.1:0", clock=clock, limits=HttpLimits(max_connections=8)) as url,
        aiohttp.ClientSession() as session,
    ):
        a = Api(url, session)
        a.tokens["operator"] = await make_token(store, clock, "operator", None)
        a.tokens["acme"] = await make_token(store, clock, "viewer", "acme")
        a.tokens["beta"] = await make_token(store, clock, "viewer", "beta")
        yield a
