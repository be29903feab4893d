#!/usr/bin/env python3
"""Turns bench/bench.py's JSON into the results section of BENCHMARKS.md.

Without --write, prints the section. With --write FILE, replaces the text between the
`<!-- bench:results:begin -->` / `<!-- bench:results:end -->` markers (appends them if
absent); the hand-written analysis around them is kept.
"""
import argparse
import datetime as dt
import json
import math
import re
import os
import statistics
import subprocess

BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def f(x, nd=3):
    return "—" if x is None else f"{x:.{nd}f}"


def verdict(ok):
    return "**met**" if ok else "**missed**"


def host():
    """(cores, CPU model, memory) of this machine, e.g. (2, "Intel(R) Xeon(R) Processor", "23.5 GiB")."""
    mem = "?"
    try:
        with open("/proc/meminfo") as fh:
            kb = int(fh.readline().split()[1])
            mem = f"{kb / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "?")
    except OSError:
        pass
    return os.cpu_count(), cpu, mem


def machine(pgver, rev):
    cores, cpu, mem = host()
    load = os.getloadavg()[0]
    return (f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}\n"
            f"- machine: {cores} cores ({cpu}), {mem} memory, load average at the end {load:.1f} "
            f"(other test suites were running: numbers are noisy)\n"
            f"- PostgreSQL: {pgver.split(',')[0]}, fsync off, max_locks_per_transaction 64, pg_partman 4.7.2\n"
            f"- pgpart: git {rev}, release build\n")


def s1(r, out):
    n = r["tables"]
    pg1, pg2 = med(r["pgpart_c1"]), med(r["pgpart_c2"])
    proc, fn = med(r["partman_proc"]), med(r["partman_fn"])
    out.append(f"### 1. Steady state: {n} monthly tables, nothing to do\n")
    out.append(f"Median of {len(r['pgpart_c1'])} runs, wall time of the whole command (psql/pgpart start-up "
               f"included; a bare `psql -c 'SELECT 1'` takes {f(med(r['psql_startup']))} s). "
               f"Partitions: pgpart {r['partitions_pgpart']}, pg_partman {r['partitions_partman']}; "
               f"unchanged after the runs: pgpart {r['partitions_after_pgpart']}, pg_partman {r['partitions_after_partman']}.\n")
    out.append("| command | median s | runs (s) | × pgpart (--connections 1) |\n|---|---:|---|---:|")
    for name, xs in (("`pgpart apply --connections 1`", r["pgpart_c1"]), ("`pgpart apply --connections 2`", r["pgpart_c2"]),
                     ("`CALL partman.run_maintenance_proc()`", r["partman_proc"]),
                     ("`SELECT partman.run_maintenance()`", r["partman_fn"])):
        m = med(xs)
        out.append(f"| {name} | {f(m)} | {', '.join(f(x) for x in xs)} | {f(m / pg1 if pg1 else None, 1)} |")
    ratio = proc / min(pg1, pg2)
    out.append(f"\nTarget pgpart ≥ 20× faster than run_maintenance_proc: {ratio:.1f}× → {verdict(ratio >= 20)}\n")


