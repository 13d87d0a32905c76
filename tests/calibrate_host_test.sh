#!/usr/bin/env bash
# lockstep calibrate --host (issue #21, item 3): the written file parses as a topology whose
# chips, links and cost figures are the measured ones (and positive), a plan on it carries
# them, and bad flags are named. Figures are never compared with a time: only that they are
# what was measured and written, and positive.
set -euo pipefail
L=$1
SRC=$(cd "$(dirname "$0")/.." && pwd)
. "$SRC/tests/lib.sh"
private_tmp calibrate-host

# ipc, one chip per usable core, two rounds; the JSON's figures are the file's.
expect_exit 0 "$L" --json calibrate --host --quick --rounds 2 -o host.yaml
cp out.txt cal.json
cores=$(json "d['cores']")
[ "$(json "d['chips'] == d['cores'] >= 1 and d['transport'] == 'ipc'")" = True ] || fail "chips/cores/transport"
[ "$(json "all(d[k] > 0 for k in ('read_bytes_per_s', 'fp32_decode_ops_per_s', 'int8_decode_ops_per_s', 'link_one_way_ns', 'link_bytes_per_s'))")" = True ] \
  || fail "a measured figure is not positive: $(cat cal.json)"
[ "$(json "len(d['per_core']) == d['cores'] and all(c['read_bytes_per_s'] > 0 and c['fp32_ops_per_s_16_rows'] > 0 and c['int8_block32_decode_ops_per_s'] > 0 and c['int8_channel_decode_ops_per_s'] > 0 and c['op_overhead_ns'] > 0 for c in d['per_core'])")" = True ] \
  || fail "per-core figures missing or not positive"
# The spec holds the slowest core's figures and the link's (rounded half away from zero, as
# llround: half a round trip is often x.5 ns, where Python's round() goes to even).
[ "$(json "d['chip_spec']['memory_bandwidth_bytes_per_s'] == max(1, int(min(c['read_bytes_per_s'] for c in d['per_core']) + 0.5))")" = True ] \
  || fail "memory bandwidth is not the slowest core's read bandwidth"
[ "$(json "d['chip_spec']['link_latency_ns'] == int(d['link_one_way_ns'] + 0.5) and d['chip_spec']['link_bandwidth_bytes_per_s'] == int(d['link_bytes_per_s'] + 0.5)")" = True ] \
  || fail "link figures are not the measured ones"
[ "$(json "int(d['cost_params']['weight_stream_bytes_per_s']) == int(d['fp32_weight_bytes_per_s'] + 0.5) and d['cost_params']['cores'] == str(d['cores']) and int(d['cost_params']['control_hop_ns']) == int(d['link_one_way_ns'] + 0.5)")" = True ] \
  || fail "cost figures are not the measured ones"
[ "$(json "d['concurrent_weight_bytes_per_s'] > 0 and int(d['cost_params']['shared_weight_stream_bytes_per_s']) == int(d['concurrent_weight_bytes_per_s'] + 0.5)")" = True ] \
  || fail "the cores' shared weight rate is not the measured one"
# Each figure the median of the rounds, with the rounds' spread.
[ "$(json "d['rounds'] == 2 and all(0 < s['min'] <= s['median'] <= s['max'] and s['relative'] >= 0 for s in d['spread'].values())")" = True ] \
  || fail "spread missing or not min <= median <= max: $(cat cal.json)"
[ "$(json "all(d['spread'][k]['median'] == d[k] for k in ('link_one_way_ns', 'link_bytes_per_s', 'concurrent_weight_bytes_per_s')) and d['spread']['read_bytes_per_s']['min'] <= d['read_bytes_per_s'] <= d['spread']['read_bytes_per_s']['max']")" = True ] \
  || fail "the figures written are not the rounds' medians"
grep -q "^# lockstep calibrate --host --transport ipc" host.yaml || fail "no provenance header"
grep -q "medians of 2 round(s)" host.yaml || fail "the header does not say how many rounds"
# The runtime probe: a small model's steps over worker processes, their cost beyond the prediction
# written as the per-step and per-collective-step figures.
[ "$(json "d['runtime_probe']['single_measured_ns'] > 0 and d['runtime_probe']['single_compute_ns'] > 0 and d['runtime_probe']['step_overhead_ns'] >= 0 and int(d['cost_params']['step_overhead_ns']) == d['runtime_probe']['step_overhead_ns']")" = True ] \
  || fail "the runtime probe's step overhead is not the one written"
if [ "$cores" -ge 2 ]; then
  [ "$(json "d['runtime_probe']['pair_measured_ns'] > 0 and d['runtime_probe']['pair_hops'] > 0 and int(d['cost_params']['collective_step_overhead_ns']) == int(d['cost_params']['op_overhead_ns']) + d['runtime_probe']['collective_overhead_ns']")" = True ] \
    || fail "the runtime probe's collective cost is not the one written"
