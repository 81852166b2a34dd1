# shellcheck shell=bash
# The guest scripts' shared library (test/rxe/lib/*-migrate.sh, sourced in
# a soft-RoCE guest): the self-checking workload, the two agents with their
# APIs over mutual TLS, and JSON queries of a migration (jq).  Sourcing it
# defines functions only; names and meanings stay stable (other scripts
# build on them): add, do not rename.
#
# The caller sets, before calling (the defaults below otherwise):
#   B       the build directory (RDMIG_BUILD)
#   pki     the agents' certificates (RDMIG_PKI: test/lib/pki.sh's
#           pki_agents, "source" and "dest")
#   shared  RDMIG_SHARED_DIR, where the two guests meet
#   top     this script's directory in the guest, the same path in both
#           guests (a restored workload reopens its files by name)
#   size    the workload's MiB;  report, check: its report and check files
#   api     where wait_state, mig_json... ask by default: a UNIX socket
#           path, or https://HOST:PORT (asked as the "source" certificate)
#   GUEST_TAG  the prefix of say's lines (default "guest")
# It sets wl and ctl (the workload's and rdmigctl's paths) and api_port;
# start_workload sets wpid, start_source_agent spid, start_dest_agent dpid:
# a caller's local of one of these names would hide it from the functions.
: "${B:=${RDMIG_BUILD:-}}"
: "${pki:=${RDMIG_PKI:-}}"
: "${shared:=${RDMIG_SHARED_DIR:-}}"
: "${top:=/tmp/rdmig-guest}"
: "${size:=${RDMIG_SIZE_MB:-32}}"
: "${report:=$top/report}"
: "${check:=$top/check}"
: "${GUEST_TAG:=guest}"
wl=$B/test/rdmig-workload
ctl=$B/rdmigctl/rdmigctl
# The destination agent's TCP API port (mutual TLS).
api_port=${api_port:-7472}

say() { echo "$GUEST_TAG: $*"; }

# tls NAME: the agent NAME's --tls-cert/--tls-key/--tls-ca.
tls() { echo "--tls-cert $pki/$1.pem --tls-key $pki/$1.key --tls-ca $pki/ca.pem"; }

# wait_file FILE SECS: FILE exists within SECS.
wait_file() {
	local _
	for _ in $(seq $(($2 * 10))); do
		[ -e "$1" ] && return 0
		sleep 0.1
	done
	return 1
}

# keep_logs FILE...: copies them to RDMIG_KEEP_LOGS when set.
keep_logs() {
	[ -n "${RDMIG_KEEP_LOGS:-}" ] || return 0
	mkdir -p "$RDMIG_KEEP_LOGS" && cp -f "$@" "$RDMIG_KEEP_LOGS"/ 2>/dev/null
	return 0
}

# --- the workload (test/tools/workload.c) ---

# shellcheck disable=SC2120 # callers pass exit
# ask_check [check|exit]: the workload verifies all its memory (and exits
# after, with "exit"); prints its verdict, 0 when it is OK.
ask_check() {
	local _
	rm -f "$report"
	echo "${1:-check}" >"$check"
	for _ in $(seq 1200); do
		[ -s "$report" ] && break
		sleep 0.1
	done
	[ -s "$report" ] || {
		say "no report from the workload"
		return 1
	}
	say "$(cat "$report")"
	grep -q '^workload: OK' "$report"
}

# last_gen: the generation in the workload's last report.
last_gen() { sed -n 's/.*generation \([0-9]*\).*/\1/p' "$report"; }

# The workloads' pace: their pause after each page they rewrite, per thread
# (RDMIG_WL_PACE_US, default 1000 us: at most 2000 pages/s, 8 MB/s).  At
# full speed two writer threads keep a one-vCPU TCG guest busy whatever
# else it has to do: the agents, criu and the test's own steps then wait
# for it, and a pair of such guests takes a whole host core each.  The
# paced workload still rewrites and faults all along (a 64 MiB one touches
# every page in 8 s).  0 is full speed, as the bench runs it; a --delay-us
# in RDMIG_WL_ARGS comes after and wins.

