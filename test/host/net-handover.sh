#!/bin/bash
# rdmig-source hands a migration over to the destination agent's API
# (rdmigctl migrate --to HOST:PORT, the request's "dest"), against
# rdmig-fakedest, a stand-in for that API served by the project's own API
# module (the dest role's validation), which runs the real rdmig-dest and
# rdmig-standin when a migration comes.  (1) A dumped pid goes all the way
# to done; the destination got the source's endpoint, the transport, the
# same secret bytes and the images dir asked for; the report's downtime is
# at least the freeze; the destination's latencies are mirrored.  (2) A
# destination agent that is down, (3) one that refuses (503), (4) one that
# never answers, (5) a source agent in its place, (6) one that gives the
# migration up before fetching: the migration fails with the reason and
# keeps its checkpoint; a rollback works.  (2) for a pid: nothing is
# frozen, the reservation asked first got no answer (test/host/net-reserve.sh).  (7) A destination agent lost
# after its 202 leaves the migration serving, dest_state "unreachable".
# (8) The real destination agent, rdmig-dest --serve (when built with it),
# with a criu restore stand-in: done, downtime and latencies reported.
# (9) A source listening on any address tells the destination its own
# address on the connection to the destination agent.  (10) An abort on
# the source after the POST is passed on: the destination agent gets
# DELETE (rdmig-fakedest records it; rdmig-dest --serve reports aborted);
# a lost one is logged as not told; (11) before the POST, nothing is sent;
# (12) while the POST waits for its answer, the DELETE follows it.
# The secret is in no output and no log.  Every handover runs inside
# mutual TLS, with certificates made here (test/lib/pki.sh): the source
# agents present "source", the destination agents "dest" and allow only
# "source".  With the argument "tls" the pages travel inside mutual TLS too
# (rdmig-source -t tls --allow-dest, the destinations' workers with the
# "dest" certificate).  Binaries: RDMIG_CTL, RDMIG_FAKEDEST.
# shellcheck disable=SC2046 # pki_tls_args gives several words
. "$(dirname "$0")/netlib.sh"
. "$(dirname "$0")/../lib/pki.sh"
: "${RDMIG_CTL:?}" "${RDMIG_FAKEDEST:?}"
plan 47

fake_criu=$(cd "$(dirname "$0")" && pwd)/fake-criu.sh
pki_ca "$T/pki" && pki_cert "$T/pki" dest "DNS:localhost,IP:127.0.0.1" &&
	pki_cert "$T/pki" source "DNS:source.test,IP:127.0.0.1" || exit 1
src_tls=$(pki_tls_args "$T/pki" source)
# The data transport: tcp, or tls (the source admits the "dest" certificate,
# named localhost; the workers present it, via DEST_DATA_TLS to dest-run.sh).
tr=${1:-tcp}
SRC_TRANSPORT=$tr
export DEST_DATA_TLS=
if [ "$tr" = tls ]; then
	src_tls="$src_tls --allow-dest localhost"
	DEST_DATA_TLS=$(pki_tls_args "$T/pki" dest)
fi
dest_tls="$(pki_tls_args "$T/pki" dest) --allow-peer source.test"
secret "$T/secret"
sock=$T/run/source.sock
root=$T/images
# API images_dirs must be below the source's --images-root.
src=$root/src
mkdir -p "$root"
mkimage "$src" --size 4M
CTL=("$RDMIG_CTL" --socket "$sock")

# state ID / json ID KEY: a field of the migration.
json() { "${CTL[@]}" status "$1" --json 2>/dev/null | sed -n "s/.*\"$2\": \"*\([^\",]*\)\"*,*$/\1/p" | head -n 1; }
state() { json "$1" state; }
# wait_json ID KEY VALUE [SECS]
wait_json() {
	for _ in $(seq $((${4:-20} * 10))); do
		[ "$(json "$1" "$2")" = "$3" ] && return 0
		sleep 0.1
	done
	return 1
}

# start_fake NAME [ARGS...]: start_fakedest (netlib.sh) with the "dest" certificate.
# shellcheck disable=SC2086 # dest_tls gives several words
start_fake() { start_fakedest "$1" $dest_tls "${@:2}"; }

