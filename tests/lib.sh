# Helpers shared by the integration scripts (sourced, not run). Each script runs in its own
# working folder (tests/CMakeLists.txt) and, after `private_tmp NAME`, with a TMPDIR of its own:
# `lockstep run` creates its run directories there, so a script's leftover check sees only its
# own runs even while other scripts run at the same time (ctest -j2).

fail() { echo "FAIL: $*" >&2; exit 1; }

expect_exit() {  # expect_exit CODE cmd...: run with a time limit (LIMIT, default 60 s)
  local want=$1; shift
  set +e; timeout "${LIMIT:-60}" "$@" >out.txt 2>err.txt; local got=$?; set -e
  [ "$got" = "$want" ] || { cat out.txt err.txt >&2; fail "'$*' exited $got, want $want"; }
}

json() { python3 -c "import json,sys; d=json.load(open('out.txt')); print($1)"; }

err_has() { grep -qF -- "$1" err.txt || { cat err.txt >&2; fail "stderr lacks '$1'"; }; }

private_tmp() {  # private_tmp NAME: export a fresh TMPDIR, removed when the script exits
  TMPDIR=$(mktemp -d "/tmp/lockstep-test-$1-XXXXXX")
  export TMPDIR
  trap 'rm -rf "$TMPDIR"' EXIT
}

no_run_leftovers() {  # no_run_leftovers WHAT: no run directory and no orphan worker of ours
  local dirs
  dirs=$(ls -d "$TMPDIR"/lockstep-run-* 2>/dev/null || true)
  [ -z "$dirs" ] || fail "$1: run directories (sockets) left behind: $dirs"
  for d in $(pgrep -f "lockstep-worker" || true); do
    # Our workers are tagged with their run directory, which must be gone by now.
    # (It may exit meanwhile: no cmdline, no tag.)
    tag=$({ tr '\0' ' ' </proc/$d/cmdline; } 2>/dev/null | sed -n 's/.*--tag \([^ ]*\).*/\1/p' || true)
    case "$tag" in "$TMPDIR"/lockstep-run-*) fail "$1: orphan worker $d ($tag)";; esac
  done
}

# byte_tokenizer FILE: writes a byte-level BPE tokenizer.json whose 256 ids are the bytes (GPT-2's
# byte-to-character map, no merges), so they fit tiny-llama's vocabulary and a text's ids are its
# bytes.
byte_tokenizer() {
  python3 - "$1" <<'PY'
import json, sys
bs = list(range(33, 127)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
vocab = {chr(c): b for b, c in zip(bs, cs)}
json.dump({"model": {"type": "BPE", "vocab": vocab, "merges": []}, "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
           "post_processor": None, "decoder": {"type": "ByteLevel"}, "added_tokens": []},
          open(sys.argv[1], "w"))
PY
}
