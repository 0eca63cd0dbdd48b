"""The systemd units: they parse, carry the hardening the issue asks for, pass ``systemd-analyze``
where it is installed, and their memory and system call restrictions do not break the Python stack."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from agent.config import load_config

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "packaging" / "systemd"
PROFILES = ROOT / "configs" / "profiles"
SERVICES = ("hush-agent.service", "hush-collector.service", "hush-agent-export.service")
ANALYZE = shutil.which("systemd-analyze") or ""
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (Debian: systemd)"
)

Unit = dict[str, dict[str, list[str]]]

# Directive → value every service must carry (the list plus the usual Protect*/Restrict* set).
HARDENING = {
    "User": "hushmetric",
    "Group": "hushmetric",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "PrivateUsers": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "SystemCallErrorNumber": "EPERM",
    "UMask": "0077",
}


def parse_unit(path: Path) -> Unit:
    """systemd's INI dialect: repeated keys accumulate, ``#``/``;`` comments, ``\\`` continuations."""
    unit: Unit = defaultdict(lambda: defaultdict(list))
    section = None
    logical = re.sub(r"\\\n", " ", path.read_text())
    for number, raw in enumerate(logical.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}:{number}: not KEY=VALUE inside a section: {raw!r}"
        assert section is not None, f"{path.name}:{number}: not KEY=VALUE inside a section: {raw!r}"
        unit[section][key.strip()].append(value.strip())
    return unit


def last(unit: Unit, key: str) -> str:
    values = unit["Service"][key]
    assert values, f"{key}= missing"
    return values[-1]


# --- parsing and directives -------------------------------------------------------------------


def test_the_shipped_files() -> None:
    names = sorted(p.relative_to(UNITS).as_posix() for p in UNITS.rglob("*") if p.is_file())
    assert names == [
        "hush-agent-export.service",
        "hush-agent-export.timer",
        "hush-agent.service",
        "hush-agent.service.d/air-gap.conf",
        "hush-collector.service",
        "hushmetric-sysusers.conf",
    ]


@pytest.mark.parametrize("name", SERVICES)
def test_service_hardening(name: str) -> None:
    unit = parse_unit(UNITS / name)
    missing = {k: v for k, v in HARDENING.items() if unit["Service"].get(k, [None])[-1] != v}
    assert not missing, f"{name}: missing or different: {missing}"
    filters = unit["Service"]["SystemCallFilter"]
    assert filters == [
        "@system-service",
        "~@privileged @resources io_uring_setup io_uring_enter io_uring_register",
    ]
    assert "DynamicUser" not in unit["Service"]  # one static user shares the agent's state with export


@pytest.mark.parametrize("name", SERVICES)
def test_writable_paths_are_the_state_directory_only(name: str) -> None:
    service = parse_unit(UNITS / name)["Service"]
    state = service["StateDirectory"]
    assert len(state) == 1
    assert state[0].startswith("hushmetric/")
    assert service["ReadWritePaths"] == [f"/var/lib/{state[0]}"]
    for key in ("ReadWriteDirectories", "BindPaths", "LogsDirectory", "CacheDirectory", "RuntimeDirectory"):
        assert key not in service, f"{name}: {key}= opens another writable path"


@pytest.mark.parametrize("name", ["hush-agent.service", "hush-collector.service"])
def test_exec_start_uses_the_installed_entry_point(name: str) -> None:
    program = name.removesuffix(".service")
    config = "collector" if "collector" in name else "agent"
    verb = "serve" if "collector" in name else "run"
    exec_start = last(parse_unit(UNITS / name), "ExecStart")
    assert exec_start == f"/opt/hushmetric/bin/{program} {verb} --config /etc/hushmetric/{config}.toml"


