#!/usr/bin/env python3
"""scripts/test's timing table: where a run's time went.

    test-times.py OUT.tsv STEPS.tsv [CELL=JUNIT.xml ...]

STEPS.tsv has one "name<TAB>seconds<TAB>ok|FAILED" line per step, in the order they ran;
each JUNIT.xml is what cargo-nextest wrote for one cell's run (.config/nextest.toml). OUT.tsv
gets one row per step, per test binary and cell, and per test:

    kind  cell  name  tests  failed  seconds  longest

For a binary, seconds is the sum of its tests' times (its tests run in one pool with the
others', so this is its share of the work, not a span of the wall clock) and longest is its
slowest test. A short summary goes to stdout: the steps, then the slowest binaries and tests.
"""

import sys
import xml.etree.ElementTree as ET
from collections import defaultdict


def main(out_path, steps_path, junits):
    rows = []
    with open(steps_path) as f:
        steps = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    for name, seconds, status in steps:
        rows.append(("step", "", name, "", "" if status == "ok" else "1", seconds, ""))

    binaries = defaultdict(lambda: [0, 0, 0.0, 0.0])  # (cell, binary) -> tests, failed, sum, max
    tests = []
    for arg in junits:
        cell, path = arg.split("=", 1)
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError) as e:
            print(f"test-times: {path}: {e}", file=sys.stderr)
            continue
        for case in root.iter("testcase"):
            # nextest: classname is the binary id ("pgpart::simulation", "pgpart" for the lib).
            binary = case.get("classname", "?").removeprefix("pgpart::") or "?"
            if binary == "pgpart":
                binary = "lib (unit and property tests)"
            seconds = float(case.get("time", "0"))
            failed = any(c.tag in ("failure", "error") for c in case)
            b = binaries[(cell, binary)]
            b[0] += 1
            b[1] += failed
            b[2] += seconds
            b[3] = max(b[3], seconds)
            tests.append((seconds, cell, f"{binary}::{case.get('name')}", failed))

    for (cell, binary), (n, failed, total, longest) in sorted(binaries.items()):
        rows.append(("binary", cell, binary, n, failed, f"{total:.1f}", f"{longest:.1f}"))
    for seconds, cell, name, failed in sorted(tests, reverse=True):
        rows.append(("test", cell, name, 1, int(failed), f"{seconds:.1f}", f"{seconds:.1f}"))

    with open(out_path, "w") as f:
        f.write("kind\tcell\tname\ttests\tfailed\tseconds\tlongest\n")
        for r in rows:
            f.write("\t".join(str(x) for x in r) + "\n")

    print(f"==> timing table ({out_path})")
    for name, seconds, status in steps:
        s = int(float(seconds))
        print(f"    {s // 60:3d}m{s % 60:02d}s  {name}{'' if status == 'ok' else '  FAILED'}")
    top = sorted(binaries.items(), key=lambda kv: -kv[1][2])[:12]
    if top:
        print("    slowest binaries (cell, test-seconds summed over their tests, longest test):")
        for (cell, binary), (n, failed, total, longest) in top:
            print(f"    {total:8.1f}s  {cell:<12} {binary} ({n} tests, longest {longest:.1f}s)")
    if tests:
        print("    slowest tests:")
        for seconds, cell, name, failed in sorted(tests, reverse=True)[:8]:
            print(f"    {seconds:8.1f}s  {cell:<12} {name}")
    failing = sorted(f"{cell}: {name}" for _, cell, name, failed in tests if failed)
    if failing:
        print("    failing tests:")
        for line in failing:
            print(f"      {line}")
    per_cell = defaultdict(int)
    for _, cell, _, _ in tests:
        per_cell[cell] += 1
    print("    tests run: " + ", ".join(f"{cell} {n}" for cell, n in per_cell.items()))
    # Last, alone on its line: the count CI reads.
    print(f"tests: {len(tests) - len(failing)} passed, {len(failing)} failed")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
