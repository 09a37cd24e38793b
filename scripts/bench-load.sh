#!/usr/bin/env bash
# Load benchmark of the mini API server on 127.0.0.1 with wrk: requests/s, p99 and the server's
# CPU time per request for
#   none      no authentication layer (--disable-authentication): the baseline
#   token     --token-auth-file with 100,000 tokens, a random one of 10,000 per request
#   token-one the same file, one token on every request (one client: no cache misses)
#   password  --basic-auth-file with 10,000 users, a random one per request
# The server is pinned to core 0 and wrk to core 1; the modes alternate for ROUNDS rounds and
# each is reported as a ratio to the baseline of the same round. Then the 100,000-line token
# file is rewritten under load: reload time, p99 during the reload, and peak RSS.
#
# Then, with oha (the only load generator here with client certificates; built once with
# `cargo install --locked oha` into target/tools, about 7 minutes), mTLS keep-alive load:
#   mtls-none  the server requests client certificates (--client-ca-file) but runs no
#              authenticator (--disable-authentication): the baseline
#   mtls-x509  the x509 authenticator (chain verified once per connection and CA generation,
#              validity dates checked per request)
# and new TLS connections per second (oha --disable-keepalive) for both.
#
#   scripts/bench-load.sh            # ROUNDS=3 DURATION=8 CONNECTIONS=32 RELOAD_RUNS=3; MTLS=0 skips oha,
#                                    # WRK=0 the wrk part (token/password modes and reloads)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
CONNECTIONS=${CONNECTIONS:-32}
command -v wrk >/dev/null || bash scripts/install-test-deps.sh
cargo build --release -p mini-apiserver --locked >&2
BIN=target/release/mini-apiserver
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
CLK=$(getconf CLK_TCK)

python3 scripts/bench-data.py "$WORK"

PORT=${PORT:-16443}
start_server() { # mode
  local args=(--secure-port="$PORT" --cert-dir="$WORK/certs" --anonymous-auth=false --log-line-interval-ms=60000)
  case $1 in
    none) args+=(--disable-authentication --token-auth-file="$WORK/tokens.csv") ;;
    token | token-one) args+=(--token-auth-file="$WORK/tokens.csv") ;;
    password) args+=(--basic-auth-file="$WORK/passwords.csv") ;;
  esac
  RUST_LOG=warn,kube_authn_core::reload=info taskset -c 0 "$BIN" "${args[@]}" >"$WORK/server.out" 2>"$WORK/server.err" &
  SERVER=$!
  for _ in $(seq 100); do grep -q "Serving securely" "$WORK/server.out" 2>/dev/null && return; sleep 0.1; done
  echo "server did not start: $(cat "$WORK/server.err")" >&2; exit 1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
stop_server() { kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; }

run_mode() { # mode -> "rps p99_ms cpu_us_per_req"
  start_server "$1"
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s -s "$WORK/$2.lua" "https://127.0.0.1:$PORT" >/dev/null # warm-up
  local before after
  before=$(cpu_ticks "$SERVER")
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/$2.lua" "https://127.0.0.1:$PORT" >"$WORK/wrk.out"
  after=$(cpu_ticks "$SERVER")
  stop_server
  local non2xx; non2xx=$(grep -c "Non-2xx" "$WORK/wrk.out" || true)
  [ "$non2xx" = 0 ] || { echo "mode $1: wrk saw non-2xx responses" >&2; cat "$WORK/wrk.out" >&2; exit 1; }
  python3 - "$WORK/wrk.out" "$before" "$after" "$CLK" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
reqs = int(re.search(r"(\d+) requests in", text).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
m = re.search(r"99%\s+([\d.]+)(us|ms|s)", text)
p99 = float(m.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[m.group(2)]
cpu = (int(sys.argv[3]) - int(sys.argv[2])) / int(sys.argv[4])
print(f"{rps:.0f} {p99:.3f} {cpu / reqs * 1e6:.2f}")
PY
}

if [ "${WRK:-1}" = 1 ]; then
printf "%-6s %-9s %10s %9s %12s %10s %10s\n" round mode req/s p99_ms cpu_us/req rps_ratio cpu_ratio
declare -A SUM
for r in $(seq "$ROUNDS"); do
  read -r b_rps b_p99 b_cpu < <(run_mode none none)
  printf "%-6s %-9s %10s %9s %12s %10s %10s\n" "$r" none "$b_rps" "$b_p99" "$b_cpu" 1.000 1.000
  for mode in token token-one password; do
    script=$(case $mode in token) echo tokens ;; password) echo passwords ;; *) echo $mode ;; esac)
    read -r rps p99 cpu < <(run_mode $mode $script)
    rr=$(python3 -c "print(f'{$rps/$b_rps:.3f}')"); cr=$(python3 -c "print(f'{$cpu/$b_cpu:.3f}')")
    printf "%-6s %-9s %10s %9s %12s %10s %10s\n" "$r" $mode "$rps" "$p99" "$cpu" "$rr" "$cr"
    SUM[$mode]="${SUM[$mode]:-} $cr"
  done