def test_export_writes_a_new_bundle_in_the_state_directory() -> None:
    exec_start = last(parse_unit(UNITS / "hush-agent-export.service"), "ExecStart")
    assert exec_start.startswith("/bin/sh -c '")
    assert exec_start.endswith("'")
    # systemd turns %% into % and $$ into $; what the shell then runs:
    script = exec_start[len("/bin/sh -c '") : -1].replace("%%", "%").replace("$$", "$")
    out = "/var/lib/hushmetric/agent/outgoing"
    assert script.startswith(f"mkdir -p -m 0750 {out} && exec /opt/hushmetric/bin/hush-agent export ")
    assert "--config /etc/hushmetric/agent.toml" in script
    assert f'--out "{out}/hushmetric-$(date -u +%Y%m%dT%H%M%SZ).tar"' in script


def test_address_families() -> None:
    for name in ("hush-agent.service", "hush-collector.service"):
        assert last(parse_unit(UNITS / name), "RestrictAddressFamilies") == "AF_UNIX AF_INET AF_INET6"
    export = parse_unit(UNITS / "hush-agent-export.service")
    assert last(export, "RestrictAddressFamilies") == "AF_UNIX"
    assert last(export, "PrivateNetwork") == "yes"
    assert export["Service"]["IPAddressDeny"] == ["any"]
    assert "IPAddressAllow" not in export["Service"]


def test_air_gap_drop_in_allows_loopback_only() -> None:
    drop_in = parse_unit(UNITS / "hush-agent.service.d" / "air-gap.conf")
    assert dict(drop_in["Service"]) == {"IPAddressDeny": ["any"], "IPAddressAllow": ["localhost"]}


def test_timer_starts_the_export() -> None:
    timer = parse_unit(UNITS / "hush-agent-export.timer")
    assert timer["Timer"]["Unit"] == ["hush-agent-export.service"]
    assert timer["Timer"]["Persistent"] == ["yes"]
    assert timer["Install"]["WantedBy"] == ["timers.target"]
    export = parse_unit(UNITS / "hush-agent-export.service")
    assert last(export, "Type") == "oneshot"
    assert "Install" not in export


def test_profiles_use_the_units_state_directory() -> None:
    writable = parse_unit(UNITS / "hush-agent.service")["Service"]["ReadWritePaths"]
    for profile in ("saas", "vpc", "on-prem", "air-gap"):
        state = load_config(PROFILES / profile / "agent.toml").config.state_dir
        assert [state] == writable, profile


def test_sysusers_declares_the_unit_user() -> None:
    fields = (UNITS / "hushmetric-sysusers.conf").read_text().splitlines()[-1].split()
    assert fields[:2] == ["u", "hushmetric"]


# --- systemd-analyze --------------------------------------------------------------------------


@pytest.fixture
def runnable_units(tmp_path: Path) -> Path:
    """The units with ExecStart= pointed at an existing program: verify checks that it exists."""
    for path in UNITS.rglob("*"):
        if path.is_file():
            target = tmp_path / path.relative_to(UNITS)
            target.parent.mkdir(parents=True, exist_ok=True)
            text = re.sub(r"/opt/hushmetric/bin/hush-[a-z]+", "/bin/true", path.read_text())
            target.write_text(text)
    return tmp_path


@needs_analyze
def test_systemd_analyze_verify(runnable_units: Path) -> None:
    units = [str(runnable_units / n) for n in (*SERVICES, "hush-agent-export.timer")]
    result = subprocess.run(
        [ANALYZE, "verify", "--man=no", *units], capture_output=True, text=True, check=False, timeout=60
    )
    # verify exits 0 on unknown keys or groups and only warns on stderr: any output is a finding.
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


