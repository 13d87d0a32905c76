#!/usr/bin/env bash
# Multi-host on one machine (issue #8): four network namespaces play four hosts. Each has a
# control interface (10.77.0.N/24, bridge lkbr-c) and a data interface for the chip links
# (10.78.0.N/24, bridge lkbr-d); the bridges carry no address, so only loopback and the
# namespaces' own addresses are used. One lockstep-worker per namespace serves one chip over tcp
# with CURVE (--tcp-host CHIP=IP puts every link across namespaces); the coordinator runs in the
# first namespace.
#   1. tokens equal the in-process run;
#   2. a worker holding another key pair is refused: the run fails naming chip and link;
#   3. a data link cut mid-run (ip link set DEV down) is reported as a stall naming the chip
#      behind and the link (port, peer) it waits on, within a bounded time, with the flight
#      recorders written to a file.
# Namespaces, bridges and processes are removed whatever happens. Needs root: skips otherwise.
#
#   tests/netns_test.sh LOCKSTEP LOCKSTEP-COORDINATOR LOCKSTEP-WORKER
set -euo pipefail
LOCKSTEP=$(realpath "${1:?usage: netns_test.sh LOCKSTEP COORDINATOR WORKER}")
COORD=$(realpath "${2:?usage: netns_test.sh LOCKSTEP COORDINATOR WORKER}")
WORKER=$(realpath "${3:?usage: netns_test.sh LOCKSTEP COORDINATOR WORKER}")
fail() { echo "FAIL: $*" >&2; exit 1; }
if [ "$(id -u)" != 0 ]; then echo "SKIP: needs root (creates network namespaces)"; exit 0; fi
command -v ip >/dev/null || { echo "SKIP: iproute2 (ip) not installed"; exit 0; }

N=4
NS=lockstep-ns
CONTROL_PORT=31750  # in namespace 1; links on 31100+ in every namespace
LINK_BASE=31100
DIR=$(mktemp -d /tmp/lockstep-netns.XXXXXX)
pids=()
teardown_net() {
  for i in $(seq $N); do
    if ip netns list | grep -qw "$NS$i"; then
      for _ in $(seq 50); do
        ps=$(ip netns pids "$NS$i" 2>/dev/null || true)
        [ -n "$ps" ] || break
        kill -9 $ps 2>/dev/null || true
        sleep 0.1
      done
      ip netns del "$NS$i" 2>/dev/null || true
    fi
    # A namespace may outlive its deletion for a while (sockets of a cut link): remove the
    # root ends of its veth pairs now.
    for kind in c d; do ip link del "lk$kind$i" 2>/dev/null || true; done
  done
  for b in lkbr-c lkbr-d; do ip link del "$b" 2>/dev/null || true; done
}
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  teardown_net
  { wait; } 2>/dev/null
  rm -rf "$DIR"
}
trap cleanup EXIT
teardown_net  # leftovers of an interrupted run
if ! ip netns add "${NS}1" 2>/dev/null; then
  echo "SKIP: this machine does not allow network namespaces (ip netns add failed)"
  exit 0
fi
# Bridged frames must not go through the host's iptables (a FORWARD policy of DROP would eat them).
for b in lkbr-c lkbr-d; do
  ip link add "$b" type bridge nf_call_iptables 0 nf_call_ip6tables 0 nf_call_arptables 0 2>/dev/null ||
    ip link add "$b" type bridge
  ip link set "$b" up
done
for i in $(seq $N); do
  [ "$i" = 1 ] || ip netns add "$NS$i"
  ip netns exec "$NS$i" ip link set lo up
  for kind in c d; do
    net=$([ $kind = c ] && echo 10.77.0 || echo 10.78.0)
    dev=$([ $kind = c ] && echo ctl0 || echo data0)
    ip link add "lk$kind$i" type veth peer name "lk$kind${i}p"
    ip link set "lk$kind${i}p" netns "$NS$i"
    ip netns exec "$NS$i" ip link set "lk$kind${i}p" name $dev
    ip netns exec "$NS$i" ip addr add "$net.$i/24" dev $dev
    ip netns exec "$NS$i" ip link set $dev up
    ip link set "lk$kind$i" master "lkbr-$kind"
    ip link set "lk$kind$i" up
  done
done

cd "$DIR"
"$LOCKSTEP" keys generate -o keys >/dev/null
"$LOCKSTEP" keys generate -o other >/dev/null
cat >model.json <<'JSON'
{"_name_or_path": "netns-rt", "model_type": "llama", "hidden_size": 128, "head_dim": 32,
 "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 16,
 "num_key_value_heads": 8, "vocab_size": 300, "max_position_embeddings": 256}
JSON
hosts=()
for i in $(seq $N); do hosts+=(--tcp-host "$((i - 1))=10.78.0.$i"); done
common=(--model model.json --seed 9 --tp 2 --pp 2 --listen "tcp://10.77.0.1:$CONTROL_PORT"
        --transport tcp --tcp-base-port $LINK_BASE "${hosts[@]}" --curve keys)

