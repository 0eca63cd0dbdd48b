"""The certificate badge (issue 14): a small self-contained SVG with the agent's profile and expiry.

Pure: a recorded certificate (or None) and the time in, SVG text out, no external fonts, images or
scripts (it is inlined in the HTML report and served by the dashboard under ``default-src 'self'``).
Each state has its own colour *and* its own words, so it reads without colour too:

=============  =========  =====================================================
valid          green      ``certified | <profile> · until <day>``
expired        amber      ``certified | <profile> · expired <day>``
contradicted   red        ``certified | <profile> · contradicted``
superseded     grey       ``certified | <profile> · superseded``
none           grey       ``certified | no certificate``
=============  =========  =====================================================
"""

from __future__ import annotations

from collector.report.svg import esc
from collector.store.records import AgentCertificate
from hushmetric.timefmt import format_rfc3339

__all__ = ["BADGE_COLOURS", "badge_text", "certificate_badge"]

BADGE_COLOURS = {
    "valid": "#1a7f37",
    "expired": "#9a6700",
    "contradicted": "#cf222e",
    "superseded": "#6e7781",
    "none": "#6e7781",
}
_LABEL = "certified"
_CHAR = 6.2  # px per character of 11px sans-serif (about 5.8 measured), so text never overflows
_PAD = 10


def badge_text(cert: AgentCertificate | None, now: float) -> tuple[str, str]:
    """(state, right-hand text) of the badge for ``cert`` at ``now``."""
    if cert is None:
        return "none", "no certificate"
    day = format_rfc3339(cert.expires)[:10]
    status = "expired" if cert.status == "valid" and now >= cert.expires else cert.status
    if status == "valid":
        left = (cert.expires - now) / 86400
        soon = f" (in {max(1, int(left))}d)" if left < 7 else ""
        return status, f"{cert.profile} · until {day}{soon}"
    if status == "expired":
        return status, f"{cert.profile} · expired {day}"
    return status, f"{cert.profile} · {status}"


def certificate_badge(cert: AgentCertificate | None, now: float) -> str:
    """The badge as an inline SVG element (with a title and aria-label naming agent and reason)."""
    state, text = badge_text(cert, now)
    left_w = round(len(_LABEL) * _CHAR + 2 * _PAD)
    right_w = round(len(text) * _CHAR + 2 * _PAD)
    width = left_w + right_w
    who = f"agent {cert.agent} (tenant {cert.tenant}): " if cert is not None else ""
    why = f" — {cert.reason}" if cert is not None and cert.reason else ""
    title = f"{who}{_LABEL} {text}{why}"
    colour = BADGE_COLOURS[state]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="badge badge-{state}" width="{width}" height="20" '
        f'viewBox="0 0 {width} 20" role="img" aria-label="{esc(title)}" data-status="{state}">'
        f"<title>{esc(title)}</title>"
        f'<rect width="{left_w}" height="20" rx="3" fill="#555"/>'
        f'<rect x="{left_w}" width="{right_w}" height="20" rx="3" fill="{colour}"/>'
        f'<rect x="{left_w - 3}" width="6" height="20" fill="{colour}"/>'
        f'<g fill="#fff" font-family="DejaVu Sans,Verdana,Geneva,sans-serif" font-size="11">'
        f'<text x="{_PAD}" y="14">{esc(_LABEL)}</text>'
        f'<text x="{left_w + _PAD}" y="14">{esc(text)}</text>'
        "</g></svg>"
    )
