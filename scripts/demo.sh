#!/usr/bin/env bash
# README command 1: installs what is needed, builds, and runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
LOCKSTEP=build/cli/lockstep
out=${DEMO_DIR:-build/demo}
mkdir -p "$out"
echo
echo "== 1. Generate one rack: 9 nodes x 8 lpu-v1 chips, the 9th node a spare"
echo "\$ lockstep topo generate --preset rack -o $out/rack.yaml"
$LOCKSTEP topo generate --preset rack -o "$out/rack.yaml"
echo
echo "\$ lockstep topo show $out/rack.yaml"
$LOCKSTEP topo show "$out/rack.yaml"
echo
echo "== 2. A route across the rack, from chip 0 to chip 63"
echo "\$ lockstep topo route $out/rack.yaml 0 63"
$LOCKSTEP topo route "$out/rack.yaml" 0 63
echo
echo "== 3. This host, and where 72 simulated chips would be pinned"
echo "\$ lockstep topo host"
$LOCKSTEP topo host
