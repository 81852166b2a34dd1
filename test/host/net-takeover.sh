#!/bin/bash
# The destination worker's restart (issue "post-copy that survives", item 3):
# a migration through rdmig-dest --serve over TCP whose worker is SIGKILLed
# in post-copy with pages missing, twice: once while it drains (the source
# stopped, so the faulting threads wait), once while the new worker is still
# reconnecting.  Each time the supervisor starts a new worker that takes the
# userfaultfds from the guard (SCM_RIGHTS), resumes the source with
# Attach{resume:true}, rebuilds the lazy sets (installed pages answer EEXIST)
# and finishes; the stand-in verifies every page.  Then the case where no
# worker can take over (the source gone for good, --pause-limit 3): the
# processes end stopped (state T), never killed.  Last, an upgrade: the
# supervisor's binary replaced on disk, the worker killed: the new worker
# runs the new file.  Last, a lazy dump (fake-criu.sh's page server)
# taken over the same way.
# States come from the agent's API (rdmigctl status --json, /metrics).
. "$(dirname "$0")/netlib.sh"
: "${RDMIG_CTL:?}"
plan 19

secret "$T/secret"
sec64=$(base64 -w0 "$T/secret")
dsock=$T/run/dest.sock
DCTL=("$RDMIG_CTL" --socket "$dsock")
npages=16384

