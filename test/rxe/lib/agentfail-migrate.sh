#!/bin/bash
# shellcheck disable=SC2034 # GUEST_TAG, size: read by guest.sh
# Runs in a soft-RoCE guest pair (test/rxe/t/41-agentfail-*.t): the agent
# part of issue 12's failure matrix.  Migrations go through both agents as
# in handover-migrate.sh (`rdmigctl migrate --pid P --to B`, RDMA, --verify,
# mutual TLS), each of a real rdmig-workload that verifies all its memory
# on the destination while pages move (across the failure: its faulting
# threads wait in the kernel through a pause) and again after the last
# page; one agent is hurt in post-copy, and the migration must still end
# done.  The cases, RDMIG_CASES (words, run in that order in one boot):
#   srckill  rdmig-source SIGKILLed once the destination agent reports 10%
#            of the pages in (RDMIG_HURT_SRC_PCT; its word through the
#            shared directory: the source's mirror of the progress lags),
#            started again 5 s later with the same options: it reloads its
#            record, the destination resumes, done; once it is killed the
#            destination samples its progress (pages must be left) and
#            only then starts its check;
#   lazykill srckill's kill and restart, the workload dumped with
#            --lazy-dump: criu's page server loses its client and exits, the
#            tree stays stopped; the restarted agent takes it again and
#            stages the pages left from it (process_vm_readv); a dump
#            that came with no lazy page is migrated to the end and the
#            case run again once as lazykill2 (no_lazy(), C.redo);
#   srcterm  rdmig-source SIGTERMed at 10% (likewise): it is still there a
#            second later, keeps serving until done, then exits 0 by itself
#            (its record says done);
#   wkill    the destination worker SIGKILLed at 20% (RDMIG_HURT_PCT): `rdmig-dest --serve`
#            starts a new worker that takes the userfaultfds from the guard;
#   binswap  the destination agent runs from a copy of rdmig-dest in
#            $top/bin (in every case); here that file is replaced by a new
#            copy (a new inode, as a package upgrade does) at 20% and the
#            worker SIGKILLed: the new worker must run the new file;
#   slots    six 16 MiB workloads migrated at once into a destination agent
#            with --max-migrations 4 (RDMIG_DEST_ARGS): all six accepted,
#            four reserve, the two others wait in the source agent's queue
#            (queued, reason slot) untouched (running, not frozen:
#            /proc/PID/status State, generation advancing), then migrate.
# Prints `agentfail: ...` lines; machine-readable ones are
# `agentfail: json CASE WHAT {...}` (one JSON object: WHAT is source or dest,
# the agent's migration resource when final; at, the progress when the
# failure was made; verdict, the destination's checks; exe, the binaries;
# untouched, a waiting workload; hurt, the destination's progress just
# after the source agent was hurt).  The guests meet in RDMIG_SHARED_DIR:
# CASE.gen0 (the workload's generation before the dump), CASE.go (srckill,
# lazykill, srcterm: the share of pages is in, the progress then), CASE.hurt (the
# source agent was killed or terminated), CASE.migrated (the source side's
# status), CASE.verified (the destination's verdict).
# Environment: RDMIG_BUILD, RDMIG_PKI (test/lib/pki.sh's pki_agents),
# RDMIG_CASES, RDMIG_SIZE_MB (default 32; the .t files give 16), RDMIG_DEST_ARGS,
# RDMIG_SOURCE_ARGS (more options of each agent, words), RDMIG_DRAIN_ARGS
# (the destination agent's drain, handed to its workers; default
# --drain-depth 1 --drain-chunk 4K: one 4 KiB read at a time, so 32 MiB
# take 20 s or more and the failure surely comes in post-copy; the default
# drain moved them in 5-10 s, before a poll from here saw the share).
set -u
role=${1:?usage: agentfail-migrate.sh source|dest}
cases=${RDMIG_CASES:?}
# The same paths in both guests: the restored workload reopens them by name.
top=/tmp/rdmig-agentfail
GUEST_TAG=agentfail
# shellcheck source=guest.sh
. "$(dirname "${BASH_SOURCE[0]}")/guest.sh"
: "${B:?}" "${pki:?}" "${shared:?}"
slot_ids="s1 s2 s3 s4 s5 s6"
# The share of pages in when the destination hurts its worker, and when it
# tells the source to be hurt (lower: the word takes a moment to get
# there).  A poll from a script takes a good part of a second under TCG.
dst_pct=${RDMIG_HURT_PCT:-20}
src_pct=${RDMIG_HURT_SRC_PCT:-10}

