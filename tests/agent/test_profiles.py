"""Deployment profiles: the shipped configs conform to their own profile; each rule names its key."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from agent.config import AgentConfig, CollectorConfig, DemoSource, MqttSource, load_config
from agent.profiles import PROFILES, Violation, check_files, check_profile, classify_host, parse_host_port
from collector.config import load_config as load_collector_config
from hushmetric.errors import ConfigError

PROFILE_DIR = Path(__file__).resolve().parents[2] / "configs" / "profiles"


def base(**changes: object) -> AgentConfig:
    return msgspec.structs.replace(AgentConfig(tenant="t", agent="a"), **changes)


def keys(violations: list[Violation]) -> list[str]:
    return [v.key for v in violations]


def saas(**collector: object) -> AgentConfig:
    c = CollectorConfig(endpoints=["ingest.hushmetric.example.com:443"], tls=True)
    return base(collector=msgspec.structs.replace(c, **collector))


# --- the shipped profiles ---------------------------------------------------------------------


def test_every_profile_is_shipped() -> None:
    assert sorted(p.name for p in PROFILE_DIR.iterdir() if p.is_dir()) == sorted(PROFILES)


@pytest.mark.parametrize("profile", PROFILES)
def test_shipped_profile_conforms_to_itself(profile: str) -> None:
    loaded = load_config(PROFILE_DIR / profile / "agent.toml")
    assert check_profile(loaded.config, profile) == []
    assert (PROFILE_DIR / profile / "README.md").read_text().startswith(f"# Profile: {profile}")


@pytest.mark.parametrize("profile", PROFILES)
def test_shipped_collector_config_decodes(profile: str) -> None:
    path = PROFILE_DIR / profile / "collector.toml"
    if profile == "saas":
        assert not path.exists(), "saas: the vendor runs the collector"
        return
    config = load_collector_config(path)
    assert config.listen is not None
    assert config.db is not None
    assert config.db.startswith("/var/lib/hushmetric/collector/")
    if profile == "air-gap":  # no agent connects: loopback only, plaintext is fine there
        assert classify_host(config.listen.rpartition(":")[0]) == "loopback"
        assert config.tls_cert is None
        return
    # reachable by agents, so the collector serves mutual TLS itself and never plaintext
    assert not config.insecure
    assert None not in (config.tls_cert, config.tls_key, config.client_ca)
    agent = load_config(PROFILE_DIR / profile / "agent.toml").config.collector
    assert agent.tls
    assert agent.client_cert
    assert agent.client_key


def test_shipped_profiles_are_not_interchangeable() -> None:
    configs = {p: load_config(PROFILE_DIR / p / "agent.toml").config for p in PROFILES}
    assert keys(check_profile(configs["air-gap"], "saas")) == ["collector.endpoints", "collector.tls"]
    assert keys(check_profile(configs["saas"], "air-gap")) == ["collector.endpoints[0]"]
    # saas refuses the internal names vpc and on-prem use
    assert keys(check_profile(configs["vpc"], "saas")) == ["collector.endpoints[0]"]
    assert keys(check_profile(configs["on-prem"], "saas")) == ["collector.endpoints[0]"]


# --- air-gap ----------------------------------------------------------------------------------


def test_air_gap_refuses_every_endpoint_with_its_index() -> None:
    config = base(collector=CollectorConfig(endpoints=["10.0.0.1:7443", "collector.lan:7443"]))
    assert keys(check_profile(config, "air-gap")) == ["collector.endpoints[0]", "collector.endpoints[1]"]


def test_air_gap_mqtt_must_be_loopback() -> None:
    sources = [
        DemoSource(),
        MqttSource(host="127.0.0.1"),
        MqttSource(host="broker.lan"),
        MqttSource(host="::1"),
    ]
    violations = check_profile(base(sources=sources), "air-gap")
    assert keys(violations) == ["sources[2].host"]
    assert "broker.lan" in violations[0].message


def test_air_gap_default_config_conforms() -> None:
    assert check_profile(base(), "air-gap") == []


# --- saas -------------------------------------------------------------------------------------


def test_saas_without_tls() -> None:
    violations = check_profile(saas(tls=False), "saas")
    assert keys(violations) == ["collector.tls"]
    assert "TLS is required" in violations[0].message


def test_saas_without_endpoint() -> None:
    assert keys(check_profile(saas(endpoints=[]), "saas")) == ["collector.endpoints"]


@pytest.mark.parametrize(
    "endpoint",
    [
        "127.0.0.1:443",
        "localhost:443",
        "10.1.2.3:443",
        "192.168.1.5:443",
        "[fd00::5]:443",
        "collector:443",
        "ingest.corp:443",
        "ingest.internal:443",
        "100.64.3.4:443",
        "8.8.8.8:443",
        "[2001:4860::1]:443",
    ],
)
def test_saas_endpoint_must_be_a_public_name(endpoint: str) -> None:
    assert keys(check_profile(saas(endpoints=[endpoint]), "saas")) == ["collector.endpoints[0]"]


def test_saas_metrics_loopback_only() -> None:
    config = msgspec.structs.replace(saas(), metrics_listen="10.0.0.5:9464")
    assert keys(check_profile(config, "saas")) == ["metrics_listen"]
    assert check_profile(msgspec.structs.replace(config, metrics_listen="[::1]:9464"), "saas") == []


# --- vpc and on-prem --------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["10.20.0.15:7443", "ingest.hushmetric.internal:7443", "[fd12::1]:7443"])
def test_vpc_accepts_private_and_dns(endpoint: str) -> None:
    assert check_profile(saas(endpoints=[endpoint]), "vpc") == []


@pytest.mark.parametrize("endpoint", ["203.0.113.9:7443", "127.0.0.1:7443"])
def test_vpc_refuses_public_ip_and_loopback(endpoint: str) -> None:
    assert keys(check_profile(saas(endpoints=[endpoint]), "vpc")) == ["collector.endpoints[0]"]


def test_vpc_requires_tls() -> None:
    assert keys(check_profile(saas(endpoints=["10.0.0.2:7443"], tls=False), "vpc")) == ["collector.tls"]


def test_on_prem_tls_only_beyond_loopback() -> None:
    assert check_profile(saas(endpoints=["127.0.0.1:7443"], tls=False), "on-prem") == []
    lan = saas(endpoints=["127.0.0.1:7443", "192.168.10.4:7443"], tls=False)
    assert keys(check_profile(lan, "on-prem")) == ["collector.tls"]


def test_on_prem_refuses_public_ip() -> None:
    config = saas(endpoints=["collector.lan:7443", "198.51.100.7:7443"])
    assert keys(check_profile(config, "on-prem")) == ["collector.endpoints[1]"]


@pytest.mark.parametrize("profile", ["vpc", "on-prem"])
def test_metrics_may_use_a_private_address(profile: str) -> None:
    config = msgspec.structs.replace(saas(endpoints=["10.0.0.2:7443"]), metrics_listen="10.0.0.9:9464")
    assert check_profile(config, profile) == []


# --- every profile ----------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("listen", ["0.0.0.0:9464", ":9464", "[::]:9464", "203.0.113.1:9464"])
def test_metrics_never_wildcard_or_public(profile: str, listen: str) -> None:
    config = msgspec.structs.replace(saas(), metrics_listen=listen)
    if profile == "air-gap":
        config = base(metrics_listen=listen)
    assert "metrics_listen" in keys(check_profile(config, profile))


@pytest.mark.parametrize("profile", PROFILES)
def test_secrets_outside_tmp_and_distinct(profile: str) -> None:
    collector = saas().collector if profile != "air-gap" else CollectorConfig()
    config = base(collector=collector, key_file="/tmp/agent.key", secret_file="/dev/shm/x/site.secret")
    assert keys(check_profile(config, profile)) == ["key_file", "secret_file"]
    same = base(collector=collector, key_file="keys/a", secret_file="keys/a")
    assert keys(check_profile(same, profile)) == ["secret_file"]


def test_tls_options_without_tls() -> None:
    config = base(collector=CollectorConfig(endpoints=["127.0.0.1:1"], ca_file="ca.pem", server_name="x"))
    assert keys(check_profile(config, "on-prem")) == ["collector.ca_file", "collector.server_name"]


def test_mqtt_credentials_in_clear() -> None:
    sources = [
        MqttSource(host="127.0.0.1", username="u", password_file="pw"),  # loopback: fine
        MqttSource(host="broker.lan", username="u", password_file="pw"),
        MqttSource(host="broker.lan", username="u", password_file="pw", tls=True),
        MqttSource(host="broker.lan", ca_file="ca.pem"),
    ]
    config = msgspec.structs.replace(saas(), sources=sources)
    assert keys(check_profile(config, "saas")) == ["sources[1].tls", "sources[3].ca_file"]


def test_unknown_profile() -> None:
    with pytest.raises(ConfigError, match="unknown profile 'cloud'") as info:
        check_profile(base(), "cloud")
    assert info.value.key == "profile"


def test_violations_encode_for_json_output() -> None:
    data = msgspec.json.encode(check_profile(saas(tls=False), "saas"))
    assert msgspec.json.decode(data) == [
        {"key": "collector.tls", "message": "saas: TLS is required; set collector.tls = true"}
    ]


# --- helpers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("h:1", ("h", 1)),
        ("[::1]:443", ("::1", 443)),
        (":9464", ("", 9464)),
        ("::1:443", None),
        ("h", None),
        ("h:0", None),
        ("h:70000", None),
        ("h:x", None),
    ],
)
def test_parse_host_port(value: str, expected: tuple[str, int] | None) -> None:
    assert parse_host_port(value) == expected


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.2", "loopback"),
        ("LOCALHOST", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "wildcard"),  # noqa: S104 - a value to classify, nothing binds to it
        ("10.0.0.1", "private"),
        ("169.254.1.1", "private"),
        ("100.64.0.1", "private"),
        ("1.1.1.1", "public"),
        ("collector", "internal-name"),
        ("x.home.arpa", "internal-name"),
        ("ingest.example.com.", "name"),
    ],
)
def test_classify_host(host: str, kind: str) -> None:
    assert classify_host(host) == kind


# --- file modes -------------------------------------------------------------------------------


def test_check_files_reports_group_or_world_access(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text(
        'tenant = "t"\nagent = "a"\n[[sources]]\ntype = "mqtt"\npassword_file = "mqtt.pw"\n'
    )
    for name, mode in (("agent.key", 0o600), ("site.secret", 0o640), ("mqtt.pw", 0o604)):
        (tmp_path / name).write_bytes(b"x")
        os.chmod(tmp_path / name, mode)
    violations = check_files(load_config(tmp_path / "agent.toml"))
    assert keys(violations) == ["secret_file", "sources[0].password_file"]
    assert "0640" in violations[0].message
    assert "chmod 600" in violations[0].message


def test_check_files_ignores_missing_files(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text('tenant = "t"\nagent = "a"\n')
    assert check_files(load_config(tmp_path / "agent.toml")) == []


def test_client_certificate_settings_need_tls_and_each_other() -> None:
    no_tls = saas(tls=False, client_cert="a.pem", client_key="a.key")
    assert keys(check_profile(no_tls, "saas")) == [
        "collector.client_cert",
        "collector.client_key",
        "collector.tls",
    ]
    assert keys(check_profile(saas(client_cert="a.pem"), "saas")) == ["collector.client_key"]
    assert check_profile(saas(client_cert="a.pem", client_key="a.key"), "saas") == []


def test_a_client_key_readable_by_others_is_reported(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text(
        'tenant = "t"\nagent = "a"\n[collector]\nendpoints = ["h.example.com:443"]\ntls = true\n'
        'client_cert = "tls/a.pem"\nclient_key = "tls/a.key"\n'
    )
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "a.key").write_text("key")
    os.chmod(tmp_path / "tls" / "a.key", 0o644)
    assert keys(check_files(load_config(tmp_path / "agent.toml"))) == ["collector.client_key"]
