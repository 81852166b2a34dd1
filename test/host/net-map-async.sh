#!/bin/bash
# rdmig-source maps and checksums an API migration's images on its offload
# thread, not in its event loop.  A 256 MiB image set in tmpfs, with
# --verify (range and page checksums) and --test-map-delay 2000 so the
# mapping lasts long enough to watch: the POST answers at once (pending),
# GET /v1/health keeps answering within 0.5 s the whole time, and only
# then is the migration serving.  A destination that connects meanwhile is
# refused; an abort meanwhile is final at once and the job's result is
# dropped when it comes back.  A pid dumped by the agent stays dumping
# until its images are mapped, and can be rolled back meanwhile.  A
# missing images_dir is refused at once (400), an unusable one fails the
# migration.  SIGTERM while a job runs: the agent stops at once, exit 0.
# Binaries: RDMIG_CTL besides netlib.sh's.
. "$(dirname "$0")/netlib.sh"
: "${RDMIG_CTL:?}"
plan 20

# tmpfs when there is one: the mapping then costs CPU, not disk reads.
shm=$(mktemp -d /dev/shm/rdmig-map.XXXXXX 2>/dev/null) || shm=$(mktemp -d "$T/shm.XXXXXX")
trap 'rm -rf "$shm"; net_cleanup' EXIT
mkimage "$shm/big" --size 256M
secret "$T/secret"
mkdir "$shm/empty" "$T/dst"
fake_criu=$(cd "$(dirname "$0")" && pwd)/fake-criu.sh
sock=$T/run/source.sock
CTL=("$RDMIG_CTL" --socket "$sock")

# post ID JSON-FIELDS: POST /v1/migrations; prints "HTTP_CODE SECONDS", the body goes to $T/ID.post.
post() {
	curl -s -o "$T/$1.post" -w '%{http_code} %{time_total}\n' --max-time 5 \
		--unix-socket "$sock" -X POST -H 'Content-Type: application/json' \
		-d "{\"id\":\"$1\",\"secret_file\":\"$T/secret\",$2}" http://localhost/v1/migrations
}
# fast SECONDS LIMIT: SECONDS < LIMIT.
fast() { awk -v s="$1" -v l="$2" 'BEGIN { exit !(s < l) }'; }
# poll_health OUT: GET /v1/health every 50 ms, 0.5 s allowed each, until $T/stop exists.
poll_health() {
	while [ ! -e "$T/stop" ]; do
		curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 0.5 \
			--unix-socket "$sock" http://localhost/v1/health
		sleep 0.05
	done >"$1"
}

start_source "$T/source.log" --api-socket "$sock" --verify --test-map-delay 2000 \
	--images-root "$shm" --criu "$fake_criu"
wait_log "$T/source.log" "api: serving on $sock" >/dev/null

# 1. A big image set: the API answers while it is mapped.
poll_health "$T/health.out" &
poller=$!
read -r code secs < <(post m1 "\"images_dir\":\"$shm/big\",\"transport\":\"tcp\"")
check "POST of a 256 MiB images_dir answers 202 at once (${secs} s), state pending" \
	eval "test '$code' = 202 && fast '$secs' 0.5 && grep -q '\"state\":\"pending\"' '$T/m1.post'"
s0=$(state m1)
wait_state m1 serving
s1=$(state m1)
touch "$T/stop"
wait "$poller"
check "... it is pending while its images are mapped, then serving ($s0 -> $s1)" \
	test "$s0 $s1" = "pending serving"
n=$(wc -l <"$T/health.out")
slow=$(awk '$1 != 200 || $2 >= 0.5' "$T/health.out" | wc -l)
# A loop blocked by the 2 s mapping fails every poll for 2 s: 3 or more in
# a row at 0.5 s each.  One late poll on a loaded host (ASan, guests) is no
# block.
run=$(awk '{ if ($1 != 200 || $2 >= 0.5) { r++; if (r > m) m = r } else r = 0 } END { print m + 0 }' "$T/health.out")
check "GET /v1/health answered all the while: $n polls, $slow late or failed, at most $run in a row" \
	eval "test '$n' -ge 10 && test '$run' -le 1 && test '$slow' -le 2"
map_s=$(sed -n 's/.*migration m1: .* mapped and checksummed in \([0-9.]*\) s.*/\1/p' "$T/source.log")
check "... while the mapping ran (${map_s} s, 256 MiB with page checksums)" \
	eval "test -n '$map_s' && ! fast '$map_s' 2.0 && grep -q 'migration m1: 1 task(s), 2[0-9.]* MiB of lazy pages' '$T/source.log'"
