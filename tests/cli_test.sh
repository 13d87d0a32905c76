#!/usr/bin/env bash
# Runs the `lockstep` binary as a user would and checks exit codes, one-line errors and JSON.
set -euo pipefail
LOCKSTEP=${1:?usage: cli_test.sh path/to/lockstep}
fail() { echo "FAIL: $*" >&2; exit 1; }
expect_exit() {  # expect_exit CODE cmd...
  local want=$1; shift
  set +e; "$@" >out.txt 2>err.txt; local got=$?; set -e
  [ "$got" = "$want" ] || { cat out.txt err.txt >&2; fail "'$*' exited $got, want $want"; }
}
expect_exit 0 "$LOCKSTEP" --version
grep -q '^lockstep [0-9]' out.txt || fail "--version output"
expect_exit 0 "$LOCKSTEP" --help
grep -q 'topo' out.txt || fail "--help lists topo"
expect_exit 2 "$LOCKSTEP" no-such-command
grep -q "unknown command 'no-such-command'" err.txt || fail "unknown command message"
[ "$(wc -l <err.txt)" = 1 ] || fail "usage error is one line"
expect_exit 2 "$LOCKSTEP" --log-level loud topo
json() { python3 -c "import json,sys; d=json.load(open('out.txt')); print($1)"; }

# topo generate / show / validate / route
for preset in node rack ring torus2d; do
  expect_exit 0 "$LOCKSTEP" topo generate --preset $preset -o $preset.yaml
done
expect_exit 0 "$LOCKSTEP" topo generate --preset system --racks 2 -o system2.yaml
expect_exit 0 "$LOCKSTEP" topo show rack.yaml --json
[ "$(json "d['chips'], d['spares'], d['diameter_hops'], d['connected']")" = "72 8 3 True" ] \
  || fail "topo show rack json: $(cat out.txt)"
expect_exit 0 "$LOCKSTEP" --json topo show system2.yaml
[ "$(json "d['chips'], d['racks']")" = "144 2" ] || fail "topo show system2"
expect_exit 0 "$LOCKSTEP" topo show rack.yaml
grep -q 'diameter: *3 hops' out.txt || fail "topo show text"
expect_exit 0 "$LOCKSTEP" topo validate rack.yaml
expect_exit 0 "$LOCKSTEP" topo route rack.yaml 0 63 --json
[ "$(json "d['hops'], d['path'][0], d['path'][-1], d['latency_ns']")" = "3 0 63 1800" ] \
  || fail "topo route json: $(cat out.txt)"
expect_exit 0 "$LOCKSTEP" topo route ring.yaml 0 2 --down-link 1:0 --json
[ "$(json "d['hops']")" = "6" ] || fail "route around a failed link"
expect_exit 1 "$LOCKSTEP" topo route ring.yaml 0 2 --down-link 1:0 --down-chip 5
grep -q 'no route from chip 0 to chip 2' err.txt || fail "unreachable route message"
expect_exit 1 "$LOCKSTEP" topo route rack.yaml 0 72
grep -q 'unknown chip 72' err.txt || fail "unknown chip message"
expect_exit 2 "$LOCKSTEP" topo generate --preset mesh -o x.yaml
grep -q "unknown preset 'mesh'" err.txt || fail "unknown preset message"
expect_exit 2 "$LOCKSTEP" topo generate --preset rack
expect_exit 1 "$LOCKSTEP" topo generate --preset system --racks 146 -o big.yaml
grep -q '1..145' err.txt || fail "too many racks message"
[ ! -e big.yaml ] || fail "failed generate left a file"
# A hand-edited file with a port out of range: one line naming file, line and field.
sed 's/{a: "0:0", b: "1:0"}/{a: "0:0", b: "1:16"}/' node.yaml > bad.yaml
expect_exit 1 "$LOCKSTEP" topo validate bad.yaml
[ "$(wc -l <err.txt)" = 1 ] || fail "validation error is one line"
grep -q 'bad.yaml:[0-9]*: links\[0\]' err.txt || fail "validation error names file, line, field: $(cat err.txt)"
expect_exit 1 "$LOCKSTEP" topo show missing.yaml
grep -q 'missing.yaml' err.txt || fail "missing file named"
expect_exit 0 "$LOCKSTEP" topo --help
expect_exit 0 "$LOCKSTEP" topo route --help

echo "cli_test: all passed"
