"""``hush-agent init``: scaffold a config directory that runs as is (demo source, loopback collector)."""

from __future__ import annotations

import secrets
from importlib import resources
from pathlib import Path

import msgspec

from hushmetric.errors import ConfigError
from hushmetric.keys import generate_signing_key, write_secret_file

__all__ = ["InitResult", "init_dir", "new_agent_id"]

_ID_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@-")


class InitResult(msgspec.Struct, frozen=True):
    agent: str
    config: str
    policy: str
    key_file: str
    secret_file: str


def new_agent_id() -> str:
    return f"agent-{secrets.token_hex(6)}"


def _toml_str(value: str) -> str:
    return msgspec.json.encode(value).decode()  # a JSON string is a valid TOML basic string


def _check_id(value: str, what: str) -> None:
    if not value or len(value) > 128 or not set(value) <= _ID_CHARS:
        raise ConfigError(f"{what} {value!r} must be 1-128 characters of A-Z a-z 0-9 . _ : @ -")


def init_dir(
    directory: Path, *, tenant: str, collector: str | None, agent: str | None, force: bool
) -> InitResult:
    """Write agent.toml, policy.toml (commented), agent.key and site.secret (both 0600) into ``directory``."""
    agent_id = agent or new_agent_id()
    _check_id(tenant, "tenant")
    _check_id(agent_id, "agent id")
    if collector is not None:
        host, sep, port = collector.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"--collector {collector!r}: expected HOST:PORT")
    config_path = directory / "agent.toml"
    if config_path.exists() and not force:
        raise ConfigError("already initialised (use --force to overwrite)", path=str(config_path))
    directory.mkdir(parents=True, exist_ok=True)
    endpoints = f"[{_toml_str(collector)}]" if collector else "[]"
    config_path.write_text(
        f"""# hush-agent configuration (written by `hush-agent init`). Paths are relative to this file.
tenant = {_toml_str(tenant)}
agent = {_toml_str(agent_id)}
policy = "policy.toml"          # what may leave, how it is redacted and noised
state_dir = "state"             # journal, privacy ledger, outbox, egress ledger (SQLite)
key_file = "agent.key"          # Ed25519 signing key, mode 0600
secret_file = "site.secret"     # HMAC key for pseudonyms, mode 0600
# metrics_listen = "127.0.0.1:9464"   # Prometheus /metrics (keep it on loopback or a private address)

[collector]
endpoints = {endpoints}         # the only places this agent ever sends to
tls = false

[log]
format = "plain"                # or "json"

# The demo source generates a realistic, seeded evaluator journey (with PII in free text).
# Replace it with your own sources:
#   [[sources]]
#   type = "mqtt"
#   host = "127.0.0.1"
#   topics = ["telemetry/#"]
#
#   [[sources]]
#   type = "file"
#   path = "/var/log/app/events.jsonl"
[[sources]]
type = "demo"
seed = 7
""",
        encoding="utf-8",
    )
    policy_path = directory / "policy.toml"
    if not policy_path.exists() or force:
        template = resources.files("agent").joinpath("templates/policy.toml").read_text(encoding="utf-8")
        policy_path.write_text(template, encoding="utf-8")
    key_path = directory / "agent.key"
    generate_signing_key(key_path)
    secret_path = directory / "site.secret"
    write_secret_file(secret_path, secrets.token_hex(32).encode() + b"\n")
    return InitResult(agent_id, str(config_path), str(policy_path), str(key_path), str(secret_path))