# What the fake runs for a migration: rdmig-dest takes it from the source,
# the stand-in plays the restored process ("resumed" once it can run).
cat >"$T/dest-run.sh" <<'EOF'
#!/bin/bash
d=$FAKEDEST_DIR/images
mkdir -p "$d"
"$RDMIG_DEST" -D "$d" --source "$FAKEDEST_SOURCE:$FAKEDEST_PORT" -t "$FAKEDEST_TRANSPORT" \
	$DEST_DATA_TLS -m "$FAKEDEST_ID" --secret-file "$FAKEDEST_SECRET_FILE" --status-fd 3 \
	3>"$FAKEDEST_DIR/ready" >"$FAKEDEST_DIR/dest.log" 2>&1 &
dp=$!
for _ in $(seq 200); do
	[ -s "$FAKEDEST_DIR/ready" ] && break
	kill -0 $dp 2>/dev/null || exit 1
	sleep 0.05
done
touch "$FAKEDEST_DIR/resumed"
timeout 60 "$RDMIG_STANDIN" -D "$d" --threads 2 >"$FAKEDEST_DIR/standin.out" 2>&1 || exit 1
wait $dp
EOF
chmod +x "$T/dest-run.sh"

# Its TLS API answers the source certificate too: (5) hands over to it.
start_source "$T/source.log" --api-socket "$sock" --images-root "$root" --criu "$fake_criu" \
	--api-tcp 127.0.0.1:0 $src_tls --allow-peer source.test

# (1) All the way, from a pid.
start_fake ok --run "$T/dest-run.sh" --faults 3 --latency 11,99
ok_port=$fake_port
# --no-lazy-dump: the pid dumped is this shell, which a lazy dump would keep stopped.
"${CTL[@]}" migrate --pid $$ --no-lazy-dump --secret-file "$T/secret" --id h1 --to "127.0.0.1:$ok_port" \
	--dest-images /srv/rdmig/h1 --wait >"$T/h1.out" 2>"$T/h1.err"
rc=$?
check "migrate --pid --to --wait exits 0: the migration is done" \
	eval "test $rc -eq 0 && grep -q '^migration h1 (source): done' '$T/h1.out'"
check "... the report names the destination agent and its final state" \
	grep -q "^  dest:       127.0.0.1:$ok_port (destination agent: done)" "$T/h1.out"
check "... the destination agent got the source's endpoint and transport" \
	eval "grep -qx 'source=127.0.0.1:$src_port' '$T/ok/h1.req' && grep -qx 'transport=$tr' '$T/ok/h1.req'"
check "... the migration's secret, inline (base64), byte for byte" \
	eval "grep -qx 'secret_file=' '$T/ok/h1.req' && cmp -s '$T/ok/h1.secret' '$T/secret'"
check "... and the images dir asked for" grep -qx 'images_dir=/srv/rdmig/h1' "$T/ok/h1.req"
check "rdmig-dest took it from the source: the stand-in verified every page" \
	standin_ok "$T/ok/h1/standin.out" 1024
"${CTL[@]}" status h1 --json >"$T/h1.json" 2>&1
freeze=$(json h1 freeze_ms)
down=$(json h1 downtime_ms)
hand=$(json h1 handover_ms)
check "downtime_ms ($down) >= handover_ms ($hand, freeze to POST) >= freeze_ms ($freeze, >= 1 s)" \
	eval "[ -n '$down' ] && [ '$down' != null ] && [ '$freeze' -ge 1000 ] && [ '$hand' -ge '$freeze' ] && [ '$down' -ge '$hand' ]"
check "the destination's state, latencies and restore time are mirrored" \
	eval "grep -q '\"dest_state\": \"done\"' '$T/h1.json' && grep -q '\"fault_p50\": 11,' '$T/h1.json' && grep -q '\"fault_p99\": 99' '$T/h1.json' && ! grep -q '\"restore_ms\": null' '$T/h1.json'"
check "the report gives downtime, dump, restore, total and the latencies" \
	eval "grep -Eq '^  downtime:   [0-9.]+ m?s \(frozen' '$T/h1.out' && grep -Eq '^  dump:       [0-9.]+ m?s' '$T/h1.out' && grep -Eq '^  restore:    [0-9.]+ m?s' '$T/h1.out' && grep -Eq '^  total:      [0-9.]+ m?s' '$T/h1.out' && grep -q 'latency p50 11 us, p99 99 us' '$T/h1.out'"
