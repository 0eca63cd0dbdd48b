#!/bin/sh
# hushmetric offline installer — part of hushmetric-airgap-<version>-<platform>.tar.gz.
#
#   ./install.sh [--release-key KEY|@FILE] [--prefix DIR] [--python PYTHON] [--systemd-dir DIR] [--profile NAME] [--openssl PATH]
#
# 1. checks the release signature of SHA256SUMS (SHA256SUMS.dsse.json: DSSE, Ed25519) with this
#    machine's OpenSSL 3, trusting nothing from the bundle before, against the release public key:
#    --release-key (base64, or @FILE holding it), else the key pinned in DIR by an earlier install,
#    else hushmetric-release.pub beside the bundle folder,
# 2. checks every file of the bundle against SHA256SUMS (and that no file was added),
# 3. checks that PYTHON is the Python the wheels were built for,
# 4. creates a virtual environment in DIR (default /opt/hushmetric) or upgrades the one there,
# 5. installs the wheelhouse with pip --no-index: no package index, no network, and each wheel pinned
#    by its SHA-256 in requirements.txt (--require-hashes); pins the release key in DIR,
# 6. with --systemd-dir, installs the hardened units there with their paths set to DIR.
# Exit status: 0 installed, 1 failed (the message says why), 2 usage.
set -eu

prefix=/opt/hushmetric
python=python3
systemd_dir=
profile=
release_key=
openssl=openssl

