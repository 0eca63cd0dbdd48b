"""The one seam between the dashboard and agent certificates (issue 14 part 3, built on another branch).

:func:`certificate_views` is the only place the HTTP layer asks about certificates. Until the store
has ``Store.agent_certificates(tenant) -> list[AgentCertificate]`` and
``collector.report.badge.certificate_badge(cert | None, now) -> str`` exists, it answers "no
certificate" for every agent: the agents JSON carries ``"certificate": null`` and the dashboard a
grey "no certificate" badge. Wiring: read the tenant's certificates once, map them by agent, and
return ``CertView(doc, certificate_badge(cert, now))`` per agent (``doc``: agent, profile, status
"valid"/"expired"/"contradicted"/"superseded", expiry).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from collector.report.svg import esc
from collector.store import Store

__all__ = ["CertView", "certificate_views", "no_certificate_badge"]


class CertView(msgspec.Struct, frozen=True):
    doc: dict[str, object] | None  # the agents JSON's "certificate" field
    badge: str  # inline SVG


def no_certificate_badge() -> str:
    label = "no certificate"
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" class="badge" role="img" width="110" height="20" '
        f'viewBox="0 0 110 20" aria-label="{esc(label)}"><title>{esc(label)}</title>'
        '<rect width="110" height="20" rx="3" fill="#9e9e9e"/>'
        f'<text x="55" y="14" text-anchor="middle" fill="#fff" font-size="11">{esc(label)}</text></svg>'
    )


async def certificate_views(
    store: Store, tenant: str, agents: Iterable[str], now: float
) -> dict[str, CertView]:
    """Per agent of ``tenant``: its certificate as JSON (None: none recorded) and its badge."""
    del store, tenant, now  # read once certificates are stored (see the module docstring)
    return {agent: CertView(None, no_certificate_badge()) for agent in agents}
