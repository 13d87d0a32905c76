#!/usr/bin/env bash
# scripts/transport_bench.sh as a user runs it (issue #5's benchmark command): a short run of a
# few rows gives the BENCHMARKS table with raw and Lockstep side by side and the targets line;
# bad arguments and a file that is not a run's JSON are refused in one line.
#   tests/transport_bench_test.sh BUILD/bench/transport_bench
set -euo pipefail
TB=$1
SCRIPT=$(cd "$(dirname "$0")/.." && pwd)/scripts/transport_bench.sh
source "$(dirname "$0")/lib.sh"
private_tmp transport-bench

# Two repetitions of the 64 KiB rows on ipc: throughput (raw, Lockstep auto and on, raw_unread),
# latency, and CRC32C's speed.
OUT=$TMPDIR/run.json MIN_TIME=0.05 FILTER='Throughput/(raw|lockstep|lockstep_on|raw_unread)/ipc/65536|Latency/(raw|lockstep|lockstep_on)/ipc/65536|Crc32cSpeed/65536' \
  LIMIT=120 expect_exit 0 "$SCRIPT" "$TB" 2
grep -q '^| backend | size | throughput raw / Lockstep | ratio | vs raw_unread |' out.txt ||
  fail "no table header: $(cat out.txt)"
row=$(grep -m1 '^| ipc | 64 KiB |' out.txt) || fail "no ipc 64 KiB row: $(cat out.txt)"
# throughput, its ratio and the one against raw_unread, CPU, latency and its ratio all filled in
echo "$row" | grep -Eq '^\| ipc \| 64 KiB \| [0-9.]+ [KMG]iB/s / [0-9.]+ [KMG]iB/s \| \**[0-9.]+%\** \| [0-9.]+% \| [0-9.]+ / [0-9.]+ \| [0-9.]+ / [0-9.]+ us \| \**[0-9.]+x\** \|$' ||
  fail "ipc 64 KiB row incomplete: $row"
[ "$(grep -c '^|' out.txt)" = 6 ] || fail "expected two tables of a header, a rule and one row: $(cat out.txt)"
grep -Eq '^checksums on \(--link-checksums on\) beside the default auto; CRC32C by [a-z0-9.-]+:$' out.txt ||
  fail "no checksums-on title naming the CRC32C path: $(cat out.txt)"
on_row=$(grep '^| ipc | 64 KiB | .* | [0-9.]* GB/s |' out.txt) || fail "no ipc 64 KiB row with checksums on: $(cat out.txt)"
grep -Eq '^targets \(throughput >= 90% of raw, one-way latency <= 1.2x raw up to 64 KiB\): (all met|missed: .+)$' out.txt ||
  fail "no targets line: $(cat out.txt)"
# The ratios are the run's medians, Lockstep over raw, and the targets line follows from them.
want=$(python3 - "$TMPDIR/run.json" <<'PY'
import json, sys
med = {b["run_name"].split("/iterations")[0]: b for b in json.load(open(sys.argv[1]))["benchmarks"]
       if b.get("aggregate_name") == "median"}
t = med["Throughput/lockstep/ipc/65536"]["bytes_per_second"] / med["Throughput/raw/ipc/65536"]["bytes_per_second"]
l = med["Latency/lockstep/ipc/65536"]["one_way_us"] / med["Latency/raw/ipc/65536"]["one_way_us"]
t_text = f"{t:.1%}" if 0.895 <= t < 0.905 else f"{t:.0%}"
on = med["Throughput/lockstep_on/ipc/65536"]["bytes_per_second"] / med["Throughput/raw/ipc/65536"]["bytes_per_second"]
crc = med["Crc32cSpeed/65536"]["bytes_per_second"]
print(t_text, f"{l:.2f}x", "miss" if t < 0.9 or l > 1.2 else "met", f"{on:.0%}",
      f"{crc / 1e9:.1f}GB/s", f"{2 * 65536 / crc * 1e6:.1f}us")
PY
)
read -r t_want l_want verdict on_want crc_want passes_want <<<"$want"
column() { echo "$row" | awk -F'|' -v k="$1" '{gsub(/[ *]/, "", $k); print $k}'; }
[ "$(column 5)" = "$t_want" ] || fail "throughput ratio is not $t_want: $row"
[ "$(column 9)" = "$l_want" ] || fail "latency ratio is not $l_want: $row"
# The checksums-on row: on over raw, CRC32C's median speed and its two passes over 64 KiB.
on_column() { echo "$on_row" | awk -F'|' -v k="$1" '{gsub(/[ *]/, "", $k); print $k}'; }
[ "$(on_column 5)" = "$on_want" ] || fail "on vs raw is not $on_want: $on_row"
[ "$(on_column 7)" = "$crc_want" ] || fail "CRC32C speed is not $crc_want: $on_row"
[ "$(on_column 8)" = "$passes_want" ] || fail "two CRC passes are not $passes_want: $on_row"
if [ "$verdict" = met ]; then
  grep -q ': all met$' out.txt || fail "targets line disagrees with $want: $(tail -1 out.txt)"
else
  grep -q ': missed: ipc 64 KiB' out.txt || fail "targets line disagrees with $want: $(tail -1 out.txt)"
fi
# The table again from the saved run, without running anything.
expect_exit 0 "$SCRIPT" --table "$TMPDIR/run.json"
grep -q '^| ipc | 64 KiB |' out.txt || fail "--table lost the row"
grep -qF "$on_row" out.txt || fail "--table lost the checksums-on row"

# --help explains the arguments, the targets and the environment variables, and runs nothing.
expect_exit 0 "$SCRIPT" --help
for want in 'scripts/transport_bench.sh \[build/bench/transport_bench\] \[REPS\]' '--table RUN.json' \
  'throughput >= 90% of raw' 'FILTER' '--link-checksums on'; do
  grep -q -- "$want" out.txt || fail "--help does not mention $want: $(cat out.txt)"
done
grep -q '^#' out.txt && fail "--help prints the comment markers: $(head -3 out.txt)"

# Refusals, each one line on stderr, exit 2 (usage) or 1 (a file that is not a run).
expect_exit 2 "$SCRIPT" "$TMPDIR/no-such-binary" 3
err_has "no benchmark binary at $TMPDIR/no-such-binary"
expect_exit 2 "$SCRIPT" "$TB" 0
err_has "REPS must be a positive whole number, not '0'"
echo '{"benchmarks": 7}' >"$TMPDIR/bad.json"
expect_exit 1 "$SCRIPT" --table "$TMPDIR/bad.json"
err_has "is not the JSON of a transport_bench run"
[ "$(wc -l <err.txt)" = 1 ] || fail "more than one line for a bad file: $(cat err.txt)"
echo '{"benchmarks": []}' >"$TMPDIR/empty.json"
expect_exit 1 "$SCRIPT" --table "$TMPDIR/empty.json"
err_has "has no median of a Throughput or Latency row"
echo "transport_bench_test: OK"
