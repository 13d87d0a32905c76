#!/usr/bin/env bash
# Deployment end to end (issue #8): `lockstep deploy` (dry-run mapping of a rack plan onto 3
# hosts, too few cores, a malformed hosts file, a real deploy on this host, workers over a fake
# ssh, pre-flight failures named by chip, host and port: a stray worker, a worker on the wrong
# host, a link whose address nothing can listen on) and the launch scripts (launch-local.sh,
# launch-ssh.sh with the fake ssh). Tokens must equal `lockstep run` in one process, and nothing
# may be left behind.
set -euo pipefail
LOCKSTEP=${1:?usage: deploy_test.sh path/to/lockstep}
LOCKSTEP=$(cd "$(dirname "$LOCKSTEP")" && pwd)/$(basename "$LOCKSTEP")
BIN=$(dirname "$LOCKSTEP")
SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")/../scripts" && pwd)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
HOST=$(hostname)
# Workers this test starts are this build's (another checkout's suite may run meanwhile) and
# carry "deploy host=" (deploy) or "launch-local worker" (script) tags.
no_leftovers() {  # no_leftovers WHAT
  sleep 0.2
  if pgrep -f "^$BIN/lockstep-worker .*(deploy host=|launch-local worker)" >/dev/null; then
    pgrep -af "lockstep-worker" >&2
    fail "$1: worker processes left behind"
  fi
  local dirs
  dirs=$(ls -d /tmp/lockstep-local-* /tmp/lockstep-ssh-* 2>/dev/null | grep -v -F -x -f before_dirs.txt || true)
  [ -z "$dirs" ] || fail "$1: work folders left behind: $dirs"
}
ls -d /tmp/lockstep-local-* /tmp/lockstep-ssh-* 2>/dev/null >before_dirs.txt || true
echo /nonexistent >>before_dirs.txt

cat >m.json <<'JSON'
{"_name_or_path": "deploy-t", "model_type": "llama", "hidden_size": 128, "head_dim": 32,
 "intermediate_size": 256, "num_hidden_layers": 6, "num_attention_heads": 16,
 "num_key_value_heads": 8, "vocab_size": 300, "max_position_embeddings": 64}
JSON
# A fake ssh: `fake-ssh -p PORT [USER@]HOST CMD...` runs CMD here (exec: it becomes the worker).
cat >fake-ssh <<'SH'
#!/usr/bin/env bash
[ "$1" = -p ] || { echo "fake-ssh: want -p PORT first" >&2; exit 255; }
echo "$3" >>fake-ssh.log
shift 3
exec "$@"
SH
chmod +x fake-ssh

# The reference: one process.
expect_exit 0 "$LOCKSTEP" run --model m.json --seed 3 --prompt 5,6,7 --max-new 6 --json
ref=$(json "d['tokens']")

# 1. Dry run: a rack plan (8 stages x TP 8 = 64 chips) on 3 hosts of 24 cores.
expect_exit 0 "$LOCKSTEP" plan --model m.json --topology rack --tp 8 --pp 8 -o rack.plan
cat >three.yaml <<'YAML'
hosts:
  - {name: a, address: 127.0.0.1, cores: 24}
  - {name: b, address: 127.0.0.1, cores: 24}
  - {name: c, address: 127.0.0.1, cores: 24}
YAML
expect_exit 0 "$LOCKSTEP" --json deploy --plan rack.plan --hosts three.yaml --dry-run
[ "$(json "len(d['mapping']['chips'])")" = 64 ] || fail "dry run maps 64 chips"
[ "$(json "len(d['mapping']['spares'])")" = 8 ] || fail "dry run lists the 8 spares"
# Whole nodes on one host, stages in host order: nodes 0-2 on a, 3-5 on b, 6-7 on c.
[ "$(json "sorted({(c['node'], c['host']) for c in d['mapping']['chips']})")" = \
  "[(0, 'a'), (1, 'a'), (2, 'a'), (3, 'b'), (4, 'b'), (5, 'b'), (6, 'c'), (7, 'c')]" ] \
  || fail "dry run: nodes to hosts $(json "d['mapping']['chips'][:2]")"