fi
grep -q "^# the runtime's own costs" host.yaml || fail "the header does not give the runtime's costs"

# The file is a topology: its chips, spec and links as the JSON says.
expect_exit 0 "$L" --json topo show host.yaml
python3 - cal.json out.txt <<'PY' || fail "topo show disagrees with calibrate --host"
import json, sys
c, t = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
s = t["chip_specs"][0]
want = c["chip_spec"]
assert t["chips"] == c["chips"], (t["chips"], c["chips"])
assert t["links"] == c["chips"] * (c["chips"] - 1) // 2 and t["connected"]
for k in ("link_bandwidth_bytes_per_s", "link_latency_ns", "memory_bandwidth_bytes_per_s", "sram_bytes", "ports"):
    assert s[k] == want[k] and s[k] > 0, k
assert s["peak_ops_per_s"]["fp32"] == want["peak_ops_per_s"]["fp32"] > 0
assert s["peak_ops_per_s"]["int8"] == want["peak_ops_per_s"]["int8"] > 0
PY

# A plan on it prices with the measured figures.
expect_exit 0 "$L" --json plan --model "$SRC/examples/models/tiny-llama" --topology host.yaml \
  --dtype fp32 -o host.plan
python3 - cal.json out.txt <<'PY' || fail "the plan does not carry the measured figures"
import json, sys
c, p = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
cp = p["cost_params"]
assert cp["name"] == "host-core"
assert cp["chip"]["weight_stream_bytes_per_s"] == int(c["cost_params"]["weight_stream_bytes_per_s"])
assert cp["runtime"]["control_hop_ns"] == int(c["cost_params"]["control_hop_ns"]) > 0
assert cp["runtime"]["cores"] == c["cores"]
assert cp["runtime"]["step_overhead_ns"] == int(c["cost_params"]["step_overhead_ns"])
assert cp["link"]["collective_step_overhead_ns"] == int(c["cost_params"]["collective_step_overhead_ns"])
assert cp["runtime"]["shared_weight_stream_bytes_per_s"] == int(c["cost_params"]["shared_weight_stream_bytes_per_s"]) > 0
assert p["predicted"]["token_latency_ns"] > 0
PY

# tcp with more chips than cores: every pair linked, each chip one port per peer.
expect_exit 0 "$L" --json calibrate --host --quick --rounds 1 --no-runtime --transport tcp --chips 3 --cores 0 -o tcp.yaml
[ "$(json "d['transport'] == 'tcp' and d['chips'] == 3 and d['cores'] == 1 and d['link_bytes_per_s'] > 0")" = True ] \
  || fail "tcp --chips 3 --cores 0"
[ "$(json "d['runtime_probe'] is None and d['cost_params']['step_overhead_ns'] == '0'")" = True ] \
  || fail "--no-runtime ran the probe"
grep -q "not measured: the workers' step bookkeeping" tcp.yaml || fail "--no-runtime header"
cp err.txt tcp-err.txt
expect_exit 0 "$L" --json topo show tcp.yaml
[ "$(json "d['chips'] == 3 and d['links'] == 3 and d['chip_specs'][0]['ports'] == 2")" = True ] \
  || fail "tcp.yaml is not 3 chips all linked"
cp tcp-err.txt err.txt

# Progress on stderr (the tcp calibration's above).
err_has "calibrate --host: core 0 (1 of 1): read bandwidth and decode kernels"
err_has "calibrate --host: tcp between pinned processes on cores 0 and 0"

# Bad flags, named; nothing written.
rm -f bad.yaml
expect_exit 2 "$L" calibrate --host --transport udp -o bad.yaml
err_has "--transport must be ipc or tcp, got 'udp'"
expect_exit 2 "$L" calibrate --host --quick --cores 0,4096 -o bad.yaml
err_has "--cores: core 4096 is not on this host"
expect_exit 2 "$L" calibrate --host --cores zero -o bad.yaml
err_has "--cores: expected core indices"
expect_exit 2 "$L" calibrate --host --chips -1 -o bad.yaml
err_has "--chips must be >= 0"
expect_exit 2 "$L" calibrate --host --rounds 0 -o bad.yaml
err_has "--rounds must be >= 1"
expect_exit 2 "$L" calibrate --host
err_has "-o HOST.yaml is required"
expect_exit 2 "$L" calibrate --host -o no/such/dir/x.yaml
err_has "folder no/such/dir does not exist"
[ ! -e bad.yaml ] || fail "a refused calibration wrote bad.yaml"
expect_exit 0 "$L" calibrate --host --help
grep -q "one-way latency" out.txt || fail "--help does not explain the measurements"
echo "calibrate --host: ok ($cores core(s))"
