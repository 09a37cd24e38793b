#!/usr/bin/env bash
# Installs the real third-party clients the e2e tests drive (see tests/peers/README.md and
# shared/reference/real-clients.md). Idempotent: when everything is present it only checks and
# takes a few seconds. Meant for Debian 12 as root (no sudo), on a fresh machine too.
#
# What it installs, and where:
#   - Debian packages: chromium (headless websocket peer), wrk (load), curl, openssl (the seed's
#     certificate commands), libnss3-tools
#     (certutil, for an NSS trust store), ca-certificates.
#   - A Python venv at $REPO/.peers/venv with the pinned tests/peers/requirements.txt
#     (kubernetes 37.0.2, websockets 17.4, and their dependencies).
#   - npm playwright-core (pinned in tests/peers/package.json + package-lock.json) into
#     tests/peers/node_modules, with `npm ci`. No browser is ever downloaded: Chromium is
#     Debian's /usr/bin/chromium.
#   - cargo-deny, with `cargo install --locked`, only if `cargo deny --version` fails (minutes).
# It checks that kubectl 1.33 is preinstalled and fails clearly if not.
#
# Environment:
#   PYTHON=python3          interpreter used to create the venv
#   SKIP_CARGO_DENY=1       do not check/install cargo-deny
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="$REPO/tests/peers"
VENV="$REPO/.peers/venv"
KUBECTL=/usr/lib/google-cloud-sdk/bin/kubectl.1.33
APT_PACKAGES=(chromium wrk curl openssl libnss3-tools ca-certificates)

export DEBIAN_FRONTEND=noninteractive
# playwright-core has no install script today; make sure nothing ever fetches a browser build.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

log() { printf '[install-test-deps] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

start=$SECONDS

# --- Debian packages --------------------------------------------------------------------------
is_installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

apt_updated=0
apt_install() {
  # $@: packages. `apt-get update` once per run, only when something is missing. The first
  # attempt can fail on this image ("cannot access archive ....deb", real-clients.md); the
  # retry refreshes the lists, repairs dpkg and tries once more. Both attempts use
  # --no-install-recommends: the peers need none of the recommends (chromium alone would pull
  # ~130 packages), and that is the variant known to work here.
  local out t0=$SECONDS
  out="$(mktemp)"
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    apt-get update -qq
    apt_updated=1
  fi
  log "apt-get install --no-install-recommends: $* (dpkg output in $out)"
  if ! apt-get install -y -q --no-install-recommends "$@" >"$out" 2>&1; then
    tail -n 20 "$out" >&2
    log "apt-get install failed; retrying once"
    apt-get update -qq || true
    dpkg --configure -a || true
    if ! apt-get install -y -q --no-install-recommends --fix-broken "$@" >"$out" 2>&1; then
      tail -n 40 "$out" >&2
      die "apt-get install $* failed twice"
    fi
  fi
  log "apt: $(grep -c '^Setting up ' "$out" || true) packages set up in $((SECONDS - t0)) s"
  rm -f "$out"
}

missing=()
for p in "${APT_PACKAGES[@]}"; do
  is_installed "$p" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
else
  log "debian packages present: ${APT_PACKAGES[*]}"
fi
[ -x /usr/bin/chromium ] || die "/usr/bin/chromium missing after installing the chromium package"
command -v wrk >/dev/null || die "wrk missing after install"
command -v certutil >/dev/null || die "certutil (libnss3-tools) missing after install"

# --- kubectl (preinstalled with the google-cloud-cli image) -----------------------------------
if [ ! -x "$KUBECTL" ]; then
  die "$KUBECTL not found: the e2e tests call this real kubectl 1.33 binary directly. It ships with
  the machine image (google-cloud-cli's kubectl package); it is not installed by this script.
  Install Debian/apt 'kubectl' from the google-cloud-sdk repository or point the tests at a kubectl 1.33."
fi
log "kubectl present: $KUBECTL"

# --- Python venv ------------------------------------------------------------------------------
PY="${PYTHON:-python3}"
REQ="$PEERS/requirements.txt"
req_hash="$(sha256sum "$REQ" | cut -d' ' -f1)"
stamp="$VENV/.requirements.sha256"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null || true)" = "$req_hash" ] \
   && "$VENV/bin/python" -c 'import kubernetes, websockets' 2>/dev/null; then
  log "python venv up to date: $VENV"
else
  command -v "$PY" >/dev/null || die "no $PY on PATH (set PYTHON=...)"
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating venv $VENV with $("$PY" --version 2>&1)"
    mkdir -p "$(dirname "$VENV")"
    if ! "$PY" -m venv "$VENV"; then
      # Debian's own python3 needs python3-venv for ensurepip.
      rm -rf "$VENV"
      apt_install python3-venv
      "$PY" -m venv "$VENV" || die "cannot create a venv with $PY"
    fi
  fi
  log "pip install -r tests/peers/requirements.txt into $VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ"
  "$VENV/bin/python" -c 'import kubernetes, websockets' || die "venv import check failed"
  printf '%s\n' "$req_hash" > "$stamp"
  log "installed: $("$VENV/bin/python" -m pip freeze | grep -E '^(kubernetes|websockets)==' | tr '\n' ' ')"
fi

# --- npm: playwright-core ---------------------------------------------------------------------
command -v npm >/dev/null || die "npm not found (node 20 + npm are expected on the image)"
lock_hash="$(sha256sum "$PEERS/package-lock.json" | cut -d' ' -f1)"
npm_stamp="$PEERS/node_modules/.package-lock.sha256"
if [ -f "$PEERS/node_modules/playwright-core/package.json" ] \
   && [ "$(cat "$npm_stamp" 2>/dev/null || true)" = "$lock_hash" ]; then
  log "node_modules up to date: $PEERS/node_modules"
else
  log "npm ci in tests/peers (playwright-core, no browser download)"
  # npm warns 'Unknown user config "nodedir"' from the machine's npmrc: harmless.
  (cd "$PEERS" && npm ci --no-audit --no-fund --loglevel=error)
  printf '%s\n' "$lock_hash" > "$npm_stamp"
  log "installed: playwright-core $(node -p "require('$PEERS/node_modules/playwright-core/package.json').version")"
fi

# --- cargo-deny -------------------------------------------------------------------------------
if [ "${SKIP_CARGO_DENY:-0}" = 1 ]; then
  log "cargo-deny: skipped (SKIP_CARGO_DENY=1)"
elif (cd "$REPO" && cargo deny --version >/dev/null 2>&1); then
  log "cargo-deny present: $(cd "$REPO" && cargo deny --version)"
else
  log "cargo install --locked cargo-deny (takes a few minutes)"
  (cd "$REPO" && cargo install --locked cargo-deny)
  (cd "$REPO" && cargo deny --version) || die "cargo deny still not runnable after install"
fi

log "done in $((SECONDS - start)) s"
