"""The machinery shared by both corpora: templates with placeholders, rendered with known spans.

A template is a log line in a real system's format with ``{name}`` placeholders (lower-case names
only, so JSON braces are left alone). A name is either

- a clean field (``fields[name]``): a timestamp, a pid, a block id, a class name…;
- a PII type (``ipv4``, ``email``…): in a PII line it gets a value of that type, recorded as planted;
  in a clean line it gets ``substitutes[name]`` (a host name for an address, a user name for an email);
- ``pii``: a free slot; in a PII line it gets one phrasing of the chosen type with a value in it (the
  phrasing carries the context a reader would need, e.g. ``SSN is …``), in a clean line a clean
  snippet.

Half the lines are PII lines: a type is drawn uniformly, then a template that can carry it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["TYPES", "Gen", "Line", "Planted", "Spec", "lines"]

TYPES = (
    "email",
    "phone",
    "ipv4",
    "ipv6",
    "mac",
    "card",
    "iban",
    "ssn",
    "jwt",
    "api_key",
    "secret",
    "url_credentials",
)

Gen = Callable[[random.Random], str]
_SLOT = re.compile(r"\{([a-z_0-9]+)\}")


class Planted(NamedTuple):
    kind: str
    start: int
    end: int


class Line(NamedTuple):
    system: str
    text: str
    planted: tuple[Planted, ...]  # empty: a clean line


@dataclass(frozen=True)
class Spec:
    """One corpus: systems and their templates, and how every placeholder is filled."""

    systems: dict[str, list[str]]
    fields: dict[str, Gen]
    values: dict[str, Gen]  # PII type -> a value
    phrasings: dict[str, list[str]]  # PII type -> texts with one "{v}"
    context_phrasings: dict[str, list[str]]  # for values that need a context word to be PII at all
    needs_context: Callable[[str, str], bool]  # (type, value) -> use context_phrasings
    clean_snippets: list[Gen]
    substitutes: dict[str, Gen]
    pii_share: float = 0.5
    _by_type: dict[str, list[tuple[str, str]]] = field(default_factory=dict, compare=False)

    def templates_for(self, kind: str) -> list[tuple[str, str]]:
        if kind not in self._by_type:
            self._by_type[kind] = [
                (system, t)
                for system, templates in self.systems.items()
                for t in templates
                if "{pii}" in t or "{" + kind + "}" in t
            ]
        return self._by_type[kind]


def _render(
    spec: Spec, rng: random.Random, template: str, kind: str | None
) -> tuple[str, tuple[Planted, ...]]:
    out: list[str] = []
    planted: list[Planted] = []
    size = 0
    pos = 0
    for m in _SLOT.finditer(template):
        lit = template[pos : m.start()]
        out.append(lit)
        size += len(lit)
        pos = m.end()
        name = m.group(1)
        if name in spec.fields:
            text = spec.fields[name](rng)
        elif name == "pii":
            if kind is None:
                text = rng.choice(spec.clean_snippets)(rng)
            else:
                value = spec.values[kind](rng)
                pool = spec.context_phrasings if spec.needs_context(kind, value) else spec.phrasings
                phrase = rng.choice(pool[kind])
                at = phrase.index("{v}")
                planted.append(Planted(kind, size + at, size + at + len(value)))
                text = phrase.replace("{v}", value)
        elif name in spec.values:
            if kind is None:
                text = spec.substitutes[name](rng)
            else:
                text = spec.values[name](rng)
                planted.append(Planted(name, size, size + len(text)))
        else:  # pragma: no cover - a typo in a template
            raise KeyError(f"no filler for {{{name}}} in {template!r}")
        out.append(text)
        size += len(text)
    out.append(template[pos:])
    return "".join(out), tuple(planted)


def lines(spec: Spec, n: int, seed: int) -> Iterator[Line]:
    """``n`` lines, deterministic for a seed."""
    rng = random.Random(seed)
    every = [(s, t) for s, ts in spec.systems.items() for t in ts]
    for _ in range(n):
        if rng.random() < spec.pii_share:
            kind = rng.choice(TYPES)
            system, template = rng.choice(spec.templates_for(kind))
            text, planted = _render(spec, rng, template, kind)
        else:
            system, template = rng.choice(every)
            text, planted = _render(spec, rng, template, None)
        yield Line(system, text, planted)