def s2(r, out):
    n = r["tables"]
    runs = r["runs"]
    out.append(f"### 2. Catch-up: {n} tables needing 12 new monthly partitions each\n")
    out.append("Each run starts from a fresh copy of a template database (CREATE DATABASE … TEMPLATE). "
               "pgpart goes from premake 4 to premake 16; pg_partman from premake 4 to 16 with "
               "`infinite_time_partitions` (no data needed). The floor is the exact SQL of `pgpart plan "
               "--output json` (CREATE … LIKE, COMMENT, ATTACH; one transaction per partition) fed to psql; "
               "for two connections the tables are split in halves and two psql run at once. "
               f"Base partitions: pgpart {r['base_partitions_pgpart']}, pg_partman {r['base_partitions_partman']}.\n")
    out.append("| command | median s | ms per new partition | new partitions | ok | runs (s) | note |\n|---|---:|---:|---:|---|---|---|")
    meds = {}
    for name, rs in runs.items():
        okr = [x for x in rs if x["ok"]]
        m = med([x["secs"] for x in (okr or rs)])
        meds[name] = m if okr else None
        newp = max(x["new_partitions"] for x in rs)
        per = m * 1000 / newp if newp else None
        notes = "; ".join(sorted({x["note"].replace("\n", " ").replace("|", "/")[:160] for x in rs if x["note"]}))
        out.append(f"| {name} | {f(m, 2)} | {f(per, 2)} | {newp} | {'yes' if okr else '**failed**'} | "
                   f"{', '.join(f(x['secs'], 2) for x in rs)} | {notes} |")
    g = meds.get
    checks = []
    for c, fl in ((1, "psql floor, 1 connection"), (2, "psql floor, 2 connections")):
        a, b = g(f"pgpart --connections {c}"), g(fl)
        if a and b:
            checks.append(f"- pgpart --connections {c} within 1.2× of {fl}: {a / b:.2f}× → {verdict(a / b <= 1.2)}")
    p = min(x for x in (g("pgpart --connections 1"), g("pgpart --connections 2")) if x) if (g("pgpart --connections 1") or g("pgpart --connections 2")) else None
    if p and g("partman.run_maintenance_proc()"):
        ratio = g("partman.run_maintenance_proc()") / p
        checks.append(f"- pgpart ≥ 3× faster than run_maintenance_proc (best pgpart vs proc): {ratio:.2f}× → {verdict(ratio >= 3)}")
    overflow = any("out of shared memory" in x["note"] or "lock-table" in x["note"]
                   for name, rs in runs.items() if name.startswith("pgpart") for x in rs)
    pg_ok = all(x["ok"] for name, rs in runs.items() if name.startswith("pgpart") for x in rs)
    checks.append(f"- pgpart never overflows the lock table (all runs succeeded: {pg_ok}) → {verdict(not overflow and pg_ok)}")
    fn = runs.get("partman.run_maintenance()", [])
    if fn:
        checks.append(f"- `run_maintenance()` (one transaction): {'failed as expected: ' + fn[0]['note'][:120] if not fn[0]['ok'] else 'succeeded at this scale'}")
    out.append("\n" + "\n".join(checks) + "\n")


def s3(r, out):
    out.append("### 3. Inserts during maintenance\n")
    out.append(f"One table `hot` (monthly, 24 months back + premake 4). pgbench, {r['pgbench_clients']} clients at "
               f"{r['pgbench_rate']} inserts/s in total (`-R`), inserting rows of the last 10 days; after 2 s the "
               "maintenance goes from premake 4 to 16 and retires partitions older than 12 months (pgpart: "
               "retention Detach; pg_partman: retention 12 months, retention_keep_table). Variant with a DEFAULT "
               f"partition holding {r['default_rows']:,} rows (from 1990, outside every range). Latency from "
               "`pgbench -l` (per insert, includes schedule lag). Locks are sampled from pg_locks every ~2 ms by "
               "a loop inside the server (median period in the last column); the log column is `log_lock_waits` "
               "with deadlock_timeout 10ms. A lock episode is one transaction's hold (pid, relation, mode, "
               "xact_start), from its first to its last sample; one seen in a single sample counts as one period.\n")
    out.append("| tool | DEFAULT rows | maintenance s | partitions before → after | inserts (errors) | p50 ms | p99 ms | max ms | longest lock wait ms (sampled / log) | ACCESS EXCLUSIVE on default: episodes, median, max ms | ACCESS EXCLUSIVE on parent: episodes, max ms | note | sampling ms |")
    out.append("|---|---:|---:|---|---:|---:|---:|---:|---|---|---|---|---:|")
    for c in r["cases"]:
        out.append(f"| {c['tool']} | {r['default_rows'] if c['default'] else 'no default'} | {f(c['maintenance_secs'], 2)} | "
                   f"{c['partitions_before']} → {c['partitions_after']} | {c['inserts']} ({c['insert_errors']}) | "
                   f"{f(c['p50_ms'], 2)} | {f(c['p99_ms'], 2)} | {f(c['max_ms'], 1)} | "
                   f"{f(c['longest_lock_wait_ms_sampled'], 1)} / {f(c['longest_lock_wait_ms_log'], 1)} | "
                   f"{c['default_access_exclusive_episodes']}, {f(c['default_access_exclusive_median_ms'], 1)}, {f(c['default_access_exclusive_max_ms'], 1)} | "
                   f"{c['parent_access_exclusive_episodes']}, {f(c['parent_access_exclusive_max_ms'], 1)} | "
                   f"{('ok' if c['ok'] else 'FAILED ') + c['note'].replace(chr(10), ' ').replace('|', '/')[:160]} | {f(c.get('sample_period_ms'), 1)} |")
    out.append("")