# start_workload: rdmig-workload ($size MiB, 2 threads) in its own pid
# namespace, in the background; sets wpid.  RDMIG_WL_ARGS: more options;
# RDMIG_FAULT_SAMPLES_OUT: it times its first touches ($top/fault-samples).
# RDMIG_WL_PACE_US: its --delay-us unless RDMIG_WL_ARGS gives one (the
# pace, above).
start_workload() {
	local timing=()
	[ -n "${RDMIG_FAULT_SAMPLES_OUT:-}" ] && timing=(--time-faults --fault-samples "$top/fault-samples")
	# shellcheck disable=SC2086 # RDMIG_WL_ARGS: words
	(cd / && exec unshare -p -f setsid "$wl" --size "$size" --threads 2 \
		--report "$report" --check-file "$check" --pid-file "$top/pid" "${timing[@]}" \
		--delay-us "${RDMIG_WL_PACE_US:-1000}" ${RDMIG_WL_ARGS:-} </dev/null >/dev/null 2>&1) &
	wait_file "$top/pid" 60
	wpid=$(pgrep -n -x rdmig-workload)
	[ -n "$wpid" ]
}

# check_workload: the workload verifies its memory before the dump; its
# generation goes to "gen0" in the shared directory, for the destination.
check_workload() {
	local st=0
	sleep 1
	# shellcheck disable=SC2119 # a plain check
	ask_check || st=1
	say "before dump: generation $(last_gen)"
	last_gen >"$shared/gen0"
	return $st
}

# workloads_here: how many rdmig-workload processes run in this guest.
workloads_here() { pgrep -c -x rdmig-workload; }

# live PID: PID runs and is not a zombie (a restored workload that exited
# stays one: the guest's init does not reap it).
live() { [ -n "$1" ] && grep -q '^State:[[:space:]]*[^Z]' "/proc/$1/status" 2>/dev/null; }

# gone PID SECS: PID no longer runs (live) within SECS, by the clock: under
# TCG a round of a polling loop costs much more than its sleep.
gone() {
	local end=$((SECONDS + $2))
	while live "$1"; do
		[ "$SECONDS" -ge "$end" ] && return 1
		sleep 0.1
	done
}

# live_workloads: the rdmig-workload processes that run (not zombies),
# one pid a line.
live_workloads() {
	local p
	for p in $(pgrep -x rdmig-workload); do
		live "$p" && echo "$p"
	done
}

# say_gone WHO PID SECS: one line "WHO json: {"pid", "gone"}": whether PID
# stopped running within SECS (gone); 0 if it did.
say_gone() {
	local g=false
	gone "$2" "$3" && g=true
	say "$1 json: $(jq -nc --argjson p "${2:-null}" --argjson g "$g" '{pid: $p, gone: $g}')"
	[ "$g" = true ]
}

# say_twice WHO GEN0: the workload, sampled a second apart, verifies all its
# memory and then exits (ask_check, then ask_check exit); one line "WHO
# json: {"check1", "check2", "gen0", "gen1", "gen2"}": both verdicts
# (true: OK) and the generations before (GEN0, the caller's) and at each;
# 0 when both are OK and the generation kept growing.
say_twice() {
	local c1=false c2=false g1 g2
	sleep 1
	# shellcheck disable=SC2119 # a plain check
	ask_check && c1=true
	g1=$(last_gen)
	sleep 1
	ask_check exit && c2=true
	g2=$(last_gen)
	say "$1 json: $(jq -nc --argjson c1 "$c1" --argjson c2 "$c2" --argjson g0 "${2:-null}" \
		--argjson g1 "${g1:-null}" --argjson g2 "${g2:-null}" \
		'{check1: $c1, check2: $c2, gen0: $g0, gen1: $g1, gen2: $g2}')"
	[ "$c1" = true ] && [ "$c2" = true ] && [ "${g1:-0}" -ge "${2:-0}" ] && [ "${g2:-0}" -gt "${g1:-0}" ]
}

