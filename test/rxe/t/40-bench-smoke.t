#!/bin/bash
# The benchmark harness's smoke: `bench/run --smoke` (one guest, tiny
# sizes, no CRIU) must produce well-formed outputs.  It checks the form,
# never the speed: results.json parses and holds every series, each CSV has
# a header and rows, the markdown table is printed, the PNGs are PNGs.  The
# CRIU series (not in the smoke) are checked offline: bench/report.py is fed
# a results directory with CRIU steps in the form criu-migrate.sh and
# rdmig-workload write them, and must yield the workload-seen fault latency
# series for rdmig and CRIU.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
tap_plan 14

mkdir -p "$top/.cache/rxe"
out=$(mktemp -d "$top/.cache/rxe/bench-smoke.XXXXXX")
trap 'rm -rf "$out"' EXIT
t=$(date +%s)
stdout=$("$top/bench/run" --smoke --out "$out/r" 2>"$out/stderr")
st=$?
tap_diag "bench/run --smoke -> status $st in $(($(date +%s) - t)) s"
[ $st = 0 ] || tap_diag "$(tail -n 20 "$out/stderr")"
tap_is "$st" 0 "bench/run --smoke succeeds"
tap_like "$(cat "$out/stderr")" '^bench\[both\]: \[[0-9]+/[0-9]+\] ' "progress is shown, one line a step"
tap_like "$stdout" '^\| fault latency \(us\) \| transport \|' "the markdown fault table is printed"
tap_like "$stdout" '^\| target \| ratio \| goal \| met \|' "the markdown target table is printed"

python3 - "$out/r/results.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
m = r["meta"]
assert m["commit"] and m["host_kernel"] and m["guests"], "meta"
assert r["perftest"]["read_lat"][0]["t_typical_us"] > 0
assert {b["size"] for b in r["perftest"]["read_bw"]} == {4096, 65536}
assert {f["transport"] for f in r["fault"]} == {"rdma", "tcp"}
for f in r["fault"]:
    assert f["samples"] > 0 and f["min_us"] <= f["p50_us"] <= f["p99_us"] <= f["p999_us"] <= f["max_us"], f
for d in r["drain"]:
    assert d["status"] == 0 and d["time_ms"] is not None and d["drain_MBps"] is not None, d
# Per transport: no faults, faults; over RDMA also faults on one queue pair (no fault lane).
assert len(r["drain"]) == 5 and len(r["source_cpu"]) == 5, (len(r["drain"]), len(r["source_cpu"]))
assert sorted(d["lanes"] or 0 for d in r["drain"] if d["transport"] == "rdma")[0] == 1, r["drain"]
assert len(r["targets"]) == 12, len(r["targets"])  # issue 11 per transport, issue 10 downtime
assert r["downtime"] == [] and any(n["series"] == "downtime" for n in r["not_measured"])
assert any(n["series"] == "criu" for n in r["not_measured"])
assert r["criu_fault"] == [], "no CRIU in the smoke"
assert sum(n["series"].startswith("fault latency as seen by the workload") for n in r["not_measured"]) == 2
PY
tap_ok $? "results.json parses and holds every series"

csvs_bad=
for c in perftest_lat perftest_bw fault drain source_cpu targets; do
	f=$out/r/$c.csv
	if [ "$(wc -l <"$f" 2>/dev/null || echo 0)" -lt 2 ] || ! head -1 "$f" | grep -qE '^[A-Za-z_0-9]+(,[A-Za-z_0-9]+)+$'; then
		csvs_bad="$csvs_bad $c"
	fi
done
tap_is "$csvs_bad" "" "every CSV has a header and rows"
head -1 "$out/r/criu.csv" 2>/dev/null | grep -q '^mode,transport,'
tap_ok $? "criu.csv has its header (no rows: CRIU is not in the smoke)"
head -1 "$out/r/criu_fault.csv" 2>/dev/null | grep -q '^mode,transport,size_mb,threads,pages,resident,faults,min_us,p50_us,'
tap_ok $? "criu_fault.csv (fault latency as seen by the workload) has its header"