def s4(r, out):
    out.append("### 4. Default repair under live traffic: "
               + " and ".join(f"{n:,}" for n in r["sizes"]) + " rows over three days in the DEFAULT partition\n")
    out.append(f"pgpart `onRows: Repair` (daily, premake 2, default `lockTimeout`) vs `CALL partman.partition_data_proc("
               f"'public.rp', p_batch := 100, p_wait := 0)` vs a hand-written floor (per day, one transaction: LOCK the default IN EXCLUSIVE MODE, CREATE … "
               f"LIKE, `WITH m AS (DELETE … RETURNING *) INSERT`, CHECK, ATTACH, drop CHECK). While each runs, pgbench "
               f"({r['clients']} clients, {r['rate']} transactions/s in all) reads rows that exist by id (50%), updates "
               f"them by id (20%) and inserts rows into the backlog days, today and a year ahead (30%); a read or update "
               f"that finds no row fails its transaction, which aborts that pgbench client: an abort is a hidden row or "
               f"a lost update. 'Longest wait' is the longest latency of any pgbench transaction that ran while the "
               f"repair ran; 'lock wait' the longest lock wait sampled from pg_locks / logged by log_lock_waits. "
               f"count+md5 are over the rows loaded before, excluding the update counter; updates applied is "
               f"sum(n) against the updates pgbench completed. With a holder, another session holds that lock "
               f"from just before the repair starts (a report query; what ANALYZE holds), so the repair time includes "
               f"waiting it out.\n")
    out.append("| rows | tool | another session holds | repair s | default before → after | count+md5 unchanged | transactions during | longest wait ms | p99 ms | lock wait ms (sampled / log) | hidden rows or lost updates (aborted clients) | updates applied / completed | ok |")
    out.append("|---:|---|---|---:|---|---|---:|---:|---:|---|---|---|---|")
    floors = {c["rows"]: c["secs"] for c in r["cases"] if c["tool"] == "floor"}
    for c in r["cases"]:
        ab = c["aborts"]
        lost = ("none" if c["aborted_clients"] == 0 else
                f"**{c['aborted_clients']}** (read {ab['read']}, update {ab['update']}, insert {ab['insert']})")
        out.append(f"| {c['rows']:,} | {c['tool']} | {c.get('holder') or '—'} | {f(c['secs'], 2)} | {c['rows_in_default_before']} → {c['rows_in_default_after']} | "
                   f"{'yes' if c['checksum_same'] else '**NO**'} | {c['transactions_during']} | {f(c['max_ms_during'], 1)} | "
                   f"{f(c['p99_ms_during'], 1)} | {f(c['longest_lock_wait_ms_sampled'], 1)} / {f(c['longest_lock_wait_ms_log'], 1)} | "
                   f"{lost} | {c['updates_applied']} / {c['updates_ok']} | "
                   f"{'yes' if c['ok'] else 'FAILED ' + ' '.join(c['note'].split())[:160].replace('|', '/')} |")
    out.append("")
    for c in r["cases"]:
        if c["tool"] == "pgpart" and not c.get("holder") and c["rows"] in floors and floors[c["rows"]]:
            out.append(f"- {c['rows']:,} rows: pgpart's repair took {c['secs'] / floors[c['rows']]:.2f}× the floor's time "
                       f"(goal ≤ 1.3×) → {verdict(c['secs'] <= 1.3 * floors[c['rows']])}; longest wait of another "
                       f"session {f(c['max_ms_during'], 1)} ms (goal < 50 ms) → {verdict((c['max_ms_during'] or 0) < 50)}")
        if c["first_abort"]:
            out.append(f"- {c['tool']}, {c['rows']:,} rows, first abort: `{c['first_abort'][:200]}`")
    out.append("")


