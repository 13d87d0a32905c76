"""`import lockstep` (issue #23 item 6): model_info, plan and simulate return exactly what the
`lockstep` commands print with --json, and bad input is one lockstep.Error naming what is wrong.

    PYTHONPATH=build/python python3 python/tests/test_lockstep.py BUILD/cli/lockstep SOURCE_DIR
"""
import json
import os
import subprocess
import sys
import tempfile

import lockstep

LOCKSTEP, SOURCE = sys.argv[1], sys.argv[2]
MODELS = os.path.join(SOURCE, "examples", "models")
passed, failed = 0, 0


def cli(*args):
    out = subprocess.run([LOCKSTEP, *args, "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def check(name, fn):
    global passed, failed
    try:
        fn()
        passed += 1
        print(f"ok {name}")
    except Exception as e:  # report every failure, then exit non-zero
        failed += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}")


def model_info():
    for model in ("tiny-llama", "llama-2-7b"):
        path = os.path.join(MODELS, model)
        assert lockstep.model_info(path) == cli("model", "show", path), model
    path = os.path.join(MODELS, "llama-2-7b")
    got = lockstep.model_info(path, dtype="int8", context=1024)
    assert got == cli("model", "show", path, "--dtype", "int8", "--context", "1024")
    assert got["parameters"] > 6_000_000_000


def plan_and_simulate():
    model = os.path.join(MODELS, "llama-2-7b")
    p = lockstep.plan(model, topology="rack", dtype="int8", objective="latency")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "p.plan")
        want = cli("plan", "--model", model, "--topology", "rack", "--dtype", "int8",
                   "--objective", "latency", "-o", path)
        assert p.to_dict() == want, "plan() differs from plan --json"
        assert p["chips_used"] == want["chips_used"] and "stages" in p
        sim = lockstep.simulate(p, tokens=4)
        assert sim == cli("simulate", "--plan", path, "--tokens", "4"), "simulate differs"
        assert sim["token_latency_ns"] > 0
        # A saved plan reads back to the same plan.
        p.save(os.path.join(d, "again.plan"))
        assert lockstep.load_plan(os.path.join(d, "again.plan")).to_dict() == want
    t = lockstep.plan(os.path.join(MODELS, "tiny-llama"), topology="node", dtype="fp16",
                      objective="throughput", tp=2, pp=2)
    assert t["chips_used"] == 4, t["chips_used"]


def bad_input():
    cases = [
        (lambda: lockstep.model_info("/nonexistent/config.json"), "/nonexistent"),
        (lambda: lockstep.plan(os.path.join(MODELS, "tiny-llama"), dtype="int3"), "dtype"),
        (lambda: lockstep.plan(os.path.join(MODELS, "tiny-llama"), objective="fast"), "objective"),
        (lambda: lockstep.plan(os.path.join(MODELS, "tiny-llama"), topology="racks:x"), "racks:x"),
        (lambda: lockstep.simulate(lockstep.plan(os.path.join(MODELS, "tiny-llama"),
                                                 topology="node"), tokens=0), "tokens"),
    ]
    for fn, word in cases:
        try:
            fn()
        except lockstep.Error as e:
            assert word in str(e), f"{e!r} does not name {word}"
            assert isinstance(e, ValueError)
        else:
            raise AssertionError(f"no error for a bad {word}")


check("model_info equals model show --json", model_info)
check("plan and simulate equal plan --json and simulate --json", plan_and_simulate)
check("bad input raises lockstep.Error naming it", bad_input)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
