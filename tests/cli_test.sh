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
# topo host: this machine and synthetic hosts, text and JSON, chip pinning of a rack.
json_ok() { python3 -c 'import json,sys; json.load(sys.stdin)' <out.txt || fail "$1: not JSON"; }
expect_exit 0 "$LOCKSTEP" topo host
grep -q '^host: this machine' out.txt || fail "topo host names this machine"
expect_exit 0 "$LOCKSTEP" topo host --json --map-rack
json_ok "topo host --json --map-rack"
python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["cores"]>=1 and j["numa"] and len(j["placements"])==72, j' <out.txt \
  || fail "topo host --json fields"
expect_exit 0 "$LOCKSTEP" topo host --synthetic "numa:2 core:8 pu:2" --map-rack --json
python3 -c '
import json,sys
j=json.load(sys.stdin)
assert (j["numa_nodes"],j["cores"],j["pus"])==(2,16,32), j
dom={}
for p in j["placements"]: assert dom.setdefault(p["node"],p["numa"])==p["numa"], p
assert sorted(list(dom.values()).count(d) for d in (0,1))==[4,5], dom' <out.txt || fail "synthetic rack placement"
expect_exit 0 "$LOCKSTEP" topo host --synthetic "pack:2 numa:2 core:4 pu:1" --map-rack --no-spares
grep -q '64 chips of 8 nodes (0 spare) on 16 core' out.txt || fail "topo host --no-spares summary"
expect_exit 1 "$LOCKSTEP" topo host --synthetic "bogus:3"
[ "$(wc -l <err.txt)" = 1 ] || fail "bad --synthetic is one line"
grep -q "'bogus:3'.*valid example" err.txt || fail "bad --synthetic names it and an example"
expect_exit 2 "$LOCKSTEP" topo host --no-spares
expect_exit 2 "$LOCKSTEP" topo host --frobnicate
[ "$(wc -l <err.txt)" = 1 ] || fail "unknown option is one line"
expect_exit 0 "$LOCKSTEP" topo host --help
grep -q -- '--synthetic' out.txt || fail "topo host --help lists --synthetic"
echo "cli_test: all passed"