[ "$(json "len({(c['host'], c['core']) for c in d['mapping']['chips']})")" = 64 ] \
  || fail "dry run: one core per chip"
[ "$(json "{s['host'] for s in d['mapping']['spares']}")" = "{'c'}" ] || fail "spares on c"
expect_exit 0 "$LOCKSTEP" deploy --plan rack.plan --hosts three.yaml --dry-run
grep -q "spare chip 64 -> c core 16 (not started)" out.txt || fail "text mapping lists spares"

# 2. Too few cores: a clear error naming what is missing; shared cores only when allowed.
cat >small.yaml <<'YAML'
hosts:
  - {name: a, address: 127.0.0.1, cores: 16}
  - {name: b, address: 127.0.0.1, cores: 16}
YAML
expect_exit 1 "$LOCKSTEP" deploy --plan rack.plan --hosts small.yaml --dry-run
err_has "the plan starts 64 workers (one per chip), the 2 host(s) in small.yaml have 32 cores: 32 cores missing"
expect_exit 0 "$LOCKSTEP" deploy --plan rack.plan --hosts small.yaml --dry-run --allow-shared-cores
grep -q "host a: 32 chips share 16 cores" out.txt || fail "shared cores are noted"

# 3. A malformed hosts file: file:line: field.
printf 'hosts:\n  - name: a\n    address: 127.0.0.1\n    cores: lots\n' >bad.yaml
expect_exit 1 "$LOCKSTEP" deploy --plan rack.plan --hosts bad.yaml --dry-run
err_has "bad.yaml:4: hosts[0].cores: 'lots' is not (valid: an integer 1..1048576)"

# 4. A real deploy on this host: 2 stages x TP 2; tokens equal the reference; JSON has the
#    mapping, the pre-flight checks and timings.
expect_exit 0 "$LOCKSTEP" plan --model m.json --topology node --tp 2 --pp 2 -o node.plan
cat >local.yaml <<YAML
hosts:
  - {name: here, address: 127.0.0.1, cores: 4}
YAML
expect_exit 0 "$LOCKSTEP" --json --log-level warn deploy --plan node.plan --hosts local.yaml \
  --model m.json --seed 3 --prompt 5,6,7 --max-new 6
[ "$(json "d['requests'][0]['tokens']")" = "$ref" ] || fail "deploy tokens $(json "d['requests']") != $ref"
[ "$(json "[c['check'] for c in d['preflight'] if c['ok']]")" = "['routes', 'hosts', 'links']" ] \
  || fail "pre-flight checks $(json "d['preflight']")"
[ "$(json "'ship_and_ready_ms' in d['timings'] and 'generate_ms' in d['timings']")" = True ] || fail "timings"
no_leftovers "local deploy"
# Without prompts: ready, then a clean exit.
expect_exit 0 "$LOCKSTEP" deploy --plan node.plan --hosts local.yaml --seed 3
grep -q "^ready: 4 workers" out.txt || fail "deploy without prompts reports ready"
err_has "pre-flight links: 5 links opened, each to the expected chip and port"
no_leftovers "ready only"

# 5. Workers over (fake) ssh on a second "host" at 127.0.0.2 (remote: not 127.0.0.1).
cat >two.yaml <<YAML
hosts:
  - {name: here, address: 127.0.0.1, cores: 2}
  - {name: far, address: 127.0.0.2, cores: 2, ssh_user: ops, ssh_port: 2222, hostname: "$HOST"}
YAML
rm -f fake-ssh.log
expect_exit 0 "$LOCKSTEP" --json --log-level warn deploy --plan node.plan --hosts two.yaml \
  --seed 3 --prompt 5,6,7 --max-new 6 --ssh-command "$PWD/fake-ssh" --advertise 127.0.0.1
[ "$(json "d['requests'][0]['tokens']")" = "$ref" ] || fail "ssh deploy tokens differ"
[ "$(json "sorted({c['host'] for c in d['mapping']['chips']})")" = "['far', 'here']" ] || fail "both hosts used"
[ "$(sort -u fake-ssh.log)" = "ops@127.0.0.2" ] || fail "ssh went to $(cat fake-ssh.log)"
no_leftovers "ssh deploy"

