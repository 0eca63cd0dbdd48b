"""The offline installer: build the bundle, install it into a fresh venv with no package index (and, where
the kernel lets us, no network at all), then run the agent from that install. Every refusal test
alters a hard-linked copy of the one bundle the module builds.

The build goes through pip's usual configuration and cache, so after the first run it needs no
download; the install needs neither.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import nacl.signing
import pytest

from hushmetric import dsse
from hushmetric.keys import key_id, public_key_b64

ROOT = Path(__file__).resolve().parents[2]
BUILDER = ROOT / "packaging" / "airgap.py"
SIGNATURE = "SHA256SUMS.dsse.json"
SUMS_TYPE = "application/vnd.hushmetric.sha256sums.v1+text"
# Fixed build time: the work tree may gain commits between two builds (the default is the last commit's time).
EPOCH = {"SOURCE_DATE_EPOCH": "1767225600"}


def _no_network_prefix() -> list[str]:
    """``unshare -n``: a new network namespace with nothing in it, if this machine allows one."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    ok = subprocess.run([unshare, "-n", "true"], capture_output=True, check=False, timeout=30)
    return [unshare, "-n"] if ok.returncode == 0 else []


OFFLINE = _no_network_prefix()


def run(
    cmd: list[str],
    *,
    cwd: Path,
    offline: bool = False,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return subprocess.run(
        [*(OFFLINE if offline else []), *cmd],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        cwd=cwd,
        env=clean | (env or {}),
    )


@dataclass(frozen=True)
class Release:
    """The release key pair the module's bundle is signed with, created as docs/operations.md says."""

    key: Path
    public: str  # base64, as in hushmetric-release.pub
    key_id: str


@dataclass(frozen=True)
class Built:
    archive: Path
    stem: str
    output: str
    seconds: float


@dataclass(frozen=True)
class Installed:
    bundle: Path  # the extracted bundle folder
    prefix: Path
    units: Path
    output: str
    seconds: float


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkout as it is now: builds and checks see one tree even while the work tree changes."""
    dest = tmp_path_factory.mktemp("snapshot") / "hushmetric"
    skip = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache")
    shutil.copytree(ROOT, dest, ignore=skip, symlinks=True)
    stale = dest / "build" / "lib" / "agent"  # what an earlier in-tree build of a since-deleted module leaves
    stale.mkdir(parents=True)
    (stale / "gone.py").write_text("")
    return dest


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    key = tmp_path_factory.mktemp("release") / "release.key"
    result = run([sys.executable, str(BUILDER), "--new-release-key", str(key)], cwd=key.parent)
    assert result.returncode == 0, result.stderr
    public = key.with_name("release.key.pub").read_text().strip()
    return Release(key, public, key_id(base64.b64decode(public)))


def build_cmd(project: Path, out: Path, key: Path) -> list[str]:
    return [
        sys.executable, str(BUILDER), "--project", str(project), "--out-dir", str(out), "--release-key", str(key)
    ]  # fmt: skip


def install_cmd(bundle: Path, prefix: Path, *args: str) -> list[str]:
    return ["sh", str(bundle / "install.sh"), "--prefix", str(prefix), *args]


@pytest.fixture(scope="module")
def built(snapshot: Path, release: Release, tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("dist")
    started = time.monotonic()
    result = run(build_cmd(snapshot, out, release.key), cwd=ROOT, timeout=600, env=EPOCH)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    (archive,) = out.glob("hushmetric-airgap-*.tar.gz")
    return Built(archive, archive.name.removesuffix(".tar.gz"), result.stdout, seconds)


@pytest.fixture(scope="module")
def extracted(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("extract")
    with tarfile.open(built.archive) as tar:
        tar.extractall(where, filter="data")
    return where / built.stem


@pytest.fixture(scope="module")
def installed(extracted: Path, release: Release, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("install")
    prefix, units = base / "hushmetric", base / "units"
    started = time.monotonic()
    key = f"@{release.key}.pub"
    result = run(
        install_cmd(
            extracted, prefix, "--release-key", key, "--systemd-dir", str(units), "--profile", "air-gap"
        ),
        cwd=base,
        offline=True,
    )
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return Installed(extracted, prefix, units, result.stdout + result.stderr, seconds)


def copy_bundle(extracted: Path, dest: Path) -> Path:
    """A cheap copy (hard links): replace a file, never write into one, to keep the original intact."""
    shutil.copytree(extracted, dest, copy_function=os.link)
    return dest


def replace(path: Path, data: bytes) -> None:
    """Write ``data`` as a new file: ``path`` may be a hard link to the module's bundle."""
    path.unlink()
    path.write_bytes(data)


def flip(path: Path, offset: int) -> None:
    """Flip the low bit of one byte (a negative offset counts from the end)."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 1
    replace(path, bytes(data))


def resign(bundle: Path, key: nacl.signing.SigningKey) -> None:
    """Sign the bundle's SHA256SUMS again, as the builder does, with ``key``."""
    sums = (bundle / "SHA256SUMS").read_bytes()
    replace(bundle / SIGNATURE, dsse.to_json(dsse.sign(sums, SUMS_TYPE, key)))


def refused(result: subprocess.CompletedProcess[str], message: str, prefix: Path) -> None:
    """Exit 1, a last line that says why (sha256sum may name the file above it), nothing installed."""
    assert result.returncode == 1, result.stdout + result.stderr
    last = result.stderr.splitlines()[-1] if result.stderr else ""
    assert last.startswith("install.sh: error: "), result.stderr
    assert message in last, result.stderr
    assert not prefix.exists()


# --- the archive ------------------------------------------------------------------------------


def test_archive_name_and_checksum_file(built: Built) -> None:
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert built.stem.startswith(f"hushmetric-airgap-0.1.0-{tag}-")
    sidecar = built.archive.with_name(built.archive.name + ".sha256").read_text()
    assert sidecar == f"{hashlib.sha256(built.archive.read_bytes()).hexdigest()}  {built.archive.name}\n"
    for step in ("[1/6]", "[2/6]", "[3/6]", "[4/6]", "[5/6]", "[6/6]", "done:"):
        assert step in built.output


def test_same_commit_builds_the_same_bytes(
    built: Built, snapshot: Path, release: Release, tmp_path: Path
) -> None:
    """Reproducible: an operator can rebuild from the same commit and compare the published sha256
    (Ed25519 signatures are deterministic, and the SBOM carries no serial number or wall-clock time)."""
    result = run(build_cmd(snapshot, tmp_path, release.key), cwd=ROOT, timeout=600, env=EPOCH)
    assert result.returncode == 0, result.stderr[-3000:]
    again = tmp_path / built.archive.name
    assert hashlib.sha256(again.read_bytes()).digest() == hashlib.sha256(built.archive.read_bytes()).digest()


def test_archive_members_are_safe_and_owned_by_root(built: Built) -> None:
    with tarfile.open(built.archive) as tar:
        members = tar.getmembers()
    assert members[0].name == built.stem
    assert members[0].isdir()
    for m in members:
        assert m.name == built.stem or m.name.startswith(built.stem + "/"), m.name
        assert ".." not in Path(m.name).parts
        assert not m.name.startswith("/")
        assert m.isdir() or m.isfile(), f"{m.name}: only files and folders"
        assert (m.uid, m.gid, m.mode & 0o022) == (0, 0, 0), m.name
    install = next(m for m in members if m.name == f"{built.stem}/install.sh")
    assert install.mode == 0o755


def test_bundle_contents(extracted: Path) -> None:
    names = {p.relative_to(extracted).as_posix() for p in extracted.rglob("*") if p.is_file()}
    for expected in (
        "install.sh",
        "BUNDLE",
        "SHA256SUMS",
        SIGNATURE,
        "sbom.cdx.json",
        "requirements.txt",
        "systemd/hush-agent.service",
        "systemd/hush-collector.service",
        "systemd/hush-agent-export.service",
        "systemd/hush-agent-export.timer",
        "systemd/hush-agent.service.d/air-gap.conf",
        "profiles/air-gap/agent.toml",
        "profiles/saas/agent.toml",
    ):
        assert expected in names
    bundle = dict(line.split("=", 1) for line in (extracted / "BUNDLE").read_text().splitlines())
    assert bundle["VERSION"] == "0.1.0"
    assert bundle["PYTHON"] == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_sha256sums_cover_every_file(extracted: Path) -> None:
    listed = {}
    for line in (extracted / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        listed[name] = digest
    files = {p.relative_to(extracted).as_posix(): p for p in extracted.rglob("*") if p.is_file()}
    assert set(listed) == set(files) - {"SHA256SUMS", SIGNATURE}
    for name, digest in listed.items():
        assert hashlib.sha256(files[name].read_bytes()).hexdigest() == digest, name


def test_every_runtime_dependency_is_pinned_with_its_wheel_hash(extracted: Path) -> None:
    pins = {}
    for line in (extracted / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            spec, digest = line.split(" --hash=sha256:")
            pins[spec.split("==")[0].lower()] = digest
    wheels = {hashlib.sha256(w.read_bytes()).hexdigest() for w in (extracted / "wheels").glob("*.whl")}
    assert set(pins.values()) == wheels
    for needed in ("hushmetric", "msgspec", "pynacl", "opendp", "grpcio", "protobuf", "aiomqtt", "uvloop"):
        assert needed in pins, needed


def test_project_wheel_holds_the_source_modules_only(extracted: Path, snapshot: Path) -> None:
    """Built from a clean copy: a stale build/ in the checkout cannot add modules."""
    (wheel,) = (extracted / "wheels").glob("hushmetric-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        in_wheel = {n for n in zf.namelist() if n.endswith(".py")}
    on_disk = {
        p.relative_to(snapshot).as_posix()
        for top in ("agent", "collector", "hushmetric")
        for p in (snapshot / top).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert in_wheel == on_disk
    assert "agent/gone.py" not in in_wheel


# --- signature and SBOM -----------------------------------------------------------------------


def test_sha256sums_is_signed_by_the_release_key(built: Built, extracted: Path, release: Release) -> None:
    """The envelope verifies with the library the collector uses, over SHA256SUMS byte for byte."""
    envelope = dsse.from_json((extracted / SIGNATURE).read_bytes())
    public = base64.b64decode(release.public)
    verified = dsse.verify(envelope, SUMS_TYPE, {release.key_id: public}.get)
    assert verified.payload == (extracted / "SHA256SUMS").read_bytes()
    assert verified.keyid == release.key_id
    assert len(envelope.signatures) == 1
    # The companion public key beside the archive, and the builder's word on which key signed.
    assert (built.archive.parent / "hushmetric-release.pub").read_text() == release.public + "\n"
    assert f"signed by release key {release.key_id}" in built.output
    # The release key file is secret: created 0600, its public half beside it.
    assert release.key.stat().st_mode & 0o777 == 0o600


def test_installer_and_builder_name_the_same_things() -> None:
    """install.sh spells out the payload type and file names the builder uses: one list for both."""
    script = (ROOT / "packaging" / "install.sh").read_text()
    builder = BUILDER.read_text()
    for constant in (SUMS_TYPE, SIGNATURE, "hushmetric-release.pub"):
        assert constant in script, constant
        assert f'"{constant}"' in builder, constant


def test_sbom_lists_every_wheel_with_its_hash(extracted: Path) -> None:
    sbom = json.loads((extracted / "sbom.cdx.json").read_text())
    assert (sbom["bomFormat"], sbom["specVersion"]) == ("CycloneDX", "1.6")
    assert sbom["metadata"]["component"]["name"] == "hushmetric"
    assert "serialNumber" not in sbom  # reproducible: nothing random
    listed = {}
    for component in sbom["components"]:
        (digest,) = (
            h["content"]
            for ref in component["externalReferences"]
            for h in ref["hashes"]
            if h["alg"] == "SHA-256"
        )
        name = re.sub(r"[-_.]+", "-", component["name"]).lower()  # PEP 503, as purl wants it
        assert component["purl"] == f"pkg:pypi/{name}@{component['version']}"
        listed[digest] = (name, component["version"])
    wheels = {}
    for wheel in (extracted / "wheels").glob("*.whl"):
        name, version = wheel.name.split("-")[:2]
        wheels[hashlib.sha256(wheel.read_bytes()).hexdigest()] = (
            re.sub(r"[-_.]+", "-", name).lower(),
            version,
        )
    assert listed == wheels


# --- install.sh -------------------------------------------------------------------------------


def test_install_offline_into_a_fresh_venv(installed: Installed, release: Release) -> None:
    assert (installed.prefix / "pyvenv.cfg").exists()
    out = installed.output
    assert f"signed by release key {release.key_id} (from {release.key}.pub)" in out
    assert out.index("signed by release key") < out.index("files ok")  # the signature first
    assert "files ok" in out
    assert "wheels offline (pip --no-index --require-hashes)" in out
    # The key is pinned in the install: upgrades are checked against it.
    assert (installed.prefix / "hushmetric-release.pub").read_text() == release.public + "\n"
    assert "installed hushmetric 0.1.0" in out
    # The venv holds its own copy: nothing resolves to this checkout.
    where = run(
        [str(installed.prefix / "bin" / "python"), "-c", "import agent, hushmetric; print(agent.__file__)"],
        cwd=installed.prefix,
    )
    assert where.returncode == 0, where.stdout + where.stderr
    assert where.stdout.startswith(str(installed.prefix)), where.stdout + where.stderr
    assert str(ROOT) not in (installed.prefix / "pyvenv.cfg").read_text()


def test_installed_cli_runs(installed: Installed) -> None:
    for program in ("hush-agent", "hush-collector"):
        result = run([str(installed.prefix / "bin" / program), "--help"], cwd=installed.prefix, offline=True)
        assert result.returncode == 0, result.stderr
        assert f"usage: {program}" in result.stdout


def test_installed_units_point_at_the_install(installed: Installed) -> None:
    agent = (installed.units / "hush-agent.service").read_text()
    assert f"ExecStart={installed.prefix}/bin/hush-agent run " in agent
    assert "/opt/hushmetric/" not in agent
    assert (installed.units / "hush-agent.service.d" / "air-gap.conf").exists()
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian: systemd)")
    names = [
        "hush-agent.service",
        "hush-collector.service",
        "hush-agent-export.service",
        "hush-agent-export.timer",
    ]
    result = run(
        [analyze, "verify", "--man=no", *(str(installed.units / n) for n in names)], cwd=installed.units
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


def test_agent_flow_from_the_install(installed: Installed, tmp_path: Path) -> None:
    """Offline, from the install: init → run --once (demo source, no collector) → validate air-gap →
    the export exactly as hush-agent-export.service runs it."""
    agent = str(installed.prefix / "bin" / "hush-agent")
    if run([agent, "init", "--help"], cwd=tmp_path).returncode != 0:
        pytest.xfail("the installed hush-agent has no `init` command yet")
    cfg = tmp_path / "cfg"
    steps = [
        [agent, "init", "--dir", str(cfg), "--tenant", "demo"],
        [agent, "run", "--once", "--config", str(cfg / "agent.toml")],
        [agent, "validate", "--profile", "air-gap", "--config", str(cfg / "agent.toml")],
    ]
    for cmd in steps:
        result = run(cmd, cwd=tmp_path, offline=True)
        assert result.returncode == 0, f"{' '.join(cmd[1:3])}: {result.stdout[-2000:]}{result.stderr[-3000:]}"

    unit = (installed.units / "hush-agent-export.service").read_text()
    (exec_start,) = (
        line.removeprefix("ExecStart=") for line in unit.splitlines() if line.startswith("ExecStart=")
    )
    script = exec_start.removeprefix("/bin/sh -c '").removesuffix("'").replace("%%", "%").replace("$$", "$")
    script = script.replace("/var/lib/hushmetric/agent", str(tmp_path / "state")).replace(
        "/etc/hushmetric/agent.toml", str(cfg / "agent.toml")
    )
    result = run(["sh", "-c", script], cwd=tmp_path, offline=True)
    assert result.returncode == 0, result.stdout + result.stderr
    bundles = list((tmp_path / "state" / "outgoing").glob("hushmetric-*Z.tar"))
    assert len(bundles) == 1, f"run --once released nothing to export: {result.stdout}"
    assert bundles[0].stat().st_size > 0


# --- install.sh refusals ----------------------------------------------------------------------


def _wheel(bundle: Path, name: str) -> Path:
    (wheel,) = (bundle / "wheels").glob(f"{name}-*.whl")
    return wheel


def _envelope_offset(bundle: Path, marker: str) -> int:
    """Offset of the byte 10 characters into the value that follows ``marker`` in the envelope."""
    return (bundle / SIGNATURE).read_bytes().index(marker.encode()) + len(marker) + 10


def _flip_signature(bundle: Path) -> None:
    envelope = json.loads((bundle / SIGNATURE).read_text())
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[17] ^= 0x10
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    replace(bundle / SIGNATURE, json.dumps(envelope, separators=(",", ":")).encode())


# Each: what is altered, and the words of the refusal. Wheels are caught by SHA256SUMS, SHA256SUMS and
# the envelope by the signature or by the envelope not being the one the builder writes. Where the
# byte is one of a digest, a key id or a signature, which check speaks first depends on the value.
Alter = Callable[[Path], None]
TAMPERING: dict[str, tuple[Alter, str]] = {
    "wheel, last byte": (lambda b: flip(_wheel(b, "msgspec"), -1), "checksum mismatch"),
    "SHA256SUMS, a digest": (lambda b: flip(b / "SHA256SUMS", 0), f"{SIGNATURE} does not match SHA256SUMS"),
    "SHA256SUMS, last newline": (
        lambda b: flip(b / "SHA256SUMS", -1),
        f"{SIGNATURE} does not match SHA256SUMS",
    ),
    "signature, one bit": (_flip_signature, "the release signature of SHA256SUMS does not verify"),
    "envelope, payload": (
        lambda b: flip(b / SIGNATURE, _envelope_offset(b, '"payload":"')),
        "do not install",
    ),
    "envelope, payloadType": (
        lambda b: flip(b / SIGNATURE, _envelope_offset(b, '"payloadType":"')),
        f"{SIGNATURE} does not match SHA256SUMS",
    ),
    "envelope, keyid": (lambda b: flip(b / SIGNATURE, _envelope_offset(b, '"keyid":"')), "do not install"),
    "envelope, signature text": (
        lambda b: flip(b / SIGNATURE, _envelope_offset(b, '"sig":"')),
        "do not install",
    ),
    "envelope, first byte": (lambda b: flip(b / SIGNATURE, 0), "is not a release signature"),
    "envelope, last byte": (lambda b: flip(b / SIGNATURE, -1), "is not a release signature"),
    "envelope, removed": (lambda b: (b / SIGNATURE).unlink(), "is missing: this bundle is not signed"),
}


@pytest.mark.parametrize("what", TAMPERING)
def test_tampered_bundle_is_refused_before_anything_is_installed(
    what: str, extracted: Path, release: Release, tmp_path: Path
) -> None:
    bundle = copy_bundle(extracted, tmp_path / "bundle")
    alter, message = TAMPERING[what]
    alter(bundle)
    result = run(install_cmd(bundle, tmp_path / "p", "--release-key", release.public), cwd=tmp_path)
    refused(result, message, tmp_path / "p")
    assert "do not install it" in result.stderr


def test_a_flipped_byte_in_each_wheel_is_named(extracted: Path, release: Release, tmp_path: Path) -> None:
    """Every wheel at once, each at another offset: the refusal names every one of them."""
    bundle = copy_bundle(extracted, tmp_path / "bundle")
    wheels = sorted((bundle / "wheels").glob("*.whl"))
    for i, wheel in enumerate(wheels):
        flip(wheel, (wheel.stat().st_size * i) // len(wheels))
    result = run(install_cmd(bundle, tmp_path / "p", "--release-key", release.public), cwd=tmp_path)
    refused(result, "checksum mismatch", tmp_path / "p")
    for wheel in wheels:
        assert f"wheels/{wheel.name}: FAILED" in result.stdout + result.stderr, wheel.name


def test_bundle_resigned_by_another_key_is_refused(extracted: Path, release: Release, tmp_path: Path) -> None:
    """The attack the signature exists for: alter a wheel, fix SHA256SUMS, sign with one's own key."""
    bundle = copy_bundle(extracted, tmp_path / "bundle")
    wheel = _wheel(bundle, "msgspec")
    flip(wheel, -1)
    sums = (bundle / "SHA256SUMS").read_text()
    sums = re.sub(
        r"^[0-9a-f]{64}(  wheels/msgspec-)",
        lambda m: hashlib.sha256(wheel.read_bytes()).hexdigest() + m[1],
        sums,
        flags=re.M,
    )
    replace(bundle / "SHA256SUMS", sums.encode())
    other = nacl.signing.SigningKey.generate()
    resign(bundle, other)
    other_id = key_id(bytes(other.verify_key))
    result = run(install_cmd(bundle, tmp_path / "p", "--release-key", release.public), cwd=tmp_path)
    refused(
        result,
        f"signed by release key {other_id}, but the release key from --release-key is {release.key_id}",
        tmp_path / "p",
    )


def test_wrong_release_key_is_refused(extracted: Path, tmp_path: Path) -> None:
    other = public_key_b64(bytes(nacl.signing.SigningKey.generate().verify_key))
    (tmp_path / "other.pub").write_text(other + "\n")
    result = run(install_cmd(extracted, tmp_path / "p", "--release-key", "@other.pub"), cwd=tmp_path)
    refused(result, f"but the release key from {tmp_path / 'other.pub'} is ", tmp_path / "p")


def test_release_key_must_be_given_and_well_formed(extracted: Path, tmp_path: Path) -> None:
    none = run(install_cmd(extracted, tmp_path / "p"), cwd=tmp_path)
    refused(none, "no release public key: pass --release-key KEY or --release-key @FILE", tmp_path / "p")
    for bad in ("not-a-key", base64.b64encode(b"x" * 31).decode(), "A" * 42 + "B="):
        result = run(install_cmd(extracted, tmp_path / "p", "--release-key", bad), cwd=tmp_path)
        refused(result, "is not an Ed25519 public key (32 bytes in base64", tmp_path / "p")
    missing = run(install_cmd(extracted, tmp_path / "p", "--release-key", "@nowhere.pub"), cwd=tmp_path)
    refused(missing, f"cannot read the release public key file {tmp_path / 'nowhere.pub'}", tmp_path / "p")


def _fake_python(tmp_path: Path) -> Path:
    """A "python" that stops install.sh at the Python check, right after every bundle check passed."""
    fake = tmp_path / "python9"
    fake.write_text("#!/bin/sh\necho '9.1 linux-x86_64'\n")
    fake.chmod(0o755)
    return fake


def test_companion_key_beside_the_bundle_is_used(
    extracted: Path, built: Built, release: Release, tmp_path: Path
) -> None:
    bundle = copy_bundle(extracted, tmp_path / built.stem)
    shutil.copy(built.archive.parent / "hushmetric-release.pub", tmp_path)
    fake = _fake_python(tmp_path)
    result = run(install_cmd(bundle, tmp_path / "p", "--python", str(fake)), cwd=tmp_path)
    companion = tmp_path / "hushmetric-release.pub"
    assert f"signed by release key {release.key_id} (from {companion})" in result.stdout, result.stderr
    assert "note: this key came with the bundle" in result.stdout
    refused(result, "'9.1 linux-x86_64'", tmp_path / "p")


def test_key_pinned_by_the_install_beats_a_companion_key(
    installed: Installed, extracted: Path, built: Built, tmp_path: Path
) -> None:
    """An upgrade carrying its own key beside it is still checked against the key pinned at install."""
    bundle = copy_bundle(extracted, tmp_path / built.stem)
    other = nacl.signing.SigningKey.generate()
    resign(bundle, other)
    (tmp_path / "hushmetric-release.pub").write_text(public_key_b64(bytes(other.verify_key)) + "\n")
    pinned = installed.prefix / "hushmetric-release.pub"
    before = pinned.read_bytes()
    result = run(install_cmd(bundle, installed.prefix), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"but the release key from {pinned}, pinned by the last install, is " in result.stderr
    assert pinned.read_bytes() == before


@pytest.mark.parametrize("version", ["OpenSSL 1.1.1k  FIPS 25 Mar 2021", "LibreSSL 3.3.6"])
def test_openssl_without_ed25519_raw_verify_is_refused(
    version: str, extracted: Path, release: Release, tmp_path: Path
) -> None:
    fake = tmp_path / "openssl"
    fake.write_text(f"#!/bin/sh\necho '{version}'\n")
    fake.chmod(0o755)
    result = run(
        install_cmd(extracted, tmp_path / "p", "--release-key", release.public, "--openssl", str(fake)),
        cwd=tmp_path,
    )
    refused(
        result, f"needs OpenSSL 3.0 or newer, but {fake} is '{version}'; pass --openssl PATH", tmp_path / "p"
    )


def _docs_recipe() -> str:
    """The shell lines docs/operations.md gives for checking a bundle with OpenSSL alone."""
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text[text.index("## Offline installer: verifying the release signature") :]
    start = section.index("```sh\n") + len("```sh\n")
    return section[start : section.index("```\n", start)]


def test_docs_recipe_checks_a_bundle_with_openssl_alone(
    extracted: Path, release: Release, tmp_path: Path
) -> None:
    """The documented check that runs nothing from the bundle: it passes, and a flipped byte in
    SHA256SUMS, in the signature or in a wheel fails it."""
    recipe = _docs_recipe().replace("/etc/hushmetric/hushmetric-release.pub", f"{release.key}.pub")
    assert f"{release.key}.pub" in recipe
    ok = run(["sh", "-c", recipe], cwd=extracted)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Signature Verified Successfully" in ok.stdout, ok.stdout + ok.stderr
    assert "bundle verified" in ok.stdout
    alterations: list[tuple[str, Alter]] = [
        ("sums", lambda b: flip(b / "SHA256SUMS", 0)),
        ("signature", _flip_signature),
        ("wheel", lambda b: flip(_wheel(b, "msgspec"), -1)),
    ]
    for name, alter in alterations:
        bundle = copy_bundle(extracted, tmp_path / name)
        alter(bundle)
        bad = run(["sh", "-c", recipe], cwd=bundle)
        assert bad.returncode != 0, (name, bad.stdout)
        assert "bundle verified" not in bad.stdout, (name, bad.stdout)


def test_added_wheel_is_refused(extracted: Path, release: Release, tmp_path: Path) -> None:
    bundle = copy_bundle(extracted, tmp_path / "bundle")
    (bundle / "wheels" / "evil-1.0-py3-none-any.whl").write_bytes(b"PK")
    result = run(install_cmd(bundle, tmp_path / "p", "--release-key", release.public), cwd=tmp_path)
    refused(result, "files SHA256SUMS does not list: wheels/evil-1.0-py3-none-any.whl", tmp_path / "p")


def test_wrong_python_is_refused(extracted: Path, release: Release, tmp_path: Path) -> None:
    fake = _fake_python(tmp_path)
    result = run(
        install_cmd(extracted, tmp_path / "p", "--release-key", release.public, "--python", str(fake)),
        cwd=tmp_path,
    )
    refused(result, f"wheels for CPython {sys.version_info.major}.{sys.version_info.minor}", tmp_path / "p")
    assert "'9.1 linux-x86_64'" in result.stderr


def test_usage_errors(extracted: Path, tmp_path: Path) -> None:
    bad = run(["sh", str(extracted / "install.sh"), "--profile", "cloud"], cwd=tmp_path)
    assert bad.returncode == 1
    assert "--profile must be one of" in bad.stderr
    unknown = run(["sh", str(extracted / "install.sh"), "--frobnicate"], cwd=tmp_path)
    assert unknown.returncode == 2
    assert "unknown argument: --frobnicate" in unknown.stderr
    helped = run(["sh", str(extracted / "install.sh"), "--help"], cwd=tmp_path)
    assert helped.returncode == 0
    assert "--no-index" in helped.stdout
    assert "--release-key" in helped.stdout


def _builder(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """packaging/airgap.py as a module (it is a script: ``packaging`` is PyPI's name)."""
    spec = importlib.util.spec_from_file_location("hush_airgap_builder", BUILDER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_build_time_defaults_to_the_last_commit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    builder = _builder(monkeypatch)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    git = shutil.which("git")
    if git is not None and (ROOT / ".git").exists():
        commit = subprocess.run(
            [git, "-C", str(ROOT), "log", "-1", "--format=%ct"], capture_output=True, text=True
        )
        assert builder._source_date(ROOT) == int(commit.stdout)
    before = int(time.time())
    assert before <= builder._source_date(tmp_path) <= int(time.time())  # not a checkout: now
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    assert builder._source_date(ROOT) == 86400
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(builder.BuildError, match="SOURCE_DATE_EPOCH must be a number"):
        builder._source_date(ROOT)


def test_builder_reports_errors_in_one_line(release: Release, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")  # no version
    result = run(
        [*build_cmd(tmp_path, tmp_path / "d", release.key)],
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("airgap: error: cannot read name and version from")
    assert "Traceback" not in result.stderr


def test_builder_needs_a_private_release_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """No key, a missing key, a key others can read: one line each, before any wheel is built."""
    builder = _builder(monkeypatch)
    base = ["--project", str(ROOT), "--out-dir", str(tmp_path / "d")]
    create = "create one once with: python packaging/airgap.py --new-release-key FILE"
    key = tmp_path / "release.key"
    assert builder.main(["--new-release-key", str(key)]) == 0
    assert key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "release.key.pub").exists()
    key.chmod(0o640)
    cases = [
        ([], f"no release key: pass --release-key FILE (make airgap-bundle RELEASE_KEY=FILE); {create}"),
        (
            ["--release-key", str(tmp_path / "nope.key")],
            f"release key {tmp_path / 'nope.key'} does not exist",
        ),
        (["--release-key", str(key)], "signing key is readable by others (mode 640); chmod 600 it"),
        (["--new-release-key", str(key)], f"{key} exists; a release key is never overwritten"),
    ]
    capsys.readouterr()
    for args, message in cases:
        assert builder.main([*base, *args]) == 1
        err = capsys.readouterr().err
        assert err.startswith("airgap: error: "), err
        assert message in err, err
        assert err.count("\n") == 1, err
    assert not (tmp_path / "d").exists()


def test_figures(built: Built, installed: Installed) -> None:
    """The figures the issue asks for; shown with ``pytest -rP``. Budget: well inside ``make test``."""
    mode = "in an empty network namespace" if OFFLINE else "with --no-index"
    size = built.archive.stat().st_size / 1e6
    print(
        f"airgap bundle {size:.1f} MB; build {built.seconds:.1f} s; install {mode} {installed.seconds:.1f} s"
    )
    assert built.seconds + installed.seconds < 240
