"""Regenerate the committed protobuf/gRPC stubs from ``proto/`` (``make proto``).

``generate(out_dir)`` is also used by the test that fails when the committed stubs are stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["PROTO_FILES", "PROTO_ROOT", "generate"]

PROTO_ROOT = Path(__file__).resolve().parent.parent / "proto"
PROTO_FILES = ("hushmetric/v1/ingest.proto",)


def generate(out_dir: Path) -> None:
    """Write ``*_pb2.py``, ``*_pb2_grpc.py`` and ``*_pb2.pyi`` for every proto file into ``out_dir``."""
    from grpc_tools import protoc  # type: ignore[import-untyped]  # dev-only, untyped

    include = Path(protoc.__file__).resolve().parent / "_proto"
    for proto in PROTO_FILES:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            f"--pyi_out={out_dir}",
            proto,
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed for {proto}")


def main() -> int:
    out = PROTO_ROOT.parent
    generate(out)
    print(f"regenerated stubs for {', '.join(PROTO_FILES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