S5_SERIES = (  # (key in a point, label, how a list of runs becomes one number)
    ("pgpart_catchup", "pgpart apply: catch-up", None),
    ("partman_catchup", "pg_partman create_parent: catch-up", None),
    ("pgpart_noop", "pgpart apply: no-op (median)", med),
    ("partman_proc", "run_maintenance_proc(): no-op (median)", med),
)


def _one(pt, key, agg):
    v = pt.get(key)
    return agg(v) if agg and v is not None else v


def _mib(kib):
    return kib / 1024 if kib else None


def s5_when(r, rev):
    """One line: when, which commit, which machine, and the load around the measurement."""
    cores, cpu, mem = host()
    lb, la = r.get("load_before") or [None], r.get("load_after") or [None]
    when = (r.get("started") or "?").replace("T", " ")[:16]
    end = (r.get("ended") or "?").replace("T", " ")[11:16]
    return (f"{when}–{end} UTC, git {rev}, {r.get('cores') or cores} cores ({cpu}), {mem} memory, "
            f"load average (1 min) {f(lb[0], 2)} before, {f(la[0], 2)} after")


def s5_series(r):
    """The scale curve as plot.py series: (name, xs, ys, unit); one panel per unit. A value
    that failed is None (left out of the plot)."""
    pts = r["points"]
    xs = [p["tables"] for p in pts]
    out = [(label, xs, [_one(p, k, agg) for p in pts], "s") for k, label, agg in S5_SERIES]
    out.append(("pgpart peak RSS: catch-up", xs, [_mib(p.get("pgpart_catchup_rss_kib")) for p in pts], "MiB"))
    out.append(("pgpart peak RSS: no-op (largest run)", xs,
                [_mib(max((k or 0 for k in p.get("pgpart_noop_rss_kib") or []), default=0)) for p in pts], "MiB"))
    return out


def s5_xlabel(r):
    p = next((p for p in r["points"] if p.get("partitions_pgpart") and p["tables"]), None)
    per = f", {p['partitions_pgpart'] / p['tables']:.0f} partitions each" if p else ""
    return f"tables (monthly{per})"