check "the source logs the handover" \
	grep -q "migration h1: destination agent 127.0.0.1:$ok_port took it (HTTP 202)" "$T/source.log"
check "... whose health check ran during the dump: only the POST was left in the freeze" \
	eval "grep -q 'migration h1: checking destination agent 127.0.0.1:$ok_port during the dump' '$T/source.log' && grep -q 'migration h1 serves: asking destination agent 127.0.0.1:$ok_port to take it (its health checked during the dump)' '$T/source.log'"

# (2) The destination agent is down: the reservation asked before the
# freeze gets no answer, so nothing is dumped.
start_fake gone
dead_port=$fake_port
kill -KILL "$fake_pid"
wait "$fake_pid" 2>/dev/null
"${CTL[@]}" migrate --pid $$ --no-lazy-dump --secret-file "$T/secret" --id h2 --to "127.0.0.1:$dead_port" \
	--wait >"$T/h2.out" 2>"$T/h2.err"
rc=$?
check "a destination agent that is down: exit 1 before any freeze, one line saying why" \
	eval "test $rc -eq 1 && test \$(wc -l <'$T/h2.err') -eq 1 && grep -q '^rdmigctl: nothing was frozen: destination agent 127.0.0.1:$dead_port unreachable: connection refused' '$T/h2.err'"
check "... nothing was dumped: no checkpoint, no migration" \
	eval "test ! -e '$root/h2' && ! '${CTL[0]}' --socket '$sock' status h2 >/dev/null 2>&1"
mkdir "$T/dst-h2"
# shellcheck disable=SC2046
timeout 30 "$RDMIG_DEST" -D "$T/dst-h2" $(net_args h2 "$T/secret") --connect-timeout 5 \
	>"$T/dest-h2.log" 2>&1
code=$?
check "... a destination connecting for it is refused" \
	eval "test $code -eq 1 && grep -q 'the source refused our authentication' '$T/dest-h2.log'"
"${CTL[@]}" rollback h2 >"$T/h2-rb.out" 2>&1
check "... and there is nothing to roll back" \
	eval "test $? -eq 1 && grep -q 'no migration \"h2\"' '$T/h2-rb.out'"

# (3) It refuses.
start_fake busy --refuse "no room for another migration"
"${CTL[@]}" migrate --images "$src" --secret-file "$T/secret" --id h3 \
	--to "127.0.0.1:$fake_port" --wait >"$T/h3.out" 2>"$T/h3.err"
rc=$?
check "a refusing destination agent (503): exit 1, its message" \
	eval "test $rc -eq 1 && grep -q '^rdmigctl: migration h3 failed: destination agent 127.0.0.1:$fake_port refused: no room for another migration (HTTP 503)' '$T/h3.err'"
"${CTL[@]}" rollback h3 >"$T/h3-rollback.out" 2>&1
check "... images given: no rollback, criu restore runs only in the agent's own dumps" \
	eval "test $? -eq 1 && grep -q 'only checkpoints this agent dumped itself (pid) are rolled back' '$T/h3-rollback.out'"

# (4) It never answers.
start_fake silent --silent
silent_port=$fake_port
t0=$(date +%s)
"${CTL[@]}" migrate --images "$src" --secret-file "$T/secret" --id h4 \
	--to "127.0.0.1:$fake_port" --wait >"$T/h4.out" 2>"$T/h4.err" &
wpid=$!
# Once the source took h4 it waits for the silent agent: its API must answer meanwhile.
wait_log "$T/source.log" "api: migration h4 started" >/dev/null
"${CTL[@]}" --timeout 5 health >"$T/h4-health.out" 2>&1
hrc=$?
alive "$wpid"
waiting=$?
wait "$wpid"
rc=$?
secs=$(($(date +%s) - t0))
check "a silent destination agent: failed after the 10 s timeout ($secs s)" \
	eval "test $rc -eq 1 && grep -q 'destination agent 127.0.0.1:$fake_port unreachable: no answer within 10 s' '$T/h4.err' && test $secs -ge 9 && test $secs -le 60"
