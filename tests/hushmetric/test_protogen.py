"""The committed gRPC stubs are what ``make proto`` would generate from proto/ (version headers aside)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hushmetric import protogen

STUBS = Path(protogen.__file__).resolve().parent / "v1"
# Lines that only record the generator's version.
_VERSION_LINES = [
    re.compile(r"^# Protobuf Python Version: .*$", re.M),
    re.compile(r"^GRPC_GENERATED_VERSION = .*$", re.M),
    re.compile(r"_runtime_version\.ValidateProtobufRuntimeVersion\(.*?\n\)", re.S),
]


def _normalise(text: str) -> str:
    for pattern in _VERSION_LINES:
        text = pattern.sub("<version>", text)
    return text


def test_committed_stubs_are_current(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    protogen.generate(tmp_path)
    generated = sorted((tmp_path / "hushmetric" / "v1").iterdir())
    assert [p.name for p in generated] == ["ingest_pb2.py", "ingest_pb2.pyi", "ingest_pb2_grpc.py"]
    for fresh in generated:
        committed = STUBS / fresh.name
        assert committed.exists(), f"{fresh.name} is not committed; run `make proto`"
        assert _normalise(committed.read_text()) == _normalise(fresh.read_text()), (
            f"hushmetric/v1/{fresh.name} is stale; run `make proto`"
        )


def test_normalise_ignores_only_versions() -> None:
    a = "# Protobuf Python Version: 7.35.1\nx = 1\nGRPC_GENERATED_VERSION = '1.85.1'\n"
    b = "# Protobuf Python Version: 7.36.0\nx = 1\nGRPC_GENERATED_VERSION = '1.86.0'\n"
    assert _normalise(a) == _normalise(b)
    assert _normalise(a) != _normalise(a.replace("x = 1", "x = 2"))
