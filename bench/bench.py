#!/usr/bin/env python3
"""pgpart vs pg_partman 4.7 benchmark driver (run through scripts/bench, which starts the server).

Scenarios (see BENCHMARKS.md):
  s1  steady state: N monthly tables, nothing to do
  s2  catch-up: N tables needing 12 new partitions each (+ the psql floor)
  s3  inserts (pgbench) during maintenance, with and without a 3M-row DEFAULT partition
  s4  default repair under live reads, updates and inserts: 1M and 3M rows over three days in DEFAULT
  s5  scale curve: catch-up, no-op pass and pgpart's peak memory at several sizes (--scale-sizes)

Talks to PostgreSQL only through psql/pgbench (no Python driver needed). Writes a JSON
result file; bench/report.py turns it into the BENCHMARKS.md section.
"""
import argparse
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

PGBIN = "/usr/lib/postgresql/15/bin"
PSQL = f"{PGBIN}/psql"
PGBENCH = f"{PGBIN}/pgbench"
HERE = os.path.dirname(os.path.abspath(__file__))


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


class Ctx:
    def __init__(self, args):
        self.url = args.url
        self.pgpart = args.pgpart
        self.tables = args.tables
        self.runs = args.runs
        self.smoke = args.smoke
        self.pglog = args.pglog
        self.scale_sizes = [int(x) for x in args.scale_sizes.split(",") if x.strip()]
        self.scale_timeout = args.scale_timeout
        # beside the results (scripts/bench: in its temp dir, removed by its trap even when
        # this is killed), and removed at the end of main()
        self.work = tempfile.mkdtemp(prefix="pgpart-bench-", dir=os.path.dirname(os.path.abspath(args.out)))
        os.chmod(self.work, 0o755)
        self.today = dt.datetime.now(dt.timezone.utc).date()

    def db_url(self, db):
        return self.url.rsplit("/", 1)[0] + "/" + db


def psql(ctx, db, sql=None, file=None, check=True, timeout=None):
    """Run SQL through psql; returns (seconds, rc, stdout, stderr)."""
    cmd = [PSQL, ctx.db_url(db), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"]
    cmd += ["-f", file] if file else ["-c", sql]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    secs = time.monotonic() - t0
    if check and p.returncode != 0:
        raise RuntimeError(f"psql on {db} failed: {p.stderr.strip()[-2000:]}\nSQL: {(sql or file)[:500]}")
    return secs, p.returncode, p.stdout, p.stderr


def q1(ctx, db, sql):
    return psql(ctx, db, sql)[2].strip()


def pgpart(ctx, db, cmd, policy_file, extra=(), check=True, rss=False, timeout=None):
    """Runs pgpart; returns (seconds, rc, stdout, stderr), and with rss=True also its peak
    resident memory in KiB (see run_rss; there, rc is None when timeout seconds passed)."""
    args = [ctx.pgpart, cmd, "--policy", policy_file, "--database-url", ctx.db_url(db), *extra]
    if rss:
        secs, rc, out, err, kib = run_rss(args, timeout)
    else:
        t0 = time.monotonic()
        p = subprocess.run(args, capture_output=True, text=True)
        secs, rc, out, err = time.monotonic() - t0, p.returncode, p.stdout, p.stderr
    if check and rc != 0:
        raise RuntimeError(f"pgpart {cmd} on {db} failed ({rc}): {err.strip()[-2000:]}")
    return (secs, rc, out, err, kib) if rss else (secs, rc, out, err)


GNU_TIME = "/usr/bin/time"


def rss_method():
    return "GNU time %M" if os.access(GNU_TIME, os.X_OK) else "VmHWM polled every 5 ms"


def run_rss(args, timeout=None):
    """Runs args; returns (seconds, rc, stdout, stderr, peak RSS of that process in KiB).
    After timeout seconds it is killed (its whole process group) and rc is None.

    Not os.wait4's ru_maxrss: Linux carries the high-water mark of the mm a process had
    before exec into its rusage, and Python's subprocess vforks, so a child's ru_maxrss is
    at least this Python process's own peak (a 300 MiB parent made /bin/true "use"
    300 MiB). GNU time forks from its own small image and reports the exec'd child's %M
    (its own ~1 MiB is the floor). Without it, the child's VmHWM (per mm, so clean) is read
    from /proc every 5 ms until it exits: growth in its last 5 ms would be missed."""
    with tempfile.TemporaryDirectory(prefix="pgpart-rss-") as tmp:
        fo, fe = open(os.path.join(tmp, "out"), "w+b"), open(os.path.join(tmp, "err"), "w+b")
        mfile = os.path.join(tmp, "maxrss")
        gnu = os.access(GNU_TIME, os.X_OK)
        cmd = [GNU_TIME, "-o", mfile, "-f", "%M", *args] if gnu else list(args)
        hwm = [None]
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, start_new_session=True)  # killpg takes GNU time's child too
        if not gnu:
            def poll():
                while p.poll() is None:
                    try:
                        with open(f"/proc/{p.pid}/status") as st:
                            v = next((int(ln.split()[1]) for ln in st if ln.startswith("VmHWM:")), None)
                        if v is not None:
                            hwm[0] = max(hwm[0] or 0, v)
                    except (OSError, ValueError):
                        pass
                    time.sleep(0.005)
            th = threading.Thread(target=poll)
            th.start()
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            p.wait()
            rc = None
        secs = time.monotonic() - t0
        if not gnu:
            th.join()
        kib = hwm[0]
        if gnu and rc is not None:
            with open(mfile) as fh:  # "Command exited with non-zero status N" may come first
                last = [ln for ln in fh.read().splitlines() if ln.strip()]
            kib = int(last[-1]) if last and last[-1].strip().isdigit() else None
        fo.seek(0), fe.seek(0)
        out, err = fo.read().decode(errors="replace"), fe.read().decode(errors="replace")
        fo.close(), fe.close()
    return secs, rc, out, err, kib


