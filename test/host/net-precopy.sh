#!/bin/bash
# Pre-copy rounds (design.md §13) with fake-criu.sh standing in for criu:
# `rdmigctl migrate --pid --precopy 2` runs two `criu pre-dump --track-mem`
# rounds into ROOT/ID/round-1..2, each after the first with
# --prev-images-dir, then `criu dump --track-mem --prev-images-dir
# round-2`; the final dump leaves half its runs in the parent images, so
# the source serves them from the rounds, and the destination, which gets
# flat images, verifies every page.  `--precopy auto` stops once a round
# writes no fewer pages than the one before (3 rounds with the fake).  The
# rounds are in the migration's JSON; a chain is rolled back with criu
# restore of the final dump; a restarted source serves the chain again;
# the refusals say why.  net-precopy-rounds.sh changes rounds under the
# agent.
. "$(dirname "$0")/netlib.sh"
: "${RDMIG_CTL:?}"
plan 17

fake=$(cd "$(dirname "$0")" && pwd)/fake-criu.sh
secret "$T/secret"
mkdir "$T/dst"
sock=$T/run/source.sock
root=$T/images/root
CTL=("$RDMIG_CTL" --socket "$sock")
export FAKE_CRIU_DELAY=0
# json_ok FILTER FILE: the JSON in FILE makes FILTER true.
json_ok() { jq -e "$1" "$2" >/dev/null; }

start_source "$T/source.log" --api-socket "$sock" --images-root "$root" --criu "$fake"
"${CTL[@]}" migrate --pid $$ --secret-file "$T/secret" --id p2 --precopy 2 >"$T/p2.out" 2>&1
check "rdmigctl migrate --pid --precopy 2 exits 0" test $? -eq 0
wait_state p2 serving
check "criu ran pre-dump twice into round-1 and round-2, then dump with round-2 as parent" \
	eval "grep -qx 'pre-dump -t $$ -D $root/p2/round-1 -v2 -o pre-dump.log --track-mem' '$root/p2/round-1/fake-criu.args' &&
	grep -qx 'pre-dump -t $$ -D $root/p2/round-2 -v2 -o pre-dump.log --track-mem --prev-images-dir ../round-1' '$root/p2/round-2/fake-criu.args' &&
	grep -qx 'dump -t $$ -D $root/p2 -v2 -o dump.log --track-mem --prev-images-dir round-2' '$root/p2/fake-criu.args'"
"${CTL[@]}" status p2 --json >"$T/p2.json" 2>&1
check "the JSON has both rounds (pages, bytes, ms, dirty rate) and the final dump's pages" \
	json_ok '.precopy.requested == 2 and (.precopy.rounds | length) == 2 and
		.precopy.rounds[0].pages > 900 and .precopy.rounds[0].bytes == 4096 * .precopy.rounds[0].pages and
		.precopy.rounds[0].dirty_pages_per_s == 0 and
		.precopy.rounds[1].pages > 0 and .precopy.rounds[1].pages < .precopy.rounds[0].pages and
		.precopy.rounds[1].dirty_pages_per_s > 0 and .precopy.rounds[1].ms >= 0 and
		.precopy.final_pages > 0 and .precopy.final_pages < .precopy.rounds[0].pages' "$T/p2.json"
check "the source serves every page of the chain: pages_total is the whole workload's" \
	json_ok '.progress.pages_total > .precopy.final_pages' "$T/p2.json"
# A restarted source maps the chain again from the images dir and its record.
kill -KILL "$src_pid"
wait "$src_pid" 2>/dev/null
start_source "$T/source2.log" --api-socket "$sock" --images-root "$root" --criu "$fake"
wait_state p2 serving
check "after SIGKILL and a restart the source serves p2's chain again" \
	eval "test \"\$(state p2)\" = serving && grep -q 'rdmig-flat' '$T/source2.log'"
"${CTL[@]}" status p2 --json >"$T/p2-restarted.json" 2>&1
check "after the restart the JSON still has the requested mode, both rounds' figures and the final dump's pages, as before" \
	eval "json_ok '.precopy.requested == 2 and (.precopy.rounds | length) == 2' '$T/p2-restarted.json' &&
	test \"\$(jq -c .precopy '$T/p2-restarted.json')\" = \"\$(jq -c .precopy '$T/p2.json')\""