# wait_final SOCK ID SECS: until the migration is final; prints its state.
wait_final() {
	local s=''
	for _ in $(seq $(($3 * 10))); do
		s=$(mig_get "$2" 'if .final then .state else empty end' "$1")
		[ -n "$s" ] && break
		sleep 0.1
	done
	echo "${s:-none}"
	[ -n "$s" ]
}
# wait_fraction SOCK ID PCT SECS: until PCT% of the pages moved (or the
# migration is final); prints `{"state","fetched","total"}` then.
wait_fraction() {
	local j=
	for _ in $(seq $(($4 * 20))); do
		j=$(mig_json "$2" "$1" | jq -c '{state, final, fetched: .progress.pages_fetched, total: .progress.pages_total}' 2>/dev/null)
		if [ -n "$j" ] && jq -e --argjson p "$3" \
			'.final or ((.total // 0) > 0 and (.fetched // 0) * 100 >= $p * .total)' \
			<<<"$j" >/dev/null 2>&1; then
			break
		fi
		sleep 0.05
	done
	[ -n "$j" ] || j='{}'
	echo "$j"
}

# The workload of case C lives in $top/wl-C; use C points guest.sh's
# report and check files there.
use() {
	report=$top/wl-$1/report
	check=$top/wl-$1/check
}
# ask_start C [REQ]: asks C's workload for a check (or REQ), not waiting.
ask_start() {
	use "$1"
	rm -f "$report"
	echo "${2:-check}" >"$check"
}
# ask_wait C: waits for its verdict (as guest.sh's ask_check); 0 if OK.
ask_wait() {
	use "$1"
	wait_file "$report" 180 && for _ in $(seq 20); do
		[ -s "$report" ] && break
		sleep 0.1
	done
	[ -s "$report" ] || {
		say "$1: no report from the workload"
		return 1
	}
	say "$1: $(cat "$report")"
	grep -q '^workload: OK' "$report"
}
# ask C [REQ]: ask_check of C's workload.
ask() {
	use "$1"
	ask_check "${2:-check}"
}
gen() {
	use "$1"
	last_gen
}

# start_case_workload C MIB: C's workload started (guest.sh); sets wpid.
start_case_workload() {
	rm -rf "$top/wl-$1" "$top/pid" && mkdir -p "$top/wl-$1"
	use "$1"
	size=$2 start_workload
}

# --- source side --------------------------------------------------------

ssock=$top/source.sock
nsrc=0
# start_source: rdmig-source with its API, the same options every time
# (a restart); the log of each start kept as $top/source-N.log; sets spid.
start_source() {
	nsrc=$((nsrc + 1))
	[ -f "$top/source.log" ] && mv "$top/source.log" "$top/source-$((nsrc - 1)).log"
	# shellcheck disable=SC2086 # RDMIG_SOURCE_ARGS: words
	start_source_agent "$ssock" --verify ${RDMIG_SOURCE_ARGS:-}
	# A socket left by a killed agent is there at once: ask for health.
	for _ in $(seq 100); do
		"$ctl" --socket "$ssock" --timeout 2 health >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	say "rdmig-source did not start"
	return 1
}

# prepare C MIB: the workload of C started and checked; its generation to C.gen0.
prepare() {
	start_case_workload "$1" "$2" || {
		say "$1: the workload did not start"
		return 1
	}
	sleep 1
	ask "$1" || return 1
	gen "$1" >"$shared/$1.gen0"
	say "$1: before the dump: generation $(cat "$shared/$1.gen0")"
}

# migrate C PID: rdmigctl migrate --pid PID --to the peer, id C; its exit status.
migrate() {
	# A plain dump unless the case is about a lazy one (the agent's default
	# with --to): what the cases assert of a restart is a plain dump's.
	local lazy=--no-lazy-dump
	case $1 in lazykill*) lazy=--lazy-dump ;; esac
	"$ctl" --socket "$ssock" migrate --pid "$2" --to "$RDMIG_PEER_ADDR" --id "$1" \
		--transport rdma --verify "$lazy" >"$top/$1.migrate" 2>&1
	local rc=$?
	say "$1: rdmigctl migrate exited $rc: $(tr '\n' ' ' <"$top/$1.migrate")"
	return $rc
}