# Offline: three CRIU steps as the guests write them (rdmig with its usual
# drain met no missing page, CRIU's lazy-pages and rdmig with the drain
# slowed did), then bench/report.py.
f=$out/fake
mkdir -p "$f/raw" && cp "$out/r/meta.json" "$f/" 2>/dev/null
printf '%s\n' '1 criu mode=rdmig transport=rdma size_mb=8 threads=2' \
	'2 criu mode=criu transport=tcp size_mb=8 threads=2' \
	'3 criu mode=rdmig transport=rdma size_mb=8 threads=2 drain=slow' >"$f/plan"
fake_step() { # ID SAMPLES(us) DAEMON
	local id=$1 n lat
	n=$(wc -w <<<"$2")
	echo 0 >"$f/raw/$id.status"
	for v in $2; do echo "${v}000"; done >"$f/raw/$id.wlat"
	lat="fault latency us min/p50/p90/p99/max 1.0/2.0/3.0/4.0/5.0 over $n faults, first touch of 2048 pages after restore (2000 resident, slowest resident read 3.0 us)"
	[ "$n" = 0 ] && lat="fault latency: none of 2048 pages was missing at its first touch after restore (slowest resident read 3.0 us)"
	cat >"$f/raw/$id.out" <<EOF
criu-migrate: verifying while pages still move
workload: OK verified 8 MiB, generation 1000
workload: $lat
criu-migrate: $3 exited 0
workload: OK verified 8 MiB, generation 2000
criu-migrate: times: transport=x dump=1.00 handover=0.50 restore=0.50 all_pages=$((id + 1)).00 (s; all_pages from restore start)
EOF
}
fake_step 1 "" rdmig-dest
fake_step 2 "$(seq 1000 1000 48000)" 'criu lazy-pages'
fake_step 3 "$(seq 100 100 4800)" rdmig-dest
python3 "$top/bench/report.py" "$f" >"$out/fake.log" 2>&1 && python3 - "$f" <<'PY'
import csv, json, sys
d = sys.argv[1]
r = json.load(open(d + "/results.json"))
rows = {(w["mode"], w["drain"]): w for w in r["criu_fault"]}
assert set(rows) == {("rdmig", "default"), ("criu", "default"), ("rdmig", "slow")}, rows
w = rows[("rdmig", "default")]
assert w["faults"] == 0 and w["pages"] == w["resident"] == 2048 and w["p50_us"] is None, w
for w, scale in ((rows[("rdmig", "slow")], 1), (rows[("criu", "default")], 10)):
    assert w["faults"] == w["samples"] == 48 and w["pages"] == 2048 and w["resident"] == 2000, w
    assert w["min_us"] == 100 * scale and w["max_us"] == 4800 * scale, w
    assert w["min_us"] <= w["p50_us"] <= w["p90_us"] <= w["p99_us"] <= w["p999_us"] <= w["max_us"], w
    assert w["p50_us"] == 2400 * scale, w
assert all(c["fault_latency_us"] for c in r["criu"]), r["criu"]
assert not any(n["series"].startswith("fault latency as seen") for n in r["not_measured"])
assert len(list(csv.reader(open(d + "/criu_fault.csv")))) == 4
# The time-to-migrate target compares rdmig's usual drain with CRIU.
t = next(t for t in r["targets"] if t["name"].startswith("rdmig time to fully migrate"))
assert t["ratio"] == 0.667, t
md = open(d + "/summary.md").read()
assert "| fault latency as seen by the workload (us) |" in md, md
assert "rdmig + criu restore, rdma: no page was missing" in md, md
assert "drain slowed over RDMA / CRIU lazy-pages: p50 0.1" in md, md
PY
st=$?
[ $st = 0 ] || tap_diag "$(tail -n 20 "$out/fake.log")"
tap_ok $st "report.py: CRIU steps yield the workload-seen fault latency series (JSON, CSV, table)"

for p in latency_cdf throughput compare threads workload_latency_cdf; do
	magic=$(head -c 8 "$out/r/$p.png" 2>/dev/null | od -An -tx1 | tr -d ' \n')
	tap_is "$magic" 89504e470d0a1a0a "$p.png is a PNG"
done
tap_done
