"""The one seam between the dashboard and agent certificates (issue 14 part 3).

:func:`certificate_views` is the only place the HTTP layer asks about certificates: it reads the
tenant's certificates once (their status computed by the store when read), keeps each agent's
current one (:func:`collector.certs.current`) and renders its badge; an agent without one gets
``"certificate": null`` in the agents JSON and the grey "no certificate" badge.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from collector.certs import certificate_doc, current
from collector.report.badge import certificate_badge
from collector.store import Store

__all__ = ["CertView", "certificate_views"]


class CertView(msgspec.Struct, frozen=True):
    doc: dict[str, object] | None  # the agents JSON's "certificate" field
    badge: str  # inline SVG


async def certificate_views(
    store: Store, tenant: str, agents: Iterable[str], now: float
) -> dict[str, CertView]:
    """Per agent of ``tenant``: its current certificate as JSON (None: none recorded) and its badge."""
    found = current(await store.agent_certificates(tenant, now=now))
    views: dict[str, CertView] = {}
    for agent in agents:
        cert = found.get((tenant, agent))
        views[agent] = CertView(certificate_doc(cert) if cert else None, certificate_badge(cert, now))
    return views