check "... while it waited, the source's API answered (nothing blocks)" \
	test "$hrc $waiting" = "0 0"

# (5) A source agent in its place.
api_port=$(sed -n 's/.*api: serving on TCP port \([0-9]*\).*/\1/p' "$T/source.log")
"${CTL[@]}" migrate --images "$src" --secret-file "$T/secret" --id h5 \
	--to "127.0.0.1:$api_port" --wait >"$T/h5.out" 2>"$T/h5.err"
check "a source agent as destination: refused, it is not a destination agent" \
	eval "test $? -eq 1 && grep -q 'refused: it is not a destination agent (its /v1/health says role source)' '$T/h5.err'"

# (6) It takes the migration, then gives it up before fetching.
start_fake quit --run 'exit 3'
"${CTL[@]}" migrate --images "$src" --secret-file "$T/secret" --id h6 \
	--to "127.0.0.1:$fake_port" --wait >"$T/h6.out" 2>"$T/h6.err"
check "a destination agent that gives up: failed, with its error" \
	eval "test $? -eq 1 && grep -q 'destination agent 127.0.0.1:$fake_port: the migration failed there: command exited 3' '$T/h6.err'"

# (7) Accepted, then lost: the data connection decides.
start_fake lost
"${CTL[@]}" migrate --images "$src" --secret-file "$T/secret" --id h7 \
	--to "127.0.0.1:$fake_port" --advertise 192.0.2.9 >"$T/h7.out" 2>&1
check "--advertise HOST: the destination is told HOST and the listener's port" \
	eval "wait_json h7 dest_state connecting && grep -qx 'source=192.0.2.9:$src_port' '$T/lost/h7.req'"
kill -KILL "$fake_pid"
check "a destination agent lost after its 202: dest_state unreachable" \
	wait_json h7 dest_state unreachable
check "... the migration still serves" test "$(state h7)" = serving
"${CTL[@]}" status h7 >"$T/h7-status.out" 2>&1
check "rdmigctl status shows the destination agent and its state" \
	grep -q "^  dest:       127.0.0.1:$fake_port (destination agent: unreachable)" "$T/h7-status.out"
"${CTL[@]}" abort h7 >/dev/null 2>&1
check "... it can be aborted" wait_json h7 state aborted
check "... the lost destination agent cannot be told: logged" \
	wait_log "$T/source.log" "migration h7: destination agent 127.0.0.1:$fake_port could not be told to abort it: connection refused"

# (10) Aborted on the source after the 202: the destination agent gets DELETE.
start_fake ab
"${CTL[@]}" migrate --images "$src" --secret-file "$T/secret" --id h12 \
	--to "127.0.0.1:$fake_port" >"$T/h12.out" 2>&1
wait_json h12 dest_state connecting
"${CTL[@]}" abort h12 >"$T/h12-abort.out" 2>&1
rc=$?
check "an abort after the 202: exit 0, aborted on the source" \
	eval "test $rc -eq 0 && test \"\$(state h12)\" = aborted"
check "... the destination agent got DELETE while it was connecting" \
	eval "wait_log '$T/ab/h12.abort' '^connecting\$' && test \$(wc -l <'$T/ab/h12.abort') -eq 1"
curl -s --cacert "$T/pki/ca.pem" --cert "$T/pki/source.pem" --key "$T/pki/source.key" \
	"https://127.0.0.1:$fake_port/v1/migrations/h12" >"$T/h12-dest.json"
check "... and reports it aborted" grep -q '"state":"aborted"' "$T/h12-dest.json"
check "... the source logs the answer" \
	wait_log "$T/source.log" "migration h12: destination agent 127.0.0.1:$fake_port aborts it too (HTTP 202)"

# (11) Aborted before the POST went out (the agent never answers health).
"${CTL[@]}" migrate --images "$src" --secret-file "$T/secret" --id h13 \
	--to "127.0.0.1:$silent_port" >"$T/h13.out" 2>&1
wait_log "$T/source.log" "migration h13 serves: asking destination agent" >/dev/null
"${CTL[@]}" abort h13 >"$T/h13-abort.out" 2>&1
check "an abort before the POST: aborted, no DELETE sent" \
	eval "test $? -eq 0 && test \"\$(state h13)\" = aborted && ! grep -q 'migration h13: telling destination agent' '$T/source.log'"

