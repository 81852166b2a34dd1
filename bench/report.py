#!/usr/bin/python3
"""bench/report.py RESULTS_DIR: turns one bench/run's raw outputs into
results.json (machine, kernel, commit, every figure), one CSV per series,
summary.md (printed by bench/run) and PNG plots made with gnuplot.

The CRIU steps also yield the fault latency as the workload sees it:
rdmig-workload times its first touch of every page after restore
(ID.wlat: one sample in ns per page that was missing, and a
"workload: fault latency" line in its report).

The downtime steps split the workload's freeze into its parts: for rdmig
from the source agent's status JSON (times.freeze_ms, handover_ms,
downtime_ms and the destination's received_ms, resumed_ms, restore_ms,
progress.faults; docs/api.md), for CRIU's own lazy migration from
criu-migrate.sh's `times:` line (wall clock around each criu command).

Only the standard library.  A figure that was not measured is null in the
JSON, empty in the CSVs and "not measured" in the table, with the reason.
"""
import csv
import json
import os
import re
import statistics
import subprocess
import sys

MIB = 1 << 20


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return None


def read_kv(path):
    out = {}
    for line in (read(path) or "").splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def num(s):
    try:
        v = float(s)
    except (TypeError, ValueError):
        return None
    return int(v) if v.is_integer() and "." not in str(s) else v


def size_bytes(s):
    m = re.fullmatch(r"(\d+)([KMG]?)", s)
    return int(m.group(1)) * {"": 1, "K": 1 << 10, "M": MIB, "G": 1 << 30}[m.group(2)]


def status(raw, sid):
    v = (read(f"{raw}/{sid}.status") or "").strip()
    return int(v) if v.isdigit() else None


def pct(sorted_v, p):
    """Nearest rank, as rdmig's latstat."""
    if not sorted_v:
        return None
    n = len(sorted_v)
    rank = -(-int(p * n * 1000) // 100000)  # ceil(p/100*n) without float error
    return sorted_v[max(rank, 1) - 1]


WL_LINE = re.compile(r"workload: fault latency us min/p50/p90/p99/max ([\d./]+) over (\d+) faults, "
                     r"first touch of (\d+) pages after restore \((\d+) resident")
WL_NONE = re.compile(r"workload: fault latency: none of (\d+) pages was missing")


def workload_latency(out, wlat):
    """The workload's own fault times after restore, or None: from its
    samples if there are any, else from its report line."""
    m = WL_LINE.search(out or "")
    none = WL_NONE.search(out or "")
    if not m and not none:
        return None, []
    e = {"faults": 0, "pages": None, "resident": None}
    for k in ("min", "p50", "p90", "p99", "p999", "max", "mean"):
        e[f"{k}_us"] = None
    if none:
        e["pages"] = int(none.group(1))
        e["resident"] = e["pages"]
        return e, []
    v = [float(x) for x in m.group(1).split("/")]
    e.update(faults=int(m.group(2)), pages=int(m.group(3)), resident=int(m.group(4)),
             **dict(zip(("min_us", "p50_us", "p90_us", "p99_us", "max_us"), v)))
    lat = sorted(int(x) for x in (wlat or "").split() if x.isdigit())
    if lat and len(lat) == e["faults"]:
        for name, p in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9)):
            e[f"{name}_us"] = r(pct(lat, p) / 1000)
        e["min_us"] = r(lat[0] / 1000)
        e["max_us"] = r(lat[-1] / 1000)
        e["mean_us"] = r(sum(lat) / len(lat) / 1000)
    else:
        lat = []
    return e, lat


def fault_ab_trace(raw, sid, trace, faults):
    """A traced fault step's profile: syscalls per lazy fault (strace -c),
    or the guest's top CPU entries (perf report --sort comm,dso,sym)."""
    out = {}
    if trace == "strace":
        calls = {}
        for line in (read(f"{raw}/{sid}.strace") or "").splitlines():
            f = line.split()
            # % time, seconds, usecs/call, calls, [errors], syscall
            if len(f) >= 5 and f[-1] != "total" and f[3].isdigit() and re.match(r"[\d.]+$", f[0]):
                calls[f[-1]] = int(f[3])
        if calls and faults:
            out["syscalls_per_fault"] = round(sum(calls.values()) / faults, 2)
            out["per_fault"] = {k: round(v / faults, 2) for k, v in
                                sorted(calls.items(), key=lambda kv: -kv[1]) if v / faults >= 0.05}
    elif trace == "perf":
        top = []
        for line in (read(f"{raw}/{sid}.perf") or "").splitlines():
            m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+(\S+)\s+\[[.k]\]\s+(.+)$", line)
            if m:
                top.append({"pct": float(m.group(1)), "comm": m.group(2), "dso": m.group(3),
                            "sym": m.group(4).strip()})
        out["perf_top"] = top[:25]
    return out


def summary_fields(text):
    for line in reversed((text or "").splitlines()):
        if "summary:" in line:
            return dict(kv.split("=", 1) for kv in line.split("summary:", 1)[1].split() if "=" in kv)
    return {}


def r(v, nd=1):
    return None if v is None else round(v, nd)


def load_plan(path):
    steps = []
    for line in (read(path) or "").splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        steps.append({"id": parts[0], "kind": parts[1], **dict(kv.split("=", 1) for kv in parts[2:])})
    return steps


def perftest_row(text, size, min_fields):
    for line in (text or "").splitlines():
        f = line.split()
        if len(f) >= min_fields and f[0] == str(size) and all(num(x) is not None for x in f[:min_fields]):
            return [num(x) for x in f]
    return None


def parse_cpu(text):
    """The source's CPU from the sampler: during the drain (from the dest's
    start mark to the last sample) and over its whole life."""
    start = None
    last = None
    clk, ncpu = 100, 1
    for line in (text or "").splitlines():
        f = line.split()
        if f[0] == "start":
            start = [int(x) for x in f[1:5]]
        elif f[0] == "sample":
            last = [int(x) for x in f[1:5]]
        elif f[0] == "clk_tck":
            clk, ncpu = int(f[1]), int(f[3])
    if not last:
        return None
    out = {"total_cpu_s": round(last[1] / clk, 3), "clk_tck": clk, "ncpu": ncpu,
           "drain_cpu_s": None, "drain_wall_s": None, "drain_cpu_pct": None, "host_busy_pct": None}
    if start:
        wall = (last[0] - start[0]) / 1000
        cpu = (last[1] - start[1]) / clk
        out["drain_cpu_s"] = round(cpu, 3)
        out["drain_wall_s"] = round(wall, 3)
        if wall > 0:
            out["drain_cpu_pct"] = round(100 * cpu / wall, 2)
        dt = last[3] - start[3]
        if dt > 0:
            out["host_busy_pct"] = round(100 * (last[2] - start[2]) / dt, 1)
    return out