def write(ctx, name, text):
    path = os.path.join(ctx.work, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def tname(i):
    return f"t{i:04d}"


def month_start(d, back=0):
    y, m = d.year, d.month - back
    while m <= 0:
        m += 12
        y -= 1
    return dt.date(y, m, 1)


def recreate_db(ctx, db, template=None):
    psql(ctx, "postgres", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    tpl = f' TEMPLATE "{template}" STRATEGY FILE_COPY' if template else ""
    psql(ctx, "postgres", f'CREATE DATABASE "{db}"{tpl}')


def drop_db(ctx, db):
    psql(ctx, "postgres", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


# ---------------------------------------------------------------- generators

TABLE_DDL = "CREATE TABLE public.{t} (id bigint, ts timestamptz NOT NULL, payload text) PARTITION BY RANGE (ts);\n"


def gen_tables(n):
    return "".join(TABLE_DDL.format(t=tname(i)) for i in range(1, n + 1))


def gen_policies(tables, interval="1 month", premake=4, start_from=None, extra=""):
    """A multi-document policy file, one PartitionPolicy per table (bench/policy.yaml.in)."""
    with open(os.path.join(HERE, "policy.yaml.in")) as f:
        tpl = f.read()
    docs = []
    for t in tables:
        start = f'\n    startFrom: "{start_from}"' if start_from else ""
        docs.append(tpl.format(name=t.replace("_", "-"), table=f"public.{t}", interval=interval,
                               premake=premake, start=start, extra=extra.rstrip()))
    return "---\n".join(docs)


def gen_partman_parents(tables, interval, premake, start=None, default=True):
    out = []
    for t in tables:
        s = f", p_start_partition := '{start}'" if start else ""
        out.append(f"SELECT partman.create_parent('public.{t}', 'ts', 'native', '{interval}', "
                   f"p_premake := {premake}{s});\n")
        if not default:  # pg_partman 4.7 always makes one
            out.append(f"DROP TABLE public.{t}_default;\n")
    return "".join(out)


def partitions_count(ctx, db):
    return int(q1(ctx, db, "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                           "WHERE c.relname ~ '^t[0-9]{4,}_p' AND c.relispartition"))


def install_partman(ctx, db):
    psql(ctx, db, "CREATE SCHEMA partman; CREATE EXTENSION pg_partman SCHEMA partman;")


def errline(err, n=200):
    """The first ERROR line (with its HINT), else the tail."""
    lines = err.strip().splitlines()
    first = next((i for i, ln in enumerate(lines) if "ERROR:" in ln or ln.startswith("error")), None)
    if first is None:
        return err.strip()[-n:]
    hint = next((ln.strip() for ln in lines[first:] if "HINT:" in ln and ln.strip() != "HINT:"), "")
    return (lines[first].strip() + (" " + hint if hint else ""))[:n]


def timed_runs(n, fn):
    out = []
    for _ in range(n):
        out.append(fn())
    return out


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ---------------------------------------------------------------- lock sampler

SAMPLER_SQL = """
CREATE UNLOGGED TABLE IF NOT EXISTS bench_lock_samples (
  at timestamptz, pid int, locktype text, relid oid, mode text, granted bool, waitstart timestamptz,
  xact_start timestamptz);
CREATE UNLOGGED TABLE IF NOT EXISTS bench_stop (x int);
CREATE OR REPLACE PROCEDURE bench_sample(max_secs float8) LANGUAGE plpgsql AS $$
DECLARE
  deadline timestamptz := clock_timestamp() + make_interval(secs => max_secs);
  i int := 0;
  now_ts timestamptz;
BEGIN
  LOOP
    now_ts := clock_timestamp();  -- one timestamp per sample
    INSERT INTO bench_lock_samples
      SELECT now_ts, l.pid, l.locktype, l.relation, l.mode, l.granted, l.waitstart, a.xact_start
      FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.pid <> pg_backend_pid()
        AND (NOT l.granted
             OR (l.locktype = 'relation' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')));
    i := i + 1;
    IF i % 50 = 0 THEN
      COMMIT;
      EXIT WHEN EXISTS (SELECT 1 FROM bench_stop) OR clock_timestamp() > deadline;
    END IF;
    PERFORM pg_sleep(0.002);
  END LOOP;
  COMMIT;
END $$;
TRUNCATE bench_lock_samples, bench_stop;
"""


class Sampler:
    """Samples pg_locks every ~2 ms from inside the server (one backend, a plpgsql loop)."""

    def __init__(self, ctx, db, max_secs=900):
        self.ctx, self.db = ctx, db
        psql(ctx, db, SAMPLER_SQL)
        self.t = threading.Thread(target=lambda: psql(ctx, db, f"CALL bench_sample({max_secs})", check=False))
        self.t.start()
        time.sleep(0.2)

    def stop(self):
        psql(self.ctx, self.db, "INSERT INTO bench_stop VALUES (1)")
        self.t.join()
        return self

    def longest_wait_ms(self):
        v = q1(self.ctx, self.db, "SELECT coalesce(max(extract(epoch FROM at - waitstart) * 1000), 0)::numeric(12,1) "
                                  "FROM bench_lock_samples WHERE NOT granted AND waitstart IS NOT NULL")
        return float(v)

    def holds(self, relids, modes=("AccessExclusiveLock",)):
        """Episodes of a lock held on relids: list of (relid, mode, ms). Relation locks are held
        to the end of the transaction, so an episode is one (pid, relid, mode, xact_start):
        from its first sample to its last, at least one sampling period."""
        if not relids:
            return []
        rel = ",".join(str(r) for r in relids)
        md = ",".join(f"'{m}'" for m in modes)
        rows = q1(self.ctx, self.db,
                  f"SELECT relid, mode, greatest(extract(epoch FROM max(at) - min(at)) * 1000, {self.period_ms()}) "
                  f"FROM bench_lock_samples WHERE granted AND locktype = 'relation' AND relid IN ({rel}) "
                  f"AND mode IN ({md}) GROUP BY pid, relid, mode, xact_start")
        return [(a, b, float(c)) for a, b, c in (ln.split("|") for ln in rows.splitlines())]

    def period_ms(self):
        """Median time between two samples."""
        if not hasattr(self, "_period"):
            v = q1(self.ctx, self.db,
                   "SELECT coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY d), 2) FROM ("
                   "SELECT extract(epoch FROM at - lag(at) OVER (ORDER BY at)) * 1000 AS d "
                   "FROM (SELECT DISTINCT at FROM bench_lock_samples) s) x WHERE d > 0.2")
            self._period = round(float(v), 2)
        return self._period


def log_lock_waits_max_ms(ctx, since_offset):
    """Longest 'acquired ... after N ms' / 'still waiting ... after N ms' in the server log since offset."""
    if not ctx.pglog or not os.path.exists(ctx.pglog):
        return None
    with open(ctx.pglog, errors="replace") as f:
        f.seek(since_offset)
        text = f.read()
    vals = [float(x) for x in re.findall(r"(?:acquired|still waiting for) \S+ on .*? after ([0-9.]+) ms", text)]
    return max(vals) if vals else 0.0


def log_offset(ctx):
    return os.path.getsize(ctx.pglog) if ctx.pglog and os.path.exists(ctx.pglog) else 0


# ---------------------------------------------------------------- S1 steady state

def s1(ctx, res):
    n, tables = ctx.tables, [tname(i) for i in range(1, ctx.tables + 1)]
    start = month_start(ctx.today, 4).isoformat()
    log(f"s1: setting up {n} tables for pgpart and for pg_partman")
    recreate_db(ctx, "s1_pgpart")
    psql(ctx, "s1_pgpart", file=write(ctx, "s1_tables.sql", gen_tables(n)))
    pol = write(ctx, "s1_policy.yaml", gen_policies(tables, premake=4, start_from=start))
    pgpart(ctx, "s1_pgpart", "apply", pol)
    recreate_db(ctx, "s1_partman")
    install_partman(ctx, "s1_partman")
    psql(ctx, "s1_partman", file=write(ctx, "s1_tables.sql", gen_tables(n)))
    psql(ctx, "s1_partman", file=write(ctx, "s1_partman.sql",
                                       gen_partman_parents(tables, "monthly", 4, start=start)))
    r = {"tables": n,
         "partitions_pgpart": partitions_count(ctx, "s1_pgpart"),
         "partitions_partman": partitions_count(ctx, "s1_partman")}
    # warm both once (catalog caches are per backend, so each run is a cold backend anyway)
    pgpart(ctx, "s1_pgpart", "apply", pol)
    psql(ctx, "s1_partman", "CALL partman.run_maintenance_proc()")
    for conns in (1, 2):
        runs = []
        for _ in range(ctx.runs):
            secs, _, out, err = pgpart(ctx, "s1_pgpart", "apply", pol, ["--connections", str(conns)])
            runs.append(secs)
        r[f"pgpart_c{conns}"] = runs
    r["pgpart_noop_output"] = (out + err).strip()[-300:]
    r["partman_proc"] = timed_runs(ctx.runs, lambda: psql(ctx, "s1_partman", "CALL partman.run_maintenance_proc()")[0])
    r["partman_fn"] = timed_runs(ctx.runs, lambda: psql(ctx, "s1_partman", "SELECT partman.run_maintenance()")[0])
    r["psql_startup"] = timed_runs(ctx.runs, lambda: psql(ctx, "s1_partman", "SELECT 1")[0])
    r["partitions_after_pgpart"] = partitions_count(ctx, "s1_pgpart")
    r["partitions_after_partman"] = partitions_count(ctx, "s1_partman")
    res["s1"] = r
    drop_db(ctx, "s1_pgpart")
    drop_db(ctx, "s1_partman")
    log(f"s1: pgpart c1 {med(r['pgpart_c1']):.3f}s, proc {med(r['partman_proc']):.3f}s, fn {med(r['partman_fn']):.3f}s")


# ---------------------------------------------------------------- S2 catch-up

def floor_sql(plan_json, tables_subset=None):
    """The statements pgpart would run, each action its own transaction."""
    out = []
    for p in plan_json:
        t = p["table"].split(".", 1)[1]
        if tables_subset is not None and t not in tables_subset:
            continue
        for a in p["actions"]:
            stmts = [s for s in a["sql"] if not s.lstrip().startswith("--")]
            out.append("BEGIN;\n" + "".join(s.rstrip(";") + ";\n" for s in stmts) + "COMMIT;\n")
    return "".join(out)


def s2(ctx, res):
    n, tables = ctx.tables, [tname(i) for i in range(1, ctx.tables + 1)]
    start = month_start(ctx.today, 4).isoformat()
    log(f"s2: setting up template databases ({n} tables, 9 partitions each)")
    pol4 = write(ctx, "s2_policy4.yaml", gen_policies(tables, premake=4, start_from=start))
    pol16 = write(ctx, "s2_policy16.yaml", gen_policies(tables, premake=16, start_from=start))
    recreate_db(ctx, "s2_pgpart_tpl")
    psql(ctx, "s2_pgpart_tpl", file=write(ctx, "s2_tables.sql", gen_tables(n)))
    pgpart(ctx, "s2_pgpart_tpl", "apply", pol4)
    recreate_db(ctx, "s2_partman_tpl")
    install_partman(ctx, "s2_partman_tpl")
    psql(ctx, "s2_partman_tpl", file=write(ctx, "s2_tables.sql", gen_tables(n)))
    psql(ctx, "s2_partman_tpl", file=write(ctx, "s2_partman.sql", gen_partman_parents(tables, "monthly", 4, start=start)))
    # 12 more partitions ahead for every table: premake 4 -> 16 (infinite_time_partitions: no data needed)
    psql(ctx, "s2_partman_tpl", "UPDATE partman.part_config SET premake = 16, infinite_time_partitions = true")
    base_pg, base_pm = partitions_count(ctx, "s2_pgpart_tpl"), partitions_count(ctx, "s2_partman_tpl")
    r = {"tables": n, "base_partitions_pgpart": base_pg, "base_partitions_partman": base_pm,
         "expected_new": 12 * n, "runs": {}}

    # the floor's SQL, from pgpart plan on a clone
    recreate_db(ctx, "s2_run", "s2_pgpart_tpl")
    _, _, out, _ = pgpart(ctx, "s2_run", "plan", pol16, ["--output", "json"])
    plan = json.loads(out)
    r["planned_actions"] = sum(len(p["actions"]) for p in plan)
    f1 = write(ctx, "s2_floor_all.sql", floor_sql(plan))
    half = set(tables[: n // 2])
    fa = write(ctx, "s2_floor_a.sql", floor_sql(plan, half))
    fb = write(ctx, "s2_floor_b.sql", floor_sql(plan, set(tables) - half))

    def run_case(name, tpl, fn):
        recreate_db(ctx, "s2_run", tpl)
        psql(ctx, "s2_run", "CHECKPOINT")
        secs, ok, note = fn()
        made = partitions_count(ctx, "s2_run")
        base = base_pg if tpl == "s2_pgpart_tpl" else base_pm
        r["runs"].setdefault(name, []).append({"secs": secs, "ok": ok, "new_partitions": made - base, "note": note})
        log(f"s2: {name}: {secs:.2f}s ok={ok} new={made - base} {note[:120]}")

    def pgpart_apply(conns):
        def go():
            secs, rc, out, err = pgpart(ctx, "s2_run", "apply", pol16, ["--connections", str(conns)], check=False)
            shm = "out of shared memory" in (out + err)
            return secs, rc == 0 and not shm, ("lock-table overflow! " if shm else "") + (errline(err) if rc else "")
        return go

    def psql_files(files):
        def go():
            t0 = time.monotonic()
            procs = [subprocess.Popen([PSQL, ctx.db_url("s2_run"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", f],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for f in files]
            errs = [p.communicate()[1] for p in procs]
            secs = time.monotonic() - t0
            ok = all(p.returncode == 0 for p in procs)
            return secs, ok, " ".join(e.strip()[-200:] for e in errs if e.strip())
        return go

    def partman(sql):
        def go():
            secs, rc, _, err = psql(ctx, "s2_run", sql, check=False)
            return secs, rc == 0, errline(err) if rc else ""
        return go

    cases = [
        ("pgpart --connections 1", "s2_pgpart_tpl", pgpart_apply(1)),
        ("psql floor, 1 connection", "s2_pgpart_tpl", psql_files([f1])),
        ("pgpart --connections 2", "s2_pgpart_tpl", pgpart_apply(2)),
        ("psql floor, 2 connections", "s2_pgpart_tpl", psql_files([fa, fb])),
        ("partman.run_maintenance_proc()", "s2_partman_tpl", partman("CALL partman.run_maintenance_proc()")),
    ]
    for i in range(ctx.runs):
        for name, tpl, fn in cases:
            run_case(name, tpl, fn)
    # run_maintenance() is one transaction; it is expected to fail, so one run suffices
    # (a second when it unexpectedly succeeds, to have a median)
    for _ in range(1 if ctx.smoke else 2):
        run_case("partman.run_maintenance()", "s2_partman_tpl", partman("SELECT partman.run_maintenance()"))
        if not r["runs"]["partman.run_maintenance()"][-1]["ok"]:
            break
    res["s2"] = r
    for d in ("s2_run", "s2_pgpart_tpl", "s2_partman_tpl"):
        drop_db(ctx, d)


# ---------------------------------------------------------------- S3 inserts during maintenance

def s3(ctx, res):
    default_rows = 20000 if ctx.smoke else 3_000_000
    duration = 6 if ctx.smoke else 20
    rate = 200
    start = month_start(ctx.today, 24).isoformat()
    r = {"default_rows": default_rows, "pgbench_rate": rate, "pgbench_clients": 2, "cases": []}
    script = write(ctx, "s3_insert.sql",
                   "INSERT INTO public.hot (id, ts, payload) VALUES (:id, now() - random() * interval '10 days', 'x');\n"
                   .replace(":id", "(random() * 1e9)::bigint"))
    for with_default in (False, True):
        for tool in ("pgpart", "pg_partman"):
            db = "s3_run"
            recreate_db(ctx, db)
            psql(ctx, db, TABLE_DDL.format(t="hot"))
            extra = "  defaultPartition:\n    create: true\n    onRows: Report\n" if with_default else ""
            if tool == "pgpart":
                pol_a = write(ctx, "s3_a.yaml", gen_policies(["hot"], premake=4, start_from=start, extra=extra))
                pol_b = write(ctx, "s3_b.yaml", gen_policies(
                    ["hot"], premake=16, start_from=start,
                    extra=extra + "  retention:\n    keep: 12 months\n    action: Detach\n    maxPerPass: 100\n"))
                if with_default:  # the default and its rows exist before pgpart's first pass
                    psql(ctx, db, "CREATE TABLE public.hot_default PARTITION OF public.hot DEFAULT")
            else:
                install_partman(ctx, db)
                psql(ctx, db, gen_partman_parents(["hot"], "monthly", 4, start=start, default=with_default))
            if with_default:
                psql(ctx, db, f"INSERT INTO public.hot SELECT g, timestamptz '1990-01-01' + g * interval '1 second', "
                              f"md5(g::text) FROM generate_series(1, {default_rows}) g")
            if tool == "pgpart":
                pgpart(ctx, db, "apply", pol_a)
            psql(ctx, db, "VACUUM ANALYZE public.hot")
            parts_before = int(q1(ctx, db, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.hot'::regclass"))
            dflt = q1(ctx, db, "SELECT c.oid FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                               "WHERE i.inhparent = 'public.hot'::regclass AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'")
            parent = q1(ctx, db, "SELECT 'public.hot'::regclass::oid")
            logdir = os.path.join(ctx.work, f"s3_{tool}_{int(with_default)}")
            os.makedirs(logdir, exist_ok=True)
            os.chmod(logdir, 0o777)
            smp = Sampler(ctx, db)
            off = log_offset(ctx)
            bench = subprocess.Popen([PGBENCH, "-n", "-c", "2", "-j", "2", "-R", str(rate), "-T", str(duration),
                                      "-l", "--log-prefix", os.path.join(logdir, "pgbench"), "-f", script,
                                      ctx.db_url(db)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            time.sleep(2)
            t0 = time.monotonic()
            if tool == "pgpart":
                secs, rc, out, err = pgpart(ctx, db, "apply", pol_b, ["--connections", "1"], check=False)
                ok, note = rc == 0, err.strip()[-300:]
                log(f"s3: pgpart output: {out.strip()[-600:]}")
            else:
                psql(ctx, db, "UPDATE partman.part_config SET premake = 16, infinite_time_partitions = true, "
                              "retention = '12 months', retention_keep_table = true")
                secs, rc, _, err = psql(ctx, db, "CALL partman.run_maintenance_proc()", check=False)
                ok, note = rc == 0, err.strip()[-300:]
            maint_end = time.monotonic() - t0
            bout = bench.communicate()[0]
            smp.stop()
            lat, failed = [], 0
            for fn in os.listdir(logdir):
                with open(os.path.join(logdir, fn)) as f:
                    for line in f:
                        parts = line.split()
                        if len(parts) >= 6:
                            if parts[2] in ("failed", "skipped"):
                                failed += 1
                            else:
                                lat.append(int(parts[2]) / 1000.0)
            lat.sort()
            pct = (lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else None)
            holds = smp.holds([dflt] if dflt else [])
            parent_holds = smp.holds([parent])
            parts_after = int(q1(ctx, db, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.hot'::regclass"))
            case = {
                "tool": tool, "default": with_default, "maintenance_secs": round(secs, 3), "ok": ok, "note": note,
                "partitions_before": parts_before, "partitions_after": parts_after,
                "inserts": len(lat), "insert_errors": failed + bout.count("ERROR"),
                "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": lat[-1] if lat else None,
                "longest_lock_wait_ms_sampled": smp.longest_wait_ms(),
                "longest_lock_wait_ms_log": log_lock_waits_max_ms(ctx, off),
                "default_access_exclusive_episodes": len(holds),
                "default_access_exclusive_max_ms": round(max((h[2] for h in holds), default=0), 1),
                "default_access_exclusive_median_ms": round(med([h[2] for h in holds]) or 0, 1),
                "parent_access_exclusive_max_ms": round(max((h[2] for h in parent_holds), default=0), 1),
                "parent_access_exclusive_episodes": len(parent_holds),
                "sample_period_ms": smp.period_ms(),
            }
            if maint_end > duration - 2:
                case["note"] += " (maintenance outlasted the pgbench run)"
            r["cases"].append(case)
            log(f"s3: {case}")
            drop_db(ctx, db)
    res["s3"] = r


# ---------------------------------------------------------------- S4 default repair, live

CHECKSUM = ("SELECT count(*) || ' ' || md5(string_agg(md5((r.id, r.ts, r.payload)::text), '' ORDER BY r.id, r.ts)) "
            "FROM public.rp r WHERE r.id <= {rows}")
# pgbench scripts: each makes its transaction fail (and pgbench abort that client) when a row
# that exists is not found, so an aborted client is a hidden row or a lost update.
S4_READ = ("\\set rid random(1, {rows})\n"
           "SELECT 1 / (SELECT count(*) FROM public.rp WHERE id = :rid)::int;\n")
S4_UPDATE = ("\\set rid random(1, {rows})\n"
             "WITH u AS (UPDATE public.rp SET n = n + 1 WHERE id = :rid RETURNING 1) SELECT 1 / count(*)::int FROM u;\n")
S4_INSERT = ("\\set k random(0, 2)\n"
             "INSERT INTO public.rp (id, ts, payload) VALUES ((random() * 1e9)::bigint + {rows} + 1, "
             "CASE :k WHEN 0 THEN timestamptz '{d0}' + random() * interval '3 days' "
             "WHEN 1 THEN now() ELSE timestamptz '{d0}' + interval '400 days' END, 'live');\n")


class Traffic:
    """pgbench in back-to-back 3 s runs until stopped (each run exits cleanly, so its
    per-transaction log is complete); returns everything the runs printed."""

    def __init__(self, ctx, db, logdir, clients, rate, scripts):
        self.stopping, self.out = False, []

        def loop():
            k = 0
            while not self.stopping:
                cmd = [PGBENCH, "-n", "-c", str(clients), "-j", "2", "-R", str(rate), "-T", "3", "-l",
                       "--log-prefix", os.path.join(logdir, f"pgbench{k}")]
                for sc in scripts:
                    cmd += ["-f", sc]
                p = subprocess.run(cmd + [ctx.db_url(db)], capture_output=True, text=True)
                self.out.append(p.stdout + p.stderr)
                k += 1

        self.t = threading.Thread(target=loop)
        self.t.start()

    def stop(self):
        self.stopping = True
        self.t.join()
        return "\n".join(self.out)


def s4(ctx, res):
    sizes = [20000] if ctx.smoke else [1_000_000, 3_000_000]
    d0 = ctx.today - dt.timedelta(days=3)
    ddl = ("CREATE TABLE public.rp (id bigint NOT NULL, ts timestamptz NOT NULL, payload text, n int NOT NULL DEFAULT 0) "
           "PARTITION BY RANGE (ts);\nCREATE INDEX rp_id ON public.rp (id);\n")
    r = {"sizes": sizes, "days": 3, "cases": [], "rate": 300, "clients": 6}
    pol = write(ctx, "s4.yaml", gen_policies(["rp"], interval="1 day", premake=2,
                                             extra="  defaultPartition:\n    create: true\n    onRows: Repair\n"))
    for rows in sizes:
        scripts = [write(ctx, f"s4_{n}.sql", t.format(rows=rows, d0=d0))
                   for n, t in (("read", S4_READ), ("update", S4_UPDATE), ("insert", S4_INSERT))]
        load = (f"INSERT INTO public.rp (id, ts, payload) SELECT g, timestamptz '{d0}' + (g % 3) * interval '1 day' "
                f"+ (g / 3 % 86400) * interval '1 second', md5(g::text) FROM generate_series(1, {rows}) g")
        cases = [("pgpart", None), ("pg_partman", None), ("floor", None)]
        if rows == sizes[0]:  # pgpart while another session holds a lock on the table
            hold = 3 if ctx.smoke else 1
            cases += [("pgpart", ("ACCESS SHARE", 20 // hold, "SELECT count(*) FROM public.rp")),
                      ("pgpart", ("SHARE UPDATE EXCLUSIVE", 10 // hold, "LOCK TABLE public.rp IN SHARE UPDATE EXCLUSIVE MODE"))]
        for tool, holder in cases:
            for run in range(1 if ctx.smoke or holder else max(1, ctx.runs - 2)):
                db = "s4_run"
                recreate_db(ctx, db)
                psql(ctx, db, ddl + "SET TimeZone = 'UTC';\n")
                if tool == "pg_partman":
                    install_partman(ctx, db)
                    psql(ctx, db, f"SELECT partman.create_parent('public.rp', 'ts', 'native', 'daily', p_premake := 2, "
                                  f"p_start_partition := '{ctx.today}')")
                else:
                    psql(ctx, db, "CREATE TABLE public.rp_default PARTITION OF public.rp DEFAULT")
                    for k in range(0, 3):  # today .. today+2 exist, as pg_partman's do
                        a, b = ctx.today + dt.timedelta(days=k), ctx.today + dt.timedelta(days=k + 1)
                        psql(ctx, db, f"CREATE TABLE public.rp_p{a.strftime('%Y%m%d')} PARTITION OF public.rp "
                                      f"FOR VALUES FROM ('{a} 00:00+00') TO ('{b} 00:00+00')")
                psql(ctx, db, load)
                psql(ctx, db, "VACUUM ANALYZE public.rp")
                dflt_name = q1(ctx, db, "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                                        "WHERE i.inhparent = 'public.rp'::regclass AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'")
                in_default_before = int(q1(ctx, db, f"SELECT count(*) FROM public.{dflt_name}"))
                before = q1(ctx, db, CHECKSUM.format(rows=rows))
                logdir = os.path.join(ctx.work, f"s4_{tool}_{rows}_{run}_{len(r['cases'])}")
                os.makedirs(logdir, exist_ok=True)
                os.chmod(logdir, 0o777)
                smp = Sampler(ctx, db)
                off = log_offset(ctx)
                traffic = Traffic(ctx, db, logdir, r["clients"], r["rate"],
                                  [scripts[0] + "@5", scripts[1] + "@2", scripts[2] + "@3"])
                time.sleep(2)
                held = None
                if holder:
                    mode, secs_, stmt = holder
                    held = threading.Thread(target=lambda: psql(
                        ctx, db, f"BEGIN; {stmt}; SELECT pg_sleep({secs_}); COMMIT", check=False))
                    held.start()
                    time.sleep(0.5)
                t0 = time.time()
                if tool == "pgpart":
                    secs, rc, out, err = pgpart(ctx, db, "apply", pol, ["--connections", "1"], check=False)
                elif tool == "pg_partman":
                    secs, rc, out, err = psql(ctx, db, "CALL partman.partition_data_proc('public.rp', p_batch := 100, p_wait := 0)", check=False)
                else:
                    stmts = []
                    for k in range(3):
                        a, b = d0 + dt.timedelta(days=k), d0 + dt.timedelta(days=k + 1)
                        p = f"rp_p{a.strftime('%Y%m%d')}"
                        pred = f"ts >= '{a} 00:00+00' AND ts < '{b} 00:00+00'"
                        # Writes into the default wait (reads go on), or a row arriving for the
                        # day after the DELETE would make the ATTACH fail.
                        stmts.append(
                            f"BEGIN;\nLOCK TABLE ONLY public.rp_default IN EXCLUSIVE MODE;\n"
                            f"CREATE TABLE public.{p} (LIKE public.rp INCLUDING ALL);\n"
                            f"WITH m AS (DELETE FROM ONLY public.rp_default WHERE {pred} RETURNING *) INSERT INTO public.{p} SELECT * FROM m;\n"
                            f"ALTER TABLE public.{p} ADD CONSTRAINT b CHECK ({pred});\n"
                            f"ALTER TABLE public.rp ATTACH PARTITION public.{p} FOR VALUES FROM ('{a} 00:00+00') TO ('{b} 00:00+00');\n"
                            f"ALTER TABLE public.{p} DROP CONSTRAINT b;\nCOMMIT;\n")
                    secs, rc, out, err = psql(ctx, db, file=write(ctx, "s4_floor.sql", "".join(stmts)), check=False)
                t1 = time.time()
                if held:
                    held.join()
                time.sleep(1)
                bout = traffic.stop()
                smp.stop()
                # Per-transaction latency (-l: client, xact, latency us, script, epoch s, us), for the
                # transactions running while the repair ran.
                during, everything = [], []
                for fn in os.listdir(logdir):
                    with open(os.path.join(logdir, fn)) as fh:
                        for line in fh:
                            f_ = line.split()
                            if len(f_) < 6 or not f_[2].isdigit():
                                continue
                            lat_ms = int(f_[2]) / 1000.0
                            end = int(f_[4]) + int(f_[5]) / 1e6
                            everything.append(lat_ms)
                            if end >= t0 and end - lat_ms / 1000.0 <= t1:
                                during.append(lat_ms)
                aborted = re.findall(r"client \d+ script (\d+) aborted[^\n]*", bout)
                updates_ok = sum(1 for fn in os.listdir(logdir) for line in open(os.path.join(logdir, fn))
                                 if len(line.split()) >= 4 and line.split()[3] == "1" and line.split()[2].isdigit())
                after = q1(ctx, db, CHECKSUM.format(rows=rows))
                n_sum = int(q1(ctx, db, f"SELECT coalesce(sum(n), 0) FROM public.rp WHERE id <= {rows}"))
                in_default_after = int(q1(ctx, db, f"SELECT count(*) FROM public.{dflt_name}"))
                case = {"tool": tool, "rows": rows, "secs": round(secs, 3),
                        "holder": f"{holder[0]} for {holder[1]} s" if holder else None, "ok": rc == 0,
                        "note": errline(err, 300),
                        "rows_in_default_before": in_default_before, "rows_in_default_after": in_default_after,
                        "checksum_same": before == after,
                        "transactions_during": len(during),
                        "max_ms_during": round(max(during), 1) if during else None,
                        "p99_ms_during": round(sorted(during)[int(0.99 * (len(during) - 1))], 1) if during else None,
                        "max_ms_all": round(max(everything), 1) if everything else None,
                        "aborted_clients": len(aborted),
                        "aborts": {"read": sum(1 for x in aborted if x == "0"), "update": sum(1 for x in aborted if x == "1"),
                                   "insert": sum(1 for x in aborted if x == "2")},
                        "first_abort": (re.search(r"client \d+ script \d+ aborted[^\n]*", bout) or [None])[0],
                        "updates_ok": updates_ok, "updates_applied": n_sum,
                        "longest_lock_wait_ms_sampled": smp.longest_wait_ms(),
                        "longest_lock_wait_ms_log": log_lock_waits_max_ms(ctx, off),
                        "sample_period_ms": smp.period_ms()}
                r["cases"].append(case)
                log(f"s4: {case}")
                drop_db(ctx, db)
    res["s4"] = r


# ---------------------------------------------------------------- S5 scale curve

def s5(ctx, res):
    """At each size N (--scale-sizes), in fresh databases: the catch-up (N empty monthly
    tables to premake 4, 4 months back like s1) by pgpart and by pg_partman's create_parent,
    then the no-op pass (pgpart apply again vs run_maintenance_proc), and pgpart's peak RSS.
    Every command gets --scale-timeout seconds. What fails (or times out) is recorded per
    tool, the other tool and the next size still run, and the scenario fails at the end."""
    start = month_start(ctx.today, 4).isoformat()
    conns = 1  # pg_partman works in one backend; s1/s2 compare 1 and 2 connections
    per_table = 9  # 4 months back, this month and premake 4
    limit = ctx.scale_timeout
    r = {"sizes": ctx.scale_sizes, "premake": 4, "start_from": start, "connections": conns,
         "runs": ctx.runs, "timeout": limit, "rss_method": rss_method(), "cores": os.cpu_count(),
         "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
         "load_before": os.getloadavg(), "points": []}
    res["s5"] = r
    dbs = {"pgpart": "s5_pgpart", "pg_partman": "s5_partman"}
    for n in ctx.scale_sizes:
        tables = [tname(i) for i in range(1, n + 1)]
        pt = {"tables": n, "load_before": os.getloadavg(), "errors": {}}
        r["points"].append(pt)
        t_size = time.monotonic()

        def made(tool):
            try:
                return partitions_count(ctx, dbs[tool])
            except Exception:
                return None

        def fail(tool, what, msg):
            pt["errors"][tool] = f"{what}: {msg}"
            log(f"s5: {n} tables: {tool} {what} FAILED: {msg}")

        def pgpart_pass(what):
            secs, rc, out, err, kib = pgpart(ctx, dbs["pgpart"], "apply", pol, ["--connections", str(conns)],
                                             check=False, rss=True, timeout=limit)
            if rc is None:
                fail("pgpart", what, f"timed out after {limit} s ({made('pgpart')} of {per_table * n} partitions made)")
            elif rc != 0:
                fail("pgpart", what, errline(err, 500))
            return (secs, kib, (out + err).strip()[-300:]) if rc == 0 else None

        def partman_sql(what, **kw):
            try:
                secs, rc, _, err = psql(ctx, dbs["pg_partman"], check=False, timeout=limit, **kw)
            except subprocess.TimeoutExpired:
                fail("pg_partman", what, f"timed out after {limit} s ({made('pg_partman')} of {per_table * n} partitions made)")
                return None
            if rc != 0:
                fail("pg_partman", what, errline(err, 500))
            return secs if rc == 0 else None

        try:
            log(f"s5: {n} tables: setting up")
            tables_sql = write(ctx, "s5_tables.sql", gen_tables(n))
            pol = write(ctx, "s5_policy.yaml", gen_policies(tables, premake=4, start_from=start))
            recreate_db(ctx, dbs["pgpart"])
            psql(ctx, dbs["pgpart"], file=tables_sql)
            recreate_db(ctx, dbs["pg_partman"])
            install_partman(ctx, dbs["pg_partman"])
            psql(ctx, dbs["pg_partman"], file=tables_sql)
            parents = write(ctx, "s5_partman.sql", gen_partman_parents(tables, "monthly", 4, start=start))
            for db in dbs.values():
                psql(ctx, db, "CHECKPOINT")

            got = pgpart_pass("catch-up")
            if got:
                pt.update(pgpart_catchup=got[0], pgpart_catchup_rss_kib=got[1], partitions_pgpart=made("pgpart"))
                log(f"s5: {n}: pgpart catch-up {got[0]:.2f}s, {pt['partitions_pgpart']} partitions, {got[1]} KiB")
            secs = partman_sql("create_parent", file=parents)
            if secs is not None:
                pt.update(partman_catchup=secs, partitions_partman=made("pg_partman"))
                log(f"s5: {n}: pg_partman create_parent {secs:.2f}s, {pt['partitions_partman']} partitions")

            # The first pass after the catch-up is not timed (as in s1); then both interleaved.
            run_pg, run_pm = "pgpart" not in pt["errors"], "pg_partman" not in pt["errors"]
            run_pg = run_pg and pgpart_pass("first no-op pass") is not None
            run_pm = run_pm and partman_sql("first run_maintenance_proc()", sql="CALL partman.run_maintenance_proc()") is not None
            noop, noop_kib, proc = [], [], []
            for _ in range(ctx.runs):
                if run_pg:
                    got = pgpart_pass("no-op")
                    run_pg = got is not None
                    if got:
                        noop.append(got[0])
                        noop_kib.append(got[1])
                        pt["pgpart_noop_output"] = got[2]
                if run_pm:
                    secs = partman_sql("run_maintenance_proc()", sql="CALL partman.run_maintenance_proc()")
                    run_pm = secs is not None
                    if secs is not None:
                        proc.append(secs)
            if noop and "pgpart" not in pt["errors"]:
                pt.update(pgpart_noop=noop, pgpart_noop_rss_kib=noop_kib, partitions_after_pgpart=made("pgpart"))
                log(f"s5: {n}: no-op pgpart {med(noop):.3f}s ({max(k or 0 for k in noop_kib)} KiB)")
            if proc and "pg_partman" not in pt["errors"]:
                pt.update(partman_proc=proc, partitions_after_partman=made("pg_partman"))
                log(f"s5: {n}: run_maintenance_proc {med(proc):.3f}s")
        except Exception as e:  # setting up failed: nothing measured at this size
            pt["errors"]["setup"] = str(e)[-2000:]
            log(f"s5: {n} tables: setup FAILED: {e}")
        finally:
            for db in dbs.values():
                try:
                    drop_db(ctx, db)
                except Exception as e:
                    log(f"s5: could not drop {db}: {e}")
        pt["load_after"] = os.getloadavg()
        pt["elapsed"] = round(time.monotonic() - t_size, 1)
    r["ended"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    r["load_after"] = os.getloadavg()
    bad = [f"{p['tables']} tables: {t} {e.splitlines()[0][:300]}" for p in r["points"] for t, e in p["errors"].items()]
    if bad:
        raise RuntimeError("; ".join(bad))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--pgpart", required=True)
    ap.add_argument("--tables", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--scenarios", default="s1,s2,s3,s4,s5")
    ap.add_argument("--scale-sizes", help="s5's numbers of tables, comma-separated "
                    "(default 100,1000,10000; 5,10,20 with --smoke)")
    ap.add_argument("--scale-timeout", type=float, default=1800,
                    help="s5: seconds one command may take before it counts as failed (default 1800)")
    ap.add_argument("--pglog")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.scale_sizes is None:
        args.scale_sizes = "5,10,20" if args.smoke else "100,1000,10000"
    ctx = Ctx(args)
    res = {"tables": args.tables, "runs": args.runs, "smoke": args.smoke, "errors": {},
           "scenarios": args.scenarios, "scale_sizes": ctx.scale_sizes}
    if os.path.exists(args.out):  # an earlier run's scenarios ("s1" ...), not its settings
        with open(args.out) as f:
            res.update({k: v for k, v in json.load(f).items() if re.fullmatch(r"s\d+", k)})
    failed = False
    try:
        for s in args.scenarios.split(","):
            t0 = time.monotonic()
            try:
                globals()[s](ctx, res)
            except Exception as e:  # keep going: later scenarios still produce numbers
                failed = True
                res["errors"][s] = str(e)[-2000:]
                log(f"{s} FAILED: {e}")
            res.setdefault("elapsed", {})[s] = round(time.monotonic() - t0, 1)
            with open(args.out, "w") as f:
                json.dump(res, f, indent=1, default=str)
    finally:
        shutil.rmtree(ctx.work, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
