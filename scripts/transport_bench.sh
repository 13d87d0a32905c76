#!/usr/bin/env bash
# The transport's throughput and latency beside raw ZeroMQ (issues #5, #19), as the tables of
# BENCHMARKS.md: runs bench/transport_bench's Throughput, Latency and Crc32cSpeed rows REPS times
# (default 9) in random interleaving (each repetition of each row at a random place in the run,
# so a minute in which the shared host runs fast or slow moves raw and Lockstep alike, where
# running all of raw's repetitions and then all of Lockstep's put them in different minutes),
# then prints the medians, their ratios and whether each meets the targets, which apply to the
# default link checksum policy (auto: payloads unchecked on inproc and ipc, checked on tcp):
#   throughput >= 90% of raw (raw's receiver reading its payload, as Lockstep's does), and
#   one-way latency <= 1.2x raw up to 64 KiB.
# The "vs raw_unread" column compares with a raw receiver that drops its bytes unread (the
# benchmark's earlier baseline; no real consumer does that). A second table gives the cost of
# --link-checksums on (every payload checksummed; tcp's auto already is): its throughput and
# latency beside auto's, the time per message each takes, and CRC32C's own speed at that size
# with the time its two passes (sender and receiver) would take.
#
#   scripts/transport_bench.sh [build/bench/transport_bench] [REPS]
#   scripts/transport_bench.sh --table RUN.json      # the tables of an earlier run
#   scripts/transport_bench.sh --help                # this text
# JSON of the run: $OUT (default /tmp/transport_bench.json), the benchmark's own output $OUT.log.
# FILTER (a Google Benchmark regex, default every Throughput, Latency and Crc32cSpeed row) runs
# fewer rows; MIN_TIME (seconds) shortens the rows timed by duration (Crc32cSpeed; the others
# move a fixed count of messages).
set -euo pipefail
if [ "${1:-}" = --help ] || [ "${1:-}" = -h ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 0
fi
if [ "${1:-}" = --table ]; then
  OUT=${2:?--table needs the JSON file of a run}
  [ -r "$OUT" ] || { echo "transport_bench.sh: cannot read $OUT" >&2; exit 2; }
else
  TB=${1:-build/bench/transport_bench}
  REPS=${2:-9}
  OUT=${OUT:-/tmp/transport_bench.json}
  [ -x "$TB" ] || {
    echo "transport_bench.sh: no benchmark binary at $TB (build it: cmake --build build --target transport_bench)" >&2
    exit 2
  }
  [[ $REPS =~ ^[1-9][0-9]*$ ]] || {
    echo "transport_bench.sh: REPS must be a positive whole number, not '$REPS'" >&2
    exit 2
  }
  echo "transport_bench: $REPS interleaved repetitions, started $(date -u +%H:%M:%S) UTC," \
    "load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  "$TB" --benchmark_filter="${FILTER:-Throughput/|Latency|Crc32cSpeed}" --benchmark_repetitions="$REPS" \
    --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true \
    ${MIN_TIME:+--benchmark_min_time="$MIN_TIME"} \
    --benchmark_out="$OUT" --benchmark_out_format=json >"$OUT.log" 2>&1 || {
    echo "transport_bench.sh: $TB failed; its output:" >&2
    tail -20 "$OUT.log" >&2
    exit 1
  }
  echo "finished $(date -u +%H:%M:%S) UTC, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
fi
python3 - "$OUT" <<'PY'
import json, sys