@needs_analyze
@pytest.mark.parametrize("name", SERVICES)
def test_systemd_analyze_security_exposure(runnable_units: Path, name: str) -> None:
    result = subprocess.run(
        [ANALYZE, "security", "--offline=yes", "--no-pager", str(runnable_units / name)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    if match is None:
        pytest.skip(f"this systemd-analyze cannot score units offline: {result.stderr.strip()[:200]}")
    # 0 is fully locked down, 10 unprotected; "OK" ends at 3.9. A network daemon cannot drop the
    # network, so ~1.3 is near the floor for the agent and the collector; the export has none (~0.5).
    assert float(match.group(1)) <= (1.0 if "export" in name else 2.0), result.stdout[-2000:]


# --- the restrictions against the real stack --------------------------------------------------


def allowed_syscalls(filters: list[str]) -> list[str]:
    """Expand ``SystemCallFilter=`` lines (allow-list first, then ``~`` deny lines) into call names."""
    out = subprocess.run(
        [ANALYZE, "syscall-filter", "--no-pager"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] = []
    for line in out.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.startswith("    ") and not line.strip().startswith("#"):
            current.append(line.strip())

    def expand(item: str) -> set[str]:
        return set().union(*(expand(x) for x in groups[item])) if item.startswith("@") else {item}

    allowed: set[str] = set()
    for value in filters:
        deny = value.startswith("~")
        items = set().union(*(expand(x) for x in value.lstrip("~").split()))
        allowed = allowed - items if deny else allowed | items
    return sorted(allowed)


SANDBOX = str(Path(__file__).with_name("_sandbox.py"))


def in_sandbox(prefix: list[str], code: str) -> str:
    """Run ``code`` in the test's Python under the sandbox; return what it prints."""
    result = subprocess.run(
        [*prefix, sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout.strip()


def probe(*prefix: str) -> dict[str, str]:
    result = subprocess.run(
        [*prefix, sys.executable, str(Path(__file__).with_name("_stack_probe.py"))],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data: dict[str, str] = json.loads(result.stdout)
    return data


def mdwe_supported() -> bool:
    check = "import ctypes; raise SystemExit(ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) != 0)"
    return subprocess.run([sys.executable, "-c", check], check=False, timeout=30).returncode == 0


def test_memory_deny_write_execute_keeps_the_stack_working() -> None:
    if not mdwe_supported():
        pytest.skip("this kernel has no PR_SET_MDWE (Linux >= 6.3); cannot emulate MemoryDenyWriteExecute=")
    prefix = [sys.executable, SANDBOX, "--"]
    rwx = "import mmap; mmap.mmap(-1, 4096, prot=7); print('mapped')"  # 7 = PROT_READ | WRITE | EXEC
    assert in_sandbox([], rwx) == "mapped"
    with pytest.raises(subprocess.CalledProcessError, match="returned non-zero"):
        in_sandbox(prefix, rwx)  # the restriction is in force after exec
    plain = probe()
    assert {k: v for k, v in plain.items() if k != "imports"} == dict.fromkeys(list(plain)[1:], "ok")
    assert probe(*prefix) == plain


@needs_analyze
def test_system_call_filter_keeps_the_stack_working(tmp_path: Path) -> None:
    system_python = "/usr/bin/python3"
    has_seccomp = subprocess.run([system_python, "-c", "import seccomp"], capture_output=True, check=False)
    if has_seccomp.returncode != 0:
        pytest.skip("needs libseccomp's Python module for the system Python (Debian: python3-seccomp)")
    if not mdwe_supported():
        pytest.skip("this kernel has no PR_SET_MDWE (Linux >= 6.3)")
    filters = parse_unit(UNITS / "hush-agent.service")["Service"]["SystemCallFilter"]
    names = allowed_syscalls(filters)
    assert "io_uring_setup" not in names
    assert "setrlimit" not in names
    assert "getrandom" in names
    (tmp_path / "syscalls").write_text("\n".join(names))
    prefix = [system_python, SANDBOX, "--syscalls", str(tmp_path / "syscalls"), "--"]
    nice = "import os\ntry:\n    os.setpriority(os.PRIO_PROCESS, 0, 5); print('set')\nexcept OSError as e: print(e.errno)"
    assert in_sandbox([], nice) == "set"
    assert in_sandbox(prefix, nice) == "1"  # EPERM: setpriority is in the denied @resources group
    plain = probe()
    assert probe(*prefix) == plain