# src_end C ST PID: the source's resource and what became of the
# workload PID here, ST to C.migrated, then the destination's verdict
# awaited; 0 if it is 0.
src_end() {
	local s stt
	s=$(wait_final "$ssock" "$1" 300)
	say "$1: the source agent: $s"
	say "json $1 source $(mig_json "$1" "$ssock")"
	# criu's errors, when its dump failed: the API's error has one line.
	case $s in failed | aborted)
		grep -a 'Error\|Warn' "$top/images/$1/dump.log" 2>/dev/null | tail -n 20 |
			sed "s|^|agentfail: $1: criu: |" ;;
	esac
	stt=$(sed -n 's/^State:[[:space:]]*\([A-Za-z]\).*/\1/p' "/proc/$3/status" 2>/dev/null)
	say "json $1 srcwl {\"pid\":$3,\"state\":\"${stt:-gone}\"}"
	"$ctl" --socket "$ssock" status "$1" 2>&1 | sed "s/^/agentfail: $1: report: /"
	echo "$2" >"$shared/$1.migrated"
	wait_file "$shared/$1.verified" 600 || say "$1: no verdict from the destination"
	[ "$(cat "$shared/$1.verified" 2>/dev/null)" = 0 ]
}

# wait_go C: the destination's word that C's share of pages moved (its
# agent's progress is fresh there; the source's mirror of it lags by a
# poll); prints the progress it saw.
wait_go() {
	wait_file "$shared/$1.go" 300 || say "$1: no word from the destination"
	cat "$shared/$1.go" 2>/dev/null || echo '{}'
}

# no_lazy C AT: C's lazy dump came with no lazy page (criu wrote every
# page into the images; rare, its cause not found yet): what criu and the
# agent said of it, for whoever looks next.
no_lazy() {
	say "$1: criu's lazy dump marked no page lazy (the destination's progress: $2); the case again as ${1}2"
	say "json $1 nolazy {\"at\":$2,\"source\":$(mig_json "$1" "$ssock" | jq -c '{lazy_dump, state}' 2>/dev/null || echo null)}"
	grep -a 'Pagemap generated\|lazy\|Lazy\|page.server\|page-server' "$top/images/$1/dump.log" 2>/dev/null |
		head -n 20 | sed "s|^|agentfail: $1: criu: |"
	grep -a "migration $1\b.*\(criu\|lazy\)" "$top/source.log" 2>/dev/null | head -n 10 |
		sed "s|^|agentfail: $1: agent: |"
}

# src_case C: one migration of a workload, hurt as C says on this side.
# lazykill whose dump had no lazy page (nothing to hurt in post-copy) is
# migrated to the end and run again once, as lazykill2.
src_case() {
	local c=$1 st=0 at rc alive redo=
	prepare "$c" "$size" || st=1
	migrate "$c" "$wpid" || st=1
	case $c in
	srckill | lazykill | lazykill2)
		at=$(wait_go "$c")
		if [ "$c" = lazykill ] && jq -e '(.total // 0) == 0' <<<"$at" >/dev/null 2>&1; then
			no_lazy "$c" "$at"
			redo=${c}2
			# The destination looks for the word once it hears of the (no) hurt.
			echo "$redo" >"$shared/$c.redo"
			: >"$shared/$c.hurt"
		else
			src_hurt_kill "$c" "$at" || st=1
		fi
		;;
	srcterm)
		at=$(wait_go "$c")
		kill -TERM "$spid"
		: >"$shared/$c.hurt"
		say "json $c at $at"
		sleep 1
		kill -0 "$spid" 2>/dev/null && alive=true || alive=false
		wait "$spid"
		rc=$?
		say "$c: rdmig-source exited $rc after SIGTERM; its record: $(jq -c '{state}' "$top/images/.records/$c.json" 2>&1)"
		say "json $c term {\"alive_after_1s\":$alive,\"exit\":$rc,\"record\":$(jq -c . "$top/images/.records/$c.json" 2>/dev/null || echo null)}"
		# The next case, and the final JSON, from a new agent (the record again).
		start_source || st=1
		;;
	esac
	src_end "$c" "$st" "$wpid"
	st=$?
	case $c in lazykill*) say "json $c adopt {\"taken\":$(src_said "lazy dump of pid $wpid: its stopped tree taken again"),\"from_tree\":$(src_said "lazy dump of pid $wpid: staging from its stopped tree")}" ;; esac
	if [ -n "$redo" ]; then
		src_case "$redo" || st=1
	fi
	return $st
}

