#!/bin/bash
# Never freeze what cannot land, and never run twice (issue 12, items 5
# and 4).  rdmig-source dumps real processes (counters in a shell loop)
# with a criu stand-in that freezes them as criu does (SIGSTOP, then
# SIGKILL once dumped, every frozen pid written down) and hands them over
# to rdmig-dest --serve, which is asked for a reservation first.
# (1) Six concurrent migrations into four slots, with --no-queue (the
# queue itself: net-queue.sh): four reserve and run to
# done, two are refused before any freeze (rdmigctl exits 1 with the
# destination's reason): never frozen, never stopped (ps state), still
# counting, no images dir.  (2) A failed dump releases its reservation at
# once.  (3) A destination whose work root has too little space refuses
# before the freeze (a 1 MiB tmpfs, where a mount is allowed).  (4) A
# reservation expires and frees its slot; one can be released (API).
# (5) An older destination agent (rdmig-fakedest: no /v1/reservations,
# 404): the migration freezes without one, with a warning.  (6) Rollback:
# refused (409) while the destination agent reports the workload running
# (postcopy), also after the source agent restarted (its record keeps the
# destination agent), refused when it is unreachable, forced with --force
# (reported); allowed once the destination's migration failed, or was
# aborted there.  (7) --lazy-dump to an agent whose health does not say it
# takes one: a plain dump instead, with a warning.  (8) No "lazy_dump"
# asked: lazy to rdmig-dest, plain to an agent that takes none, with
# --no-lazy-dump, or from an agent started with --no-lazy-dump.
# Binaries: RDMIG_CTL, RDMIG_FAKEDEST besides netlib.sh's.
. "$(dirname "$0")/netlib.sh"
. "$(dirname "$0")/freezelib.sh"
: "${RDMIG_CTL:?}" "${RDMIG_FAKEDEST:?}"
plan 40
command -v curl >/dev/null || { echo "1..0 # SKIP curl not found"; exit 0; }
command -v jq >/dev/null || { echo "1..0 # SKIP jq not found"; exit 0; }

secret "$T/secret"
sock=$T/run/source.sock
root=$T/images
mkdir -p "$root" "$T/droot"
CTL=("$RDMIG_CTL" --socket "$sock")

gate_criu

start_source "$T/source.log" --api-socket "$sock" --images-root "$root" --criu "$T/criu.sh"

# (1) Six migrations, four slots.
start_dagent d4 --work-root "$T/droot" --max-migrations 4 --max-pending 4
d4=$dport
for i in 1 2 3 4 5 6; do
	workload "w$i"
	wl[$i]=$wl_pid
done
# The dumps wait at the gate: all six ask while the four reserved slots are held.
rm "$T/dump-go"
for i in 1 2 3 4 5 6; do
	"${CTL[@]}" migrate --pid "${wl[$i]}" --secret-file "$T/secret" --id "w$i" \
		--to "127.0.0.1:$d4" --no-queue >"$T/w$i.out" 2>"$T/w$i.err" &
	mig[$i]=$!
done
ok=() refused=()
for i in 1 2 3 4 5 6; do
	wait "${mig[$i]}"
	case $? in
	0) ok+=("$i") ;;
	1) refused+=("$i") ;;
	esac
done
touch "$T/dump-go"
check "six concurrent migrations into 4 slots: 4 started (exit 0), 2 refused (exit 1)" \
	test "${#ok[@]}:${#refused[@]}" = "4:2"
r1=${refused[0]:-0} r2=${refused[1]:-0}
check "... the refusals give the destination's reason: no free slot, nothing frozen" \
	eval "grep -q 'nothing was frozen: destination agent 127.0.0.1:$d4 refused the reservation: no free slot: .*--max-migrations' '$T/w$r1.err' && grep -q 'no free slot' '$T/w$r2.err'"
check "... the refused processes were never frozen and kept running (state, counter)" \
	eval "untouched w$r1 ${wl[$r1]} && untouched w$r2 ${wl[$r2]}"
check "... nothing was made for them on the source: no images dir, no migration" \
	eval "test ! -e '$root/w$r1' && test ! -e '$root/w$r2' && ! '${CTL[0]}' --socket '$sock' status w$r1 >/dev/null 2>&1"
all_done=0
for i in "${ok[@]}"; do
	wait_state "w$i" done 60 && grep -qx "${wl[$i]}" "$T/frozen" && all_done=$((all_done + 1))
done
check "... the four that reserved were frozen, dumped and handed over: done" test "$all_done" -eq 4
check "... each handover named its reservation, which the destination used" \
	eval "test \$(grep -c 'uses its reservation r-' '$T/d4.log') -eq 4"
