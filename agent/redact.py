"""The redaction stage: deny-by-default attribute filtering and PII detection on every string.

Rules, in order, for one event:

1. **Name and keys.** The event name and every attribute key are scanned. With
   ``redaction.drop_event_on_name_finding`` (the default) a finding there drops the whole event
   (``redact`` returns None; counted as ``dropped_event`` plus the detector); otherwise a finding in
   the name is rewritten like one in a value.
2. **Deny by default.** A key not in ``policy.attrs`` is dropped (``dropped_key``).
3. **Types.** ``label``/``text`` rules take strings, ``number`` takes int/float, ``bool`` takes
   bool; anything else is dropped (``dropped_type``). A rule with ``generalize`` takes a string or a
   number and replaces the whole value: ``hour`` floors a timestamp (epoch seconds or milliseconds,
   or ISO 8601) to the hour, ``ip_prefix`` turns an address into its /24 (IPv4) or /48 (IPv6)
   network; a value that does not parse is dropped (``dropped_value``).
4. **Length.** A string longer than the rule's ``max_length`` is scanned *before* it is cut, so every
   finding is seen whole ("card 4539 1488 0343 6467" cut after "1488" would otherwise keep two
   groups no detector recognises). The scan covers at most ``4 × max_length + 1024`` characters (the
   rest is dropped unseen; only a finding longer than 3 × max_length + 1024, such as a PEM block,
   could start before the cut and end past that cap). The cut then moves back to before a finding
   it would split, and a partial word at the cut is removed; findings before the cut are replaced.
   When replacements make the result longer than ``max_length``, it is cut again, back to before a
   replacement that would be split (``truncated``).
5. **Detectors.** Every kept string is scanned; each finding is handled by
   ``redaction.detectors[name]`` or ``redaction.default``:

   - ``drop``: the finding's text is removed; the rest of the value stays;
   - ``mask``: replaced by ``[name]``, e.g. ``[email]``;
   - ``hash``: replaced by ``name:`` + 16 hex digits of HMAC-SHA-256 keyed by the site secret over
     the normalised finding — a stable pseudonym (same email, any case → same pseudonym; another
     site secret → another pseudonym);
   - ``generalize``: IPv4 → /24, IPv6 → /48; detectors without a meaningful coarse form are masked.

   The policy's own detectors (``[[redaction.custom]]``, see ``agent/detectors/custom.py``) run
   first, with their own ``action`` (or ``redaction.default``), and are counted under their names.

6. **Unit.** ``unit`` never leaves the agent except as a grouping key, but when it holds a finding
   (an email, a phone…) it is replaced by ``unit:`` + its HMAC pseudonym (``pseudonymized_unit``),
   so raw ids never reach disk. Grouping is unchanged: the pseudonym is stable.

Counts per detector (and the ``dropped_*``/``truncated``/``pseudonymized_unit`` counters) accumulate
until ``take_counts()``. Raw values are never logged or kept. Names, keys, ``label`` values and units
found *clean* are remembered in bounded in-memory sets so repeats skip the scan; by construction
those sets hold no finding. Free ``text`` is not remembered (it rarely repeats).

Known gaps (each a deliberate trade against false positives, see ``agent/detectors``):

- a bare run of digits is a phone only with a ``+``, a trunk ``0`` (9–11 digits) or a phone word
  just before it ("call", "tel", "mobile"…): "5551234567" alone looks like epoch seconds or an id;
  without ``+``, ``(`` or a trunk ``0``, a number needs three or more groups of at most four digits
  ("555 123 4567"; "200 1048576" is an access log's status and size), and digits inside a column of
  numbers, right after a time's colon or after a compact date ("081109 203615") are never a phone;
- nine digits without separators are an SSN only after a context word ("SSN is", "tin=", "taxpayer
  id:"…); a bare 12–19 digit run right after an id, time or size word ("txn", "order_id=",
  "cluster_timestamp:") is taken for that id, not a card, unless a card word comes just before it,
  and a card written with separators must be in its printed groups (4-4-4-4, 4-6-5, 4-6-4);
- lower-case hex tokens (hashes, trace ids) are never flagged as secrets, and a mixed-case token
  needs ≥ 20 characters and near-uniform characters; short or dictionary-like passwords are caught
  only after a key such as ``password=``, ``secret_key:`` or ``token:``; a token whose casing splits
  into word-like chunks ("AppleThunderboltNHIType2") is an identifier — a random token passes for
  one 0.4 % of the time at 20 characters, 0.1 % at 24; a value printed as an object after such a key
  ("token=Token{a64f992 …}") is not taken for the secret itself;
- a dotted quad glued to a name by ``-`` or ``~`` ("openssl-1.0.2.15", "~amd64~~6.1.1.1") or after
  Gecko's ``rv:`` is a version, and after ``word/`` only when it ends in ``.0`` ("Chrome/120.0.0.0";
  "namenode/10.1.2.3" is Java's host/address); after a spaced word such as "version" or "release" it
  is still taken for an address (privacy first: such a line is masked by mistake);
- obfuscated addresses ("alice at example dot com"), non-ASCII e-mail, national ids other than the
  US SSN and taxpayer id (TIN/ITIN), and postal addresses or names are not detected;
- a password containing ``/`` or ``@`` inside a URL's user-info is not recognised as one;
- ``user@host.log``, ``getty@tty1.service`` and other names ending in a file or unit suffix that is
  not a top-level domain (log, txt, json, service, …) are not taken for e-mail addresses;
- a 13-digit number (only old Visa cards have 13 digits) right after "sku", "ean", "gtin", "upc",
  "barcode", "isbn" or "article" is taken for an EAN-13 barcode, not a card;
- overlapping findings merge into one, named after the detector with the highest priority; its
  ``generalize`` then applies to the merged text, which falls back to a mask when it no longer parses.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

from agent.detectors import DETECTOR_NAMES, Backend, Finding, Scanner, generalize, normalize
from agent.detectors.custom import CustomScanner, compile_detector
from agent.model import AttrValue, Event
from agent.policy import AttrRule, Policy, Redaction

__all__ = ["COUNTERS", "Redactor", "scanner_for"]

# Counters reported next to the per-detector counts.
COUNTERS = (
    "dropped_event",
    "dropped_key",
    "dropped_type",
    "dropped_value",
    "truncated",
    "pseudonymized_unit",
)

_HASH_HEX = 16  # 64-bit pseudonyms: collisions stay negligible for the cardinalities we aggregate
_CLEAN_CACHE = 1 << 17
_KEY_PLANS = 1 << 12  # attribute keys with a plan, at most (keys are few; a flood of them is not)
_DROP: Final = (-1, False)  # the plan of a key no rule allows, known clean
# A value longer than its rule's max_length is scanned over at most this many characters before it
# is cut: enough context for any finding that starts before the cut, and still a bounded cost.
_SCAN_FACTOR = 4
_SCAN_SLACK = 1024


class Redactor:
    """Applies a policy's redaction rules to events. Not thread-safe: one per pipeline task."""

    def __init__(
        self,
        policy: Policy,
        secret: bytes,
        *,
        scanner: Scanner | CustomScanner | None = None,
        backend: Backend = "python",
    ) -> None:
        """``backend`` picks the built-in scanner's backend (``limits.scanner``) unless ``scanner``
        is given."""
        if len(secret) < 16:
            raise ValueError("the site secret must be at least 16 bytes")
        red = policy.redaction
        self._scanner = scanner or scanner_for(red, backend)
        self._scan = self._scanner.scan
        self._actions = {name: red.detectors.get(name, red.default) for name in self._scanner.names}
        self._actions.update({rule.name: rule.action or red.default for rule in red.custom})
        self._default = red.default
        self._drop_on_name = red.drop_event_on_name_finding
        self._rules = dict(policy.attrs)
        # key -> (max_length, remember clean values) for rules that keep strings as they are once
        # scanned. Labels repeat, so clean ones are remembered; free text rarely does, so it is not.
        # Per-key plans, looked up once per attribute: (max_length, remember) for rules that keep
        # strings as they are once scanned, or _DROP for a key no rule allows that is known clean
        # (so a dropped key costs one lookup, not three). Keys are added as they are seen, up to
        # _KEY_PLANS: a key found clean stays clean, so a plan never goes stale.
        self._fast: dict[str, tuple[int, bool]] = {
            k: (r.max_length, r.kind == "label")
            for k, r in self._rules.items()
            if r.kind in ("label", "text") and r.generalize is None
        }
        self._mac = hmac.new(secret, digestmod=hashlib.sha256)
        self._clean: set[str] = set()  # names, keys and label values found clean (no raw PII by design)
        self._clean_units: set[str] = set()
        self._counts: dict[str, int] = {}

    # --- public API -----------------------------------------------------------------------------------

    def redact(self, event: Event) -> Event | None:
        return self._event(event)

    def redact_many(self, events: Sequence[Event]) -> list[Event]:
        one = self._event
        out: list[Event] = []
        append = out.append
        for ev in events:
            r = one(ev)
            if r is not None:
                append(r)
        return out

    def redact_text(self, text: str) -> str:
        """One free-text value, handled as an allowed ``text`` attribute without a length limit."""
        found = self._scan(text)
        if not found:
            return text
        self._tally(found)
        return self._rewrite(text, found)

    def take_counts(self) -> dict[str, int]:
        counts, self._counts = self._counts, {}
        return counts

    def pseudonym(self, detector: str, raw: str) -> str:
        """``detector:`` + truncated HMAC-SHA-256 of the normalised value under the site secret."""
        mac = self._mac.copy()
        mac.update(detector.encode() + b"\0" + normalize(detector, raw).encode("utf-8", "surrogatepass"))
        return f"{detector}:{mac.hexdigest()[:_HASH_HEX]}"

    # --- internals ------------------------------------------------------------------------------------

    def _count(self, key: str, n: int = 1) -> None:
        self._counts[key] = self._counts.get(key, 0) + n

    def _findings(self, text: str) -> list[Finding]:
        clean = self._clean
        if text in clean:
            return []
        found = self._scan(text)
        if not found:
            if len(clean) >= _CLEAN_CACHE:
                clean.clear()
            clean.add(text)
            return found
        self._tally(found)
        return found

    def _tally(self, found: list[Finding]) -> None:
        counts = self._counts
        for f in found:
            counts[f.detector] = counts.get(f.detector, 0) + 1

    def _event(self, event: Event) -> Event | None:  # noqa: C901 - the per-event hot loop, kept inline
        clean = self._clean
        changed = False
        name = event.name
        if name not in clean:
            found = self._findings(name)
            if found:
                if self._drop_on_name:
                    self._count("dropped_event")
                    return None
                name = self._rewrite(name, found)
                changed = True
        fast = self._fast
        scan = self._scan
        attrs: dict[str, AttrValue] = {}
        dropped = 0
        for key, value in event.attrs.items():
            plain = fast.get(key)
            if plain is _DROP:
                dropped += 1
                continue
            if plain is not None and value.__class__ is str:
                # Fast path: a string under a rule that keeps strings as they are once scanned.
                limit, remember = plain
                if remember and value in clean:
                    attrs[key] = value
                    continue
                if len(value) <= limit:
                    found = scan(value)
                    if not found:
                        if remember:
                            if len(clean) >= _CLEAN_CACHE:
                                clean.clear()
                            clean.add(value)
                        attrs[key] = value
                    else:
                        self._tally(found)
                        attrs[key] = self._rewrite_within(value, found, limit)
                        changed = True
                    continue
            rule = self._rules.get(key)
            if rule is None:
                if self._drop_on_name and key not in clean and self._findings(key):
                    self._count("dropped_event")
                    return None
                dropped += 1
                if len(fast) < _KEY_PLANS:
                    fast[key] = _DROP  # clean (or names are not scanned): dropped unseen from now on
                continue
            new = self._value(value, rule)
            if new is not value:
                changed = True
                if new is None:
                    continue
            attrs[key] = new
        if dropped:
            self._counts["dropped_key"] = self._counts.get("dropped_key", 0) + dropped
            changed = True
        unit = event.unit
        units = self._clean_units
        if unit not in units:
            found = self._scan(unit)
            if found:
                self._tally(found)
                unit = self.pseudonym("unit", unit)
                self._count("pseudonymized_unit")
                changed = True
            else:
                if len(units) >= _CLEAN_CACHE:
                    units.clear()
                units.add(unit)
        if not changed:
            return event
        return Event(name, event.ts, unit, event.value, attrs)

    def _value(self, value: AttrValue, rule: AttrRule) -> AttrValue | None:
        """The redacted value, the same object when nothing changed, or None when it is dropped."""
        if rule.generalize is not None and not isinstance(value, bool):
            general = _generalize_whole(value, rule.generalize)
            if general is None:
                self._count("dropped_value")
            return general
        kind = rule.kind
        if isinstance(value, str):
            if kind not in ("label", "text"):
                self._count("dropped_type")
                return None
            text = value
            if len(text) > rule.max_length:
                self._count("truncated")
                return self._cut(text, rule.max_length)
            found = self._scan(text)
            if not found:
                return text
            self._tally(found)
            return self._rewrite_within(text, found, rule.max_length)
        if isinstance(value, bool):
            ok = kind == "bool"
        else:
            ok = kind == "number" and (not isinstance(value, float) or math.isfinite(value))
        if not ok:
            self._count("dropped_type")
            return None
        return value

    def _cut(self, text: str, limit: int) -> str:
        """``text`` redacted and cut to at most ``limit`` characters without keeping part of a finding."""
        head = text[: limit * _SCAN_FACTOR + _SCAN_SLACK]
        found = self._scan(head)
        end = limit
        last_end = 0  # where the last finding wholly before the cut ends
        for f in found:
            if f.end <= end:
                last_end = f.end
            elif f.start < end:
                end = f.start  # the cut would split this finding: cut before it
                break
            else:
                break
        if end < len(head) and not head[end].isspace():
            # A partial word at the cut goes too, but never back into a finding that ends before it.
            space = max(head.rfind(" ", 0, end), head.rfind("\t", 0, end), head.rfind("\n", 0, end))
            end = max(space, last_end, 0)
        kept = [f for f in found if f.end <= end]
        self._tally(kept)
        return self._fit(head, end, kept, limit)

    def _rewrite_within(self, text: str, found: list[Finding], limit: int) -> str:
        """``text`` rewritten; cut (and counted as truncated) when the replacements overflow ``limit``."""
        new = self._rewrite(text, found)
        if len(new) <= limit:
            return new
        self._count("truncated")
        return self._fit(text, len(text), found, limit)

    def _fit(self, text: str, end: int, found: list[Finding], limit: int) -> str:
        """``text[:end]`` with ``found`` (all before ``end``) replaced, cut to ``limit`` characters; a
        replacement that would be split is left out with everything after it."""
        parts: list[str] = []
        size = pos = 0
        for det, start, stop in found:
            plain = text[pos:start]
            new = self._replacement(det, text[start:stop])
            if size + len(plain) + len(new) > limit:
                parts.append(plain[: max(0, limit - size)])
                return "".join(parts)
            parts.append(plain)
            parts.append(new)
            size += len(plain) + len(new)
            pos = stop
        parts.append(text[pos:end][: max(0, limit - size)])
        return "".join(parts)

    def _rewrite(self, text: str, found: list[Finding]) -> str:
        parts: list[str] = []
        pos = 0
        for det, start, end in found:
            parts.append(text[pos:start])
            parts.append(self._replacement(det, text[start:end]))
            pos = end
        parts.append(text[pos:])
        return "".join(parts)

    def _replacement(self, detector: str, raw: str) -> str:
        action = self._actions.get(detector, self._default)
        if action == "mask":
            return f"[{detector}]"
        if action == "drop":
            return ""
        if action == "hash":
            return self.pseudonym(detector, raw)
        general = generalize(detector, raw)
        return general if general is not None else f"[{detector}]"


