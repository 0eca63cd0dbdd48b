from __future__ import annotations

from pathlib import Path

import pytest

from agent import config as cfg
from agent import journal
from agent.config import load_config
from agent.sources import DemoSource, FileSource, MqttSource, StdinSource, build_sources
from agent.state import open_state, transaction
from hushmetric.errors import ConfigError

CONFIG = """
tenant = "acme"
agent = "edge-1"

[[sources]]
type = "mqtt"
topics = ["plant/+/telemetry"]
username = "agent"
password_file = "mqtt.pass"

[[sources]]
type = "file"
path = "logs/app.jsonl"

[[sources]]
type = "stdin"

[[sources]]
type = "demo"
users = 10
"""


def test_builds_every_configured_source(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text(CONFIG)
    (tmp_path / "mqtt.pass").write_text("s3cret\n")
    loaded = load_config(tmp_path / "agent.toml")
    mqtt, file, stdin, demo = build_sources(loaded, once=True, offsets=lambda key: None)
    assert isinstance(mqtt, MqttSource)
    assert mqtt.name == "mqtt:127.0.0.1:1883"
    assert mqtt.client_id == "hush-edge-1"
    assert mqtt._password == "s3cret"
    assert isinstance(file, FileSource)
    assert file.path == tmp_path / "logs" / "app.jsonl"
    assert file.follow is False  # once
    assert isinstance(stdin, StdinSource)
    assert isinstance(demo, DemoSource)
    (file_follow,) = [
        s for s in build_sources(loaded, once=False, offsets=dict().get) if isinstance(s, FileSource)
    ]
    assert file_follow.follow is True


def test_missing_password_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text(CONFIG)
    loaded = load_config(tmp_path / "agent.toml")
    with pytest.raises(ConfigError) as err:
        build_sources(loaded, once=True, offsets=lambda key: None)
    assert err.value.key == "sources[0].password_file"


def test_bad_demo_start_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text(
        'tenant = "t"\nagent = "a"\n[[sources]]\ntype = "demo"\nstart = "monday"\n'
    )
    with pytest.raises(ConfigError) as err:
        build_sources(load_config(tmp_path / "agent.toml"), once=True, offsets=lambda key: None)
    assert err.value.key == "sources[0].start"


async def test_offsets_from_the_state_db_and_input_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "agent.toml").write_text('tenant = "t"\nagent = "a"\n')
    loaded = load_config(tmp_path / "agent.toml")
    work = tmp_path / "work"
    work.mkdir()
    (work / "in.jsonl").write_bytes(b"line1\nline2\n")
    monkeypatch.chdir(work)
    conn = open_state(tmp_path / "state", [journal.SCHEMA])
    try:
        (src,) = build_sources(loaded, once=True, conn=conn, override=[cfg.FileSource(path="in.jsonl")])
        assert isinstance(src, FileSource)
        assert src.path == work / "in.jsonl"
        assert not src.follow
        chunks = [c async for c in src.chunks()]
        assert chunks[0].offset_key is not None
        with transaction(conn):
            journal.set_offset(conn, chunks[0].offset_key, 6)
        (src,) = build_sources(loaded, once=True, conn=conn, override=[cfg.FileSource(path="in.jsonl")])
        assert [c.data async for c in src.chunks()] == [b"line2\n"]
        (demo,) = build_sources(loaded, once=True)
        assert isinstance(demo, DemoSource)
    finally:
        conn.close()