rows = {}
crc = {}
crc_path = ""
try:
    for b in json.load(open(sys.argv[1]))["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        if b["run_name"].startswith("Crc32cSpeed/"):
            crc[int(b["run_name"].split("/")[1])] = b["bytes_per_second"]
            crc_path = b.get("label", crc_path)
        if not b["run_name"].startswith(("Throughput/", "Latency/")):
            continue
        # e.g. Throughput/raw/ipc/1048576/iterations:512/real_time
        kind, impl, backend, size = b["run_name"].split("/")[:4]
        rows[(kind, impl, backend, int(size))] = b
except (OSError, ValueError, KeyError, TypeError) as e:
    sys.exit(f"transport_bench.sh: {sys.argv[1]} is not the JSON of a transport_bench run with "
             f"repetitions ({type(e).__name__}: {e})")
if not rows:
    sys.exit(f"transport_bench.sh: {sys.argv[1]} has no median of a Throughput or Latency row "
             "(run with REPS >= 2 and a FILTER that selects them)")

def rate(b):
    return b["bytes_per_second"]

def human(bps):
    for unit, scale in (("GiB/s", 2**30), ("MiB/s", 2**20)):
        if bps >= scale:
            return f"{bps / scale:.2f} {unit}"
    return f"{bps / 2**10:.0f} KiB/s"

def size_name(n):
    return f"{n >> 20} MiB" if n >= 2**20 else f"{n >> 10} KiB"

print("| backend | size | throughput raw / Lockstep | ratio | vs raw_unread | CPU us/msg raw / Lockstep "
      "| one-way latency raw / Lockstep | ratio |")
print("|---|---|---|---|---|---|---|---|")
misses = []
for backend in ("inproc", "ipc", "tcp"):
    for size in (4 << 10, 64 << 10, 1 << 20, 16 << 20):
        raw = rows.get(("Throughput", "raw", backend, size))
        ours = rows.get(("Throughput", "lockstep", backend, size))
        unread = rows.get(("Throughput", "raw_unread", backend, size))
        if raw is None or ours is None:
            continue
        ratio = rate(ours) / rate(raw)
        vs_unread = f"{rate(ours) / rate(unread):.0%}" if unread else ""
        cpu = f"{raw['cpu_us_per_msg']:.1f} / {ours['cpu_us_per_msg']:.1f}"
        lat = ""
        lat_ratio = ""
        lraw = rows.get(("Latency", "raw", backend, size))
        lours = rows.get(("Latency", "lockstep", backend, size))
        if lraw and lours:
            lat = f"{lraw['one_way_us']:.1f} / {lours['one_way_us']:.1f} us"
            r = lours["one_way_us"] / lraw["one_way_us"]
            lat_ratio = f"{r:.2f}x"
            if r > 1.2:
                misses.append(f"{backend} {size_name(size)} latency {r:.2f}x")
                lat_ratio = f"**{lat_ratio}**"
        mark = f"{ratio:.1%}" if 0.895 <= ratio < 0.905 else f"{ratio:.0%}"
        if ratio < 0.9:
            misses.append(f"{backend} {size_name(size)} throughput {mark}")
            mark = f"**{mark}**"
        print(f"| {backend} | {size_name(size)} | {human(rate(raw))} / {human(rate(ours))} | {mark} "
              f"| {vs_unread} | {cpu} | {lat} | {lat_ratio} |")
print()
print("targets (throughput >= 90% of raw, one-way latency <= 1.2x raw up to 64 KiB): " +
      ("all met" if not misses else "missed: " + ", ".join(misses)))

# The cost of --link-checksums on beside auto, and CRC32C's own speed. tcp's auto checksums
# already: its `on` is its auto row.
def us_per_msg(b, size):
    return size / rate(b) * 1e6

on_rows = []
for backend in ("inproc", "ipc", "tcp"):
    on_impl = "lockstep" if backend == "tcp" else "lockstep_on"
    for size in (4 << 10, 64 << 10, 1 << 20, 16 << 20):
        raw = rows.get(("Throughput", "raw", backend, size))
        auto = rows.get(("Throughput", "lockstep", backend, size))
        on = rows.get(("Throughput", on_impl, backend, size))
        if raw is None or auto is None or on is None:
            continue
        speed = f"{crc[size] / 1e9:.1f} GB/s" if size in crc else ""
        passes = f"{2 * size / crc[size] * 1e6:.1f} us" if size in crc else ""
        lat = ""
        lauto = rows.get(("Latency", "lockstep", backend, size))
        lon = rows.get(("Latency", on_impl, backend, size))
        if lauto and lon:
            lat = f"{lauto['one_way_us']:.1f} / {lon['one_way_us']:.1f} us"
        on_rows.append(
            f"| {backend}{' (auto)' if backend == 'tcp' else ''} | {size_name(size)} "
            f"| {human(rate(auto))} / {human(rate(on))} | {rate(on) / rate(raw):.0%} "
            f"| {us_per_msg(auto, size):.1f} / {us_per_msg(on, size):.1f} "
            f"| {speed} | {passes} | {lat} |")
if on_rows:
    print()
    print("checksums on (--link-checksums on) beside the default auto" +
          (f"; CRC32C by {crc_path}:" if crc_path else ":"))
    print()
    print("| backend | size | throughput auto / on | on vs raw | us per message auto / on "
          "| CRC32C speed | two CRC passes | one-way latency auto / on |")
    print("|---|---|---|---|---|---|---|---|")
    for line in on_rows:
        print(line)
PY
