"""Build the offline installer: ``dist/hushmetric-airgap-<version>-<platform>.tar.gz``.

    python packaging/airgap.py --release-key FILE [--out-dir DIR] [--extra NAME]... [--project DIR]
    python packaging/airgap.py --new-release-key FILE     # once: FILE (0600) and FILE.pub

The bundle holds, under one top-level folder of the same name:

``wheels/``               hushmetric and every runtime dependency as wheels, for this Python and platform
``requirements.txt``      each wheel pinned by version and SHA-256 (``pip install --require-hashes``)
``sbom.cdx.json``         CycloneDX SBOM of the wheelhouse (``cyclonedx-py requirements``)
``install.sh``            checks signature and SHA256SUMS, creates a venv, installs with ``pip --no-index``
``systemd/``              the hardened units (``packaging/systemd``)
``profiles/``             the deployment profiles (``configs/profiles``)
``BUNDLE``                version, Python and platform the wheels are for
``SHA256SUMS``            ``sha256sum -c`` format, every file above
``SHA256SUMS.dsse.json``  SHA256SUMS signed by the release key: a DSSE envelope (Ed25519), as batches are

Beside the archive it writes ``<archive>.sha256`` and ``hushmetric-release.pub``, the release public
key (base64, as ``hushmetric.keys`` writes keys): publish both apart from the bundle.

Run it with the Python the isolated machine will run (same minor version and platform): the wheels are
that interpreter's. Wheels come through pip's usual configuration and cache, so a second build reuses
what the first downloaded. Before packing, the wheelhouse is resolved once with ``--no-index`` and no
pip configuration at all, so a bundle that could not install offline is never written.

This file runs as a script (``packaging/`` is not importable as a package: the name belongs to PyPI's
``packaging``, which pip itself imports). It signs with the project's own primitives
(``hushmetric.dsse``, ``hushmetric.keys``, PyNaCl) and builds the SBOM with ``cyclonedx-bom`` (dev
extra), so it runs in the project's venv: ``make airgap-bundle RELEASE_KEY=FILE``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import nacl.signing

__all__ = [
    "COMPANION_KEY",
    "RELEASE_PAYLOAD_TYPE",
    "SBOM",
    "SIGNATURE",
    "BuildError",
    "BuildResult",
    "build",
    "load_release_key",
    "main",
    "new_release_key",
    "platform_tag",
    "sign_sums",
]

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
# install.sh spells these out too; tests/packaging/test_airgap.py checks that both agree.
RELEASE_PAYLOAD_TYPE = "application/vnd.hushmetric.sha256sums.v1+text"
SIGNATURE = "SHA256SUMS.dsse.json"
COMPANION_KEY = "hushmetric-release.pub"
SBOM = "sbom.cdx.json"
_WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")


class BuildError(Exception):
    """A bundle that cannot be built; ``str()`` says why and what to do."""


@dataclass(frozen=True)
class BuildResult:
    path: Path
    size: int
    sha256: str
    wheels: int
    seconds: float
    key_id: str  # of the release key that signed SHA256SUMS


def platform_tag() -> str:
    """``cp311-linux_x86_64``: the interpreter and platform the wheelhouse is for."""
    impl = {"cpython": "cp"}.get(sys.implementation.name, sys.implementation.name)
    plat = re.sub(r"[^A-Za-z0-9]+", "_", sysconfig.get_platform())
    return f"{impl}{sys.version_info.major}{sys.version_info.minor}-{plat}"


def _say(message: str) -> None:
    print(message, flush=True)


def _run(cmd: Sequence[str], *, env: dict[str, str] | None = None, what: str) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise BuildError(f"{what} failed (exit {result.returncode}):\n{tail}")
    return result.stdout


def _pip(args: Sequence[str], *, env: dict[str, str] | None = None, what: str) -> str:
    return _run([sys.executable, "-m", "pip", *args], env=env, what=what)


def _offline_env() -> dict[str, str]:
    """The environment with no pip configuration: no extra index, no find-links, no config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def _project_version(project: Path) -> tuple[str, str]:
    try:
        with (project / "pyproject.toml").open("rb") as fh:
            meta = tomllib.load(fh)["project"]
        return str(meta["name"]), str(meta["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise BuildError(f"cannot read name and version from {project / 'pyproject.toml'}: {exc}") from exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield path


def _source_date(project: Path) -> int:
    """SOURCE_DATE_EPOCH, else the time of the checkout's last commit, else now: the time stamped into
    the archive and the project wheel, so one commit builds the same bytes on any day."""
    if value := os.environ.get("SOURCE_DATE_EPOCH", "").strip():
        if value.isdigit():
            return int(value)
        raise BuildError(f"SOURCE_DATE_EPOCH must be a number of seconds, not {value!r}")
    git = shutil.which("git")
    if git is not None:
        result = subprocess.run(
            [git, "-C", str(project), "log", "-1", "--format=%ct"],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode == 0 and result.stdout.strip().isdigit():
            return int(result.stdout.strip())
    return int(time.time())


# Left out of the copy the project wheel is built from: setuptools builds in the source tree, and a
# stale build/lib (a module since deleted or renamed) would otherwise end up in the wheel.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
    "demo-run", "*.db", "*.db-wal", "*.db-shm",
)  # fmt: skip


def _wheelhouse(project: Path, wheels: Path, extras: Sequence[str], mtime: int) -> None:
    source = wheels.parent.parent / "source"
    shutil.copytree(project, source, ignore=_NOT_SOURCE, symlinks=True)
    spec = f"{source}[{','.join(extras)}]" if extras else str(source)
    _pip(
        ["wheel", "--disable-pip-version-check", "--prefer-binary", "--wheel-dir", str(wheels), spec],
        env={**os.environ, "SOURCE_DATE_EPOCH": str(mtime)},
        what="building the wheelhouse (pip wheel)",
    )


def _resolve_offline(wheels: Path, name: str, version: str, extras: Sequence[str]) -> list[tuple[str, str]]:
    """Resolve ``name==version`` from ``wheels`` alone, as install.sh will; return (name, version) pairs."""
    req = f"{name}[{','.join(extras)}]=={version}" if extras else f"{name}=={version}"
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        _pip(
            ["install", "--dry-run", "--ignore-installed", "--no-index", "--find-links", str(wheels),
             "--only-binary=:all:", "--disable-pip-version-check", "--quiet", "--report", str(report), req],
            env=_offline_env(),
            what="resolving the wheelhouse offline (pip install --dry-run --no-index)",
        )  # fmt: skip
        data = json.loads(report.read_text())
    return sorted((item["metadata"]["name"], item["metadata"]["version"]) for item in data["install"])


def _requirements(wheels: Path, resolved: list[tuple[str, str]]) -> str:
    def norm(value: str) -> str:
        return re.sub(r"[-_.]+", "-", value).lower()

    by_name: dict[str, Path] = {}
    for path in wheels.glob("*.whl"):
        match = _WHEEL.match(path.name)
        if match is None:
            raise BuildError(f"not a wheel file name: {path.name}")
        by_name[norm(match["name"])] = path
    needed = {norm(n) for n, _ in resolved}
    for extra in set(by_name) - needed:  # pulled in by pip wheel but not needed on this platform
        by_name.pop(extra).unlink()
    lines = [f"{name}=={ver} --hash=sha256:{_sha256(by_name[norm(name)])}" for name, ver in resolved]
    return (
        "# every wheel of the bundle, pinned: pip install --no-index --require-hashes -r requirements.txt\n"
        + ("\n".join(lines) + "\n")
    )


_CREATE_KEY = "create one once with: python packaging/airgap.py --new-release-key FILE"


def _need_hushmetric() -> None:
    """Keys and signatures come from the project itself: refuse clearly where it is not importable."""
    try:
        import hushmetric.keys  # noqa: F401  -- imported for the check only
    except ImportError as exc:  # run by a Python without the project installed
        raise BuildError(f"signing needs hushmetric and PyNaCl ({exc}): use the project venv") from exc


def load_release_key(path: Path | None) -> nacl.signing.SigningKey:
    """The release signing key, read as agent keys are (base64 seed, refused unless mode 0600)."""
    if path is None:
        raise BuildError(
            f"no release key: pass --release-key FILE (make airgap-bundle RELEASE_KEY=FILE); {_CREATE_KEY}"
        )
    _need_hushmetric()
    from hushmetric.errors import ConfigError
    from hushmetric.keys import load_signing_key

    if not path.exists():
        raise BuildError(f"release key {path} does not exist; {_CREATE_KEY}")
    try:
        return load_signing_key(path)
    except ConfigError as exc:
        raise BuildError(f"release key {exc}") from exc


def new_release_key(path: Path) -> tuple[str, str]:
    """Create a release key in ``path`` (0600) and its public key in ``path.pub``; never overwrite one.

    Returns (public key in base64, key id).
    """
    _need_hushmetric()
    from hushmetric.keys import generate_signing_key, key_id, public_key_b64

    try:  # O_EXCL: a release key that already signed bundles must not be replaced by accident
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError as exc:
        raise BuildError(f"{path} exists; a release key is never overwritten") from exc
    except OSError as exc:
        raise BuildError(f"cannot create {path}: {exc.strerror or exc}") from exc
    try:
        public = bytes(generate_signing_key(path).verify_key)
        path.with_name(path.name + ".pub").write_text(public_key_b64(public) + "\n")
    except OSError as exc:
        path.unlink(missing_ok=True)  # no half-made key left to sign with
        raise BuildError(f"cannot write the release key {path}: {exc.strerror or exc}") from exc
    return public_key_b64(public), key_id(public)


def sign_sums(sums: bytes, key: nacl.signing.SigningKey) -> bytes:
    """SHA256SUMS as a DSSE envelope in JSON form, signed by ``key``; checked before it is returned.

    The payload is SHA256SUMS itself, byte for byte: install.sh rebuilds this exact envelope from the
    file and the key it trusts, so there is one canonical form and nothing else to parse.
    """
    from hushmetric import dsse
    from hushmetric.keys import key_id

    public = bytes(key.verify_key)
    data = dsse.to_json(dsse.sign(sums, RELEASE_PAYLOAD_TYPE, key))
    verified = dsse.verify(
        dsse.from_json(data), RELEASE_PAYLOAD_TYPE, lambda kid: public if kid == key_id(public) else None
    )
    if verified.payload != sums:  # a self-check of the signer: never ship a signature that fails
        raise BuildError("the signed SHA256SUMS does not read back as written")
    return data


def _sbom(root: Path, project: Path, mtime: int) -> None:
    """CycloneDX JSON of the pinned wheelhouse: every wheel with its version, purl and SHA-256."""
    if importlib.util.find_spec("cyclonedx_py") is None:
        raise BuildError(
            "the SBOM needs cyclonedx-bom, which this Python lacks: pip install cyclonedx-bom (dev extra)"
        )
    _run(
        [sys.executable, "-m", "cyclonedx_py", "requirements", "--pyproject", str(project / "pyproject.toml"),
         "--mc-type", "application", "--spec-version", "1.6", "--output-format", "JSON", "--validate",
         "--output-reproducible", "--output-file", str(root / SBOM), str(root / "requirements.txt")],
        # Reproducible: no serial number, and the build time (not now) as the SBOM's timestamp.
        env={**_offline_env(), "SOURCE_DATE_EPOCH": str(mtime), "PYTHONWARNINGS": "ignore"},
        what="writing the SBOM (cyclonedx-py requirements)",
    )  # fmt: skip


def _tar(root: Path, out: Path, mtime: int) -> None:
    """A gzip'ed tar with sorted members, fixed owner and times: the same tree gives the same bytes."""

    def info(path: Path) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(path.relative_to(root.parent).as_posix())
        ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = mtime, 0, 0, "root", "root"
        return ti

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in [root, *sorted(root.rglob("*"))]:
            ti = info(path)
            if path.is_dir():
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(ti)
            else:
                ti.size, ti.mode = path.stat().st_size, 0o755 if os.access(path, os.X_OK) else 0o644
                with path.open("rb") as fh:
                    tar.addfile(ti, fh)
    tmp = out.with_name(f".{out.name}.tmp")
    # Wheels are compressed already: level 6 saves time, not bytes, over 9.
    with tmp.open("wb") as dst, gzip.GzipFile("", "wb", compresslevel=6, fileobj=dst, mtime=mtime) as gz:
        gz.write(raw.getbuffer())
    tmp.replace(out)


def build(
    out_dir: Path,
    *,
    release_key: Path | None,
    project: Path = PROJECT,
    extras: Sequence[str] = (),
    say: bool = True,
) -> BuildResult:
    """Build the bundle into ``out_dir``, signed by ``release_key``; return where it is and what it holds."""
    started = time.monotonic()
    log = _say if say else (lambda _message: None)
    key = load_release_key(release_key)  # before a minute of pip: a missing key fails at once
    from hushmetric.keys import key_id, public_key_b64

    public = bytes(key.verify_key)
    name, version = _project_version(project)
    stem = f"{name}-airgap-{version}-{platform_tag()}"
    units, profiles = HERE / "systemd", project / "configs" / "profiles"
    for needed in (units, profiles, HERE / "install.sh"):
        if not needed.exists():
            raise BuildError(f"{needed} is missing; run from a full checkout")
    mtime = _source_date(project)

    with tempfile.TemporaryDirectory(prefix="hush-airgap-") as tmp:
        root = Path(tmp) / stem
        wheels = root / "wheels"
        wheels.mkdir(parents=True)
        log(f"[1/6] wheelhouse: {name} {version} and its runtime dependencies for {platform_tag()}")
        _wheelhouse(project, wheels, extras, mtime)
        log(f"      {time.monotonic() - started:.1f} s")
        log("[2/6] resolving the wheelhouse offline, as install.sh will")
        resolved = _resolve_offline(wheels, name, version, extras)
        (root / "requirements.txt").write_text(_requirements(wheels, resolved))
        count = len(list(wheels.glob("*.whl")))
        size = sum(p.stat().st_size for p in wheels.iterdir())
        listing = ", ".join(f"{n} {v}" for n, v in resolved)
        log(f"      {count} wheels, {size / 1e6:.1f} MB, {time.monotonic() - started:.1f} s: {listing}")

        log("[3/6] installer, systemd units and deployment profiles")
        shutil.copy2(HERE / "install.sh", root / "install.sh")
        (root / "install.sh").chmod(0o755)
        shutil.copytree(units, root / "systemd")
        shutil.copytree(profiles, root / "profiles")
        impl_version = f"{sys.version_info.major}.{sys.version_info.minor}"
        (root / "BUNDLE").write_text(
            f"NAME={name}\nVERSION={version}\nPYTHON={impl_version}\nPLATFORM={sysconfig.get_platform()}\n"
            f"EXTRAS={','.join(extras)}\n"
        )

        log(f"[4/6] SBOM: {SBOM} (CycloneDX)")
        _sbom(root, project, mtime)

        log(f"[5/6] SHA256SUMS, signed by release key {key_id(public)} into {SIGNATURE}")
        sums = "".join(f"{_sha256(p)}  {p.relative_to(root).as_posix()}\n" for p in _files(root))
        (root / "SHA256SUMS").write_text(sums)
        (root / SIGNATURE).write_bytes(sign_sums(sums.encode(), key))

        out_dir.mkdir(parents=True, exist_ok=True)
        out = out_dir / f"{stem}.tar.gz"
        log(f"[6/6] packing {out}")
        _tar(root, out, mtime)
    digest = _sha256(out)
    (out_dir / f"{out.name}.sha256").write_text(f"{digest}  {out.name}\n")
    (out_dir / COMPANION_KEY).write_text(public_key_b64(public) + "\n")
    result = BuildResult(out, out.stat().st_size, digest, count, time.monotonic() - started, key_id(public))
    log(
        f"done: {out} ({result.size / 1e6:.1f} MB, {count} wheels) in {result.seconds:.1f} s\n"
        f"      sha256 {digest} (also in {out.name}.sha256)\n"
        f"      release key {result.key_id}, public key in {out_dir / COMPANION_KEY}\n"
        "      publish the .sha256 and the public key apart from the bundle\n"
        f"      install: tar xzf {out.name} && sudo ./{stem}/install.sh --release-key @{COMPANION_KEY} "
        "--prefix /opt/hushmetric"
    )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--release-key", type=Path, help="signing key for SHA256SUMS (base64 Ed25519 seed, mode 0600)"
    )
    parser.add_argument(
        "--new-release-key", type=Path, metavar="FILE", help="create a release key in FILE and FILE.pub; stop"
    )
    parser.add_argument(
        "--out-dir", type=Path, default=PROJECT / "dist", help="where to write (default: dist/)"
    )
    parser.add_argument("--extra", action="append", default=[], help="also bundle an extra, e.g. postgres")
    parser.add_argument("--project", type=Path, default=PROJECT, help="project to bundle (default: this one)")
    args = parser.parse_args(argv)
    try:
        if args.new_release_key is not None:
            public, kid = new_release_key(args.new_release_key)
            print(
                f"release key {kid} in {args.new_release_key} (mode 0600: keep it offline and backed up)\n"
                f"public key  {public} in {args.new_release_key}.pub (publish it apart from the bundles)"
            )
            return 0
        build(args.out_dir, release_key=args.release_key, project=args.project.resolve(), extras=args.extra)
    except BuildError as exc:
        print(f"airgap: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("airgap: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