def scanner_for(red: Redaction, backend: Backend = "python") -> Scanner | CustomScanner:
    """The built-in scanner on ``backend``, with the policy's own detectors (``[[redaction.custom]]``)
    if it has any."""
    base = Scanner(backend=backend)
    if not red.custom:
        return base
    return CustomScanner(
        [compile_detector(r.name, r.regex, checksum=r.checksum, context=r.context) for r in red.custom],
        base,
    )


def _generalize_whole(value: AttrValue, how: str) -> AttrValue | None:
    if how == "hour":
        return _hour(value)
    if isinstance(value, str):
        addr = value.strip()
        if addr.startswith("[") and "]" in addr:
            addr = addr[1 : addr.index("]")]
        elif addr.count(":") == 1:
            addr = addr.split(":", 1)[0]  # IPv4 with a port
        general = generalize("ipv6" if ":" in addr else "ipv4", addr)
        return general
    return None


def _hour(value: AttrValue) -> AttrValue | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            return None
        step = 3_600_000 if value >= 1e11 else 3600  # epoch milliseconds or seconds
        floored = (int(value) // step) * step
        return floored if isinstance(value, int) else float(floored)
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        if text.isascii() and text.replace(".", "", 1).isdigit():  # epoch seconds/ms as a string
            hour = _hour(float(text))
            return None if hour is None else str(int(hour))
        return _hour_iso(text)
    except (ValueError, OverflowError):
        return None


def _hour_iso(text: str) -> str:
    dt = datetime.fromisoformat(text.replace("z", "Z"))
    if dt.tzinfo is None:
        return dt.replace(minute=0, second=0, microsecond=0).strftime("%Y-%m-%dT%H:00:00")
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:00:00Z")


if not set(COUNTERS).isdisjoint(DETECTOR_NAMES):  # pragma: no cover - guards future renames
    raise RuntimeError("a redaction counter shares a name with a detector")