# 6. Pre-flight failures, each named, each before any weights move.
#    a) the worker of host far registers from this host (its hostname does not match)
sed "s/, hostname: \"$HOST\"//" two.yaml >wrong-host.yaml
expect_exit 1 "$LOCKSTEP" deploy --plan node.plan --hosts wrong-host.yaml --seed 3 \
  --ssh-command "$PWD/fake-ssh" --advertise 127.0.0.1
err_has "pre-flight hosts check failed: chip"
err_has "registered from host '$HOST', but the mapping puts chip"
err_has "on host far (127.0.0.2, reporting hostname 'far')"
no_leftovers "wrong host"
#    b) a stray worker started by hand for a chip the mapping does not start
# Above the ephemeral range (no outgoing connection holds it) and the link ports (below it).
port=$((61000 + $$ % 4000))
"$BIN/lockstep-worker" --coordinator tcp://127.0.0.1:$port --chip 9 --quiet \
  --tag "deploy host=stray" --connect-timeout-ms 20000 2>/dev/null &
stray=$!
expect_exit 1 "$LOCKSTEP" deploy --plan node.plan --hosts local.yaml --seed 3 \
  --listen tcp://127.0.0.1:$port
err_has "asked for chip 9, which the mapping does not start"
wait $stray || true
no_leftovers "stray worker"
#    c) a link whose host address nothing on this machine can listen on (TEST-NET-1)
cat >nolisten.yaml <<YAML
hosts:
  - {name: here, address: 127.0.0.1, cores: 2}
  - {name: far, address: 192.0.2.1, cores: 2, hostname: "$HOST"}
YAML
expect_exit 1 "$LOCKSTEP" deploy --plan node.plan --hosts nolisten.yaml --seed 3 \
  --ssh-command "$PWD/fake-ssh" --advertise 127.0.0.1 --link-timeout-ms 1500
err_has "pre-flight links check failed: chip"
err_has "192.0.2.1"
no_leftovers "link check"

# 7. launch-local.sh: coordinator + workers on this host; tokens equal the reference.
expect_exit 0 "$SCRIPTS/launch-local.sh" --bin "$BIN" --model m.json --seed 3 --prompt 5,6,7 \
  --max-new 6 --tp 2 --pp 2
[ "$(head -1 out.txt | tr ' ' ',')" = "$(echo "$ref" | tr -d '[] ')" ] \
  || fail "launch-local.sh tokens $(cat out.txt) != $ref"
no_leftovers "launch-local.sh"
expect_exit 0 "$SCRIPTS/launch-local.sh" --help
grep -q "usage: scripts/launch-local.sh" out.txt || fail "launch-local.sh --help"
# Interrupted: TERM while the workers load leaves nothing behind.
"$SCRIPTS/launch-local.sh" --bin "$BIN" --model m.json --seed 3 --prompt 5,6,7 --max-new 60 \
  --tp 2 --pp 2 >/dev/null 2>&1 &
script=$!
# TERM as soon as its first worker process exists (only launch-local.sh uses lockstep-local-*).
for _ in $(seq 200); do
  pgrep -f "lockstep-worker .*lockstep-local-" >/dev/null && break
  sleep 0.05
done
kill -TERM $script 2>/dev/null || echo "note: launch-local.sh finished before the TERM arrived"
wait $script || true
no_leftovers "launch-local.sh after TERM"

# 8. launch-ssh.sh with the fake ssh: tokens equal the reference.
expect_exit 0 "$SCRIPTS/launch-ssh.sh" --bin "$BIN" --hosts two.yaml --ssh "$PWD/fake-ssh" \
  --advertise 127.0.0.1 --model m.json --seed 3 --prompt 5,6,7 --max-new 6 --tp 2 --pp 2 --json
[ "$(json "d['requests'][0]['tokens']")" = "$ref" ] || fail "launch-ssh.sh tokens differ"
no_leftovers "launch-ssh.sh"
expect_exit 0 "$SCRIPTS/launch-ssh.sh" --help
grep -q "usage: scripts/launch-ssh.sh" out.txt || fail "launch-ssh.sh --help"

echo "deploy tests passed"
