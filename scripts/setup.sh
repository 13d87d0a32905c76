#!/usr/bin/env bash
# Installs exactly the Debian 12 packages Lockstep needs, then configures and builds.
# Idempotent: packages already present are not fetched again; the build is incremental.
#
#   scripts/setup.sh [--sanitize] [--build-dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build pkg-config clang-format  # toolchain, formatting
  libboost-program-options-dev    # CLI
  libboost-dev curl               # serve: Boost.Asio/Beast (headers); curl drives it in tests/serve_test.sh
  libspdlog-dev                   # logging
  nlohmann-json3-dev              # JSON output, HF config.json, traces
  libyaml-cpp-dev                 # topology files
  capnproto libcapnp-dev          # schemas, wire format
  libzmq3-dev cppzmq-dev          # transport
  libhwloc-dev                    # host discovery and pinning
  libgtest-dev libgmock-dev       # tests
  clang libclang-rt-14-dev        # libFuzzer targets (scripts/fuzz.sh)
  python3                         # JSON checks in tests/cli_test.sh
  libbenchmark-dev                # benchmarks
  slurm-wlm munge                 # tests/slurm_test.sh, scripts/launch-slurm.sh
  libpcre2-dev libutf8proc-dev    # tokenizer: Unicode split regexes, normalization (NFC, ...)
  pybind11-dev python3-dev        # python/: the `lockstep` Python module
  librsvg2-bin                    # rsvg-convert: tests render the plan/simulate --svg pictures to PNG
  prometheus                      # promtool: tests/serve_test.sh checks serve's /metrics with it
)

build_dir=build
cmake_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) build_dir=build-asan; cmake_args+=(-DLOCKSTEP_SANITIZE=ON -DLOCKSTEP_BUILD_BENCH=OFF) ;;
    --build-dir) build_dir=$2; shift ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$1' (valid: --sanitize, --build-dir DIR)" >&2; exit 2 ;;
  esac
  shift
done

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all ${#PACKAGES[@]} packages present"
fi

# Test-only reference for the tokenizer and chat-template tests (issue #23): Hugging Face's
# JavaScript tokenizers and Jinja from the npm registry, pinned by tests/js/package-lock.json,
# into tests/js/node_modules (git-ignored; never needed at run time). Node may come from
# elsewhere than Debian (then it brings its own npm); only a missing npm installs Debian's.
if ! command -v npm >/dev/null; then
  echo "setup: installing nodejs npm (test-only reference tools)"
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi
if [ ! -f tests/js/node_modules/.package-lock.json ] ||
   [ tests/js/package-lock.json -nt tests/js/node_modules/.package-lock.json ]; then
  echo "setup: installing the test-only npm packages into tests/js"
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi

cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${cmake_args[@]}" >/dev/null
cmake --build "$build_dir" --parallel "$(nproc)"
echo "setup: built in $build_dir"
