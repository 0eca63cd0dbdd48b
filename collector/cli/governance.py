"""``hush-collector policy …``: the policy digests a tenant approved, and its central privacy cap.

``approve``/``revoke`` a digest (``hush-agent validate`` prints it), ``list`` approvals, ``cap`` the ρ
a tenant's batches may declare per UTC day (per agent or for the tenant), ``spend`` shows what was
admitted against it. Every change is audited by the store in the same transaction.
"""

from __future__ import annotations

import math

import msgspec

from collector.cli.kit import Context, check_day, check_note, json_line, open_for
from collector.cli.tables import table
from collector.errors import NotFound
from collector.store import PolicyRecord, PrivacyCap, SpendDay, day_of
from collector.store.rules import valid_digest
from collector.store.vocab import CapScope
from hushmetric.errors import ConfigError
from hushmetric.exitcodes import ExitCode
from hushmetric.timefmt import format_rfc3339

__all__ = ["SpendRow", "policy_cmd", "policy_doc", "spend_rows"]


def _digest(text: str) -> str:
    if not valid_digest(text):
        raise ConfigError(
            "expected the policy digest `hush-agent validate` prints (64 lowercase hex)", key="--digest"
        )
    return text


def _rho(text: str) -> float | None:
    if text.strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError as exc:
        raise ConfigError(f"expected a number or 'none', got {text!r}", key="--rho-per-day") from exc
    if not (math.isfinite(value) and value > 0):
        raise ConfigError("must be a positive finite rho", key="--rho-per-day")
    return value


def policy_doc(p: PolicyRecord) -> dict[str, object]:
    return {
        "tenant": p.tenant,
        "digest": p.digest,
        "state": p.state,
        "note": p.note,
        "approved": format_rfc3339(p.approved),
        "revoked": format_rfc3339(p.revoked) if p.revoked is not None else None,
    }


class SpendRow(msgspec.Struct, frozen=True):
    """ρ admitted for an agent (None: the tenant's agents together) on a day, and the cap on it."""

    day: str
    agent: str | None
    rho: float
    cap: float | None


def spend_rows(spend: list[SpendDay], cap: PrivacyCap | None) -> list[SpendRow]:
    """Spent vs cap per agent and for the tenant, per day; the cap shows on the rows of its scope."""
    out: list[SpendRow] = []
    for s in spend:
        scope: CapScope = "tenant" if s.agent is None else "agent"
        limit = cap.rho_per_day if cap is not None and cap.per == scope else None
        out.append(SpendRow(s.day, s.agent, s.rho, limit))
    return out


async def policy_cmd(ctx: Context) -> int:  # one branch per subcommand
    a = ctx.args
    note = check_note(a.note) if a.action == "approve" else ""  # refused before the store is opened
    async with open_for(ctx, signed=a.action in ("approve", "revoke", "cap")) as store:
        if a.action == "approve":
            p = await store.approve_policy(a.tenant, _digest(a.digest), note=note, now=ctx.clock())
            ctx.say(f"policy {p.digest[:16]} approved for tenant {p.tenant}")
        elif a.action == "revoke":
            p = await store.revoke_policy(a.tenant, _digest(a.digest), now=ctx.clock())
            ctx.say(f"policy {p.digest[:16]} revoked for tenant {p.tenant}; new batches under it are refused")
        elif a.action == "list":
            policies = await store.list_policies(a.tenant)
            if a.json:
                json_line(ctx, [policy_doc(p) for p in policies])
            else:
                rows = [
                    [p.tenant, p.digest, p.state, format_rfc3339(p.revoked or p.approved), p.note]
                    for p in policies
                ]
                ctx.out.write(table(["tenant", "digest", "state", "since", "note"], rows))
        elif a.action == "cap":
            rho = _rho(a.rho_per_day)
            per: CapScope = a.per
            cap = None if rho is None else PrivacyCap(a.tenant, rho, per)
            await store.set_privacy_cap(a.tenant, cap, now=ctx.clock())
            if cap is None:
                ctx.say(f"tenant {a.tenant}: no privacy cap")
            else:
                ctx.say(f"tenant {a.tenant}: rho per day at most {cap.rho_per_day} per {cap.per}")
        else:  # spend
            day = check_day(a.day, "--day") or day_of(ctx.clock())
            if await store.get_tenant(a.tenant) is None:
                raise NotFound("tenant", a.tenant)
            cap = await store.get_privacy_cap(a.tenant)
            spent = spend_rows(await store.privacy_spend(a.tenant, day, day), cap)
            if a.json:
                doc = {"tenant": a.tenant, "day": day, "cap": cap, "spend": spent}
                json_line(ctx, msgspec.to_builtins(doc))
            else:
                cells = [
                    [r.day, r.agent or "(tenant)", f"{r.rho:.6g}", "-" if r.cap is None else f"{r.cap:g}"]
                    for r in spent
                ]
                ctx.out.write(table(["day", "agent", "rho", "cap"], cells))
    return ExitCode.OK