# start_run NAME KEYDIR-OF-CHIP-3 COORDINATOR-ARGS...: coordinator in ns1, worker i-1 in ns i.
start_run() {
  local name=$1 last_keys=$2; shift 2
  ip netns exec "${NS}1" timeout 120 "$COORD" "${common[@]}" "$@" >"$name.out" 2>"$name.err" &
  coord_pid=$!
  pids+=("$coord_pid")
  for i in $(seq $N); do
    local k=keys
    [ "$i" = $N ] && k=$last_keys
    ip netns exec "$NS$i" timeout 120 "$WORKER" --coordinator "tcp://10.77.0.1:$CONTROL_PORT" \
      --chip $((i - 1)) --curve $k --no-pin --quiet 2>"$name.worker$i.err" &
    pids+=($!)
  done
}
stop_workers() {  # every process of every namespace (the workers of the last run)
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for i in $(seq $N); do
    ps=$(ip netns pids "$NS$i" 2>/dev/null || true)
    [ -z "$ps" ] || kill -9 $ps 2>/dev/null || true
  done
  { wait; } 2>/dev/null || true
  pids=()
}

# 1. Tokens over CURVE links across namespaces equal the in-process run.
timeout 60 "$LOCKSTEP" --log-level warn run --model model.json --seed 9 --prompt 5,6,7 \
  --max-new 6 --json >ref.json
want=$(sed -n 's/.*"tokens": *\[\([^]]*\)\].*/\1/p' ref.json | head -1 | tr -d ' \n')
[ -n "$want" ] || want=$(tr -d ' \n' <ref.json | sed -n 's/.*"tokens":\[\([^]]*\)\].*/\1/p')
start_run ok keys --prompt 5,6,7 --max-new 6 --json
set +e
wait "$coord_pid"
rc=$?
set -e
[ $rc = 0 ] || { cat ok.err ok.worker*.err >&2; fail "the CURVE run across namespaces exited $rc"; }
got=$(tr -d ' \n' <ok.out | sed -n 's/.*"tokens":\[\([^]]*\)\].*/\1/p')
[ "$got" = "$want" ] || fail "tokens across namespaces [$got] != in-process [$want]"
grep -q '"chips": 4' ok.out || fail "the run did not use 4 chips: $(cat ok.out)"
stop_workers
echo "ok: 4 chips in 4 namespaces over tcp + CURVE: tokens [$got] equal the in-process run"

# 2. Chip 3's worker holds another key pair: its peers refuse it; the run fails naming both.
start_run badkey other --prompt 5,6,7 --max-new 6 --connect-timeout-ms 3000
set +e
wait "$coord_pid"
rc=$?
set -e
[ $rc = 1 ] || { cat badkey.err >&2; fail "a worker with the wrong key: exit $rc, want 1"; }
grep -q "link chip [0-9]*:[0-9]* <-> chip [0-9]*:[0-9]*" badkey.err ||
  fail "the wrong-key error names no link: $(cat badkey.err)"
grep -q "chip 3" badkey.err || fail "the wrong-key error does not name chip 3: $(cat badkey.err)"
grep -q "CURVE handshake" badkey.err badkey.worker*.err ||
  fail "nobody says the CURVE handshake failed: $(cat badkey.err badkey.worker*.err)"
stop_workers
echo "ok: a worker with another key is refused: $(tail -1 badkey.err)"

# 3. Cut chip 2's data link mid-run: a stall naming chip, link, port and peer.
prompts=""
for p in $(seq 8); do prompts+="$p,$((p + 1)),$((p + 2))"$'\n'; done
printf '%s' "$prompts" >prompts.txt
start_run cut keys --prompts prompts.txt --max-new 200 --step-timeout-ms 30000 \
  --stall-timeout-ms 1500 --heartbeat-timeout-ms 5000 --flight-recorder "$DIR/flight.json"
for _ in $(seq 300); do
  grep -q "workers ready (links open, shards loaded): 4/4" cut.err && break
  kill -0 "$coord_pid" 2>/dev/null || break
  sleep 0.1
done
grep -q "workers ready (links open, shards loaded): 4/4" cut.err || { cat cut.err >&2; fail "never ready"; }
sleep 0.5
kill -0 "$coord_pid" 2>/dev/null || { cat cut.err >&2; fail "the run ended before the cut (make it longer)"; }
cut_at=$(date +%s%N)
ip link set lkd3 down
set +e
wait "$coord_pid"
rc=$?
set -e
detect_ms=$((($(date +%s%N) - cut_at) / 1000000))
[ $rc = 1 ] || { cat cut.err >&2; fail "the cut run exited $rc, want 1"; }
grep -q "stalled: .*chip [0-9]* waits at step [0-9]* op [0-9]*: [a-z]* on link [0-9]* (port [0-9]*) \(from\|to\) chip [0-9]*" cut.err ||
  fail "the stall report does not name chip, link, port and peer: $(cat cut.err)"
grep -q "chips wait on chip 2 (check its links)" cut.err ||
  fail "the report does not point at chip 2, whose link was cut: $(cat cut.err)"
grep -q "flight recorders in $DIR/flight.json" cut.err || fail "no recorder file named: $(cat cut.err)"
[ -s flight.json ] || fail "flight.json was not written"
[ "$(grep -c '"chip":' flight.json)" -ge 4 ] || fail "flight.json lacks chips: $(head -c 400 flight.json)"
grep -q '"entries": \[' flight.json && grep -q '"kind": "recv"' flight.json ||
  fail "flight.json has no recorded instructions"
[ $detect_ms -lt 10000 ] || fail "the cut took $detect_ms ms to report (stall timeout 1500 ms)"
stop_workers
echo "ok: link cut reported in $detect_ms ms: $(grep -o 'step [0-9]* stalled.*' cut.err | cut -c1-300)"
echo "PASS: netns multi-host (4 namespaces, tcp + CURVE, wrong key, link cut)"
