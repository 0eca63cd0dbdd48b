"""Deployment profiles: which agent configs fit ``saas``, ``vpc``, ``on-prem`` and ``air-gap``.

:func:`check_profile` is pure: it looks at a decoded :class:`~agent.config.AgentConfig` only and returns
every rule the config breaks, each with the exact config key (``collector.endpoints[0]``,
``sources[1].host``) so ``hush-agent validate --profile NAME`` can say precisely what to change.
:func:`check_files` is the one I/O step: it looks at the modes of the secret files a config names.

The rules, per profile (``configs/profiles/*/README.md`` explains the reasons):

========== ===================================================================================
saas       at least one endpoint; TLS; endpoints are public names (no loopback, private or
           internal-suffix hosts, no IP literals of those ranges); metrics on loopback only
vpc        at least one endpoint; TLS; endpoints are private-range addresses or DNS names
           (no public IP literals, no loopback); metrics on loopback or a private address
on-prem    at least one endpoint; endpoints inside the customer network (loopback, private
           range or DNS name; no public IP literal); TLS unless every endpoint is loopback;
           metrics on loopback or a private address
air-gap    no collector endpoint at all (bundle export only); MQTT brokers on loopback only;
           metrics on loopback only
all        metrics never on a wildcard or public address; key and secret files distinct and
           outside shared temporary directories; ``ca_file``/``server_name``/``client_cert``/
           ``client_key`` only with TLS, client certificate and key together; MQTT credentials
           never over a non-loopback connection without TLS
========== ===================================================================================
"""

from __future__ import annotations

import ipaddress
import stat
from pathlib import PurePosixPath
from typing import Literal

import msgspec

from agent.config import AgentConfig, LoadedConfig, MqttSource
from hushmetric.errors import ConfigError

__all__ = ["PROFILES", "Profile", "Violation", "check_files", "check_profile", "parse_host_port"]

Profile = Literal["saas", "vpc", "on-prem", "air-gap"]
PROFILES: tuple[Profile, ...] = ("saas", "vpc", "on-prem", "air-gap")

HostKind = Literal["loopback", "private", "public", "wildcard", "internal-name", "name"]

# Suffixes that never resolve on the public internet (RFC 6762, RFC 8375, common cloud/corp use).
_INTERNAL_SUFFIXES = (".local", ".localdomain", ".internal", ".intranet", ".lan", ".corp", ".home.arpa")
# Directories every local user can write to: a secret kept there cannot be kept private reliably,
# and systemd's PrivateTmp= hides them from the service anyway.
_SHARED_TMP = tuple(
    PurePosixPath(p)
    for p in ("/tmp", "/var/tmp", "/dev/shm")  # noqa: S108 - paths to refuse for secrets, never written to
)
# Ranges routed only inside a site or a provider network. Listed explicitly rather than taken from
# ``ip.is_private``, which also covers documentation and reserved ranges that are nobody's network.
_PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # RFC 1918
        "100.64.0.0/10",  # RFC 6598 shared address space (provider networks)
        "169.254.0.0/16", "fe80::/10",  # link-local
        "fc00::/7",  # IPv6 unique local addresses
    )
)  # fmt: skip


class Violation(msgspec.Struct, frozen=True):
    """One rule a config breaks: the config key to change and what is wrong with it."""

    key: str
    message: str