check "the source logs its reservations before the freeze" \
	eval "test \$(grep -c 'reserved a slot and [0-9]* bytes for it (reservation r-' '$T/source.log') -eq 4"
check "... the reservation asked for the processes' resident memory (> 1 MiB each)" \
	eval "sed -n 's/.*reserving a slot and \([0-9]*\) bytes.*/\1/p' '$T/source.log' | awk '\$1 <= 1048576 { bad = 1 } END { exit bad }'"
code=$(dapi d4 GET /v1/reservations)
check "... none is left on the destination agent (GET /v1/reservations)" \
	eval "test $code = 200 && grep -q '\"reservations\":\[\]' '$T/dapi.out'"

# (2) A dump that fails: its reservation is released at once.
workload f1
touch "$T/fail-dump-$wl_pid"
"${CTL[@]}" migrate --pid "$wl_pid" --secret-file "$T/secret" --id f1 --to "127.0.0.1:$d4" \
	>"$T/f1.out" 2>&1
check "a migration whose dump fails: failed on the source" wait_state f1 failed
# Released by the source's DELETE, or ended with its early worker, which
# the failed dump turns away at once: gone either way within seconds.
gone=1
for _ in $(seq 100); do
	[ "$(dapi d4 GET /v1/reservations)" = 200 ] && jq -e '.reservations == []' "$T/dapi.out" >/dev/null && gone=0 && break
	sleep 0.1
done
check "... its reservation is released at once (DELETE), not left to its TTL" test "$gone" -eq 0

# (2b) Two at once into a source that keeps one migration (--max-migrations
# 1): the one that finds no room, before or after its reservation, is
# refused untouched, and no reservation is left behind.
src_keep=$src_pid
start_source "$T/source1.log" --api-socket "$T/run/one.sock" --images-root "$root/one" \
	--criu "$T/criu.sh" --max-migrations 1
rm "$T/dump-go"
workload m1
wm1=$wl_pid
workload m2
wm2=$wl_pid
"$RDMIG_CTL" --socket "$T/run/one.sock" migrate --pid "$wm1" --secret-file "$T/secret" --id m1 \
	--to "127.0.0.1:$d4" --no-queue >"$T/m1.out" 2>&1 &
p1=$!
"$RDMIG_CTL" --socket "$T/run/one.sock" migrate --pid "$wm2" --secret-file "$T/secret" --id m2 \
	--to "127.0.0.1:$d4" --no-queue >"$T/m2.out" 2>&1
rc2=$?
wait "$p1"
rc1=$?
touch "$T/dump-go"
if [ "$rc1" -eq 0 ]; then lost=m2 lpid=$wm2; else lost=m1 lpid=$wm1; fi
for _ in $(seq 300); do
	[ "$(dapi d4 GET /v1/reservations)" = 200 ] && grep -q '"reservations":\[\]' "$T/dapi.out" && break
	sleep 0.1
done
check "two at once into --max-migrations 1: one refused before the freeze (--max-migrations), untouched" \
	eval "test \"\$((rc1 + rc2))\" = 1 && grep -q 'nothing was frozen\|most this agent keeps' '$T/$lost.out' && untouched $lost $lpid"
check "... and no reservation is left on the destination (released at once if it had one)" \
	grep -q '"reservations":\[\]' "$T/dapi.out"
kill -TERM "$src_pid"
wait_pid "$src_pid" 20
src_pid=$src_keep

# (3) Too little space for the images: a 1 MiB tmpfs as the work root.
mkdir -p "$T/small"
if mount -t tmpfs -o size=1m,mode=0700 rdmig-test "$T/small" 2>/dev/null; then
	start_dagent dsmall --work-root "$T/small"
	workload s1
	"${CTL[@]}" migrate --pid "$wl_pid" --secret-file "$T/secret" --id s1 \
		--to "127.0.0.1:$dport" >"$T/s1.out" 2>"$T/s1.err"
	rc=$?
	check "a destination with too little disk space: refused before the freeze (exit 1)" \
		eval "test $rc -eq 1 && grep -q 'refused the reservation: not enough disk space for the images below $T/small: .* free, .* needed' '$T/s1.err'"
	check "... the process was never frozen and kept running" untouched s1 "$wl_pid"
	kill -TERM "$(pgrep -f -- "--api-socket $T/dsmall.sock")" 2>/dev/null
	sleep 0.2
	umount -l "$T/small"
else
	# Not a skip counted as a pass: without the mount the case is not shown.
	for d in "a destination with too little disk space: refused before the freeze (exit 1)" \
		"... the process was never frozen and kept running"; do
		check "$d (no tmpfs could be mounted here: run the host tests as root)" false
	done