die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '4p' "$0" | sed 's/^#  *//' >&2; exit 2; }
step() { printf '==> %s\n' "$*"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || usage; prefix=$2; shift 2 ;;
        --python) [ $# -ge 2 ] || usage; python=$2; shift 2 ;;
        --systemd-dir) [ $# -ge 2 ] || usage; systemd_dir=$2; shift 2 ;;
        --profile) [ $# -ge 2 ] || usage; profile=$2; shift 2 ;;
        --release-key) [ $# -ge 2 ] || usage; release_key=$2; shift 2 ;;
        --openssl) [ $# -ge 2 ] || usage; openssl=$2; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
case "$release_key" in  # a relative @FILE is relative to where install.sh was started
    @/*|@) ;;
    @*) release_key=@$(pwd)/${release_key#@} ;;
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

# --- the release signature of SHA256SUMS ------------------------------------------------------
# Checked with this machine's OpenSSL, not with code from the bundle: the wheels (PyNaCl among them)
# and every hash in the bundle are trusted only once this signature holds. The envelope must be the
# exact bytes the builder writes, rebuilt here from SHA256SUMS, the trusted key's id and the
# signature: only two fixed-shape fields are read from it, and any changed byte is refused.
payload_type=application/vnd.hushmetric.sha256sums.v1+text
envelope=SHA256SUMS.dsse.json
pinned=$prefix/hushmetric-release.pub
companion=$(dirname "$here")/hushmetric-release.pub
step "verifying the release signature of SHA256SUMS"
[ -f "$envelope" ] || die "$envelope is missing: this bundle is not signed; do not install it"
if [ -n "$release_key" ]; then
    key_from=--release-key
elif [ -f "$pinned" ]; then
    release_key=@$pinned
    key_from="$pinned, pinned by the last install,"
elif [ -f "$companion" ]; then
    release_key=@$companion
    key_from=$companion
else
    die "no release public key: pass --release-key KEY or --release-key @FILE (the hushmetric-release.pub published with the bundle)"
fi
case "$release_key" in
    @*) key_file=${release_key#@}
        [ "$key_from" != --release-key ] || key_from=$key_file
        { [ -f "$key_file" ] && [ -r "$key_file" ]; } || die "cannot read the release public key file $key_file"
        key=$(sed -n '1{s/[[:space:]]//g;p;}' "$key_file") ;;
    *) key=$release_key ;;
esac
# 32 bytes in standard base64: 42 characters, one whose two low bits are zero, and one '='.
printf '%s\n' "$key" | grep -Eqx '[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=' \
    || die "the release key from $key_from is not an Ed25519 public key (32 bytes in base64, 44 characters)"

command -v "$openssl" >/dev/null 2>&1 \
    || die "$openssl not found: checking the release signature needs OpenSSL 3.0 or newer (pass --openssl PATH)"
openssl_version=$("$openssl" version 2>/dev/null | head -1) || openssl_version=
openssl_major=$(printf '%s\n' "$openssl_version" | sed -n 's/^OpenSSL \([0-9][0-9]*\)\..*/\1/p')
{ [ -n "$openssl_major" ] && [ "$openssl_major" -ge 3 ]; } \
    || die "checking the release signature (Ed25519) needs OpenSSL 3.0 or newer, but $openssl is '${openssl_version:-unknown}'; pass --openssl PATH (RHEL 8: the openssl3 package)"

work=$(mktemp -d) || die "cannot create a temporary directory"
trap 'rm -rf "$work"' EXIT
trap 'exit 1' HUP INT TERM
printf '%s' "$key" | "$openssl" base64 -d -A > "$work/key.raw" 2>/dev/null \
    || die "$openssl cannot decode the release key from $key_from"
key_id=$("$openssl" dgst -sha256 -r < "$work/key.raw" | cut -c1-64)
# An Ed25519 SubjectPublicKeyInfo is a fixed 12-byte prefix and the 32 key bytes; 12 bytes are 16
# base64 characters, so the PEM body is the prefix's base64 followed by the key's own.
printf '%s\n' '-----BEGIN PUBLIC KEY-----' "MCowBQYDK2VwAyEA$key" '-----END PUBLIC KEY-----' > "$work/key.pem"

[ "$(wc -c < "$envelope" | tr -d ' ')" -le 1048576 ] \
    || die "$envelope is larger than a signature can be: the bundle was altered; do not install it"
signer=$(sed -n 's/^{"payload":"[A-Za-z0-9+/=]*","payloadType":"[^"]*","signatures":\[{"keyid":"\([0-9a-f]\{64\}\)",.*/\1/p' "$envelope" | head -1)
[ -n "$signer" ] || die "$envelope is not a release signature: the bundle was altered or damaged; do not install it"
[ "$signer" = "$key_id" ] \
    || die "the bundle is signed by release key $signer, but the release key from $key_from is $key_id: a wrong key, or a bundle from someone else; do not install it"
sig=$(sed -n 's/.*"sig":"\([A-Za-z0-9+/]\{86\}==\)"}\]}$/\1/p' "$envelope" | head -1)
[ -n "$sig" ] || die "$envelope is not a release signature: the bundle was altered or damaged; do not install it"
payload=$("$openssl" base64 -A < SHA256SUMS)
printf '{"payload":"%s","payloadType":"%s","signatures":[{"keyid":"%s","sig":"%s"}]}' \
    "$payload" "$payload_type" "$key_id" "$sig" > "$work/envelope"
cmp -s "$work/envelope" "$envelope" \
    || die "$envelope does not match SHA256SUMS: the bundle was altered or damaged; do not install it"
printf '%s' "$sig" | "$openssl" base64 -d -A > "$work/sig"
{ printf 'DSSEv1 %s %s %s ' "${#payload_type}" "$payload_type" "$(wc -c < SHA256SUMS | tr -d ' ')"; cat SHA256SUMS; } > "$work/pae"
if ! verified=$("$openssl" pkeyutl -verify -pubin -inkey "$work/key.pem" -rawin -in "$work/pae" -sigfile "$work/sig" 2>&1); then
    case "$verified" in
        *"Signature Verification Failure"*)
            die "the release signature of SHA256SUMS does not verify: the bundle was altered or damaged; do not install it" ;;
        *) die "$openssl could not check the release signature: $(printf '%s\n' "$verified" | head -1)" ;;
    esac
fi
printf '    signed by release key %s (from %s)\n' "$key_id" "${key_from%,}"
[ "$key_from" != "$companion" ] \
    || printf '    note: this key came with the bundle, so it shows the bundle is intact, not who made it: compare its id with the one published by your vendor\n'

# --- every file against SHA256SUMS --------------------------------------------------------------
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
present=$(find . -type f ! -path ./SHA256SUMS ! -path "./$envelope" | sed 's|^\./||' | sort)
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
# Upgrades are checked against this key unless --release-key names another one.
{ printf '%s\n' "$key" > "$pinned.tmp" && chmod 0644 "$pinned.tmp" && mv "$pinned.tmp" "$pinned"; } \
    || die "could not pin the release key in $pinned"
printf '    release key %s pinned in %s\n' "$key_id" "$pinned"

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