done
for mode in token token-one password; do
  echo "median cpu/request ratio, $mode vs none: $(python3 -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])):.3f}')" ${SUM[$mode]})"
done

# Reload of the 100,000-line token file under load, and memory. RELOAD_RUNS times: 6 s of
# load without, then 6 s with two reloads (2 s and 4 s in), on the same server; p99 with
# reloads as a ratio to p99 without, and the time until each new table was in force.
RELOAD_RUNS=${RELOAD_RUNS:-3}
start_server token
echo "peak RSS with 100,000 tokens loaded: $(awk '/VmHWM/ {print $2/1024 " MiB"}' /proc/$SERVER/status)"
rewrite() { # appends a row: a new token file in place by rename, as an operator would
  cp "$WORK/tokens.csv" "$WORK/tokens.new" && echo "extra-token-$1,extra,uid-$1" >>"$WORK/tokens.new" && mv "$WORK/tokens.new" "$WORK/tokens.csv"
}
reloads_in_force() { grep -o 'elapsed_ms=[0-9.]*' "$WORK/server.err" | tail -n 2 | awk -F= '{printf "%.0f ms ", $2}'; }
with_two_reloads() { # load command... : runs it while the file is rewritten twice
  "$@" &
  local load=$!
  sleep 2; rewrite "$RANDOM$RANDOM"; sleep 2; rewrite "$RANDOM$RANDOM"
  wait $load
}
ratio() { python3 -c "print(f'{$2/$1:.2f}')"; }
median() { python3 -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])):.2f}')" "$@"; }
wrk_p99() { python3 -c "import re,sys; m=re.search(r'99%\s+([\d.]+)(us|ms|s)', open(sys.argv[1]).read()); print(f\"{float(m.group(1))*{'us':1e-3,'ms':1,'s':1e3}[m.group(2)]:.3f}\")" "$1"; }
reload_runs() { # label p99-function load command... : RELOAD_RUNS pairs of 6 s, without then with two reloads
  local label=$1 p99=$2 ratios="" steady during r
  shift 2
  for run in $(seq "$RELOAD_RUNS"); do
    "$@" >"$WORK/steady.out"
    with_two_reloads "$@" >"$WORK/reload.out"
    steady=$($p99 "$WORK/steady.out"); during=$($p99 "$WORK/reload.out")
    r=$(ratio "$steady" "$during"); ratios="$ratios $r"
    echo "$label, run $run: p99 ${steady} ms without reloads, ${during} ms with two (ratio $r); in force after $(reloads_in_force)"
  done
  echo "$label: median p99 ratio with/without reloads: $(median $ratios)"
}
reload_runs saturated wrk_p99 taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d6s --latency -s "$WORK/tokens.lua" "https://127.0.0.1:$PORT"
grep -E "Requests/sec" "$WORK/steady.out" | sed 's/^/saturated rate: /'
SATURATED_RATE=$(python3 -c "import re,sys; print(int(float(re.search(r'Requests/sec:\s*([\d.]+)', open(sys.argv[1]).read()).group(1))))" "$WORK/steady.out")
echo "peak RSS after $((2 * RELOAD_RUNS)) reloads under load: $(awk '/VmHWM/ {print $2/1024 " MiB"}' /proc/$SERVER/status)"

# The same at half the saturated rate (a server with headroom), paced by oha's rate limit.
OHA=target/tools/bin/oha
if [ -x "$OHA" ]; then
  RATE=$((SATURATED_RATE / 2))
  TOKEN=$(sed -n 's/^"Bearer \(.*\)",$/\1/p;T;q' "$WORK/tokens.lua")
  oha_p99() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); c=r['statusCodeDistribution']; assert list(c)==['200'], c; print(f\"{r['latencyPercentiles']['p99']*1e3:.3f}\")" "$1"; }
  reload_runs "half rate ($RATE req/s)" oha_p99 taskset -c 1 "$OHA" --no-tui --output-format json -c "$CONNECTIONS" -q "$RATE" -z 6s --insecure \
    -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$PORT/healthz"