def main():
    d = sys.argv[1]
    raw = f"{d}/raw"
    meta = json.loads(read(f"{d}/meta.json") or "{}")
    plan = load_plan(f"{d}/plan")
    for role in ("source", "dest", "both"):
        g = read_kv(f"{raw}/meta.{role}")
        if g:
            meta.setdefault("guests", {})[role] = g
    res = {"meta": meta, "perftest": {"read_lat": [], "read_bw": []}, "fault": [], "drain": [],
           "source_cpu": [], "criu": [], "criu_fault": [], "downtime": [], "fault_ab": [], "not_measured": [],
           "steps": []}
    samples = {}
    wsamples = {}

    for s in plan:
        sid, kind = s["id"], s["kind"]
        st = status(raw, sid)
        res["steps"].append({"id": int(sid), "kind": kind,
                             "params": {k: v for k, v in s.items() if k not in ("id", "kind")},
                             "status": st})
        if kind == "lat":
            row = perftest_row(read(f"{raw}/{sid}.out"), s["size"], 9)
            e = {"size": int(s["size"]), "iters": int(s["iters"]), "status": st}
            if row:
                e.update(t_min_us=row[2], t_max_us=row[3], t_typical_us=row[4], t_avg_us=row[5],
                         t_stdev_us=row[6], p99_us=row[7], p999_us=row[8])
            res["perftest"]["read_lat"].append(e)
        elif kind == "bw":
            row = perftest_row(read(f"{raw}/{sid}.out"), s["size"], 5)
            e = {"size": int(s["size"]), "iters": int(s["iters"]), "status": st}
            if row:
                # perftest's MB/sec are MiB/s; rdmig's are 10^6 bytes/s.
                e.update(bw_peak_MiBps=row[2], bw_avg_MiBps=row[3],
                         bw_avg_MBps=round(row[3] * MIB / 1e6, 2), msg_rate_Mpps=row[4])
            res["perftest"]["read_bw"].append(e)
        elif kind in ("fault", "drain"):
            dest_log = read(f"{raw}/{sid}.dest")
            sm = summary_fields(dest_log)
            e = {"transport": s["transport"], "size": s["size"], "size_bytes": size_bytes(s["size"]),
                 "threads": int(s.get("threads", 1)), "status": st, "summary_status": sm.get("status")}
            for k in ("lazy", "fault", "drain", "bytes", "time_ms", "faults", "lazy_faults",
                      "fault_p50_us", "fault_p99_us", "drain_MBps"):
                e[k] = num(sm.get(k))
            times = dict(line.split() for line in (read(f"{raw}/{sid}.times") or "").splitlines()
                         if len(line.split()) == 2)
            if "start" in times and "end" in times:
                e["wall_ms"] = int(times["end"]) - int(times["start"])
            lat = sorted(int(x) for x in (read(f"{raw}/{sid}.lat") or "").split() if x.isdigit())
            if kind == "fault":
                e["samples"] = len(lat)
                for name, p in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9)):
                    v = pct(lat, p)
                    e[f"{name}_us"] = r(v / 1000 if v is not None else None)
                e["min_us"] = r(lat[0] / 1000) if lat else None
                e["max_us"] = r(lat[-1] / 1000) if lat else None
                e["mean_us"] = r(sum(lat) / len(lat) / 1000) if lat else None
                if e.get("time_ms"):
                    e["faults_per_s"] = round((e["lazy_faults"] or 0) / (e["time_ms"] / 1000))
                m = re.search(r"fault latency us min/p50/p90/p99/max ([\d./]+)", read(f"{raw}/{sid}.standin") or "")
                if m:
                    v = [float(x) for x in m.group(1).split("/")]
                    e["standin_us"] = dict(zip(("min", "p50", "p90", "p99", "max"), v))
                if s.get("variant"):
                    # bench/run --fault-ab: the fault path before/after, apart
                    # from the series (its traced runs are no latency figure).
                    e.update(variant=s["variant"], trace=s.get("trace"))
                    e.update(fault_ab_trace(raw, sid, s.get("trace"), e.get("lazy_faults")))
                    res["fault_ab"].append(e)
                    continue
                samples[(s["transport"], int(s.get("threads", 1)))] = lat
                res["fault"].append(e)
            else:
                e["faults_running"] = s.get("faults") == "1"
                # 2 = faults on their own lane (RDMA: a queue pair; TCP: a connection), 1 = shared.
                lm = re.search(r"lanes: fault_lane=(yes|no) lane_reads=(\d+) reads=(\d+) "
                               r"drain_depth=(\d+) drain_chunk=(\d+) drain_shrinks=(\d+) drain_grows=(\d+)",
                               dest_log or "")
                e["lanes"] = (2 if lm.group(1) == "yes" else 1) if lm else None
                if lm:
                    e.update(lane_reads=int(lm.group(2)), drain_shrinks=int(lm.group(6)),
                             drain_grows=int(lm.group(7)))
                # The queue pairs the drain used (rdmig-dest --drain-qps; absent before it).
                qm = re.search(r"lanes: .* drain_qps=(\d+)", dest_log or "")
                e["drain_qps"] = int(qm.group(1)) if qm else None
                e["drain_qps_asked"] = int(s["qps"]) if s.get("qps") else None
                # bench/run --drain-floor: rdmig-dest --drain-floor N (None: its default).
                e["drain_floor"] = int(s["floor"]) if s.get("floor") else None
                if e.get("bytes") and e.get("time_ms"):
                    e["migrate_MBps"] = round(e["bytes"] / 1e6 / (e["time_ms"] / 1000), 1)
                res["drain"].append(e)
                cpu = parse_cpu(read(f"{raw}/{sid}.cpu"))
                if cpu is not None:
                    res["source_cpu"].append({"transport": s["transport"], "size": s["size"],
                                              "faults_running": e["faults_running"], **cpu})
        elif kind == "criu":
            out = read(f"{raw}/{sid}.out") or ""
            m = re.search(r"times: (.*)", out)
            e = {"mode": s["mode"], "transport": s.get("transport", "tcp"), "size_mb": int(s["size_mb"]),
                 "threads": int(s["threads"]), "drain": s.get("drain", "default"), "status": st}
            done = re.search(r"criu-migrate: (rdmig-dest exited 0|criu lazy-pages exited 0)", out)
            if m and (st == 0 or done):
                for kv in m.group(1).split():
                    if "=" in kv:
                        k, v = kv.split("=", 1)
                        e[f"{k.replace('+', '_')}_s"] = num(v)
                if st != 0:
                    # Every page moved, but a later check of the script failed.
                    bad = [x for x in out.splitlines() if re.search(r"did not|failed|no report", x)]
                    e["caveat"] = "criu-migrate.sh exited %s after every page moved: %s" % (
                        st, bad[-1] if bad else "see raw output")
            else:
                why = "criu-migrate.sh failed (status %s)" % st
                tail = [x for x in out.splitlines() if x.startswith("criu-migrate:")][-2:]
                if tail:
                    why += ": " + " / ".join(tail)
                e["not_measured"] = why
            wl, wlat = workload_latency(out, read(f"{raw}/{sid}.wlat"))
            if wl and re.search(r"CORRUPT|FAILED", out):
                wl = None  # times of a wrong run are no figure
            e["fault_latency_us"] = wl
            res["criu"].append(e)
            if wl:
                res["criu_fault"].append({"mode": e["mode"], "transport": e["transport"],
                                          "size_mb": e["size_mb"], "threads": e["threads"],
                                          "drain": e["drain"], **wl,
                                          "samples": len(wlat), "status": st})
                if wlat:
                    wsamples[(e["mode"], e["transport"], e["drain"])] = wlat
        elif kind == "downtime":
            res["downtime"].append(downtime_row(raw, sid, s, st))
    if not res["downtime"]:
        res["not_measured"].append({"series": "downtime", "reason": meta.get("downtime_skip") or "not in this run's plan"})
    if not any(c["mode"] == "criu" for c in res["criu"]):
        res["not_measured"].append({"series": "criu", "reason": meta.get("criu_skip", "not in this run's plan")})
    for mode in ("rdmig", "criu"):
        if any(c["mode"] == mode for c in res["criu_fault"]):
            continue
        ran = [c for c in res["criu"] if c["mode"] == mode]
        if not ran:
            why = meta.get("criu_skip") or "not in this run's plan"
        elif any(c.get("not_measured") for c in ran):
            why = "the migration failed"
        else:
            why = "the workload reported no fault times"
        res["not_measured"].append({"series": "fault latency as seen by the workload (%s)" % (
            "rdmig + criu restore" if mode == "rdmig" else "CRIU lazy-pages"), "reason": why})

    # ---- ratios against the targets ----
    def first(lst, **kw):
        for e in lst:
            if all(e.get(k) == v for k, v in kw.items()):
                return e
        return None

    lat = first(res["perftest"]["read_lat"], size=4096)
    bw64 = first(res["perftest"]["read_bw"], size=65536)
    f1 = first(res["fault"], transport="rdma", threads=1)
    sizes = sorted({e["size_bytes"] for e in res["drain"]})
    big = sizes[-1] if sizes else None
    dr = first(res["drain"], transport="rdma", size_bytes=big, faults_running=False)
    cpu_r = first(res["source_cpu"], transport="rdma", faults_running=False, size=dr["size"] if dr else None)
    cpu_t = first(res["source_cpu"], transport="tcp", faults_running=False, size=dr["size"] if dr else None)
    cc = first(res["criu"], mode="criu")

    def ratio(a, b):
        return round(a / b, 3) if a is not None and b else None

    targets = []

    def target(name, value, op, goal, why_missing, basis, transport=None, met_none=None):
        """met_none: what a missing ratio means when the figure is missing for a
        good reason (the workload met no fault to time): True, or None."""
        met = met_none if value is None else (value <= goal if op == "<=" else value >= goal)
        targets.append({"name": name, "transport": transport, "ratio": value, "op": op, "goal": goal,
                        "met": met, "basis": basis, "note": why_missing if value is None else None})

    target("rdmig fault p50 / ib_read_lat 4 KiB typical",
           ratio(f1 and f1.get("p50_us"), lat and lat.get("t_typical_us")), "<=", 1.5,
           "fault or ib_read_lat figure missing",
           "RDMA, 1 thread, read-ahead 1, no drain", "rdma")
    # Issue 11's targets, per transport: faults during the drain, the drain
    # under faults, the workload's own fault latency and the whole migration
    # against CRIU's lazy-pages.
    for tr in ("rdma", "tcp"):
        df = first(res["drain"], transport=tr, size_bytes=big, faults_running=True, lanes=2)
        # The drain's effect alone: as many faulting threads without the drain
        # as with it, when the fault series ran that many (else 1 thread).
        ft = df and first(res["fault"], transport=tr, threads=df.get("threads"))
        ft = ft or first(res["fault"], transport=tr, threads=1)
        if not ft and not df:
            continue
        target("rdmig fault p50 during the drain / without the drain",
               ratio(df and df.get("fault_p50_us"), ft and ft.get("p50_us")), "<=", 1.5,
               "fault figure with or without the drain missing",
               "%s, fault lane, %s drain with %s faulting threads; no drain: %s thread(s)"
               % (tr.upper(), df["size"] if df else "?", df["threads"] if df else "?",
                  ft["threads"] if ft else "?"), tr)
    dfr = first(res["drain"], transport="rdma", size_bytes=big, faults_running=True, lanes=2)
    target("rdmig drain MB/s with faults / ib_read_bw 64 KiB MB/s",
           ratio(dfr and dfr.get("drain_MBps"), bw64 and bw64.get("bw_avg_MBps")), ">=", 0.85,
           "drain with faults or ib_read_bw figure missing",
           "RDMA, fault lane, %s, %s threads faulting at random" %
           (dfr["size"] if dfr else "?", dfr["threads"] if dfr else "?"), "rdma")
    target("rdmig drain MB/s / ib_read_bw 64 KiB MB/s",
           ratio(dr and dr.get("drain_MBps"), bw64 and bw64.get("bw_avg_MBps")), ">=", 0.9,
           "drain or ib_read_bw figure missing",
           "RDMA, %s, no faults" % (dr["size"] if dr else "?"), "rdma")
    wc = first(res["criu_fault"], mode="criu")
    for tr in ("rdma", "tcp"):
        crt = first(res["criu"], mode="rdmig", transport=tr, drain="default")
        if not crt:
            continue
        wr = first(res["criu_fault"], mode="rdmig", transport=tr, drain="default")
        none_faulted = bool(wr) and not wr.get("faults")
        why = ("the workload met no missing page: every page was in before its first touch"
               if none_faulted else "workload fault figures of rdmig or CRIU missing")
        basis = ("%s, rdmig's normal drain, rdmig-workload %s MiB, first touch after the restore"
                 % (tr.upper(), crt["size_mb"]))
        for pk, goal in (("p50_us", 0.5), ("p99_us", 1.0)):
            target("workload-seen fault %s, rdmig / CRIU lazy-pages" % pk[:3],
                   ratio(wr and wr.get(pk), wc and wc.get(pk)), "<=", goal, why, basis, tr,
                   True if none_faulted and wc else None)
        cc_ok = cc and not cc.get("not_measured")
        target("rdmig time to fully migrate / CRIU lazy-pages time",
               ratio(crt.get("all_pages_s"), cc and cc.get("all_pages_s")), "<=", 0.5,
               "CRIU series not measured: " + "; ".join(
                   x.get("not_measured", "") for x in (crt, cc) if x and x.get("not_measured"))
               if not (cc_ok and crt.get("all_pages_s")) else "",
               "%s, rdmig-workload %s MiB, restore start to every page in" % (tr.upper(), crt["size_mb"]), tr)
    if not first(res["criu"], mode="rdmig"):
        target("rdmig time to fully migrate / CRIU lazy-pages time", None, "<=", 0.5,
               "CRIU series not measured: " + meta.get("criu_skip", "not in the plan"),
               "rdmig-workload, restore start to every page in", "rdma")
    target("rdmig-source CPU, RDMA drain / TCP drain",
           ratio(cpu_r and cpu_r.get("drain_cpu_s"), cpu_t and cpu_t.get("drain_cpu_s")), "<=", 0.05,
           "source CPU figures missing (or the TCP drain used no measurable CPU)",
           "process utime+stime, %s, no faults" % (dr["size"] if dr else "?"))
    res["downtime_median"] = dt_medians(res["downtime"])
    dt_targets(res["downtime_median"], target, ratio)
    res["targets"] = targets

    with open(f"{d}/results.json", "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")

    # ---- CSVs ----
    def write_csv(name, rows, cols):
        with open(f"{d}/{name}.csv", "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(cols)
            for e in rows:
                w.writerow(["" if e.get(c) is None else e.get(c) for c in cols])

    write_csv("perftest_lat", res["perftest"]["read_lat"],
              ["size", "iters", "t_min_us", "t_typical_us", "t_avg_us", "p99_us", "p999_us", "t_max_us", "status"])
    write_csv("perftest_bw", res["perftest"]["read_bw"],
              ["size", "iters", "bw_avg_MiBps", "bw_avg_MBps", "bw_peak_MiBps", "msg_rate_Mpps", "status"])
    write_csv("fault", res["fault"],
              ["transport", "size", "threads", "samples", "min_us", "p50_us", "p90_us", "p99_us", "p999_us",
               "max_us", "mean_us", "faults_per_s", "time_ms", "status"])
    write_csv("fault_ab", res["fault_ab"],
              ["variant", "trace", "transport", "size", "threads", "lazy_faults", "samples", "p50_us", "p90_us",
               "p99_us", "mean_us", "syscalls_per_fault", "status"])
    write_csv("drain", res["drain"],
              ["transport", "size", "size_bytes", "faults_running", "threads", "lanes", "time_ms", "bytes",
               "drain_MBps", "migrate_MBps", "drain", "fault", "fault_p50_us", "fault_p99_us", "lane_reads",
               "drain_shrinks", "drain_grows", "drain_qps_asked", "drain_qps", "drain_floor", "wall_ms", "status"])
    write_csv("source_cpu", res["source_cpu"],
              ["transport", "size", "faults_running", "drain_cpu_s", "drain_wall_s", "drain_cpu_pct",
               "host_busy_pct", "total_cpu_s"])
    write_csv("criu", res["criu"],
              ["mode", "transport", "size_mb", "threads", "dump_s", "images_ready_s", "restore_s", "all_pages_s",
               "status", "not_measured", "caveat", "drain"])
    write_csv("criu_fault", res["criu_fault"],
              ["mode", "transport", "size_mb", "threads", "pages", "resident", "faults", "min_us", "p50_us",
               "p90_us", "p99_us", "p999_us", "max_us", "mean_us", "samples", "status", "drain"])
    write_csv("downtime", res["downtime"],
              ["name", "mode", "flow", "delay_us", "criu_level", "size_mb", "downtime_s", "dump_s", "handover_s", "restore_s",
               "source_prep_s", "receive_s", "criu_restore_s", "faults", "workload_faults", "all_pages_s", "pages_local",
               "status", "not_measured", "rep"])
    write_csv("downtime_median", res["downtime_median"],
              ["name", "mode", "flow", "size_mb", "runs", "runs_failed", "downtime_s", "downtime_min_s", "downtime_max_s",
               "dump_s", "handover_s", "restore_s", "source_prep_s", "receive_s", "criu_restore_s", "faults",
               "workload_faults", "all_pages_s", "pages_local", "not_measured"])
    write_csv("targets", targets, ["name", "transport", "ratio", "op", "goal", "met", "basis", "note"])

    # ---- markdown ----
    def fmt(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    md = []
    g = meta.get("guests", {})
    gk = next(iter(g.values()), {}).get("kernel", "?") if g else "?"
    md.append(f"rdmig benchmark {meta.get('date', '?')}: {meta.get('mode', '?')} ({meta.get('profile', '?')}), "
              f"commit {meta.get('commit', '?')[:12]}{' (dirty)' if meta.get('dirty') else ''}, "
              f"host {meta.get('host_kernel', '?')} ({meta.get('host_ncpu', '?')} CPUs, load {meta.get('load_start', '?')}), "
              f"guest kernel {gk}")
    md.append("")
    if lat or res["perftest"]["read_bw"]:
        md.append("| transport limit (perftest) | value |")
        md.append("|---|---|")
    if lat:
        md.append(f"| ib_read_lat 4 KiB typical / p99 / p99.9 (us) | {fmt(lat.get('t_typical_us'))} / "
                  f"{fmt(lat.get('p99_us'))} / {fmt(lat.get('p999_us'))} |")
    for b in res["perftest"]["read_bw"]:
        md.append(f"| ib_read_bw {b['size'] // 1024} KiB (MB/s) | {fmt(b.get('bw_avg_MBps'))} |")
    if lat or res["perftest"]["read_bw"]:
        md.append("")
    md.append("| fault latency (us) | transport | threads | faults | min | p50 | p90 | p99 | p99.9 | max |")
    md.append("|---|---|---|---|---|---|---|---|---|---|")
    for e in res["fault"]:
        md.append(f"| {e['size']} image, random | {e['transport']} | {e['threads']} | {fmt(e.get('samples'))} | "
                  + " | ".join(fmt(e.get(k)) for k in ("min_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us"))
                  + " |")
    md.append("")
    if res["fault_ab"]:
        md.append("| fault path before/after (us; RDMA, 1 thread, no drain) | variant | trace | faults "
                  "| p50 | p90 | p99 | syscalls per fault |")
        md.append("|---|---|---|---|---|---|---|---|")
        for e in res["fault_ab"]:
            lat_ok = not e.get("trace")
            md.append(f"| {e['size']} image, random | {e['variant']} | {e.get('trace') or '-'} | "
                      f"{fmt(e.get('lazy_faults'))} | "
                      + " | ".join(fmt(e.get(k)) if lat_ok else "-" for k in ("p50_us", "p90_us", "p99_us"))
                      + f" | {fmt(e.get('syscalls_per_fault'))} |")
        for v in ("before", "after"):
            st = next((e for e in res["fault_ab"] if e["variant"] == v and e.get("per_fault")), None)
            if st:
                md.append("")
                md.append(f"- {v}, syscalls per lazy fault: "
                          + ", ".join(f"{k} {fmt(x)}" for k, x in st["per_fault"].items()))
        md.append("")
    md.append("| drain | transport | faults running | lanes | drain QPs | time to fully migrate (ms) "
              "| drain MB/s | fault p50 / p99 during the drain (us) | source CPU in drain (s) |")
    md.append("|---|---|---|---|---|---|---|---|---|")
    for e in res["drain"]:
        c = first(res["source_cpu"], transport=e["transport"], size=e["size"], faults_running=e["faults_running"])
        if e["transport"] == "rdma":
            lanes = {2: "2 (fault lane QP)", 1: "1 (shared QP)"}.get(e.get("lanes"), "-")
        else:
            lanes = {2: "2 (fault connection)", 1: "1 (one stream)"}.get(e.get("lanes"), "-")
        if e.get("drain_floor") is not None:
            lanes += f", --drain-floor {e['drain_floor']}"
        flat = (f"{fmt(e.get('fault_p50_us'))} / {fmt(e.get('fault_p99_us'))}"
                if e["faults_running"] else "-")
        md.append(f"| {e['size']} | {e['transport']} | {'yes (%d threads)' % e['threads'] if e['faults_running'] else 'no'} | "
                  f"{lanes} | {fmt(e.get('drain_qps'))} | {fmt(e.get('time_ms'))} | {fmt(e.get('drain_MBps'))} | {flat} | "
                  f"{fmt(c and c.get('drain_cpu_s'))} |")
    md.append("")
    if res["criu"]:
        md.append("| workload migration | transport | MiB | time to fully migrate (s) | restore (s) |")
        md.append("|---|---|---|---|---|")
        for e in res["criu"]:
            name = criu_name(e)
            if e.get("not_measured"):
                md.append(f"| {name} | {e['transport']} | {e['size_mb']} | not measured: {e['not_measured']} | - |")
            else:
                md.append(f"| {name} | {e['transport']} | {e['size_mb']} | {fmt(e.get('all_pages_s'))}"
                          f"{' (caveat: ' + e['caveat'] + ')' if e.get('caveat') else ''} | "
                          f"{fmt(e.get('restore_s'))} |")
        md.append("")
    if res["criu_fault"]:
        md.append("| fault latency as seen by the workload (us) | transport | MiB | pages touched | faults "
                  "| min | p50 | p90 | p99 | max |")
        md.append("|---|---|---|---|---|---|---|---|---|---|")
        for e in res["criu_fault"]:
            md.append(f"| {criu_name(e)} | {e['transport']} | {e['size_mb']} | {fmt(e.get('pages'))} | "
                      f"{fmt(e.get('faults'))} | "
                      + " | ".join(fmt(e.get(k)) for k in ("min_us", "p50_us", "p90_us", "p99_us", "max_us")) + " |")
        md.append("")
        md.append("First touch of every page after the restore, by whichever of the workload's threads came "
                  "first; a fault is a page mincore() called missing just before the touch.")
        md.append("")
        for e in res["criu_fault"]:
            if not e.get("faults"):
                md.append(f"- {criu_name(e)}, {e['transport']}: no page was missing at the workload's first "
                          f"touch (all {e.get('pages')} already in).")
        wc = first(res["criu_fault"], mode="criu")
        for wr in res["criu_fault"]:
            if wr["mode"] == "rdmig" and wc and wr.get("p50_us") and wc.get("p50_us"):
                md.append(f"- Workload-seen fault latency, {criu_name(wr)} over {wr['transport'].upper()} / CRIU "
                          f"lazy-pages: p50 {fmt(ratio(wr['p50_us'], wc['p50_us']))}, "
                          f"p99 {fmt(ratio(wr.get('p99_us'), wc.get('p99_us')))}.")
        md.append("")
    if res["downtime"]:
        reps = max(e["rep"] for e in res["downtime"])
        md.append("| downtime (s) | MiB | downtime | dump | handover | restore (to running) | "
                  "faults after the resume | freeze to every page in |")
        md.append("|---|---|---|---|---|---|---|---|")
        for e in res["downtime_median"]:
            if not e.get("runs"):
                md.append(f"| {e['name']} | {e['size_mb']} | not measured: {e['not_measured']} | - | - | - | - | - |")
                continue
            spread = ""
            if reps > 1:
                spread = (f" ({fmt(e['downtime_min_s'])}-{fmt(e['downtime_max_s'])}, {e['runs']} of "
                          f"{e['runs'] + e['runs_failed']} runs)")
            md.append(f"| {e['name']} | {e['size_mb']} | {fmt(e.get('downtime_s'))}{spread} | "
                      + " | ".join(fmt(e.get(k)) for k in ("dump_s", "handover_s", "restore_s"))
                      + f" | {fmt(e.get('workload_faults'))}"
                      + (f" ({fmt(e.get('faults'))} userfaultfd)" if e["mode"] == "rdmig" else "")
                      + (f"; {fmt(e.get('pages_local'))} pages from the rounds' copies"
                         if e.get("pages_local") is not None else "")
                      + f" | {fmt(e.get('all_pages_s'))} |")
        md.append("")
        md.append("Dump: freeze to the dump's end (CRIU lazy: its page server up); handover: images to the "
                  "destination and its restore started; restore: to the restored workload running (rdmig: "
                  "the restorer's FIN). Faults: pages the workload found missing (mincore) at its first touch "
                  "after the resume; for rdmig also the destination's userfaultfd faults (read-ahead "
                  "makes one fault bring 16 pages). Every row's workload rewrites the same share of its memory per "
                  "second (bench/run --downtime-rate; its --delay-us in downtime.csv)."
                  + (f" Each row is the median of its runs (bench/run --downtime-repeat {reps}: the whole "
                     "matrix once per round; every run in downtime.csv), the downtime's range and the runs "
                     "measured in brackets; the targets are judged on the medians." if reps > 1 else ""))
        md.append("")
    for nm in res["not_measured"]:
        md.append(f"Not measured: {nm['series']}: {nm['reason']}.")
    md.append("")
    md.append("| target | ratio | goal | met |")
    md.append("|---|---|---|---|")
    for t in targets:
        met = "not measured" if t["met"] is None else "yes" if t["met"] else "**no**"
        if t["met"] and t["ratio"] is None:
            met = f"yes ({t['note']})"
        md.append(f"| {t['name']} ({t['basis']}) | {fmt(t['ratio'])} | {t['op']} {t['goal']} | {met} |")
    with open(f"{d}/summary.md", "w") as f:
        f.write("\n".join(md) + "\n")

    plots(d, res, samples, lat, bw64, wsamples)


DT_FLOWS = {"plain": "", "early": ", rdmig-source --early", "noearly": ", rdmig-source --no-early", "lazy": ", --lazy-dump", "lazyearly": ", --lazy-dump, rdmig-source --early", "lazynoearly": ", --lazy-dump, rdmig-source --no-early", "precopy2": ", --precopy 2", "precopy2noearly": ", --precopy 2, rdmig-source --no-early (no rounds copied ahead)", "precopy2wait": ", --precopy 2, rdmig-source --rounds-wait 30000", "precopyauto": ", --precopy auto"}


def dt_name(mode, level, flow=None):
    if mode == "criu":
        return f"CRIU lazy-pages (-v{level or 4})"
    return "rdmig agents" + DT_FLOWS.get(flow or "plain", ", " + str(flow)) + (
        f" (criu -v{level}, as before)" if level else "")


def fail_why(raw, sid):
    """Why bench/lib/guest.sh ended a downtime step early (an agent's final state), or ''."""
    why = (read(f"{raw}/{sid}.fail") or "").strip()
    return f": ended early, {why}" if why else ""


def downtime_row(raw, sid, s, st):
    """One downtime step: the freeze's parts in seconds, or why not."""
    level = s.get("level")
    flow = s.get("flow") or ("plain" if s["mode"] == "rdmig" else None)
    e = {"mode": s["mode"], "criu_level": int(level) if level else None, "size_mb": int(s["size_mb"]),
         "flow": flow, "delay_us": num(s["delay_us"]) if s.get("delay_us") else None,
         "status": st, "name": dt_name(s["mode"], level, flow), "rep": int(s.get("rep", 1))}
    out = read(f"{raw}/{sid}.out") or ""
    wl, _ = workload_latency(out, read(f"{raw}/{sid}.wlat"))
    e["workload_faults"] = wl["faults"] if wl else None
    if s["mode"] == "criu":
        m = re.search(r"times: (.*)", out)
        t = {}
        for kv in (m.group(1).split() if m else []):
            if "=" in kv:
                k, v = kv.split("=", 1)
                t[k] = num(v)
        if st != 0 or t.get("restore") is None:
            e["not_measured"] = "criu-migrate.sh failed (status %s)%s" % (st, fail_why(raw, sid))
            return e
        e.update(dump_s=t["dump"], handover_s=t["handover"], restore_s=t["restore"],
                 criu_restore_s=t["restore"], faults=e["workload_faults"])
        # From the freeze, as rdmig's total_ms (its all_pages counts from the restore).
        if t.get("all_pages") is not None:
            e["all_pages_s"] = round(t["dump"] + t["handover"] + t["all_pages"], 2)
        e["downtime_s"] = round(t["dump"] + t["handover"] + t["restore"], 2)
        return e
    src = read(f"{raw}/{sid}.source") or ""
    js = [x.split("handover: json: ", 1)[1] for x in src.splitlines() if "handover: json: " in x]
    try:
        j = json.loads(js[-1]) if js else None
    except ValueError:
        j = None
    sst = (read(f"{raw}/{sid}.src_status") or "").strip()
    tm = (j or {}).get("times") or {}
    need = ("freeze_ms", "handover_ms", "received_ms", "resumed_ms", "downtime_ms")
    if st != 0 or sst != "0" or any(not isinstance(tm.get(k), int) for k in need):
        e["not_measured"] = "migration failed (dest status %s, source status %s)%s%s" % (
            st, sst or "?", "" if j else ", no status JSON", fail_why(raw, sid))
        return e
    ms = lambda v: None if v is None else round(v / 1000, 2)
    e.update(downtime_s=ms(tm["downtime_ms"]), dump_s=ms(tm["freeze_ms"]),
             handover_s=ms(tm["handover_ms"] - tm["freeze_ms"] + tm["received_ms"]),
             restore_s=ms(tm["resumed_ms"] - tm["received_ms"]), criu_restore_s=ms(tm.get("restore_ms")),
             # The handover's two halves: the source's (mapping, checksums, the POST), the destination's.
             source_prep_s=ms(tm["handover_ms"] - tm["freeze_ms"]), receive_s=ms(tm["received_ms"]),
             faults=(j.get("progress") or {}).get("faults"), all_pages_s=ms(tm.get("total_ms")))
    # The destination's own JSON: pages read from its copies of the rounds (FEAT_ROUNDS).
    djs = [x.split("handover: dest json: ", 1)[1] for x in out.splitlines() if "handover: dest json: " in x]
    try:
        dj = json.loads(djs[-1]) if djs else None
    except ValueError:
        dj = None
    e["pages_local"] = ((dj or {}).get("progress") or {}).get("pages_local")
    return e


DT_PARTS = ("downtime_s", "dump_s", "handover_s", "restore_s", "source_prep_s", "receive_s",
            "criu_restore_s", "faults", "workload_faults", "all_pages_s", "pages_local")


def dt_medians(rows):
    """Each downtime row (flow and size) over its repeats (bench/run --downtime-repeat): the
    median of every part, the number of runs measured, and the downtime's spread.  A row with
    no run measured keeps the last run's reason."""
    groups = {}
    for e in rows:
        groups.setdefault((e["name"], e["size_mb"]), []).append(e)
    out = []
    for (name, mb), rs in groups.items():
        ok = [e for e in rs if not e.get("not_measured")]
        if not ok:
            m = dict(rs[-1])
            m["runs"], m["runs_failed"] = 0, len(rs)
            out.append(m)
            continue
        m = {k: v for k, v in ok[0].items() if k not in DT_PARTS and k != "rep"}
        for k in DT_PARTS:
            vals = [e[k] for e in ok if e.get(k) is not None]
            if not vals:
                m[k] = None
            elif all(isinstance(v, int) for v in vals):
                m[k] = statistics.median_low(vals)  # a count stays a count
            else:
                m[k] = round(statistics.median(vals), 2)
        d = [e["downtime_s"] for e in ok]
        m.update(runs=len(ok), runs_failed=len(rs) - len(ok), downtime_min_s=min(d), downtime_max_s=max(d))
        out.append(m)
    return out


def dt_targets(rows, target, ratio):
    """The downtime targets of issue 10, from the largest and smallest sizes measured."""
    ok = [e for e in rows if not e.get("not_measured")]
    crit = [e for e in ok if e["mode"] == "criu"]
    rd = [e for e in ok if e["mode"] == "rdmig"]
    big = max((e["size_mb"] for e in crit), default=None)
    cbig = next((e for e in crit if e["size_mb"] == big), None)
    best = min((e for e in rd if e["size_mb"] == big), key=lambda e: e["downtime_s"], default=None)
    # The flow with the shortest freeze at the largest size, at every size.
    now = [e for e in rd if best and e["name"] == best["name"]]
    nbig = best
    sizes = sorted(e["size_mb"] for e in now)
    lo = next((e for e in now if sizes and e["size_mb"] == sizes[0]), None)
    hi = next((e for e in now if sizes and e["size_mb"] == sizes[-1]), None)
    pre = next((e for e in rd if e["size_mb"] == big and e.get("flow") == "precopy2"), None)
    miss = "downtime series not measured (or a migration failed)"
    target("rdmig downtime (best) / CRIU lazy-pages downtime",
           ratio(best and best["downtime_s"], cbig and cbig["downtime_s"]), "<=", 0.8, miss,
           "freeze to running, %s MiB, %s" % (big or "?", best["name"] if best else "?"))
    target("rdmig downtime, largest / smallest workload",
           ratio(hi and hi["downtime_s"], lo and lo["downtime_s"]) if hi is not lo else None, "<=", 1.25, miss,
           "%s MiB / %s MiB, %s" % (sizes[-1] if sizes else "?", sizes[0] if sizes else "?",
                                     best["name"] if best else "?"))
    target("rdmig restore / CRIU lazy-pages restore",
           ratio(nbig and nbig["restore_s"], cbig and cbig["restore_s"]), "<=", 1.2, miss,
           "restore start to running, %s MiB, %s" % (big or "?", best["name"] if best else "?"))
    target("rdmig --precopy 2 faults after the resume / CRIU lazy-pages'",
           ratio(pre and pre.get("workload_faults"), cbig and cbig.get("workload_faults")), "<=", 0.1,
           "pre-copy or CRIU series not measured (or no fault counted)",
           "pages the workload found missing at its first touch, %s MiB, workload rewriting "
           "about the bench's --downtime-rate of its memory per second" % (big or "?"))
    target("rdmig time to migrate fully / CRIU lazy-pages'",
           ratio(nbig and nbig.get("all_pages_s"), cbig and cbig.get("all_pages_s")), "<=", 0.5, miss,
           "freeze to every page in, %s MiB, %s" % (big or "?", best["name"] if best else "?"))


def criu_name(e):
    if e["mode"] == "criu":
        return "CRIU lazy-pages"
    return "rdmig + criu restore" + (", drain slowed" if e.get("drain") == "slow" else "")


def cdf_file(fn, v):
    """At most 400 points of the CDF of v (sorted ns) in us."""
    n = len(v)
    step = max(1, n // 400)
    with open(fn, "w") as f:
        for i in list(range(0, n, step)) + [n - 1]:
            f.write(f"{v[i] / 1000:.2f} {(i + 1) / n:.5f}\n")


def line_plot(png, title, axes, lines, empty):
    """gnuplot commands for one plot of lines, or of the note empty without any."""
    body = ("plot " + ", ".join(lines) + "\n") if lines else empty + "plot 2 notitle\n"
    return (f"set output '{png}'\nset title '{title}'\nunset arrow\nunset label\n" + axes
            + "set xtics autofreq font ',10'\nset grid\n" + body)


def plots(d, res, samples, lat, bw64, wsamples):
    pd = f"{d}/plot"
    os.makedirs(pd, exist_ok=True)
    term = "reset\nset terminal pngcairo size 800,480 font ',10'\n"
    # Latency CDF: at most 400 points per series.
    cdf_plots = []
    for (tr, th), v in sorted(samples.items()):
        if not v:
            continue
        fn = f"{pd}/cdf_{tr}_{th}.dat"
        n = len(v)
        step = max(1, n // 400)
        with open(fn, "w") as f:
            for i in list(range(0, n, step)) + [n - 1]:
                f.write(f"{v[i] / 1000:.2f} {(i + 1) / n:.5f}\n")
        cdf_plots.append(f"'{fn}' using 1:2 with lines lw 2 title 'rdmig {tr}, {th} thread{'s' if th > 1 else ''}'")
    lows = [v[0] / 1000 for v in samples.values() if v]
    extra = ""
    if lat and lat.get("t_typical_us"):
        lows.append(lat["t_typical_us"])
    if lows:
        extra = f"set xrange [{min(lows) * 0.7:.3g}:*]\n"
    if lat and lat.get("t_typical_us"):
        extra += f"set arrow from {lat['t_typical_us']},0 to {lat['t_typical_us']},1 nohead dt 2 lw 2\n" \
                f"set label 'ib\\_read\\_lat typical' at {lat['t_typical_us']},0.05 rotate left offset -1,0\n"
    if not cdf_plots:
        cdf_plots = ["2 notitle"]
        extra += "set label 'no fault samples' at graph 0.4,0.5\nset xrange [1:1000]\n"
    gp = (term + f"set output '{d}/latency_cdf.png'\nset title 'rdmig single-page fault latency (random, read-ahead 1)'\n"
          "set logscale x\nset xlabel 'latency (us)'\nset ylabel 'fraction of faults'\nset yrange [0:1]\n"
          "set key bottom right\nset grid\n" + extra + "plot " + ", ".join(cdf_plots) + "\n")
    # Throughput against size.
    tp = []
    for tr in ("rdma", "tcp", "tls"):
        for fr in (False, True):
            rows = sorted((e["size_bytes"] / MIB, e["drain_MBps"]) for e in res["drain"]
                          if e["transport"] == tr and e["faults_running"] == fr and e.get("drain_MBps"))
            if rows:
                fn = f"{pd}/tput_{tr}_{int(fr)}.dat"
                with open(fn, "w") as f:
                    f.writelines(f"{a:g} {b}\n" for a, b in rows)
                tp.append(f"'{fn}' using 1:2 with linespoints lw 2 title 'rdmig {tr}{', faults running' if fr else ''}'")
    extra = ""
    if bw64 and bw64.get("bw_avg_MBps"):
        tp.append(f"{bw64['bw_avg_MBps']} with lines dt 2 lw 2 title 'ib\\_read\\_bw 64 KiB'")
    if not tp:
        tp = ["2 notitle"]
        extra = "set label 'no drain figures' at graph 0.4,0.5\nset xrange [1:256]\nset yrange [0:1]\n"
    gp += (term + f"set output '{d}/throughput.png'\nset title 'rdmig drain throughput against image size'\n"
           "unset arrow\nunset label\nset logscale x 2\nset xlabel 'image size (MiB)'\nset ylabel 'MB/s'\n"
           "set yrange [0:*]\nset key bottom right\nset grid\n" + extra + "plot " + ", ".join(tp) + "\n")
    # RDMA against TCP against CRIU: time to fully migrate.
    bars = []
    for e in sorted(res["drain"], key=lambda e: (e["size_bytes"], e["transport"])):
        if not e["faults_running"] and e.get("time_ms"):
            bars.append((f"{e['transport'].upper()}\\n{e['size']}", e["time_ms"] / 1000, 1 if e["transport"] == "rdma" else 2))
    for e in res["criu"]:
        if e.get("all_pages_s") is not None:
            name = "CRIU\\nlazy-pages" if e["mode"] == "criu" else f"rdmig {e['transport'].upper()}\\n+CRIU" + (
                " slow" if e.get("drain") == "slow" else "")
            bars.append((f"{name} {e['size_mb']}M", e["all_pages_s"], 3 if e["mode"] == "criu" else 4))
    fn = f"{pd}/compare.dat"
    with open(fn, "w") as f:
        for i, (lab, v, c) in enumerate(bars):
            f.write(f'{i} {v} {c} "{lab}"\n')
    title = "time to fully migrate: RDMA, TCP" + (", CRIU" if any(e.get("all_pages_s") is not None
                                                                   for e in res["criu"]) else " (CRIU not measured)")
    body = f"plot '{fn}' using 1:2:3:xticlabels(4) with boxes lc variable notitle\n" if bars else \
        "set label 'no figures' at graph 0.4,0.5\nset xrange [0:1]\nset yrange [0:1]\nplot 2 notitle\n"
    gp += (term + f"set output '{d}/compare.png'\nset title '{title}'\nunset arrow\nunset label\nunset logscale\n"
           "set xlabel ''\nset ylabel 'seconds'\nset yrange [0:*]\nset xrange [-0.6:*]\nset style fill solid 0.7\n"
           "set boxwidth 0.6\nset grid ytics\nset xtics font ',8'\n" + body)
    # Scaling with faulting threads.
    sc = []
    for tr in ("rdma", "tcp", "tls"):
        rows = sorted((e["threads"], e.get("p50_us"), e.get("p99_us")) for e in res["fault"]
                      if e["transport"] == tr and e.get("p50_us") is not None)
        if rows:
            fn = f"{pd}/threads_{tr}.dat"
            with open(fn, "w") as f:
                f.writelines(f"{a} {b} {c}\n" for a, b, c in rows)
            sc.append(f"'{fn}' using 1:2 with linespoints lw 2 title '{tr} p50'")
            sc.append(f"'{fn}' using 1:3 with linespoints dt 2 lw 2 title '{tr} p99'")
    body = ("plot " + ", ".join(sc) + "\n") if sc else "set label 'no figures' at graph 0.4,0.5\nset xrange [0:1]\nset yrange [0:1]\nplot 2 notitle\n"
    gp += (term + f"set output '{d}/threads.png'\nset title 'fault latency against faulting threads'\nunset label\n"
           "set xlabel 'threads'\nset ylabel 'latency (us)'\nset xrange [0.5:*]\nset xtics 1 font ',10'\n"
           "set yrange [0:*]\nset key top left\nset grid\n" + body)
    # The workload's own view: rdmig against CRIU lazy-pages.
    wp = []
    for (mode, tr, drain), v in sorted(wsamples.items()):
        fn = f"{pd}/wcdf_{mode}_{tr}_{drain}.dat"
        cdf_file(fn, v)
        name = criu_name({"mode": mode, "drain": drain}) + ("" if mode == "criu" else f", {tr}")
        wp.append(f"'{fn}' using 1:2 with lines lw 2 title '{name}'")
    gp += term + line_plot(f"{d}/workload_latency_cdf.png",
                           "fault latency as seen by the workload (first touch after restore)",
                           "set logscale x\nset xlabel 'latency (us)'\nset ylabel 'fraction of faults'\n"
                           "set xrange [*:*]\nset yrange [0:1]\nset key bottom right\n", wp,
                           "set label 'no samples (CRIU not measured)' at graph 0.3,0.5\nset xrange [1:1000]\n")
    # The downtime against the workload's size, one line per flow.
    dl = []
    for name in dict.fromkeys(e["name"] for e in res["downtime_median"]):
        rows = sorted((e["size_mb"], e["downtime_s"]) for e in res["downtime_median"]
                      if e["name"] == name and e.get("downtime_s") is not None)
        if rows:
            fn = f"{pd}/downtime_{len(dl)}.dat"
            with open(fn, "w") as f:
                f.writelines(f"{a} {b}\n" for a, b in rows)
            dl.append(f"'{fn}' using 1:2 with linespoints lw 2 title '{name}'")
    gp += term + line_plot(f"{d}/downtime.png",
                           "downtime (freeze to running on the destination) against memory size",
                           "unset logscale\nset xlabel 'workload memory (MiB)'\nset ylabel 'seconds'\n"
                           "set xrange [0:*]\nset yrange [0:*]\nset key top left\n", dl,
                           "set label 'no figures (downtime not measured)' at graph 0.3,0.5\n"
                           "set xrange [0:1]\nset yrange [0:1]\n")
    with open(f"{pd}/plots.gp", "w") as f:
        f.write(gp)
    p = subprocess.run(["gnuplot", f"{pd}/plots.gp"], capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write("bench: gnuplot failed: %s\n" % p.stderr.strip())
        sys.exit(1)


if __name__ == "__main__":
    main()