def s5(r, out, rev="?", plot_link=None):
    sizes = ", ".join(f"{n:,}" for n in r["sizes"])
    out.append(f"### 5. Scale curve: {sizes} tables\n")
    out.append(f"Measured {s5_when(r, rev)}.\n")
    out.append(f"At each size, fresh databases with N empty monthly tables (4 months back to {r['premake']} ahead, "
               f"as in 1 and 2). **Catch-up** is the first pass: `pgpart apply --connections {r['connections']}` "
               "against `partman.create_parent(…, p_premake := 4, p_start_partition := …)` for every table "
               "(one psql, one transaction per table; pg_partman also makes a DEFAULT partition and a template "
               "table per parent, which are not counted as partitions). **No-op** is the same pass again with "
               "nothing to do: `pgpart apply` against `CALL partman.run_maintenance_proc()`, "
               + (f"median of {r['runs']} interleaved runs" if r["runs"] > 1 else "one run each")
               + " after one untimed. Wall time of the whole command (process start included). "
               f"Peak RSS is pgpart's resident-memory high-water mark ({r['rss_method']}); for the no-op, the "
               f"largest of its runs. × is pg_partman's time over pgpart's. A command gets {f(r.get('timeout'), 0)} s "
               "(`--scale-timeout`); what failed is listed under the table.\n")
    out.append("| tables | partitions (pgpart / pg_partman) | pgpart catch-up s | pg_partman catch-up s | × | "
               "pgpart no-op s | run_maintenance_proc s | × | pgpart peak RSS MiB (catch-up / no-op) | load before → after |")
    out.append("|---:|---|---:|---:|---:|---:|---:|---:|---|---|")
    notes = []

    def cell(p, key, tool, agg=None, nd=2):
        """The value, else what became of it: failed / timed out there, or not run (—)."""
        v = _one(p, key, agg)
        if v is not None:
            return f(v, nd)
        e = p.get("errors", {}).get(tool) or ""
        here = e.startswith(("catch-up", "create_parent")) == key.endswith("_catchup")  # bench.py's `what`
        return ("**timed out**" if "timed out" in e else "**failed**") if e and here else "—"

    def ratio(x, y):  # 8.0, 1.2, 0.71, 0.014
        return "—" if not (x and y) else f(y / x, 1) if y / x >= 1 else f"{y / x:.2g}"

    for p in r["points"]:
        load = f"{f((p.get('load_before') or [None])[0], 2)} → {f((p.get('load_after') or [None])[0], 2)}"
        for tool, e in p.get("errors", {}).items():
            notes.append(f"- {p['tables']:,} tables, {tool}: " + " ".join(e.split())[:400].replace("|", "/"))
        pg, pm = p.get("partitions_pgpart"), p.get("partitions_partman")
        parts = f"{f'{pg:,}' if pg is not None else '—'} / {f'{pm:,}' if pm is not None else '—'}"
        after = (p.get("partitions_after_pgpart", pg), p.get("partitions_after_partman", pm))
        if after != (pg, pm):
            parts += f" (**after the no-op passes: {after[0]} / {after[1]}**)"
        kib = p.get("pgpart_noop_rss_kib")
        rss_noop = _mib(max((k or 0 for k in kib), default=0)) if kib else None
        out.append(f"| {p['tables']:,} | {parts} | {cell(p, 'pgpart_catchup', 'pgpart')} | "
                   f"{cell(p, 'partman_catchup', 'pg_partman')} | "
                   f"{ratio(p.get('pgpart_catchup'), p.get('partman_catchup'))} | "
                   f"{cell(p, 'pgpart_noop', 'pgpart', med, 3)} | {cell(p, 'partman_proc', 'pg_partman', med, 3)} | "
                   f"{ratio(_one(p, 'pgpart_noop', med), _one(p, 'partman_proc', med))} | "
                   f"{f(_mib(p.get('pgpart_catchup_rss_kib')), 1)} / {f(rss_noop, 1)} | {load} |")
    if notes:
        out.append("\n" + "\n".join(notes))
    out.append("\nPer partition (ms; a flat column is a straight line in the plot):\n")
    out.append("| tables | pgpart catch-up | pg_partman catch-up | pgpart no-op | run_maintenance_proc |")
    out.append("|---:|---:|---:|---:|---:|")
    for p in r["points"]:
        pa, pm = p.get("partitions_pgpart"), p.get("partitions_partman")
        per = (lambda secs, n: f(secs * 1000 / n, 3) if n and secs is not None else "—")
        out.append(f"| {p['tables']:,} | {per(p.get('pgpart_catchup'), pa)} | {per(p.get('partman_catchup'), pm)} | "
                   f"{per(_one(p, 'pgpart_noop', med), pa)} | {per(_one(p, 'partman_proc', med), pm)} |")
    pts = r["points"]
    if len(pts) >= 2:  # how cost grows: d log t / d log N between neighbouring sizes (1 = linear)
        lines = []
        for k, label, agg in S5_SERIES:
            ex = []
            for p, q in zip(pts, pts[1:]):
                y0, y1 = _one(p, k, agg), _one(q, k, agg)
                ex.append(f(math.log(y1 / y0) / math.log(q["tables"] / p["tables"]), 2)
                          if y0 and y1 and q["tables"] != p["tables"] else "—")
            lines.append(f"{label} {', '.join(ex)}")
        steps = ", ".join(f"{p['tables']:,}→{q['tables']:,}" for p, q in zip(pts, pts[1:]))
        out.append(f"\nGrowth exponent between neighbouring sizes ({steps}; 1 = linear in the number of tables): "
                   + "; ".join(lines) + ".\n")
    if plot_link and plot_link.startswith("plot: "):  # printed, not written: just say where it is
        out.append(f"Plot: `{plot_link[6:]}`\n")
    elif plot_link:
        out.append(f"![Scale curve: wall time and pgpart's peak RSS against the number of tables]({plot_link})\n")
    out.append("")