# (12) Aborted while the POST waits for its answer: the DELETE follows it.
start_fake slowpost --post-delay 1500
"${CTL[@]}" migrate --images "$src" --secret-file "$T/secret" --id h15 \
	--to "127.0.0.1:$fake_port" >"$T/h15.out" 2>&1
wait_log "$T/source.log" "migration h15: handing over to destination agent" >/dev/null
"${CTL[@]}" abort h15 >"$T/h15-abort.out" 2>&1
check "an abort while the POST is unanswered: aborted on the source at once" \
	eval "test $? -eq 0 && test \"\$(state h15)\" = aborted"
check "... the destination agent took the POST, then got the DELETE" \
	eval "wait_log '$T/source.log' 'migration h15: destination agent 127.0.0.1:$fake_port aborts it too (HTTP 202)' && grep -qx connecting '$T/slowpost/h15.abort'"

# Requests the API refuses before any handover.
"${CTL[@]}" migrate --images "$src" --secret-file "$T/secret" --id h8 \
	--advertise 10.0.0.1 >"$T/h8.out" 2>&1
check "--advertise without --to: usage error (exit 2)" \
	eval "test $? -eq 2 && grep -q -- '--advertise needs --to' '$T/h8.out'"
curl -s --unix-socket "$sock" -X POST -H 'Content-Type: application/json' \
	-d "{\"id\":\"h9\",\"images_dir\":\"$src\",\"secret_file\":\"$T/secret\",\"advertise\":\"10.0.0.1\"}" \
	http://localhost/v1/migrations >"$T/h9.out" 2>&1
check "the API: advertise needs dest (400)" grep -q 'field \\"advertise\\" needs \\"dest\\"' "$T/h9.out"

# (8) rdmig-dest --serve.  Its "criu restore": the stand-in is the restored
# process; it returns once that runs, as criu restore -d does.
real=0
if "$RDMIG_DEST" --help 2>&1 | grep -q -- '--serve'; then
	real=1
	"$RDMIG_DEST" --serve --api-socket "$T/run/dest.sock" --api-tcp 127.0.0.1:0 $dest_tls \
		--work-root "$T/droot" --criu "$(cd "$(dirname "$0")" && pwd)/fake-criu-restore.sh" \
		>"$T/dest-agent.log" 2>&1 &
	dagent=$!
	track "$dagent"
	for _ in $(seq 100); do
		dport=$(sed -n 's/.*api: serving on TCP port \([0-9]*\).*/\1/p' "$T/dest-agent.log")
		[ -n "$dport" ] && break
		sleep 0.05
	done
	"${CTL[@]}" migrate --pid $$ --no-lazy-dump --secret-file "$T/secret" --id h10 --to "127.0.0.1:$dport" \
		--wait >"$T/h10.out" 2>"$T/h10.err"
	rc=$?
	check "rdmig-dest --serve takes the handover: done" \
		eval "test $rc -eq 0 && grep -q '^  dest:       127.0.0.1:$dport (destination agent: done)' '$T/h10.out'"
	check "... its criu restore ran on the images in WORK_ROOT/ID, every page verified" \
		eval "test -f '$T/droot/h10/inventory.img' && standin_ok \$(find '$T/droot/h10' -name standin.out | head -n 1) 1024"
	freeze=$(json h10 freeze_ms)
	down=$(json h10 downtime_ms)
	check "... downtime_ms ($down) >= freeze_ms ($freeze), restore time reported" \
		eval "[ '$down' -ge '$freeze' ] 2>/dev/null && [ '$(json h10 restore_ms)' -ge 0 ] 2>/dev/null"
	curl -s --unix-socket "$T/run/dest.sock" http://localhost/v1/migrations/h10 >"$T/h10-dest.json"
	dp50=$(sed -n 's/.*"fault_p50":\([0-9a-z]*\).*/\1/p' "$T/h10-dest.json")
	dp99=$(sed -n 's/.*"fault_p99":\([0-9a-z]*\).*/\1/p' "$T/h10-dest.json")
	check "... fault latencies as the destination agent reports them ($dp50/$dp99 us)" \
		eval "[ -n '$dp50' ] && [ '$(json h10 fault_p50)' = '$dp50' ] && [ '$(json h10 fault_p99)' = '$dp99' ]"
	# Its worker cannot reach 127.0.0.1:1: it is still connecting when the source aborts.
	"${CTL[@]}" migrate --images "$src" --secret-file "$T/secret" --id h14 \
		--to "127.0.0.1:$dport" --advertise 127.0.0.1:1 >"$T/h14.out" 2>&1
	wait_log "$T/source.log" "migration h14: destination agent 127.0.0.1:$dport took it" 20 >/dev/null
	"${CTL[@]}" abort h14 >"$T/h14-abort.out" 2>&1
	rc=$?
	for _ in $(seq 150); do
		curl -s --unix-socket "$T/run/dest.sock" http://localhost/v1/migrations/h14 >"$T/h14-dest.json"
		grep -q '"final":true' "$T/h14-dest.json" && break
		sleep 0.1
	done
	check "... an abort on the source aborts the migration there too" \
		eval "test $rc -eq 0 && grep -q '\"state\":\"aborted\"' '$T/h14-dest.json' && grep -q 'aborted through the API' '$T/h14-dest.json'"
	kill -TERM "$dagent"
