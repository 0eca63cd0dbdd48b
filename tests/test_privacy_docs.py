"""docs/privacy.md, "What leaves a site, field by field", names every field that can leave a site."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from agent.attest import Attestation, EgressInfo, PeriodSpend, PolicyInfo
from hushmetric.batch import Batch, Noise, Privacy, Row, Window
from hushmetric.bundle import Manifest, ManifestEntry
from hushmetric.certificate import Certificate, Conformance, EgressHead, ProfileCheck
from hushmetric.certificate import PeriodSpend as CertSpend

DOC = (Path(__file__).resolve().parents[1] / "docs" / "privacy.md").read_text()
SECTION = DOC[DOC.index("## What leaves a site, field by field") :]
SECTION = SECTION[: SECTION.index("\n## ", 10)]


def _fields(struct: type[msgspec.Struct]) -> tuple[str, ...]:
    return struct.__struct_fields__


@pytest.mark.parametrize(
    ("title", "structs"),
    [
        ("### Batch", (Batch, Window, Privacy, Row, Noise)),
        ("### Bundle", (Manifest, ManifestEntry)),
        ("### Attestation", (Attestation, PolicyInfo, PeriodSpend, EgressInfo)),
        ("### Certificate", (Certificate, Conformance, ProfileCheck, CertSpend, EgressHead)),
    ],
)
def test_every_field_has_a_row_with_its_kind(title: str, structs: tuple[type[msgspec.Struct], ...]) -> None:
    part = SECTION[SECTION.index(title) :]
    part = part[: part.index("\n### ", 5)] if "\n### " in part[5:] else part
    rows = [line for line in part.splitlines() if line.startswith("| ") and "---" not in line][1:]
    kinds = {"public", "DP release", "post-processing", "as above", "as its fields"}
    for row in rows:
        kind = row.split("|")[2].strip()
        assert any(k in kind for k in kinds), row
    named = {seg.strip("[]") for tok in re.findall(r"`([^`]+)`", part) for seg in re.split(r"[.\s/,]+", tok)}
    for struct in structs:
        missing = [f for f in _fields(struct) if f not in named]
        assert not missing, (struct.__name__, missing)


def test_envelope_fields_are_named() -> None:
    part = SECTION[SECTION.index("### DSSE envelope") :]
    for name in ("payloadType", "payload", "keyid", "sig"):
        assert f"`{name}`" in part or f".{name}`" in part, name