# --- the agents ---

# start_source_agent SOCK [OPTION...]: rdmig-source with its API on SOCK,
# RDMA READ (RDMIG_TRANSPORT) on RDMIG_ADDR:7471, TLS as "source", images
# under $top/images, log $top/source.log; sets spid; 0 once SOCK is there.
start_source_agent() {
	local sock=$1
	shift
	# shellcheck disable=SC2046 # the options are words
	"$B/source-agent/rdmig-source" -t "${RDMIG_TRANSPORT:-rdma}" -l "$RDMIG_ADDR:7471" \
		--api-socket "$sock" --images-root "$top/images" $(tls source) \
		-o "$top/source.log" "$@" &
	# shellcheck disable=SC2034 # the caller's
	spid=$!
	wait_file "$sock" 10
}

# start_dest_agent SOCK [OPTION...]: `rdmig-dest --serve` with its API on
# SOCK and on 0.0.0.0:$api_port (mutual TLS as "dest", the source agent's
# certificate allowed), work under $top/dest, log $top/dest.log; sets dpid;
# 0 once SOCK is there.
start_dest_agent() {
	local sock=$1
	shift
	# shellcheck disable=SC2046 # the options are words
	"$B/dest-agent/rdmig-dest" --serve --api-socket "$sock" --api-tcp "0.0.0.0:$api_port" \
		$(tls dest) --allow-peer source.rdmig.test --work-root "$top/dest" \
		-o "$top/dest.log" "$@" &
	# shellcheck disable=SC2034 # the caller's
	dpid=$!
	wait_file "$sock" 10
}

# ctl_at API ARG...: rdmigctl ARG... against API (a socket path, or an
# https:// URL asked with the source agent's certificate).
ctl_at() {
	local where=$1
	shift
	case $where in
	https://*)
		# shellcheck disable=SC2046 # the options are words
		"$ctl" --api "$where" $(tls source) "$@"
		;;
	*) "$ctl" --socket "$where" "$@" ;;
	esac
}

# dest_api_url: the peer's destination agent API, seen from the source guest.
dest_api_url() { echo "https://$RDMIG_PEER_ADDR:$api_port"; }

# wait_dest_api: the destination agent's API must answer (over mutual TLS,
# as the source agent) before the migration starts; says what it answered.
wait_dest_api() {
	local u _
	u=$(dest_api_url)
	for _ in $(seq 1200); do
		ctl_at "$u" --timeout 2 health >/dev/null 2>&1 && break
		sleep 0.1
	done
	say "destination agent: $(ctl_at "$u" health 2>&1)"
}

# --- a migration's JSON (docs/api.md §4) ---

# mig_json ID [API]: the migration's resource, on one line; empty when
# the agent does not answer or does not know ID.
mig_json() {
	ctl_at "${2:-$api}" status "$1" --json 2>/dev/null | jq -c . 2>/dev/null
}

# mig_get ID FILTER [API]: a jq FILTER (e.g. .pause.count) on the
# migration's JSON, raw; empty when absent.
mig_get() {
	mig_json "$1" "${3:-}" | jq -r "$2 // empty" 2>/dev/null
}