fi

# (4) The reservations API: one slot.  The one held while other requests
# are refused has a TTL of 600 s, so a slow machine cannot expire it
# early; expiry is shown by a second one with a TTL of 1 s.
start_dagent d1 --work-root "$T/droot" --max-migrations 1
code=$(dapi d1 POST /v1/reservations '{"migration":"x1","bytes":4096,"ttl_s":600}')
rid=$(sed -n 's/.*"id":"\(r-[0-9a-f]*\)".*/\1/p' "$T/dapi.out")
check "POST /v1/reservations: 201, an id, an expiry" \
	eval "test $code = 201 && test -n '$rid' && grep -q '\"expires\":\"20' '$T/dapi.out' && grep -q '\"ttl_s\":600' '$T/dapi.out'"
check "... GET /v1/reservations/ID shows it" eval "test \$(dapi d1 GET /v1/reservations/$rid) = 200"
code=$(dapi d1 POST /v1/reservations '{"migration":"x2","bytes":0}')
check "... the only slot is held: a second is refused (503, --max-migrations)" \
	eval "test $code = 503 && grep -q 'no free slot' '$T/dapi.out'"
code=$(dapi d1 POST /v1/migrations '{"id":"x3","source":"127.0.0.1:1","secret":"base64:'"$(base64 -w0 "$T/secret")"'"}')
check "... and so is a migration without a reservation (503)" \
	eval "test $code = 503 && grep -q 'slots reserved' '$T/dapi.out'"
dapi d1 DELETE "/v1/reservations/$rid" >/dev/null
code=$(dapi d1 POST /v1/reservations '{"migration":"x1","bytes":4096,"ttl_s":1}')
rid=$(sed -n 's/.*"id":"\(r-[0-9a-f]*\)".*/\1/p' "$T/dapi.out")
expired=1
for _ in $(seq 300); do
	[ "$(dapi d1 GET "/v1/reservations/$rid")" = 404 ] && expired=0 && break
	sleep 0.1
done
check "... one with a TTL of 1 s expires (404) and says so in the log" \
	eval "test $code = 201 && test $expired -eq 0 && grep -q 'reservation $rid for migration x1 expired after 1 s unused' '$T/d1.log'"
code=$(dapi d1 POST /v1/reservations '{"migration":"x2","bytes":0}')
rid2=$(sed -n 's/.*"id":"\(r-[0-9a-f]*\)".*/\1/p' "$T/dapi.out")
check "... its slot is free again: 201" test "$code" = 201
check "... DELETE releases a reservation (200), then it is gone (404)" \
	eval "test \$(dapi d1 DELETE /v1/reservations/$rid2) = 200 && test \$(dapi d1 DELETE /v1/reservations/$rid2) = 404"
code=$(dapi d1 POST /v1/reservations '{"migration":"x4","bytes":-1}')
check "... a reservation without a usable size: 400" test "$code" = 400

# (5)+(6) rdmig-fakedest: an agent without reservations.  Its migration
# runs $T/dest-run.sh: rdmig-dest takes the migration from the source
# (authenticates), is killed once ready, then the fake reports postcopy
# (the workload "runs" there) until $DIR/stop, or fails at once when
# $T/dest-fail exists.
cat >"$T/dest-run.sh" <<'EOF'
#!/bin/bash
d=$FAKEDEST_DIR/images
mkdir -p "$d"
"$RDMIG_DEST" -D "$d" --source "$FAKEDEST_SOURCE:$FAKEDEST_PORT" -t "$FAKEDEST_TRANSPORT" \
	-m "$FAKEDEST_ID" --secret-file "$FAKEDEST_SECRET_FILE" --status-fd 3 \
	3>"$FAKEDEST_DIR/ready" >"$FAKEDEST_DIR/dest.log" 2>&1 &
dp=$!
for _ in $(seq 1200); do
	[ -s "$FAKEDEST_DIR/ready" ] && break
	sleep 0.05
done
kill -KILL $dp
wait $dp
[ -e "$FAKEDEST_DIR/../../dest-fail" ] && exit 1
touch "$FAKEDEST_DIR/resumed"
# Until told, or the test's directory is gone (its cleanup).
for _ in $(seq 6000); do
	[ -e "$FAKEDEST_DIR/stop" ] || [ ! -d "$FAKEDEST_DIR" ] && exit 0
	sleep 0.1