# jget ID EXPR: a value of migration ID's resource (EXPR indexes `j`).
jget() {
	"${DCTL[@]}" status "$1" --json 2>/dev/null |
		python3 -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$2" 2>/dev/null
}
# wait_json ID EXPR WANT [SECS]: waits until jget ID EXPR prints WANT.
wait_json() {
	for _ in $(seq $((${4:-30} * 10))); do
		[ "$(jget "$1" "$2")" = "$3" ] && return 0
		sleep 0.1
	done
	echo "# $1: $2 is $(jget "$1" "$2"), not $3"
	return 1
}
# child_of PID: PID's first child, waited for up to 10 s (empty if none came:
# never `pgrep -P ""`, which would match every process).
child_of() {
	local c
	[ -n "$1" ] || return 1
	for _ in $(seq 100); do
		c=$(pgrep -P "$1" | head -1)
		[ -n "$c" ] && echo "$c" && return 0
		sleep 0.1
	done
	return 1
}
# worker: the supervisor's only child, the current worker.
worker() { child_of "$sup_pid"; }
# pstate PID: the process's state letter (T: stopped).
pstate() { sed -n 's/^[0-9]* ([^)]*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null; }
# restored ID: the stand-in's restored processes (the children of its main process).
restored() {
	local main
	main=$(pgrep -f "rdmig-standin -D $T/droot/$1" | head -1)
	[ -n "$main" ] && cat /proc/"$main"/task/*/children 2>/dev/null
}
# post ID [VERIFY]: starts migration ID from the source on $src_port
# (VERIFY: true, or false for a lazy dump, which has no page tags).
post() {
	curl -s -o /dev/null --unix-socket "$dsock" -X POST -H 'Content-Type: application/json' \
		-d "{\"id\":\"$1\",\"source\":\"127.0.0.1:$src_port\",\"transport\":\"tcp\",\"secret\":\"base64:$sec64\",\"verify\":${2:-true}}" \
		http://localhost/v1/migrations
}
# start_sup ARGS...: rdmig-dest --serve with the fake criu (held until $T/hold).
start_sup() {
	# A fresh log: the wait below must not find the last supervisor's line.
	rm -f "$T/sup.log"
	FAKE_CRIU_HOLD=$T/hold "$RDMIG_DEST" --serve --api-socket "$dsock" --work-root "$T/droot" \
		--criu "$(dirname "$0")/fake-criu-restore.sh" -o "$T/sup.log" "$@" &
	sup_pid=$!
	track "$sup_pid"
	wait_log "$T/sup.log" "api: serving on $dsock" >/dev/null
}

# to_draining ID [SIZE [SUPERVISOR ARGS...]]: migrates ID (SIZE, 64M by default) through a new supervisor
# until its worker (w1, its guard: guard) drains, with the source (src_pid)
# stopped before the restored process faults: its pages stay missing.
to_draining() {
	local id=$1 size=${2:-64M}
	shift $(($# < 2 ? $# : 2))
	rm -f "$T/hold"
	mkimage "$T/src-$id" --size "$size"
	start_source "$T/source-$id.log" -m "$id:$T/src-$id:$T/secret" --verify
	start_sup "$@"
	post "$id"
	wait_json "$id" 'j["state"]' restoring
	w1=$(worker)
	guard=$(child_of "$w1")
	if [ -z "$w1" ] || [ -z "$guard" ]; then
		check "$id: the supervisor started a worker and the worker its guard" false
		diag_file "$T/sup.log" 40
		finish
	fi
	track "$guard"
	kill -STOP "$src_pid"
	touch "$T/hold"
	wait_json "$id" 'j["state"]' draining
}

# 1. Two workers killed, the third finishes.
to_draining t1
# A moment of the source: some pages in, most still missing.
kill -CONT "$src_pid"
sleep 0.05
kill -STOP "$src_pid"
wait_json t1 'j["progress"]["pages_fetched"] > 0' True
check "the first worker installed pages, and some are missing" \
	eval "test \"\$(jget t1 'j[\"progress\"][\"pages_remaining\"] > 0')\" = True"
kill -KILL "$w1"
wait_json t1 'j["takeovers"]' 1
# The new worker: a child of the supervisor that is neither the killed one
# (a zombie until reaped) nor its guard (the supervisor may adopt it).
w2_up() {
	w2=$(pgrep -P "$sup_pid" | grep -vx -e "$w1" -e "$guard" | head -1)
	test -n "$w2" && alive "$guard" && test -n "$(restored t1)"
}
check "killed in post-copy, the worker is replaced; the stand-in and the guard live on" \
	wait_until 20 w2_up
# The second one dies while it still waits for the stopped source.
wait_log "$T/droot/t1/rdmig-dest.log" "taking over: the guard handed over 1 task" >/dev/null
kill -KILL "$w2"
wait_json t1 'j["takeovers"]' 2
kill -CONT "$src_pid"
wait_json t1 'j["state"]' done 60
"${DCTL[@]}" status t1 --json >"$T/t1.json" 2>&1
check "t1 is done after two takeovers, the API says so" \
	eval "test \"\$(jget t1 'j[\"state\"],j[\"final\"],j[\"takeovers\"],j[\"error\"]')\" = \"('done', True, 2, None)\""
check "the restored process verified every page, none wrong" \
	standin_ok "$T/droot/t1/standin.out" $npages
check "the last worker adopted the task, found the first one's pages (EEXIST) and accounted for every lazy page" \
	eval "l=$T/droot/t1/rdmig-dest.log; test \"\$(field \$l adopted)\" = 1 && test \"\$(field \$l exist)\" -gt 0 && test \$((\$(field \$l fault) + \$(field \$l drain) + \$(field \$l exist) + \$(field \$l dropped))) -eq \$(field \$l lazy) && test \"\$(field \$l left)\" = 0"
check "the last worker got the page tags again (Attach{page_hashes}): every page it installed or found installed was checked by its tag, none left unverified" \
	eval "l=$T/droot/t1/rdmig-dest.log; test \"\$(field \$l unverified)\" = 0 && test \"\$(field \$l verify_failures)\" = 0 && test \"\$(field \$l verified)\" -gt 0 && test \"\$(field \$l verified)\" -ge \$((\$(field \$l fault) + \$(field \$l drain)))"
curl -s --unix-socket "$dsock" http://localhost/metrics >"$T/metrics.txt"
check "/metrics counts the two takeovers" grep -qx 'rdmig_dest_takeovers_total 2' "$T/metrics.txt"
check "the source released t1: the destination has every page" \
	wait_log "$T/source-t1.log" "migration t1 done"
for _ in $(seq 50); do alive "$guard" || break; sleep 0.1; done
check "the guard exited with the migration done" eval "! alive '$guard'"
kill -TERM "$src_pid"
wait_pid "$src_pid" 20
[ "$tap_failed" -eq 0 ] || for f in "$T/source-t1.log" "$T/sup.log" "$T/droot/t1/rdmig-dest.log" "$T/t1.json" "$T/droot/t1/standin.out"; do diag_file "$f" 60; done

# 2. No worker can take over: the source is gone too, --pause-limit 3.
kill -TERM "$sup_pid"
wait_pid "$sup_pid" 20
to_draining g2 64M --pause-limit 3
kill -KILL "$src_pid"
kill -KILL "$w1"
wait_json g2 'j["state"]' failed 30
check "g2 failed after one takeover: the new worker could not reach the source" \
	eval "test \"\$(jget g2 'j[\"final\"],j[\"takeovers\"]')\" = '(True, 1)'"
kids=$(restored g2)
for _ in $(seq 50); do
	[ -n "$kids" ] && for k in $kids; do [ "$(pstate "$k")" = T ] || false; done && break
	sleep 0.1
done
check "the restored processes are stopped (SIGSTOP, state T), not killed" \
	eval "test -n '$kids' && for k in $kids; do test \"\$(pstate \$k)\" = T || exit 1; done"
check "the guard holds their userfaultfds, and says why it stopped them" \
	eval "alive '$guard' && grep -q 'guard: .*stopped process' '$T/droot/g2/rdmig-dest.log'"
# Nothing left: the stopped stand-in goes, and the guard with it.
main=$(pgrep -f "rdmig-standin -D $T/droot/g2" | head -1)
for k in $kids $main; do kill -KILL "$k"; done
for _ in $(seq 50); do alive "$guard" || break; sleep 0.1; done
check "the guard exits once its processes are gone" eval "! alive '$guard'"
kill -TERM "$sup_pid"
wait_pid "$sup_pid" 20
[ "$tap_failed" -eq 0 ] || for f in "$T/source-g2.log" "$T/sup.log" "$T/droot/g2/rdmig-dest.log"; do diag_file "$f" 60; done

# 3. An upgrade under a running migration: the supervisor runs from a copy,
# which is replaced by a new file (a new inode, as a package upgrade
# renames one over it) before the worker is killed: the worker taking over
# runs the new file, the supervisor its old image.
mkdir -p "$T/bin"
cp "$RDMIG_DEST" "$T/bin/rdmig-dest"
RDMIG_DEST=$T/bin/rdmig-dest to_draining u3 16M
cp "$RDMIG_DEST" "$T/bin/rdmig-dest.new" && mv -f "$T/bin/rdmig-dest.new" "$T/bin/rdmig-dest"
kill -KILL "$w1"
wait_json u3 'j["takeovers"]' 1
w2=$(worker)
ino() { stat -L -c %i "$1" 2>/dev/null; }
for _ in $(seq 50); do
	[ -n "$w2" ] && [ "$(ino "/proc/$w2/exe")" = "$(ino "$T/bin/rdmig-dest")" ] && break
	sleep 0.1
done
check "the worker taking over runs the replaced file, the supervisor still its old binary" \
	eval "test -n '$w2' && test \"\$(ino /proc/$w2/exe)\" = \"\$(ino '$T/bin/rdmig-dest')\" && test \"\$(ino /proc/$sup_pid/exe)\" != \"\$(ino '$T/bin/rdmig-dest')\""
check "... and the supervisor's log names it" \
	grep -q "migration u3: worker $w1 died in post-copy (signal 9); worker $w2 ($T/bin/rdmig-dest) takes over" "$T/sup.log"
kill -CONT "$src_pid"
wait_json u3 'j["state"]' done 60
check "u3 is done after the upgrade, every page verified by the restored process" \
	eval "test \"\$(jget u3 'j[\"state\"],j[\"takeovers\"]')\" = \"('done', 1)\" && standin_ok '$T/droot/u3/standin.out' 4096"
kill -TERM "$src_pid"
wait_pid "$src_pid" 20
kill -TERM "$sup_pid"
wait_pid "$sup_pid" 20
[ "$tap_failed" -eq 0 ] || for f in "$T/source-u3.log" "$T/sup.log" "$T/droot/u3/rdmig-dest.log"; do diag_file "$f" 60; done

# 4. A lazy dump taken over: rdmig-source dumps a process with
# fake-criu.sh (`--lazy-dump`: its page server answers every 200 ms, so
# units are still being staged); the worker is killed in post-copy with
# pages missing, the source stopped; the new worker resumes the source,
# which announces every staged unit again; the restored process verifies
# every page.
lsock=$T/run/source-z4.sock
rm -f "$T/hold"
FAKE_CRIU_PSRV_DELAY_MS=200 start_source "$T/source-z4.log" --api-socket "$lsock" \
	--images-root "$T/images/root" --criu "$(dirname "$0")/fake-criu.sh"
sleep 600 &
w4=$!
track "$w4"
"$RDMIG_CTL" --socket "$lsock" migrate --pid "$w4" --lazy-dump --secret-file "$T/secret" \
	--id z4 >"$T/z4.out" 2>&1
zstate() { "$RDMIG_CTL" --socket "$lsock" status z4 --json 2>/dev/null | sed -n 's/.*"state": "\([a-z_]*\)".*/\1/p'; }
zstate_is() { [ "$(zstate)" = "$1" ]; }
wait_until 60 zstate_is serving
start_sup
post z4 false
wait_json z4 'j["state"]' restoring
w1=$(worker)
guard=$(child_of "$w1")
track "$guard"
touch "$T/hold"
wait_json z4 'j["state"]' draining
kill -STOP "$src_pid"
check "z4 (a lazy dump) drains with pages missing when its worker is killed" \
	eval "test \"\$(jget z4 'j[\"progress\"][\"pages_remaining\"] > 0')\" = True"
kill -KILL "$w1"
wait_json z4 'j["takeovers"]' 1
kill -CONT "$src_pid"
wait_json z4 'j["state"]' done 60
check "z4 is done after the takeover, every page verified by the restored process" \
	eval "test \"\$(jget z4 'j[\"state\"],j[\"takeovers\"]')\" = \"('done', 1)\" && standin_ok '$T/droot/z4/standin.out' 1024"
check "the worker taking over waited for the units' StageRegion again; the source's digest matched (done)" \
	eval "grep -q 'resuming a lazy dump' '$T/droot/z4/rdmig-dest.log' && wait_until 20 zstate_is done"
kill -TERM "$src_pid"
wait_pid "$src_pid" 20
kill -TERM "$sup_pid"
wait_pid "$sup_pid" 20
[ "$tap_failed" -eq 0 ] || for f in "$T/source-z4.log" "$T/z4.out" "$T/sup.log" "$T/droot/z4/rdmig-dest.log"; do diag_file "$f" 60; done
finish