# src_hurt_kill C AT: rdmig-source SIGKILLed with C in post-copy (AT, the
# destination's progress then) and started again 5 s later.
src_hurt_kill() {
	kill -KILL "$spid"
	wait "$spid" 2>/dev/null
	: >"$shared/$1.hurt"
	say "json $1 at $2"
	say "$1: rdmig-source SIGKILLed; starting it again in 5 s"
	sleep 5
	start_source
}

# src_said TEXT: true if the running rdmig-source logged TEXT, else false.
src_said() {
	grep -q -- "$1" "$top/source.log" 2>/dev/null && echo true || echo false
}

# ask_within C SEC: C's workload verifies its memory, within SEC seconds.
ask_within() {
	local end=$((SECONDS + $2))
	use "$1"
	rm -f "$report"
	echo check >"$check"
	while [ ! -s "$report" ] && [ $SECONDS -lt $end ]; do sleep 0.2; done
	[ -s "$report" ] && grep -q '^workload: OK' "$report"
}

# untouched C PID: a waiting workload: its State and generation, twice;
# then whether its images directory exists and, after that, its state in
# the API.  A slot may free meanwhile and its dump start (the directory is
# made in the same step of the agent's loop that ends its queued state):
# only a look that ends with the state still queued was made entirely
# while it waited, and images with the state still queued are what must
# never be.  The State letter as the kernel gives it ("t" is CRIU's
# ptrace stop).
untouched() {
	local stt g0 g1 fz q
	stt=$(sed -n 's/^State:[[:space:]]*\([A-Za-z]\).*/\1/p' "/proc/$2/status" 2>/dev/null)
	# A workload frozen or dumped already answers no check: no asking, and
	# one frozen meanwhile (a slot freed) is given 20 s, not ask's minutes.
	if [ "$stt" = R ] || [ "$stt" = S ]; then
		ask_within "$1" 20 && g0=$(gen "$1")
		sleep 1
		ask_within "$1" 20 && g1=$(gen "$1")
	fi
	fz=$([ -e "$top/images/$1" ] && echo true || echo false)
	q=$(mig_state "$1" "$ssock")
	say "json $1 untouched {\"pid\":$2,\"state\":\"${stt:-gone}\",\"gen0\":${g0:-0},\"gen1\":${g1:-0},\"frozen\":$fz,\"after\":\"${q:-none}\"}"
}

