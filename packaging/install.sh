#!/bin/sh
# hushmetric offline installer — part of hushmetric-airgap-<version>-<platform>.tar.gz.
#
#   ./install.sh [--prefix DIR] [--python PYTHON] [--systemd-dir DIR] [--profile NAME]
#
# 1. checks every file of the bundle against SHA256SUMS (and that no file was added),
# 2. checks that PYTHON is the Python the wheels were built for,
# 3. creates a virtual environment in DIR (default /opt/hushmetric) or upgrades the one there,
# 4. installs the wheelhouse with pip --no-index: no package index, no network, and each wheel pinned
#    by its SHA-256 in requirements.txt (--require-hashes),
# 5. with --systemd-dir, installs the hardened units there with their paths set to DIR.
# Exit status: 0 installed, 1 failed (the message says why), 2 usage.
set -eu

prefix=/opt/hushmetric
python=python3
systemd_dir=
profile=

die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '4p' "$0" | sed 's/^#  *//' >&2; exit 2; }
step() { printf '==> %s\n' "$*"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || usage; prefix=$2; shift 2 ;;
        --python) [ $# -ge 2 ] || usage; python=$2; shift 2 ;;
        --systemd-dir) [ $# -ge 2 ] || usage; systemd_dir=$2; shift 2 ;;
        --profile) [ $# -ge 2 ] || usage; profile=$2; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) printf 'install.sh: unknown argument: %s\n' "$1" >&2; usage ;;
    esac
done
case "$profile" in
    ''|saas|vpc|on-prem|air-gap) ;;
    *) die "--profile must be one of saas, vpc, on-prem, air-gap (got '$profile')" ;;