else
	for d in "rdmig-dest --serve takes the handover: done" \
		"... its criu restore ran on the images in WORK_ROOT/ID, every page verified" \
		"... downtime_ms >= freeze_ms, restore time reported" \
		"... fault latencies as the destination agent reports them" \
		"... an abort on the source aborts the migration there too"; do
		tap_n=$((tap_n + 1))
		echo "ok $tap_n - $d # SKIP rdmig-dest has no --serve"
	done
fi

# (9) A listener on 0.0.0.0: the address of the API connection's local end.
"$RDMIG_SOURCE" -t "$tr" -l 0.0.0.0:0 --api-socket "$T/run/any.sock" --images-root "$root" $src_tls \
	>"$T/source-any.log" 2>&1 &
any_pid=$!
track "$any_pid"
for _ in $(seq 100); do
	any_port=$(sed -n "s/.*listening on 0\.0\.0\.0:\([0-9]*\) ($tr).*/\1/p" "$T/source-any.log")
	[ -n "$any_port" ] && [ -S "$T/run/any.sock" ] && break
	sleep 0.05
done
start_fake wild
"$RDMIG_CTL" --socket "$T/run/any.sock" migrate --images "$src" --secret-file "$T/secret" \
	--id h11 --to "127.0.0.1:$fake_port" >"$T/h11.out" 2>&1
for _ in $(seq 100); do
	[ -s "$T/wild/h11.req" ] && break
	sleep 0.05
done
check "a source on 0.0.0.0 tells its address towards the destination agent" \
	grep -qx "source=127.0.0.1:$any_port" "$T/wild/h11.req"
kill -TERM "$any_pid"
wait_pid "$any_pid" 20
check "... and stops on SIGTERM (exit 0) with a handover polling" test "$code" -eq 0

"${CTL[@]}" status >"$T/table.out" 2>&1
check "the table shows the downtime of h1" grep -Eq "^h1 +source +done .* [0-9.]+ m?s +[0-9.]+ m?s$" "$T/table.out"
kill -TERM "$src_pid"
wait_pid "$src_pid" 20
check "rdmig-source stops on SIGTERM (exit 0)" test "$code" -eq 0
b64=$(base64 -w0 "$T/secret")
check "the secret (its base64) is in no rdmigctl output and no source log" \
	eval "! grep -qF -e '$b64' '$T'/*.out '$T'/*.err '$T'/*.json '$T'/source*.log"
check "the requests refused by the API started no handover: $((9 + 2 * real)) in all" \
	eval "test \$(grep -c 'asking destination agent .* to take it' '$T/source.log') -eq $((9 + 2 * real))"
[ "$tap_failed" -eq 0 ] || {
	diag_file "$T/source.log" 80
	for f in "$T"/*.err "$T"/h1.out; do diag_file "$f" 20; done
	diag_file "$T/ok/h1/dest.log"
	diag_file "$T/ok.log"
	diag_file "$T/dest-agent.log" 60
	diag_file "$T/h10.out"
}
finish