check "the source logs the hand-off to the offload thread" \
	grep -q "migration m1: mapping and checksumming $shm/big in the background" "$T/source.log"

# 2. A destination that connects while the images are mapped is refused.
read -r code _ < <(post m2 "\"images_dir\":\"$shm/big\"")
# shellcheck disable=SC2046
timeout 30 "$RDMIG_DEST" -D "$T/dst" $(net_args m2 "$T/secret") --connect-timeout 5 \
	>"$T/dest-m2.log" 2>&1
rc=$?
check "a destination connecting while m2 is mapped: refused, nothing written" \
	eval "test $rc -eq 1 && grep -q 'migration is still being mapped on the source' '$T/dest-m2.log' && no_images '$T/dst'"

# 3. Abort while mapping: final at once, the job's result dropped later.
"${CTL[@]}" abort m2 >"$T/abort-m2.out" 2>&1
rc=$?
check "abort while its images are mapped: exit 0, aborted at once" \
	eval "test $rc -eq 0 && test \"\$(state m2)\" = aborted"
sleep 2.5
check "... and it stays aborted once the job is back (no serving, no mapping kept)" \
	eval "test \"\$(state m2)\" = aborted && ! grep -q 'migration m2: serving' '$T/source.log'"

# 4. A dump by the agent: dumping until its images are mapped.
read -r code _ < <(post d1 "\"pid\":$$")
check "POST of a pid: 202, dumping" eval "test '$code' = 202 && grep -q '\"state\":\"dumping\"' '$T/d1.post'"
wait_log "$T/source.log" "migration d1: process $$ dumped to" 20 >/dev/null
s0=$(state d1)
wait_state d1 serving
check "after criu dump it stays dumping while mapped ($s0), then serving" \
	eval "test '$s0' = dumping && test \"\$(state d1)\" = serving"
read -r code _ < <(post r1 "\"pid\":$$")
wait_log "$T/source.log" "migration r1: process $$ dumped to" 20 >/dev/null
"${CTL[@]}" rollback r1 >"$T/rollback-r1.out" 2>&1
rc=$?
check "a rollback while a dump's images are mapped is accepted" test "$rc" -eq 0
check "... and rolls it back" wait_state r1 rolled_back
sleep 2.5
check "... its mapping, dropped, does not bring it back" test "$(state r1)" = rolled_back

# 5. Images that cannot be served.
read -r code _ < <(post e1 "\"images_dir\":\"$shm/no-such-dir\"")
check "a missing images_dir: 400 at once, naming it" \
	eval "test '$code' = 400 && grep -q 'images_dir $shm/no-such-dir: cannot serve these images: No such file or directory' '$T/e1.post'"
read -r code _ < <(post e2 "\"images_dir\":\"$shm/empty\"")
check "an empty images_dir: 202, then failed" \
	eval "test '$code' = 202 && wait_state e2 failed"
"${CTL[@]}" status e2 --json >"$T/e2.json" 2>&1
check "... with the reason" grep -q "\"error\": \"images_dir $shm/empty: cannot serve these images: " "$T/e2.json"
"${CTL[@]}" rollback e2 >"$T/rollback-e2.out" 2>&1
check "... and no rollback (no complete checkpoint)" \
	eval "test $? -eq 1 && grep -q 'no complete checkpoint' '$T/rollback-e2.out'"

# 6. SIGTERM while a job runs: the worker gives up at once, the agent stops.
read -r code _ < <(post m9 "\"images_dir\":\"$shm/big\"")
check "one more migration mapping (202)" test "$code" = 202
maps0=$(grep -c "$shm/big: images read and resolved" "$T/source.log")
t0=$(date +%s%N)
kill -TERM "$src_pid"
wait_pid "$src_pid" 20
ms=$((($(date +%s%N) - t0) / 1000000))
maps1=$(grep -c "$shm/big: images read and resolved" "$T/source.log")
# Not a race with the clock: the job (2 s of --test-map-delay, then the
# checksums) was given up, so it never got to read the images.
check "SIGTERM while its images are mapped: exit 0 without finishing the job ($ms ms, mappings $maps0 -> $maps1)" \
	eval "test $code -eq 0 && test $maps1 -eq $maps0"
check "every migration but the done ones is reported not completed" \
	grep -q "migration m9 not completed; its checkpoint stays in $shm/big" "$T/source.log"
[ "$tap_failed" -eq 0 ] || {
	diag_file "$T/source.log" 60
	diag_file "$T/health.out" 10
	diag_file "$T/dest-m2.log" 10
	for f in "$T"/*.post "$T"/*.out; do diag_file "$f" 5; done
}
finish