# slots: six at once into four destination slots.
src_slots() {
	local c st=0 waiting=() started=()
	declare -A pid mpid
	for c in $slot_ids; do
		prepare "$c" "${RDMIG_SIZE_MB:-16}" || st=1
		pid[$c]=$wpid
	done
	for c in $slot_ids; do
		migrate "$c" "${pid[$c]}" &
		mpid[$c]=$!
	done
	for c in $slot_ids; do
		if wait "${mpid[$c]}"; then started+=("$c"); else waiting+=("$c"); fi
	done
	say "slots: started at once: ${started[*]}; refused: ${waiting[*]:-none}"
	# The queue as the API shows it now: those waiting for a destination
	# slot (reason slot), and those reserved but waiting for a dump slot
	# (--max-dumps, reason dump), which may start their dump any moment.
	local q
	# One listing: the positions of one moment.
	q=$("$ctl" --socket "$ssock" status --json 2>/dev/null |
		jq -c '[.migrations[] | select(.state == "queued") | {id, queue}]' 2>/dev/null)
	q=${q:-[]}
	say "json slots queue $(jq -c --argjson s ${#started[@]} --argjson r ${#waiting[@]} \
		'{started: $s, refused: $r, queued: map(select(.queue.reason == "slot")), dump_waits: (map(select(.queue.reason == "dump")) | length)}' <<<"$q")"
	# Waiting for a slot there, they must be untouched: look while the
	# others migrate, at all of them at once (one after the other, the
	# last was looked at seconds later, its slot often free by then).
	local looks=()
	for c in $slot_ids; do
		if jq -e --arg c "$c" 'any(.[]; .id == $c and .queue.reason == "slot")' <<<"$q" >/dev/null; then
			untouched "$c" "${pid[$c]}" &
			looks+=($!)
		fi
	done
	[ ${#looks[@]} -eq 0 ] || wait "${looks[@]}"
	# A start refused (no queue on an older source) is started again once slots are free.
	if [ ${#waiting[@]} -gt 0 ]; then
		for c in "${started[@]}"; do wait_final "$ssock" "$c" 300 >/dev/null; done
		for c in "${waiting[@]}"; do
			for _ in $(seq 30); do
				migrate "$c" "${pid[$c]}" && continue 2
				sleep 2
			done
			st=1
		done
	fi
	for c in $slot_ids; do src_end "$c" "$st" "${pid[$c]}" || st=1; done
	return $st
}

source_side() {
	local c st=0
	rm -rf "$top" && mkdir -p "$top"
	start_source || {
		for c in $cases; do echo 1 >"$shared/$c.migrated"; done
		return 1
	}
	wait_dest_api
	for c in $cases; do
		if [ "$c" = slots ]; then src_slots || st=1; else src_case "$c" || st=1; fi
	done
	kill -TERM "$spid"
	wait "$spid"
	mv "$top/source.log" "$top/source-$nsrc.log"
	for f in "$top"/source-*.log; do sed "s/^/$(basename "$f" .log): /" "$f"; done
	return $st
}

# --- destination side ---------------------------------------------------

dsock=$top/dest.sock
# worker C: C's worker, the supervisor's child (`rdmig-dest -D DIR ... -m C
# ...`; its guard, the worker's child, has the same command line).
worker() { pgrep -P "$dpid" -f -- " -m $1( |\$)" | head -n 1; }
ino() { stat -L -c %i "$1" 2>/dev/null; }

# hurt C: at $dst_pct%, the worker killed (binswap: after its file is replaced).
hurt() {
	local c=$1 at w1 w2='' wi binf=$top/bin/rdmig-dest
	at=$(wait_fraction "$dsock" "$c" "$dst_pct" 300)
	w1=$(worker "$c")
	if [ "$c" = binswap ]; then
		cp "$B/dest-agent/rdmig-dest" "$binf.new" && mv -f "$binf.new" "$binf"
	fi
	[ -n "$w1" ] && kill -KILL "$w1"
	say "json $c at $at"
	say "$c: worker ${w1:-none} SIGKILLed"
	for _ in $(seq 200); do
		w2=$(worker "$c")
		[ -n "$w2" ] && [ "$w2" != "$w1" ] && break
		w2=
		sleep 0.05
	done
	# The new worker's binary, once it has exec'd (not the supervisor's image).
	for _ in $(seq 40); do
		[ -n "$w2" ] && [ "$(ino "/proc/$w2/exe")" = "$(ino "$binf")" ] && break
		sleep 0.05
	done
	wi=$([ -n "$w2" ] && ino "/proc/$w2/exe")
	say "json $c exe {\"new_worker\":${w2:-0},\"worker_ino\":${wi:-0},\"file_ino\":$(ino "$binf"),\"supervisor_ino\":$(ino "/proc/$dpid/exe")}"
}

# dst_case C: follows C on the destination agent; the workload verifies
# as soon as it runs here, and after the last page; C.verified.
dst_case() {
	local c=$1 st=0 s g0 g1 g2 ok1=false ok2=false wp stt
	# The restored workload reopens its report and check files by name.
	mkdir -p "$top/wl-$c"
	for _ in $(seq 6000); do
		s=$(mig_state "$c" "$dsock")
		case $s in postcopy | draining | paused | done | failed | aborted) break ;; esac
		[ -e "$shared/$c.migrated" ] && break
		sleep 0.1
	done
	say "$c: the destination agent's state: ${s:-none}"
	case $s in
	postcopy | draining | paused | done)
		# Hurt first, then the check: its faults would bring every page
		# in before a poll from here sees the share.
		case $c in
		wkill | binswap) hurt "$c" ;;
		srckill | lazykill | lazykill2 | srcterm)
			wait_fraction "$dsock" "$c" "$src_pct" 300 >"$shared/$c.go.tmp"
			mv "$shared/$c.go.tmp" "$shared/$c.go"
			# The progress once the source agent was hurt: pages must be
			# left then (the word above is from before).
			wait_file "$shared/$c.hurt" 300 || say "$c: no word that the source agent was hurt"
			say "json $c hurt $(mig_json "$c" "$dsock" | jq -c '{state, final, fetched: .progress.pages_fetched, total: .progress.pages_total}' 2>/dev/null)"
			;;
		esac
		ask_start "$c"
		ask_wait "$c" && ok1=true
		g1=$(gen "$c")
		;;
	esac
	wait_file "$shared/$c.migrated" 900 || say "$c: no word from the source"
	[ "$(cat "$shared/$c.migrated" 2>/dev/null)" = 0 ] || st=1
	# Failed on the source before it reached this agent (its dump failed):
	# nothing here to wait for, nor a workload to ask (minutes each in TCG).
	if [ $st -ne 0 ] && [ -z "$(mig_state "$c" "$dsock")" ]; then
		say "$c: never reached the destination agent"
		say "json $c verdict {\"during\":false,\"after\":false,\"gen0\":0,\"gen1\":0,\"gen2\":0,\"pid\":0,\"state\":\"gone\"}"
		echo 1 >"$shared/$c.verified"
		return 1
	fi
	s=$(wait_final "$dsock" "$c" 300)
	say "$c: the destination agent: $s"
	say "json $c dest $(mig_json "$c" "$dsock")"
	"$ctl" --socket "$dsock" status "$c" 2>&1 | sed "s/^/agentfail: $c: dest report: /"
	grep -h 'summary:\|pauses:\|taking over\|paused\|resumed' "$top/dest/$c/rdmig-dest.log" 2>/dev/null |
		sed "s/^/agentfail: $c: worker: /"
	wp=$(pgrep -f "rdmig-workload .*--report $top/wl-$c/report" | head -n 1)
	stt=$(sed -n 's/^State:[[:space:]]*\([A-Za-z]\).*/\1/p' "/proc/${wp:-0}/status" 2>/dev/null)
	g0=$(cat "$shared/$c.gen0" 2>/dev/null || echo 0)
	sleep 1
	ask "$c" exit && ok2=true
	g2=$(gen "$c")
	say "json $c verdict {\"during\":$ok1,\"after\":$ok2,\"gen0\":${g0:-0},\"gen1\":${g1:-0},\"gen2\":${g2:-0},\"pid\":${wp:-0},\"state\":\"${stt:-gone}\"}"
	$ok1 && $ok2 || st=1
	[ "${g2:-0}" -gt "${g0:-0}" ] || st=1
	echo "$st" >"$shared/$c.verified"
	return $st
}