done
EOF
chmod +x "$T/dest-run.sh"
start_fakedest fake --run "$T/dest-run.sh"
fport=$fake_port
workload o1
"${CTL[@]}" migrate --pid "$wl_pid" --secret-file "$T/secret" --id o1 --to "127.0.0.1:$fport" \
	>"$T/o1.out" 2>&1
check "an older destination agent (no reservations, 404): the migration starts without one" \
	eval "test $? -eq 0 && wait_log '$T/source.log' 'migration o1: destination agent 127.0.0.1:$fport has no reservations (an older agent): freezing without one' >/dev/null"
check "... as before: dumped, handed over, fetched (its destination authenticated)" \
	eval "wait_for_file '$T/fake/o1/resumed' && grep -qx '$wl_pid' '$T/frozen'"
check "... the destination lost, the source keeps the checkpoint (state serving)" \
	eval "wait_log '$T/source.log' 'destination lost (.*); keeping the checkpoint' >/dev/null && wait_log '$T/source.log' 'migration o1: destination agent 127.0.0.1:$fport reports postcopy' >/dev/null && test \"\$(state o1)\" = serving"
"${CTL[@]}" rollback o1 >"$T/o1-rb1.out" 2>&1
rc=$?
check "rollback while the destination agent reports the workload running: refused (exit 1, 409)" \
	eval "test $rc -eq 1 && grep -q 'rollback refused: destination agent 127.0.0.1:$fport: the migration is postcopy there and the workload may run there' '$T/o1-rb1.out'"
check "... the migration and its checkpoint are untouched" \
	eval "test '$(state o1)' = serving && test -s '$root/o1/pages-1.img'"
# The source agent restarts: its record names the destination agent, asked again.
kill -TERM "$src_pid"
wait_pid "$src_pid" 20
slog=$T/source2.log
start_source "$slog" --api-socket "$sock" --images-root "$root" --criu "$T/criu.sh"
wait_log "$slog" "records: migration o1 was ready when the agent stopped" >/dev/null
wait_state o1 serving >/dev/null
"${CTL[@]}" rollback o1 >"$T/o1-rb1b.out" 2>&1
rc=$?
check "... after a restart of the source agent too: its destination agent is asked again (409)" \
	eval "test $rc -eq 1 && grep -q 'rollback refused: destination agent 127.0.0.1:$fport: the migration is postcopy there' '$T/o1-rb1b.out'"
kill -KILL "$fake_pid"
wait "$fake_pid" 2>/dev/null
"${CTL[@]}" rollback o1 >"$T/o1-rb2.out" 2>&1
rc=$?
check "... with the destination agent unreachable: refused too, and it says so" \
	eval "test $rc -eq 1 && grep -q 'destination agent 127.0.0.1:$fport is unreachable (connection refused): it cannot confirm' '$T/o1-rb2.out'"
"${CTL[@]}" rollback --force o1 >"$T/o1-rb3.out" 2>&1
rc=$?
check "rollback --force: accepted, and reported as forced" \
	eval "test $rc -eq 0 && grep -q 'rollback of migration o1 requested, forced' '$T/o1-rb3.out'"
check "... rolled back; the source logs it as forced" \
	eval "wait_state o1 rolled_back && grep -q 'migration o1: rollback FORCED through the API' '$slog'"

# The destination's migration failed: its processes were stopped there.
touch "$T/dest-fail"
start_fakedest fake2 --run "$T/dest-run.sh"
fport=$fake_port
# fake_migration ID STATE: a workload migrated to the fake at $fport, until
# the source mirrors STATE from it.
fake_migration() {
	workload "$1"
	"${CTL[@]}" migrate --pid "$wl_pid" --secret-file "$T/secret" --id "$1" \
		--to "127.0.0.1:$fport" >"$T/$1.out" 2>&1
	wait_log "$slog" "migration $1: destination agent 127.0.0.1:$fport reports $2" 30 \
		>/dev/null
}
fake_migration o2 failed
"${CTL[@]}" rollback o2 >"$T/o2-rb.out" 2>&1
rc=$?
check "rollback once the destination's migration failed: allowed, without force" \
	eval "test $rc -eq 0 && wait_state o2 rolled_back && grep -q 'migration o2: rollback allowed: destination agent 127.0.0.1:$fport: the migration is failed there' '$slog'"

# An abort on the destination agent stops the workload there: allowed too.
rm -f "$T/dest-fail"
fake_migration o3 postcopy
"${CTL[@]}" rollback o3 >"$T/o3-rb1.out" 2>&1
rc=$?
code=$(curl -s -o "$T/o3-del.out" -w '%{http_code}' -X DELETE "http://127.0.0.1:$fport/v1/migrations/o3")
"${CTL[@]}" rollback o3 >"$T/o3-rb2.out" 2>&1
check "refused while postcopy there; after an abort on the destination agent: allowed" \
	eval "test $rc -eq 1 && grep -q 'the migration is postcopy there' '$T/o3-rb1.out' && test $code = 202 && wait_state o3 rolled_back && grep -q 'migration o3: rollback allowed: destination agent 127.0.0.1:$fport: the migration is aborted there' '$slog'"
