"""A private Mosquitto for one test or benchmark: a free loopback port and a config file it writes.

``BURST_SETTINGS`` are the broker settings docs/operations.md ("MQTT brokers") recommends for QoS 1
bursts; ``DEFAULT_SETTINGS`` are Mosquitto's own defaults written out, to show what they lose.
"""

from __future__ import annotations

import contextlib
import getpass
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["BURST_SETTINGS", "DEFAULT_SETTINGS", "have_mosquitto", "mosquitto", "publish_lines"]

# Keep in step with docs/operations.md, "MQTT brokers".
BURST_SETTINGS = """\
max_queued_messages 0
max_queued_bytes 0
max_inflight_messages 1000
max_inflight_bytes 0
queue_qos0_messages false
persistence true
autosave_interval 60
"""

DEFAULT_SETTINGS = """\
max_queued_messages 1000
max_inflight_messages 20
persistence false
"""


def have_mosquitto() -> bool:
    return shutil.which("mosquitto") is not None and shutil.which("mosquitto_pub") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def mosquitto(workdir: Path, settings: str) -> Iterator[int]:
    """Run ``mosquitto -c`` with ``settings`` on a free loopback port; yields the port."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        # As root, mosquitto would switch to the user "mosquitto", who cannot write in workdir.
        f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
        f"persistence_location {workdir}/\nlog_dest file {workdir}/mosquitto.log\n{settings}"
    )
    stderr = workdir / "stderr.log"
    with stderr.open("wb") as err_out:
        proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=err_out)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                err = stderr.read_text(errors="replace").strip()
                raise RuntimeError(f"mosquitto did not start on port {port}: {err}")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# mosquitto_pub 2.0.11 -l loses lines when far more than this arrive on its stdin at once (100k
# lines piped from memory: about 34k sent, measured with -d); 10k at a time are sent whole.
_PUB_LINES = 10_000


def publish_lines(port: int, topic: str, lines: bytes, *, qos: int = 1, publishers: int = 10) -> None:
    """Publish every line of ``lines`` as one message: a burst from ``publishers`` concurrent
    ``mosquitto_pub -l`` processes, each fed at most 10k lines per process run."""
    rows = lines.splitlines(keepends=True)
    pieces = [b"".join(rows[i : i + _PUB_LINES]) for i in range(0, len(rows), _PUB_LINES)]
    argv = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-q", str(qos), "-l"]
    while pieces:
        batch, pieces = pieces[:publishers], pieces[publishers:]
        procs = [subprocess.Popen(argv, stdin=subprocess.PIPE) for _ in batch]
        for proc, piece in zip(procs, batch, strict=True):
            assert proc.stdin is not None
            proc.stdin.write(piece)
            proc.stdin.close()
        for proc in procs:
            if proc.wait(600) != 0:
                raise RuntimeError(f"mosquitto_pub exited with {proc.returncode}")