else
  echo "oha not built yet (the mTLS part builds it): half-rate reload figures skipped" >&2
fi
stop_server
fi # WRK

# ---- mTLS: x509 authentication per request, and handshakes per second ----
[ "${MTLS:-1}" = 1 ] || exit 0
OHA=target/tools/bin/oha
if [ ! -x "$OHA" ]; then
  echo "building oha into target/tools (once, several minutes)..." >&2
  cargo install --locked oha --root target/tools >&2
fi
cargo run -q --release -p kube-authn-testing --bin kube-authn-test-pki -- "$WORK/pki" >&2
start_mtls() { # mode
  local args=(--secure-port="$PORT" --tls-cert-file="$WORK/pki/serving.crt" --tls-private-key-file="$WORK/pki/serving.key"
              --client-ca-file="$WORK/pki/client-ca.crt" --anonymous-auth=false --log-line-interval-ms=60000)
  [ "$1" = none ] && args+=(--disable-authentication)
  RUST_LOG=warn taskset -c 0 "$BIN" "${args[@]}" >"$WORK/server.out" 2>"$WORK/server.err" &
  SERVER=$!
  for _ in $(seq 100); do grep -q "Serving securely" "$WORK/server.out" 2>/dev/null && return; sleep 0.1; done
  echo "server did not start: $(cat "$WORK/server.err")" >&2; exit 1
}
run_oha() { # mode extra-oha-args... -> "rps p99_ms cpu_us_per_req peak_rss_mib"
  local mode=$1; shift
  start_mtls "$mode"
  local oha=(taskset -c 1 "$OHA" --no-tui --output-format json -c "$CONNECTIONS" --cacert "$WORK/pki/root-ca.crt"
             --cert "$WORK/pki/jbeda.crt" --key "$WORK/pki/jbeda.key" "$@")
  "${oha[@]}" -z 2s "https://127.0.0.1:$PORT/healthz" >/dev/null
  local before after
  before=$(cpu_ticks "$SERVER")
  "${oha[@]}" -z "${DURATION}s" "https://127.0.0.1:$PORT/healthz" >"$WORK/oha.json"
  after=$(cpu_ticks "$SERVER")
  local hwm
  hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$SERVER/status")
  stop_server
  python3 - "$WORK/oha.json" "$before" "$after" "$CLK" "$hwm" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
codes = r.get("statusCodeDistribution", {})
ok = codes.get("200", 0)
total = sum(codes.values())
if total == 0 or ok != total:
    sys.exit(f"oha: non-200 responses: {codes} {r.get('errorDistribution')}")
cpu = (int(sys.argv[3]) - int(sys.argv[2])) / int(sys.argv[4])
print(f"{r['summary']['requestsPerSec']:.0f} {r['latencyPercentiles']['p99'] * 1e3:.3f} {cpu / total * 1e6:.2f} {int(sys.argv[5]) / 1024:.1f}")
PY
}
echo
printf "%-6s %-10s %10s %9s %12s %10s %14s\n" round mode req/s p99_ms cpu_us/req cpu_ratio peak_rss_MiB
MT=""
for r in $(seq "$ROUNDS"); do
  read -r b_rps b_p99 b_cpu b_rss < <(run_oha none)
  printf "%-6s %-10s %10s %9s %12s %10s %14s\n" "$r" mtls-none "$b_rps" "$b_p99" "$b_cpu" 1.000 "$b_rss"
  read -r rps p99 cpu rss < <(run_oha x509)
  cr=$(python3 -c "print(f'{$cpu/$b_cpu:.3f}')")
  printf "%-6s %-10s %10s %9s %12s %10s %14s\n" "$r" mtls-x509 "$rps" "$p99" "$cpu" "$cr" "$rss"
  MT="$MT $cr"
done
echo "median cpu/request ratio, mtls-x509 vs mtls-none: $(python3 -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])):.3f}')" $MT)"
for mode in none x509; do
  read -r hs p99 cpu _ < <(run_oha $mode --disable-keepalive)
  echo "new connections (TLS handshake + one request), mtls-$mode: $hs handshakes/s, p99 $p99 ms, $cpu CPU us per connection"
done
