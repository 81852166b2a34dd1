#!/bin/bash
# The benchmark harness's smoke: `bench/run --smoke` (one guest, tiny
# sizes, no CRIU) must produce well-formed outputs.  It checks the form,
# never the speed: results.json parses and holds every series, each CSV has
# a header and rows, the markdown table is printed, the PNGs are PNGs.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
tap_plan 11

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
assert len(r["drain"]) == 4 and len(r["source_cpu"]) == 4
assert len(r["targets"]) == 4
assert any(n["series"] == "criu" for n in r["not_measured"])
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

for p in latency_cdf throughput compare threads; do
	magic=$(head -c 8 "$out/r/$p.png" 2>/dev/null | od -An -tx1 | tr -d ' \n')
	tap_is "$magic" 89504e470d0a1a0a "$p.png is a PNG"
done
tap_done