dest_side() {
	local c s st=0
	rm -rf "$top" && mkdir -p "$top/bin"
	# The agent runs from a copy, which binswap replaces.
	cp "$B/dest-agent/rdmig-dest" "$top/bin/rdmig-dest"
	# shellcheck disable=SC2046,SC2086 # the options are words
	"$top/bin/rdmig-dest" --serve --api-socket "$dsock" --api-tcp "0.0.0.0:$api_port" \
		$(tls dest) --allow-peer source.rdmig.test --work-root "$top/dest" \
		${RDMIG_DRAIN_ARGS---drain-depth 1 --drain-chunk 4K} ${RDMIG_DEST_ARGS:-} -o "$top/dest.log" &
	dpid=$!
	for c in $cases; do
		if [ "$c" = slots ]; then
			# Restored while the first is followed: their files' directory
			# must be there already.
			for s in $slot_ids; do mkdir -p "$top/wl-$s"; done
			for s in $slot_ids; do dst_case "$s" || st=1; done
		else
			dst_case "$c" || st=1
			# The source side's word to follow the case again (no_lazy()).
			if [ -s "$shared/$c.redo" ]; then
				dst_case "$(cat "$shared/$c.redo")" || st=1
			fi
		fi
	done
	kill -TERM "$dpid"
	wait "$dpid"
	sed 's/^/dest: /' "$top/dest.log"
	return $st
}

case $role in
source) source_side ;;
dest) dest_side ;;
*)
	echo "agentfail-migrate.sh: unknown role $role" >&2
	exit 2
	;;
esac
