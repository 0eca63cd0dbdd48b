"""collector.config: the TOML settings, decoded once into typed values (durations in seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.config import CollectorConfig, load_config
from hushmetric.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "collector.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_durations_are_seconds_once_decoded(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, 'max_clock_skew = "1h30m"\nshutdown_grace = "45"\n'))
    assert (config.max_clock_skew, config.shutdown_grace) == (5400, 45)
    assert (CollectorConfig().max_clock_skew, CollectorConfig().shutdown_grace) == (300, 10)


@pytest.mark.parametrize("value", ['"soon"', '"5 minutes"', "300", '""'])
def test_a_malformed_duration_names_the_file_and_key(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, f"shutdown_grace = {value}\n"))
    assert (caught.value.path, caught.value.key) == (str(tmp_path / "collector.toml"), "shutdown_grace")


def test_a_bad_listen_address_names_its_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, 'metrics_listen = "9464"\n'))
    assert caught.value.key == "metrics_listen"
