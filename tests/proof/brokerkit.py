"""A private Mosquitto for one test or benchmark: a free loopback port and a config file it writes.

``BURST_SETTINGS`` are the broker settings docs/operations.md ("MQTT brokers") recommends for QoS 1
bursts; ``DEFAULT_SETTINGS`` are Mosquitto's own defaults written out, to show what they lose.
"""

from __future__ import annotations

import contextlib
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
        f"listener {port} 127.0.0.1\nallow_anonymous true\n"
        f"persistence_location {workdir}/\nlog_dest file {workdir}/mosquitto.log\n{settings}"
    )
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"mosquitto did not start on port {port}: {err.strip()}")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def publish_lines(port: int, topic: str, lines: bytes, *, qos: int = 1) -> None:
    """Publish every line of ``lines`` as one message, as fast as ``mosquitto_pub -l`` goes."""
    subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-q", str(qos), "-l"],
        input=lines,
        check=True,
        timeout=600,
    )