def old_sections(block):
    """The "### N. ..." sections of an earlier results block, by scenario ("s1" ...), with the
    date line of that block."""
    date = next((ln for ln in block.splitlines() if ln.startswith("- date:")), "- date: ?")
    parts, key = {}, None
    for ln in block.splitlines():
        m = re.match(r"### (\d+)\. ", ln)
        if m:
            key = f"s{m.group(1)}"
            parts[key] = [ln]
        elif ln.startswith("**s") or ln.startswith("<!--"):
            key = None
        elif key:
            parts[key].append(ln)
    return {k: "\n".join(v).rstrip() + f"\n\n(Carried over from the earlier run: {date[2:]}.)\n"
            for k, v in parts.items()}


def command(res):
    """The scripts/bench command line that made res (older JSON has no scenarios/scale_sizes)."""
    sc = res.get("scenarios", "s1,s2,s3,s4").split(",")
    cmd = ["scripts/bench"] + (["--smoke"] if res.get("smoke") else [])
    cmd += [f"--scenarios {','.join(sc)}"]
    if set(sc) & {"s1", "s2"}:
        cmd.append(f"--tables {res['tables']}")
    if "s5" in sc and res.get("scale_sizes"):
        cmd.append(f"--scale-sizes {','.join(str(n) for n in res['scale_sizes'])}")
    cmd.append(f"--runs {res['runs']}")
    return " ".join(cmd)


def render(res, pgver, rev, earlier=None, plot_link=None):
    out = [f"## Results {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d')}"
           f"{' (SMOKE SCALE: not a measurement)' if res.get('smoke') else ''}\n",
           machine(pgver, rev),
           f"Command: `{command(res)}`; scenario wall times (s): {res.get('elapsed', {})}\n"]
    for k, fn in (("s1", s1), ("s2", s2), ("s3", s3), ("s4", s4),
                  ("s5", lambda r, o: s5(r, o, rev, plot_link))):
        if k not in res and earlier and k in earlier:
            out.append(earlier[k])
        if k in res:
            try:
                fn(res[k], out)
            except Exception as e:  # a partial result still gets written
                out.append(f"(could not render {k}: {e})\n")
    for k, e in res.get("errors", {}).items():
        out.append(f"**{k} failed:** `{e.strip().splitlines()[0][:300] if e.strip() else e}`\n")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--pg-version", default="?")
    ap.add_argument("--rev", default="?")
    ap.add_argument("--write")
    ap.add_argument("--plot", help="draw s5's scale curve into this PNG (needs matplotlib: tools/bench/.venv); "
                    "with --write, the section links it relative to the written file")
    a = ap.parse_args()
    with open(a.json) as fh:
        res = json.load(fh)
    old = open(a.write).read() if a.write and os.path.exists(a.write) else "# Benchmarks\n"
    earlier = old_sections(old[old.index(BEGIN):old.index(END)]) if BEGIN in old and END in old else {}
    link = None
    if a.plot and "s5" in res and any(y is not None for *_, ys, _ in s5_series(res["s5"]) for y in ys):
        import plot  # bench/plot.py; imported here so that the rest runs without matplotlib
        r = res["s5"]
        plot.draw(s5_series(r), a.plot, title="pgpart vs pg_partman 4.7: cost against the number of tables",
                  xlabel=s5_xlabel(r), guide={"s"},
                  note=f"{s5_when(r, a.rev)}; {command(res)}"
                       f"{'  (SMOKE SCALE: not a measurement)' if res.get('smoke') else ''}")
        link = os.path.relpath(a.plot, os.path.dirname(os.path.abspath(a.write))) if a.write else "plot: " + a.plot
    text = render(res, a.pg_version, a.rev, earlier, link)
    if not a.write:
        print(text)
        return
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + block + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    with open(a.write, "w") as fh:
        fh.write(new)


if __name__ == "__main__":
    main()
