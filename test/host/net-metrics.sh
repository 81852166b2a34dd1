#!/bin/bash
# GET /metrics on both agents (Prometheus text format 0.0.4): checked by
# promtool during a migration (the destination's restore held) and after
# it; the moved-bytes series equals the migration's pages x 4096 and its
# JSON; refused API requests and a peer with a wrong proof are counted; the
# TCP listener applies the same authorization as the rest of the API.  A
# real Prometheus server scrapes the destination's TCP API: it sees the
# migration in progress, then answers a query for its moved bytes.
. "$(dirname "$0")/netlib.sh"
plan 18
for t in curl promtool prometheus python3; do
	command -v $t >/dev/null || { echo "1..0 # SKIP $t not found"; exit 0; }
done

mkimage "$T/src" --size 8M
secret "$T/secret"
secret "$T/wrong"
sec64=$(base64 -w0 "$T/secret")
ssock=$T/run/source.sock
dsock=$T/run/dest.sock
cp "$(dirname "$0")/fake-criu-restore.sh" "$T/criu"
export FAKE_CRIU_HOLD=$T/release
# The fault-latency histogram counts faults the network served: each process
# faults once before FIN, when no drain runs yet, however the CPU is shared.
export FAKE_STANDIN_ARGS=--fault-before-fin

# scrape SOCKET NAME: GET /metrics into $T/NAME.prom, its status and content type to $T/NAME.hdr.
scrape() {
	curl -s -o "$T/$2.prom" -w '%{http_code} %{content_type}' --unix-socket "$1" \
		http://localhost/metrics >"$T/$2.hdr"
}
# value FILE SERIES: the value of the sample SERIES (name and labels, exactly).
value() { awk -v s="$2" '$1 == s { print $2 }' "$1"; }
# jget FILE EXPR: a value of the JSON in FILE (EXPR indexes `j`).
jget() {
	python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null
}
# promtool_ok NAME: promtool finds nothing to say about $T/NAME.prom.
promtool_ok() {
	promtool check metrics <"$T/$1.prom" >"$T/$1.lint" 2>&1 || { diag_file "$T/$1.lint"; return 1; }
}

start_source "$T/source.log" -m "m1:$T/src:$T/secret" --api-socket "$ssock"
wait_log "$T/source.log" "api: serving on" >/dev/null
"$RDMIG_DEST" --serve --api-socket "$dsock" --api-tcp 127.0.0.1:0 --insecure-api \
	--work-root "$T/root" --criu "$T/criu" -o "$T/sup.log" &
sup_pid=$!
track "$sup_pid"
wait_log "$T/sup.log" "api: serving on TCP port" >/dev/null
dport=$(sed -n 's/.*api: serving on TCP port \([0-9]*\).*/\1/p' "$T/sup.log")

# Prometheus scraping the destination agent's TCP API every second.
pport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$T/prometheus.yml" <<YML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: rdmig-dest
    static_configs:
      - targets: ["127.0.0.1:$dport"]
YML
prometheus --config.file="$T/prometheus.yml" --storage.tsdb.path="$T/tsdb" \
	--web.listen-address="127.0.0.1:$pport" >"$T/prometheus.out" 2>&1 &
track $!
# pquery EXPR: the value of the first series Prometheus answers for EXPR.
pquery() {
	curl -s "http://127.0.0.1:$pport/api/v1/query" --data-urlencode "query=$1" >"$T/pquery.json" &&
		jget "$T/pquery.json" 'j["data"]["result"][0]["value"][1]'
}
# pwait EXPR VALUE: Prometheus answers VALUE for EXPR (60 s at most: it scrapes each second).
pwait() {
	for _ in $(seq 300); do
		[ "$(pquery "$1")" = "$2" ] && return 0
		sleep 0.2
	done
	echo "# Prometheus answers '$(pquery "$1")' for $1, not $2"
	diag_file "$T/prometheus.out" 10
	return 1
}

# A destination with the wrong secret: refused at its proof.
mkdir "$T/bad"
# shellcheck disable=SC2046
timeout 20 "$RDMIG_DEST" -D "$T/bad" $(net_args m1 "$T/wrong") >"$T/bad.log" 2>&1

curl -s -o /dev/null --unix-socket "$dsock" -X POST -H 'Content-Type: application/json' \
	-d "{\"id\":\"m1\",\"source\":\"127.0.0.1:$src_port\",\"transport\":\"tcp\",\"secret\":\"base64:$sec64\"}" \
	http://localhost/v1/migrations
CTL=("$RDMIG_CTL" --socket "$dsock")
wait_state m1 restoring 30
scrape "$dsock" dest-during
scrape "$ssock" source-during
check "during: both answer 200 text/plain; version=0.0.4" \
	eval "grep -qx '200 text/plain; version=0.0.4; charset=utf-8' '$T/dest-during.hdr' &&
	      grep -qx '200 text/plain; version=0.0.4; charset=utf-8' '$T/source-during.hdr'"
check "during: promtool check metrics passes on both" \
	eval "promtool_ok dest-during && promtool_ok source-during"
check "during: the destination counts m1 as restoring" \
	test "$(value "$T/dest-during.prom" 'rdmig_migrations{state="restoring"}')" = 1
