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
# keys generate: Z85 key files, secret owner-only, no silent overwrite, --json.
keydir=$(mktemp -d)
expect_exit 0 "$LOCKSTEP" keys generate -o "$keydir/k" --json
grep -q '"public_key"' out.txt || fail "keys generate --json prints public_key"
[ "$(stat -c %a "$keydir/k/lockstep.secret")" = 600 ] || fail "secret key file mode is not 0600"
[ "$(head -c 40 "$keydir/k/lockstep.public" | wc -c)" = 40 ] || fail "public key file"
expect_exit 1 "$LOCKSTEP" keys generate -o "$keydir/k"
grep -q "already exists" err.txt || fail "keys generate refuses to overwrite"
expect_exit 0 "$LOCKSTEP" keys generate -o "$keydir/k" --force
expect_exit 2 "$LOCKSTEP" keys generate
rm -rf "$keydir"
echo "cli_test: all passed"
