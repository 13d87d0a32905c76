#!/usr/bin/env bash
# Fuzzes the untrusted-input decoders with libFuzzer for a bounded time each: the transport
# frame decoder (bytes from peers) and the topology file reader (files from users). Exits 0 when
# no crash was found. Builds only those targets, with clang and ASan+UBSan, in build-fuzz/.
#
#   scripts/fuzz.sh [seconds]      per target, default 30
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
esac
seconds="${1:-30}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
  echo "fuzz.sh: seconds must be a whole number, not '$seconds'" >&2
  exit 2
fi

flags="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer"
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" \
  -DLOCKSTEP_FUZZ=ON -DLOCKSTEP_BUILD_BENCH=OFF -DLOCKSTEP_WERROR=OFF >/dev/null
cmake --build build-fuzz --target frame_decoder_fuzz topology_yaml_fuzz -j2

# Seed corpus: valid frames (2-byte header length, header, payload) made with the capnp tool,
# plus the checked-in seeds. Fuzzing findings go to build-fuzz/corpus, not into the source tree.
corpus=build-fuzz/corpus
mkdir -p "$corpus"
cp transport/fuzz/corpus/* "$corpus"/ 2>/dev/null || true
seed() {  # name, capnp text of a FrameHeader, payload bytes (printf format)
  local header
  header=$(mktemp)
  echo "$2" | capnp encode -I/usr/include proto/frame.capnp FrameHeader >"$header"
  local n
  n=$(stat -c %s "$header")
  { printf "\\x$(printf %02x $((n & 255)))\\x$(printf %02x $((n >> 8)))"; cat "$header";
    printf "$3"; } >"$corpus/$1"
  rm -f "$header"
}
# Payload "abcd" has CRC32C 0x92C80A31 (2462583345).
seed data-int8 '(version = 1, kind = data, scheduleId = 1, step = 3, srcChip = 0, srcPort = 1,
  dstChip = 1, dstPort = 1, tensorId = 7, sequence = 3, tokenIndex = 5, dtype = 3, shape = [4],
  payloadLength = 4, payloadCrc32c = 2462583345)' 'abcd'
seed data-fp16 '(version = 1, kind = data, step = 9, dtype = 1, shape = [1, 2],
  payloadLength = 4, payloadCrc32c = 2462583345)' 'abcd'
seed hello '(version = 1, kind = hello, srcChip = 3, srcPort = 7, dstChip = 12, dstPort = 7)' ''
seed close '(version = 1, kind = close, sequence = 10)' ''
# A segment tag (segmented payloads, proto/frame.capnp): magic "LSG1", index 1, count 2, total 4.
printf '\x14\x00LSG1\x01\x00\x00\x00\x02\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00abcd' \
  >"$corpus/segment-tag"

ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  build-fuzz/transport/frame_decoder_fuzz "$corpus" -max_total_time="$seconds" -max_len=8192 \
  -timeout=10 -rss_limit_mb=1024 -print_final_stats=1

# Topology files: seeds are generated topologies and the format document's example.
ycorpus=build-fuzz/corpus-topology
mkdir -p "$ycorpus"
build/cli/lockstep topo generate --preset node --chips 3 -o "$ycorpus/node3.yaml" >/dev/null 2>&1 || true
build/cli/lockstep topo generate --preset ring --chips 4 -o "$ycorpus/ring4.yaml" >/dev/null 2>&1 || true
sed -n '/^```yaml$/,/^```$/p' topology/FORMAT.md | sed '1d;$d' >"$ycorpus/format-example.yaml"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  build-fuzz/topology/topology_yaml_fuzz "$ycorpus" -max_total_time="$seconds" -max_len=4096 \
  -timeout=10 -rss_limit_mb=1024 -print_final_stats=1
echo "fuzz.sh: no crash in ${seconds} s per target"