check "during: the source serves m1 and has a worker's worth of state" \
	eval "[ \"\$(value '$T/source-during.prom' 'rdmig_migrations{state=\"serving\"}')\" = 1 ] &&
	      [ \"\$(value '$T/dest-during.prom' 'rdmig_dest_workers{state=\"running\"}')\" = 1 ]"
check "the source counted the peer with the wrong proof" \
	test "$(value "$T/source-during.prom" rdmig_source_peers_unauthenticated_total)" = 1
check "Prometheus scraped the destination during the migration (m1 restoring)" \
	pwait 'rdmig_migrations{job="rdmig-dest",state="restoring"}' 1
touch "$T/release"
wait_state m1 done 30
curl -s --unix-socket "$dsock" http://localhost/v1/migrations/m1 >"$T/m1.json"
scrape "$dsock" dest-after
scrape "$ssock" source-after
total=$(jget "$T/m1.json" 'j["progress"]["pages_total"]')
bytes=$(value "$T/dest-after.prom" 'rdmig_migration_bytes_moved_total{id="m1"}')
check "after: promtool check metrics passes on both" \
	eval "promtool_ok dest-after && promtool_ok source-after"
check "after: m1 done on the destination, 1 accepted start" \
	eval "[ \"\$(value '$T/dest-after.prom' 'rdmig_migrations{state=\"done\"}')\" = 1 ] &&
	      [ \"\$(value '$T/dest-after.prom' 'rdmig_api_migration_starts_total{result=\"accepted\"}')\" = 1 ]"
check "after: bytes moved = $total pages x 4096 = the JSON's bytes ($bytes)" \
	eval "[ '$total' -gt 0 ] && [ '$bytes' = $((total * 4096)) ] &&
	      [ '$bytes' = \"\$(jget '$T/m1.json' 'j[\"progress\"][\"bytes\"]')\" ]"
check "after: pages moved = pages, none remaining" \
	eval "[ \"\$(value '$T/dest-after.prom' 'rdmig_migration_pages_moved_total{id=\"m1\"}')\" = '$total' ] &&
	      [ \"\$(value '$T/dest-after.prom' 'rdmig_migration_pages_remaining{id=\"m1\"}')\" = 0 ]"
faults=$(jget "$T/m1.json" 'j["progress"]["faults"]')
hcount=$(value "$T/dest-after.prom" 'rdmig_migration_fault_latency_seconds_count{id="m1"}')
# Only faults that waited for the network have a latency; the others
# (a page already there, a zero page) are counted as faults alone.
check "after: m1's fault-latency histogram holds $hcount of its $faults faults, all under +Inf" \
	eval "[ '$faults' -gt 0 ] && [ '${hcount:-0}' -gt 0 ] && [ '$hcount' -le '$faults' ] &&
	      [ \"\$(value '$T/dest-after.prom' 'rdmig_migration_fault_latency_seconds_bucket{id=\"m1\",le=\"+Inf\"}')\" = '$hcount' ] &&
	      awk '/^rdmig_migration_fault_latency_seconds_sum\{id=\"m1\"\} / { exit !(\$2 > 0) }' '$T/dest-after.prom'"
# m1 was started by hand on the destination: no freeze, no downtime known.
check "after: the destination's downtime histogram counts the migrations with a downtime (none)" \
	eval "[ \"\$(jget '$T/m1.json' 'j[\"times\"][\"downtime_ms\"]')\" = None ] &&
	      [ \"\$(value '$T/dest-after.prom' rdmig_downtime_seconds_count)\" = 0 ] &&
	      [ \"\$(value '$T/dest-after.prom' 'rdmig_downtime_seconds_bucket{le=\"+Inf\"}')\" = 0 ]"
check "Prometheus answers the moved bytes of m1 ($bytes)" \
	pwait 'rdmig_migration_bytes_moved_total{id="m1"}' "$bytes"
check "after: the source's m1 moved bytes too" \
	eval "[ \"\$(value '$T/source-after.prom' 'rdmig_migration_bytes_moved_total{id=\"m1\"}')\" -gt 0 ]"

# The TCP listener: the same authorization, counted.
tcp() { curl -s -o "$T/tcp.prom" -w '%{http_code}' -H "Host: $1" "http://127.0.0.1:$dport/metrics"; }
check "over TCP, a non-loopback Host header is refused (421)" test "$(tcp evil.example)" = 421
check "over TCP with a loopback Host: 200, counting that refusal" \
	eval "[ \"\$(tcp 127.0.0.1:$dport)\" = 200 ] &&
	      [ \"\$(value '$T/tcp.prom' 'rdmig_api_requests_refused_total{reason=\"host\"}')\" = 1 ]"
check "POST /metrics: 405" test "$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$dsock" \
	-X POST -H 'Content-Type: application/json' -d '{}' http://localhost/metrics)" = 405
kill -TERM "$sup_pid" "$src_pid"
wait_pid "$sup_pid"
c1=$code
wait_pid "$src_pid"
check "both agents stop on SIGTERM with status 0" test "$c1:$code" = 0:0
finish