esac
case "$prefix" in
    /*) ;;
    *) prefix=$(pwd)/$prefix ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
if [ ! -f BUNDLE ] || [ ! -f SHA256SUMS ]; then
    die "run install.sh from an extracted bundle (BUNDLE or SHA256SUMS missing in $here)"
fi
field() { sed -n "s/^$1=//p" BUNDLE; }
version=$(field VERSION)
want_python=$(field PYTHON)
want_platform=$(field PLATFORM)

step "hushmetric $version offline installer (CPython $want_python, $want_platform)"

step "verifying the bundle against SHA256SUMS"
# sha256 of SHA256SUMS itself: compare it with the value published beside the bundle.
if command -v sha256sum >/dev/null 2>&1; then
    sha256sum --check --strict --quiet SHA256SUMS || die "checksum mismatch: the bundle is damaged or was altered; do not install it"
    sums_digest=$(sha256sum SHA256SUMS | cut -d' ' -f1)
else
    "$python" - <<'EOF' || die "checksum mismatch: the bundle is damaged or was altered; do not install it"
import hashlib, sys
bad = 0
for line in open("SHA256SUMS", encoding="utf-8"):
    digest, name = line.rstrip("\n").split("  ", 1)
    with open(name, "rb") as fh:
        if hashlib.sha256(fh.read()).hexdigest() != digest:
            print(f"{name}: FAILED", file=sys.stderr)
            bad += 1
sys.exit(1 if bad else 0)
EOF
    sums_digest=$("$python" -c 'import hashlib; print(hashlib.sha256(open("SHA256SUMS","rb").read()).hexdigest())')
fi
listed=$(sed 's/^[0-9a-f]*  //' SHA256SUMS | sort)
present=$(find . -type f ! -name SHA256SUMS | sed 's|^\./||' | sort)
[ "$listed" = "$present" ] || die "the bundle holds files SHA256SUMS does not list: $(printf '%s\n' "$present" | grep -vxF "$listed" | head -3 | tr '\n' ' ')"
printf '    %s files ok; SHA256SUMS digest %s\n' "$(printf '%s\n' "$listed" | wc -l | tr -d ' ')" "$sums_digest"

step "checking $python"
command -v "$python" >/dev/null 2>&1 || die "$python not found; pass --python /path/to/python$want_python"
have=$("$python" -c 'import sys, sysconfig; print("%d.%d %s" % (sys.version_info[0], sys.version_info[1], sysconfig.get_platform()))') \
    || die "$python does not run"
[ "$have" = "$want_python $want_platform" ] \
    || die "this bundle holds wheels for CPython $want_python on $want_platform, but $python is '$have'; pass --python, or build the bundle with that Python (make airgap-bundle PYTHON=...)"
"$python" -c 'import ensurepip, venv' 2>/dev/null \
    || die "$python cannot create virtual environments (Debian/Ubuntu: install the python$want_python-venv package)"

if [ -x "$prefix/bin/python" ] && [ -f "$prefix/pyvenv.cfg" ]; then
    step "upgrading the virtual environment in $prefix"
else
    step "creating a virtual environment in $prefix"
    [ ! -e "$prefix" ] || [ -z "$(ls -A "$prefix")" ] || die "$prefix exists and is not a virtual environment; choose another --prefix"
    "$python" -m venv "$prefix" || die "could not create a virtual environment in $prefix"
fi

count=$(grep -c -- '--hash=' requirements.txt)
step "installing $count wheels offline (pip --no-index --require-hashes)"
# Nothing from this machine's pip configuration (extra indexes, find-links) may take part.
for var in $(env | sed -n 's/^\(PIP_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$var"; done
PIP_CONFIG_FILE=/dev/null
export PIP_CONFIG_FILE
"$prefix/bin/python" -m pip install --no-index --find-links "$here/wheels" --only-binary=:all: \
    --require-hashes -r "$here/requirements.txt" --no-cache-dir --disable-pip-version-check \
    --no-input --progress-bar off --quiet \
    || die "pip could not install the wheelhouse into $prefix (see its message above)"
"$prefix/bin/hush-agent" --help >/dev/null || die "the installed hush-agent does not start"
"$prefix/bin/hush-collector" --help >/dev/null || die "the installed hush-collector does not start"
printf '    %s\n' "$("$prefix/bin/python" -m pip list --disable-pip-version-check 2>/dev/null | grep -i '^hushmetric ')"

if [ -n "$systemd_dir" ]; then
    step "installing systemd units into $systemd_dir"
    mkdir -p "$systemd_dir"
    for unit in systemd/*.service systemd/*.timer; do
        sed "s|/opt/hushmetric/|$prefix/|g" "$unit" > "$systemd_dir/$(basename "$unit")"
        chmod 0644 "$systemd_dir/$(basename "$unit")"
    done
    if [ "$profile" = air-gap ]; then
        mkdir -p "$systemd_dir/hush-agent.service.d"
        cp systemd/hush-agent.service.d/air-gap.conf "$systemd_dir/hush-agent.service.d/air-gap.conf"
        chmod 0644 "$systemd_dir/hush-agent.service.d/air-gap.conf"
    fi
    printf '    units: %s\n' "$(cd systemd && printf '%s ' hush-*.service hush-*.timer)"
    case "$prefix" in
        /home/*|/root/*|/tmp/*|/var/tmp/*|/run/user/*)
            printf '    warning: the units cannot run programs from %s (ProtectHome=, PrivateTmp=); use a prefix such as /opt/hushmetric\n' "$prefix" >&2 ;;
    esac
    printf '    user:  install systemd/hushmetric-sysusers.conf as /etc/sysusers.d/hushmetric.conf, then run systemd-sysusers\n'
fi

step "installed hushmetric $version in $prefix"
profile_dir="$here/profiles/${profile:-<profile>}"
cat <<EOF
next:
  $prefix/bin/hush-agent init --dir /etc/hushmetric --tenant TENANT
  cp $profile_dir/agent.toml /etc/hushmetric/agent.toml   # then put back the tenant and agent id init chose, set endpoints
  $prefix/bin/hush-agent validate --profile ${profile:-PROFILE} --config /etc/hushmetric/agent.toml
  chown -R hushmetric:hushmetric /etc/hushmetric && chmod 600 /etc/hushmetric/agent.key /etc/hushmetric/site.secret
  systemctl daemon-reload && systemctl enable --now hush-agent.service$( [ "$profile" = air-gap ] && printf ' hush-agent-export.timer')
EOF
