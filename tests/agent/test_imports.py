"""Heavy modules load only in the mode that needs them (issue 12: daemon idle RSS).

OpenDP's native library and gRPC with protobuf each add tens of MiB resident. An agent that reads
MQTT or files and has not released a window yet must not pay for them; a fresh interpreter shows
what the import graph alone pulls in.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("opendp", "grpc", "google.protobuf", "pyarrow", "numpy")

_PROBE = """
import sys
import agent.cli, agent.runtime, agent.ledger, agent.integrity, agent.release, agent.sources
import agent.sources.mqtt
print(" ".join(m for m in sys.argv[1:] if m in sys.modules))
"""


def test_daemon_imports_leave_out_opendp_and_grpc() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *HEAVY], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == []


def test_opendp_loads_on_the_first_measurement() -> None:
    probe = (
        "import sys\n"
        "from pathlib import Path\nfrom agent.policy import load_policy\n"
        "from agent.release import window_cost\n"
        "assert 'opendp' not in sys.modules\n"
        "window_cost(load_policy(Path(sys.argv[1])))\n"
        "print('opendp' in sys.modules)\n"
    )
    policy = Path(__file__).resolve().parents[2] / "configs" / "policy.toml"
    out = subprocess.run(
        [sys.executable, "-c", probe, str(policy)], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "True"


def test_otlp_names_still_import_from_sources() -> None:
    from agent.sources import OtlpSource, server_context

    assert OtlpSource.__name__ == "OtlpSource"
    assert callable(server_context)
