"""agent.toml loading: defaults that run as is, tagged sources, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import DemoSource, FileSource, MqttSource, load_config
from hushmetric.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_minimal_config_defaults_to_demo_source_and_relative_paths(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, 'tenant = "acme"\nagent = "a1"\n'))
    assert loaded.config.sources == [DemoSource()]
    assert loaded.state_dir == tmp_path.resolve() / "state"
    assert loaded.key_path == tmp_path.resolve() / "agent.key"
    assert loaded.config.collector.endpoints == []


def test_sources_are_a_tagged_union(tmp_path: Path) -> None:
    loaded = load_config(
        write(
            tmp_path,
            'tenant = "acme"\nagent = "a1"\n'
            '[[sources]]\ntype = "mqtt"\ntopics = ["t/#"]\n'
            '[[sources]]\ntype = "file"\npath = "/var/log/x.jsonl"\n',
        )
    )
    mqtt, file = loaded.config.sources
    assert isinstance(mqtt, MqttSource)
    assert mqtt.topics == ["t/#"]
    assert mqtt.port == 1883
    assert isinstance(file, FileSource)
    assert file.follow


def test_collector_durations_are_seconds_once_decoded(tmp_path: Path) -> None:
    text = 'tenant = "a"\nagent = "a1"\n[collector]\ntimeout = "1m30s"\nrefused_retry_max = "1h"\n'
    c = load_config(write(tmp_path, text)).config.collector
    assert (c.timeout, c.retry_initial, c.retry_max, c.refused_retry_max) == (90, 1, 120, 3600)


@pytest.mark.parametrize(
    ("text", "key", "expect"),
    [
        ('agent = "a1"\n', None, "missing required field `tenant`"),
        ('tenant = "ac me"\nagent = "a1"\n', "tenant", "match"),
        (
            'tenant = "a"\nagent = "a1"\n[[sources]]\ntype = "kafka"\n',
            "sources[0].type",
            "Invalid value 'kafka'",
        ),
        (
            'tenant = "a"\nagent = "a1"\n[collector]\nendpoints = ["nohost"]\n',
            "collector.endpoints[0]",
            "HOST:PORT",
        ),
        ('tenant = "a"\nagent = "a1"\n[limits]\nmax_attrs = -1\n', "limits.max_attrs", ">= 0"),
        ('tenant = "a"\nagent = "a1"\n[collector]\ntimeout = "soon"\n', "collector.timeout", "duration"),
        ('tenant = "a"\nagent = "a1"\n[collector]\nretry_max = 5\n', "collector.retry_max", "duration"),
        ('tenant = "a"\nagent = "a1"\n[collector]\nretry_initial = "0s"\n', "collector.retry_initial", "0s"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, key: str | None, expect: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key}: " if key else f"{path}: "), message
    assert expect in message


def test_max_open_values_still_loads_but_is_a_deprecated_no_op(tmp_path: Path) -> None:
    from agent.config import deprecations

    plain = load_config(write(tmp_path, 'tenant = "acme"\nagent = "a1"\n'))
    assert deprecations(plain) == []
    path = write(tmp_path, 'tenant = "acme"\nagent = "a1"\n[limits]\nmax_open_values = 500\n')
    (note,) = deprecations(load_config(path))
    assert note == (
        f"{path}: limits.max_open_values is deprecated and ignored: memory is bounded by units x "
        "max_partitions per metric and window (see docs/privacy.md); remove the key"
    )


def test_scanner_backend_defaults_to_python_and_is_validated(tmp_path: Path) -> None:
    plain = load_config(write(tmp_path, 'tenant = "acme"\nagent = "a1"\n'))
    assert plain.config.limits.scanner == "python"
    auto = load_config(write(tmp_path, 'tenant = "acme"\nagent = "a1"\n[limits]\nscanner = "auto"\n'))
    assert auto.config.limits.scanner == "auto"
    path = write(tmp_path, 'tenant = "acme"\nagent = "a1"\n[limits]\nscanner = "re2"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: limits.scanner: ")