# (7) --lazy-dump to a destination agent whose health does not say it
# takes one (rdmig-fakedest, as an older agent): a plain dump instead, said
# before anything is frozen, rather than a refusal after the freeze.
workload o4
"${CTL[@]}" migrate --pid "$wl_pid" --lazy-dump --secret-file "$T/secret" --id o4 \
	--to "127.0.0.1:$fport" >"$T/o4.out" 2>&1
check "--lazy-dump to an agent that takes none: accepted, a plain dump instead, said first" \
	eval "test $? -eq 0 && wait_log '$slog' 'migration o4: destination agent 127.0.0.1:$fport does not take a lazy dump (an older agent): a plain dump instead' >/dev/null && wait_until 30 test -s '$root/o4/fake-criu.args' && ! grep -q -- '--lazy-pages' '$root/o4/fake-criu.args'"
check "... its status says lazy_dump false" \
	eval "\"\${CTL[@]}\" status o4 --json | jq -e '.lazy_dump == false' >/dev/null"

# (8) No "lazy_dump" in the request: the agent chooses.  To rdmig-dest,
# whose health says it takes one, a lazy dump; to an agent that does not
# say so, a plain dump, said at info (nobody asked for the lazy one);
# --no-lazy-dump, and an agent started with --no-lazy-dump: plain dumps.
args_of() { wait_until 30 test -s "$root/$1/fake-criu.args" && cat "$root/$1/fake-criu.args"; }
lazy_is() { "${CTL[@]}" status "$1" --json | jq -e ".lazy_dump == $2" >/dev/null; }
workload o5
"${CTL[@]}" migrate --pid "$wl_pid" --secret-file "$T/secret" --id o5 \
	--to "127.0.0.1:$d4" >"$T/o5.out" 2>&1
check "no --lazy-dump, to rdmig-dest (its health says lazy_dump): a lazy dump, status lazy_dump true" \
	eval "test $? -eq 0 && args_of o5 | grep -q -- '--lazy-pages' && lazy_is o5 true"
workload o6
"${CTL[@]}" migrate --pid "$wl_pid" --secret-file "$T/secret" --id o6 \
	--to "127.0.0.1:$fport" >"$T/o6.out" 2>&1
check "no --lazy-dump, to an agent that takes none: a plain dump, said without a warning" \
	eval "test $? -eq 0 && wait_log '$slog' 'info: migration o6: destination agent 127.0.0.1:$fport does not take a lazy dump (an older agent): a plain dump\$' >/dev/null && ! args_of o6 | grep -q -- '--lazy-pages' && lazy_is o6 false"
workload o7
"${CTL[@]}" migrate --pid "$wl_pid" --no-lazy-dump --secret-file "$T/secret" --id o7 \
	--to "127.0.0.1:$d4" >"$T/o7.out" 2>&1
check "--no-lazy-dump to rdmig-dest: a plain dump, status lazy_dump false" \
	eval "test $? -eq 0 && ! args_of o7 | grep -q -- '--lazy-pages' && lazy_is o7 false"
kill -TERM "$src_pid"
wait_pid "$src_pid" 20
slog=$T/source3.log
start_source "$slog" --api-socket "$sock" --images-root "$root" --criu "$T/criu.sh" --no-lazy-dump
# start_source waits for the data listener; the API socket comes a moment later.
wait_log "$slog" "api: serving on $sock" >/dev/null
workload o8
"${CTL[@]}" migrate --pid "$wl_pid" --secret-file "$T/secret" --id o8 \
	--to "127.0.0.1:$d4" >"$T/o8.out" 2>&1
check "rdmig-source --no-lazy-dump: no --lazy-dump asked, to rdmig-dest: a plain dump" \
	eval "test $? -eq 0 && ! args_of o8 | grep -q -- '--lazy-pages' && lazy_is o8 false"
touch "$T"/fake*/*/stop 2>/dev/null
[ "$tap_failed" -eq 0 ] || {
	diag_file "$T/source.log" 40
	diag_file "$T/source2.log" 40
	diag_file "$T/source3.log" 40
	diag_file "$T/d4.log" 20
	for f in "$T"/*.err "$T"/o*-rb*.out; do diag_file "$f" 3; done
}
finish
