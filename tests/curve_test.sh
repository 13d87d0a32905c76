#!/usr/bin/env bash
# CURVE on the links between worker processes (issue #5 through #7's runtime): `lockstep run
# --transport tcp --curve` equals the in-process run; a hand-started worker with another key pair
# is refused by its peers and the run fails naming the chip and the link; --curve outside tcp is a
# usage error. Local only (127.0.0.1), no root needed.
#
#   tests/curve_test.sh LOCKSTEP LOCKSTEP-COORDINATOR LOCKSTEP-WORKER
set -euo pipefail
LOCKSTEP=${1:?usage: curve_test.sh LOCKSTEP COORDINATOR WORKER}
COORD=${2:?usage: curve_test.sh LOCKSTEP COORDINATOR WORKER}
WORKER=${3:?usage: curve_test.sh LOCKSTEP COORDINATOR WORKER}
fail() { echo "FAIL: $*" >&2; exit 1; }
tokens() { tr -d ' \n' <"$1" | sed -n 's/.*"tokens":\[\([^]]*\)\].*/\1/p'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
rm -rf keys other
cat >model.json <<'JSON'
{"_name_or_path": "curve-rt", "model_type": "llama", "hidden_size": 128, "head_dim": 32,
 "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 16,
 "num_key_value_heads": 8, "vocab_size": 300, "max_position_embeddings": 64}
JSON
args=(--model model.json --seed 9 --prompt 5,6,7 --max-new 6)
timeout 60 "$LOCKSTEP" --log-level warn run "${args[@]}" --json >ref.json
want=$(tokens ref.json)

# A fresh key pair in the run directory, and one from `lockstep keys generate`.
timeout 60 "$LOCKSTEP" --log-level warn run "${args[@]}" --transport tcp --tp 2 --pp 1 --curve \
  --json >fresh.json
[ "$(tokens fresh.json)" = "$want" ] || fail "--curve: tokens $(tokens fresh.json) != $want"
"$LOCKSTEP" keys generate -o keys >/dev/null
"$LOCKSTEP" keys generate -o other >/dev/null
timeout 60 "$LOCKSTEP" --log-level warn run "${args[@]}" --transport tcp --tp 2 --pp 2 \
  --curve-keys keys --json >given.json
[ "$(tokens given.json)" = "$want" ] || fail "--curve-keys: tokens $(tokens given.json) != $want"

set +e
"$LOCKSTEP" run "${args[@]}" --transport ipc --curve >/dev/null 2>err.txt
rc=$?
set -e
[ $rc = 2 ] && grep -q "needs --transport tcp" err.txt || fail "--curve with ipc: exit $rc $(cat err.txt)"

# Chip 1's worker holds another key pair: chip 0 refuses it.
base=$((30000 + ($$ % 30) * 32))  # link ports of this test: 30000-30999
timeout 60 "$COORD" "${args[@]}" --tp 2 --pp 1 --listen "tcp://127.0.0.1:0" --transport tcp \
  --tcp-base-port $base --curve keys --connect-timeout-ms 2000 >bad.out 2>bad.err &
coord=$!
pids+=($coord)
for _ in $(seq 300); do grep -q "lockstep-worker --coordinator tcp://" bad.err && break; sleep 0.1; done
addr=$(sed -n 's/.*lockstep-worker --coordinator \(tcp:[^ ]*\).*/\1/p' bad.err | head -1)
[ -n "$addr" ] || fail "the coordinator printed no address: $(cat bad.err)"
timeout 60 "$WORKER" --coordinator "$addr" --chip 0 --curve keys --no-pin \
  2>worker0.err &
pids+=($!)
timeout 60 "$WORKER" --coordinator "$addr" --chip 1 --curve other --no-pin \
  2>worker1.err &
pids+=($!)
set +e
wait $coord
rc=$?
set -e
[ $rc = 1 ] || { cat bad.err >&2; fail "a worker with the wrong key: exit $rc, want 1"; }
grep -q "chip [01] (worker pid" bad.err || fail "the error names no chip: $(cat bad.err)"
grep -q "link chip 0:[0-9]* <-> chip 1:[0-9]*" bad.err || fail "the error names no link: $(cat bad.err)"
grep -q "failed the CURVE handshake" bad.err worker0.err worker1.err ||
  fail "nobody says the CURVE handshake failed: $(cat bad.err worker*.err)"
grep -q "refused a CURVE connection" worker0.err || fail "chip 0 did not log the refusal: $(cat worker0.err)"
echo "PASS: CURVE links equal the reference; a wrong key is refused: $(tail -1 bad.err)"