def parse_host_port(value: str) -> tuple[str, int] | None:
    """``"host:443"``, ``"[fd00::1]:443"``, ``":9464"`` → ``(host, port)``; ``None`` if malformed."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        return None  # a bare IPv6 address must be bracketed
    return host, int(port)


def classify_host(host: str) -> HostKind:
    """Where a host lives, as far as can be told without resolving it."""
    name = host.lower().rstrip(".")
    if name in ("", "*", "0.0.0.0", "::"):  # noqa: S104 - detecting wildcard binds, not binding one
        return "wildcard"
    if name == "localhost" or name.endswith(".localhost"):
        return "loopback"
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return "internal-name" if "." not in name or name.endswith(_INTERNAL_SUFFIXES) else "name"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return "wildcard"
    if ip.is_loopback:
        return "loopback"
    if any(ip in net for net in _PRIVATE):
        return "private"
    return "public"


def check_profile(config: AgentConfig, profile: str) -> list[Violation]:
    """Every way ``config`` does not conform to ``profile``; an empty list means it conforms.

    Raises :class:`ConfigError` (key ``profile``) for a profile name that is not one of :data:`PROFILES`.
    """
    if profile not in PROFILES:
        raise ConfigError(
            f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}", key="profile"
        )
    out: list[Violation] = []
    out += _common(config)
    out += _metrics(config, profile)
    if profile == "air-gap":
        out += _air_gap(config)
    else:
        out += _networked(config, profile)
    return out


def check_files(loaded: LoadedConfig) -> list[Violation]:
    """Secret files that exist but can be read or written by group or others (they must be 0600-able:
    owned by the agent's user, mode 0600 or stricter). Missing files are not reported here."""
    config = loaded.config
    files = [("key_file", loaded.key_path), ("secret_file", loaded.secret_path)]
    if config.collector.client_key is not None:
        files.append(("collector.client_key", loaded.at(config.collector.client_key)))
    for i, source in enumerate(config.sources):
        if isinstance(source, MqttSource) and source.password_file is not None:
            files.append((f"sources[{i}].password_file", loaded.at(source.password_file)))
    out: list[Violation] = []
    for key, path in files:
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            out.append(Violation(key, f"cannot inspect {path}: {exc.strerror or exc}"))
            continue
        if not stat.S_ISREG(mode):
            out.append(Violation(key, f"{path} is not a regular file"))
        elif mode & 0o077:
            out.append(Violation(key, f"{path} has mode {stat.S_IMODE(mode):04o}; run `chmod 600 {path}`"))
    return out


def _common(config: AgentConfig) -> list[Violation]:
    out: list[Violation] = []
    for key, value in (("key_file", config.key_file), ("secret_file", config.secret_file)):
        path = PurePosixPath(value)
        if any(path == tmp or tmp in path.parents for tmp in _SHARED_TMP):
            out.append(
                Violation(key, f"{value} is in a shared temporary directory; keep secrets beside the config")
            )
    if PurePosixPath(config.key_file) == PurePosixPath(config.secret_file):
        out.append(Violation("secret_file", "the site secret and the signing key must be different files"))
    collector = config.collector
    if not collector.tls:
        if collector.ca_file is not None:
            out.append(Violation("collector.ca_file", "has no effect without collector.tls = true"))
        if collector.server_name is not None:
            out.append(Violation("collector.server_name", "has no effect without collector.tls = true"))
        for key in ("client_cert", "client_key"):
            if getattr(collector, key) is not None:
                out.append(Violation(f"collector.{key}", "has no effect without collector.tls = true"))
    if (collector.client_cert is None) != (collector.client_key is None):
        missing = "client_key" if collector.client_key is None else "client_cert"
        out.append(Violation(f"collector.{missing}", "client_cert and client_key go together (mutual TLS)"))
    for i, source in enumerate(config.sources):
        if not isinstance(source, MqttSource) or source.tls:
            continue
        if source.ca_file is not None:
            out.append(Violation(f"sources[{i}].ca_file", "has no effect without tls = true"))
        credentials = source.username is not None or source.password_file is not None
        if credentials and classify_host(source.host) != "loopback":
            out.append(
                Violation(
                    f"sources[{i}].tls", f"MQTT credentials would cross the network to {source.host} in clear"
                )
            )
    return out


def _metrics(config: AgentConfig, profile: Profile) -> list[Violation]:
    if config.metrics_listen is None:
        return []
    parsed = parse_host_port(config.metrics_listen)
    if parsed is None:
        return [Violation("metrics_listen", "expected HOST:PORT, e.g. 127.0.0.1:9464")]
    kind = classify_host(parsed[0])
    allowed: tuple[HostKind, ...] = (
        ("loopback",) if profile in ("saas", "air-gap") else ("loopback", "private")
    )
    if kind in allowed:
        return []
    where = "loopback" if allowed == ("loopback",) else "loopback or a private address"
    return [
        Violation(
            "metrics_listen", f"{profile}: metrics may listen on {where} only, not {kind} {parsed[0]!r}"
        )
    ]


def _air_gap(config: AgentConfig) -> list[Violation]:
    out = [
        Violation(
            f"collector.endpoints[{i}]", f"air-gap: no network sender; remove {endpoint!r} and export bundles"
        )
        for i, endpoint in enumerate(config.collector.endpoints)
    ]
    for i, source in enumerate(config.sources):
        if isinstance(source, MqttSource) and classify_host(source.host) != "loopback":
            out.append(
                Violation(
                    f"sources[{i}].host", f"air-gap: MQTT broker must be on loopback, not {source.host!r}"
                )
            )
    return out


def _networked(config: AgentConfig, profile: Profile) -> list[Violation]:
    collector = config.collector
    out: list[Violation] = []
    if not collector.endpoints:
        out.append(Violation("collector.endpoints", f"{profile}: needs at least one collector endpoint"))
    kinds: list[HostKind] = []
    for i, endpoint in enumerate(collector.endpoints):
        key = f"collector.endpoints[{i}]"
        parsed = parse_host_port(endpoint)
        if parsed is None:
            out.append(Violation(key, "expected HOST:PORT"))
            continue
        kind = classify_host(parsed[0])
        kinds.append(kind)
        problem = _endpoint_problem(profile, kind)
        if problem is not None:
            out.append(Violation(key, f"{profile}: {parsed[0]!r} is {problem}"))
    tls_needed = profile in ("saas", "vpc") or any(kind != "loopback" for kind in kinds)
    if tls_needed and not collector.tls:
        scope = "" if profile in ("saas", "vpc") else " to a collector beyond this host"
        out.append(Violation("collector.tls", f"{profile}: TLS is required{scope}; set collector.tls = true"))
    return out


def _endpoint_problem(profile: Profile, kind: HostKind) -> str | None:
    if kind == "wildcard":
        return "a wildcard address, not a destination"
    if profile == "saas" and kind != "name":
        return f"a {kind} address; saas sends to the vendor's public collector"
    if profile == "vpc" and kind in ("public", "loopback"):
        return f"a {kind} address; vpc sends to a private endpoint (private range or DNS name)"
    if profile == "on-prem" and kind == "public":
        return "a public address; on-prem keeps the collector inside the customer network"
    return None