# mig_state ID [API]: the migration's state.  No jq: scripts poll it ten
# times a second while criu restores on the same vCPU, and two jq runs a
# poll cost the restore a noticeable share of it under TCG.  The resource's
# own "state" is its first (docs/api.md §4: id, role, state, ...).
mig_state() {
	local j
	j=$(ctl_at "${2:-$api}" status "$1" --json 2>/dev/null) || return 0
	[[ $j =~ \"state\":\ *\"([a-z_]+)\" ]] && echo "${BASH_REMATCH[1]}"
	return 0
}

# wait_runs_here ID API: until migration ID's workload runs here
# (postcopy, draining or done), it ended otherwise (failed, aborted), or
# the source side wrote "migrated" in $shared; 600 s at most.  Prints the
# state last seen.
wait_runs_here() {
	local s=''
	for _ in $(seq 6000); do
		s=$(mig_state "$1" "$2")
		case $s in postcopy | draining | done | failed | aborted) break ;; esac
		[ -e "$shared/migrated" ] && break
		sleep 0.1
	done
	echo "$s"
}

# wait_state ID STATES SECS [API]: waits until the migration's state is
# one of STATES (words separated by "|"), at most SECS; prints the states
# seen in order ("states: a b c").  Non-zero on time-out, or when it ends
# in another final state.
wait_state() {
	local id=$1 want="|$2|" secs=$3 where=${4:-} s last='' seen='' _
	for _ in $(seq $((secs * 10))); do
		s=$(mig_state "$id" "$where")
		if [ -n "$s" ] && [ "$s" != "$last" ]; then
			seen="$seen $s"
			last=$s
		fi
		case $want in *"|$s|"*) [ -n "$s" ] && break ;; esac
		case $s in done | failed | aborted | rolled_back) break ;; esac
		sleep 0.1
	done
	say "states of $id:${seen:- none}"
	case $want in *"|$last|"*) [ -n "$last" ] ;; *) false ;; esac
}

# pause_info ID [API]: "count=N total_ms=M reason=R" of the migration's
# pauses (reason "-" when not paused).
pause_info() {
	mig_json "$1" "${2:-}" |
		jq -r '.pause | "count=\(.count) total_ms=\(.total_ms) reason=\(.reason // "-")"' 2>/dev/null
}

# pages_info ID [API]: "total=N fetched=N remaining=N faults=N bytes=N".
pages_info() {
	mig_json "$1" "${2:-}" |
		jq -r '.progress | "total=\(.pages_total) fetched=\(.pages_fetched) remaining=\(.pages_remaining) faults=\(.faults) bytes=\(.bytes)"' 2>/dev/null
}

# say_json ROLE ID [API]: one line "ROLE json: {...}" for the .t file to
# read (tap.sh's guest_json).
say_json() { say "$1 json: $(mig_json "$2" "${3:-}")"; }

# say_ctl WHO API ARG...: `rdmigctl --json ARG...` against API; one line
# "WHO json: {"exit", "json", "error"}": its exit status, the JSON it
# printed (the API's answer; null when none, as on a refusal) and what it
# wrote to stderr (the API's error message on a refusal; null when
# nothing).  Returns its exit status.
say_ctl() {
	local who=$1 where=$2 out err rc
	shift 2
	err=$(mktemp)
	out=$(ctl_at "$where" --json "$@" 2>"$err")
	rc=$?
	say "$who json: $(jq -nc --argjson rc "$rc" --arg out "$out" --rawfile err "$err" \
		'{exit: $rc, json: ($out | fromjson? // null),
		  error: ($err | rtrimstr("\n") | if . == "" then null else . end)}')"
	rm -f "$err"
	return "$rc"
}

# summary_json LOG: rdmig-dest's last summary line in LOG (`info: summary:
# key=value ...`) as one JSON object (numbers as numbers), with
# "dropped_no_vma": its warnings of pages dropped with no event.
summary_json() {
	local n
	n=$(grep -c 'has had no VMA for 1 s and no event explained it' "$1" 2>/dev/null)
	sed -n 's/.* info: summary: //p' "$1" 2>/dev/null | tail -n 1 | tr ' ' '\n' |
		jq -R 'select(test("=")) | capture("(?<k>[^=]+)=(?<v>.*)") | {(.k): (.v | tonumber? // .)}' |
		jq -c -s --argjson n "${n:-0}" 'add + {dropped_no_vma: $n}'
}