# shellcheck disable=SC2046
start_dest "$T/dest.log" -D "$T/dst" $(net_args p2 "$T/secret")
timeout 60 "$RDMIG_STANDIN" -D "$T/dst" --threads 2 >"$T/standin.out" 2>&1
rc=$?
wait_dest
check "a destination took p2: every page verified, rdmig-dest exits 0" \
	eval "test $rc -eq 0 && standin_ok '$T/standin.out' 1024 && test $code -eq 0"
check "the destination got flat images: no parent link, a pagemap of its own" \
	eval "test ! -e '$T/dst/parent' && test -s '$T/dst/pagemap-4242.img'"
wait_state p2 done
check "p2 is done; its rounds stay inside its images dir (removed with it)" \
	eval "test \"\$(state p2)\" = done && test -d '$root/p2/round-1' && test -d '$root/p2/round-2'"

"${CTL[@]}" migrate --pid $$ --secret-file "$T/secret" --id pa --precopy auto >/dev/null 2>&1
wait_state pa serving
"${CTL[@]}" status pa --json >"$T/pa.json" 2>&1
check "--precopy auto: 3 rounds (the third wrote as many pages as the second), requested \"auto\"" \
	json_ok '.precopy.requested == "auto" and (.precopy.rounds | length) == 3 and
		.precopy.rounds[2].pages == .precopy.rounds[1].pages' "$T/pa.json"
"${CTL[@]}" status pa >"$T/pa.txt" 2>&1
check "rdmigctl status prints the rounds" \
	eval "grep -q '^  round 3: ' '$T/pa.txt' && grep -q '^  final dump: ' '$T/pa.txt'"
"${CTL[@]}" rollback pa >"$T/pa-rb.out" 2>&1
wait_state pa rolled_back
check "a chain rolls back: criu restore of the final dump (it follows the parent link)" \
	eval "test \"\$(state pa)\" = rolled_back && grep -qx 'restore -D $root/pa -d -v2 -o restore-rollback.log' '$root/pa/fake-criu.args'"

"${CTL[@]}" migrate --pid $$ --secret-file "$T/secret" --precopy 9 >"$T/bad1.out" 2>&1
check "--precopy 9 is refused, saying the range" \
	eval "test $? -ne 0 && grep -q 'precopy is 0..8 or auto' '$T/bad1.out'"
"${CTL[@]}" migrate --pid $$ --secret-file "$T/secret" --precopy 1 --lazy-dump >"$T/bad2.out" 2>&1
check "--precopy with --lazy-dump is refused, saying why" \
	eval "test $? -ne 0 && grep -q 'do not go together' '$T/bad2.out'"
# post_start BODY OUT: POST /v1/migrations; the answer in OUT, its status on stdout.
post_start() {
	curl -s -o "$2" -w '%{http_code}' --unix-socket "$sock" -X POST \
		-H 'Content-Type: application/json' -d "$1" http://localhost/v1/migrations
}
code=$(post_start "{\"pid\":$$,\"secret_file\":\"$T/secret\",\"precopy\":1,\"lazy_dump\":true}" "$T/bad3.json")
check "the API refuses precopy with lazy_dump (400, why)" \
	eval "test '$code' = 400 && grep -q 'cannot go with' '$T/bad3.json'"
code=$(post_start "{\"pid\":$$,\"secret_file\":\"$T/secret\",\"precopy\":\"some\"}" "$T/bad4.json")
check "the API refuses a precopy that is neither 0..8 nor \"auto\" (400)" \
	eval "test '$code' = 400 && grep -q 'from 0 to 8' '$T/bad4.json'"

kill -TERM "$src_pid"
wait_pid "$src_pid" 20
check "rdmig-source stops on SIGTERM (exit 0)" test "$code" -eq 0

[ "$tap_failed" -eq 0 ] || {
	diag_file "$T/source.log"
	diag_file "$T/source2.log"
	diag_file "$T/dest.log"
	for f in "$T"/*.out "$T"/*.json; do diag_file "$f" 5; done
}
finish
