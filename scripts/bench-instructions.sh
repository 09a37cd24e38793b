#!/usr/bin/env bash
# Instructions per request of the mini API server under valgrind's callgrind: a count, not a
# time, so it is the same whatever else the machine is doing. Same modes as bench-load.sh
# (requests of a keep-alive load on 127.0.0.1; the counters are zeroed after warm-up):
#   none / token (100,000 tokens) / password (10,000 users)   with wrk
#   mtls-none / mtls-x509                                     with oha and a client certificate
# Each mode is reported as a ratio to its baseline (none, mtls-none).
#
#   scripts/bench-instructions.sh      # REQUESTS_SECONDS=15
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_MODE=${REQUESTS_SECONDS:-15}
command -v valgrind >/dev/null || { apt-get install -y --no-install-recommends valgrind >/dev/null; }
command -v wrk >/dev/null || bash scripts/install-test-deps.sh
OHA=target/tools/bin/oha
[ -x "$OHA" ] || cargo install --locked oha --root target/tools >&2
cargo build --release -p mini-apiserver -p kube-authn-testing --locked >&2
BIN=target/release/mini-apiserver
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=${PORT:-16995}

python3 scripts/bench-data.py "$WORK"
cargo run -q --release -p kube-authn-testing --bin kube-authn-test-pki -- "$WORK/pki" >&2

measure() { # mode -> instructions per request
  local mode=$1 args=(--secure-port="$PORT" --anonymous-auth=false --log-line-interval-ms=600000)
  local script=$mode  # the wrk script of scripts/bench-data.py: none, tokens, passwords
  case $mode in token | password) script=${mode}s ;; esac
  case $mode in
    none) args+=(--cert-dir="$WORK/certs" --disable-authentication) ;;
    token) args+=(--cert-dir="$WORK/certs" --token-auth-file="$WORK/tokens.csv") ;;
    password) args+=(--cert-dir="$WORK/certs" --basic-auth-file="$WORK/passwords.csv") ;;
    mtls-*) args+=(--tls-cert-file="$WORK/pki/serving.crt" --tls-private-key-file="$WORK/pki/serving.key" --client-ca-file="$WORK/pki/client-ca.crt")
            [ "$mode" = mtls-none ] && args+=(--disable-authentication) ;;
  esac
  RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.$mode" "$BIN" "${args[@]}" >"$WORK/out" 2>"$WORK/err" &
  local vg=$!
  for _ in $(seq 300); do grep -q "Serving securely" "$WORK/out" 2>/dev/null && break; sleep 0.2; done
  local requests
  if [[ $mode == mtls-* ]]; then
    local oha=("$OHA" --no-tui --output-format json -c 4 --cacert "$WORK/pki/root-ca.crt" --cert "$WORK/pki/jbeda.crt" --key "$WORK/pki/jbeda.key")
    "${oha[@]}" -n 200 "https://127.0.0.1:$PORT/healthz" >/dev/null
    callgrind_control -z "$vg" >/dev/null
    "${oha[@]}" -z "${SECONDS_PER_MODE}s" "https://127.0.0.1:$PORT/healthz" >"$WORK/oha.json"
    requests=$(python3 -c "import json,sys; c=json.load(open(sys.argv[1]))['statusCodeDistribution']; assert list(c)==['200'], c; print(c['200'])" "$WORK/oha.json")
  else
    wrk -t1 -c4 -d2s -s "$WORK/$script.lua" "https://127.0.0.1:$PORT" >/dev/null
    callgrind_control -z "$vg" >/dev/null
    wrk -t1 -c4 -d"${SECONDS_PER_MODE}s" -s "$WORK/$script.lua" "https://127.0.0.1:$PORT" >"$WORK/wrk.out"
    ! grep -q "Non-2xx" "$WORK/wrk.out" || { echo "$mode: non-2xx responses" >&2; exit 1; }
    requests=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$WORK/wrk.out")
  fi
  callgrind_control -d "$vg" >/dev/null
  sleep 1
  kill "$vg"; wait "$vg" 2>/dev/null || true
  local total
  total=$(cat "$WORK"/cg."$mode".* 2>/dev/null | sed -n 's/^summary: //p' | sort -n | tail -1)
  rm -f "$WORK"/cg."$mode"*
  python3 -c "print(f'{$total / $requests:.0f} {$requests}')"
}

printf "%-10s %14s %10s %8s\n" mode instr/request requests ratio
read -r base n < <(measure none);          printf "%-10s %14s %10s %8s\n" none "$base" "$n" 1.000
for mode in token password; do
  read -r ir n < <(measure $mode);         printf "%-10s %14s %10s %8.3f\n" $mode "$ir" "$n" "$(python3 -c "print($ir/$base)")"
done
read -r base n < <(measure mtls-none);     printf "%-10s %14s %10s %8s\n" mtls-none "$base" "$n" 1.000
read -r ir n < <(measure mtls-x509);       printf "%-10s %14s %10s %8.3f\n" mtls-x509 "$ir" "$n" "$(python3 -c "print($ir/$base)")"
