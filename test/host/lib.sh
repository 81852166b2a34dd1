# Shared helpers of the host integration tests (sourced, bash).
#
# Each test starts rdmig-dest on a fresh synthetic images dir, runs
# rdmig-standin against it and prints TAP.  Binaries come from the
# environment meson sets: RDMIG_DEST, RDMIG_STANDIN, RDMIG_MKIMAGE.
# Set KEEP=1 to keep the temporary directory.

set -u

: "${RDMIG_DEST:?}" "${RDMIG_STANDIN:?}" "${RDMIG_MKIMAGE:?}"

T=$(mktemp -d /tmp/rdmig-host.XXXXXX)
tap_n=0
tap_failed=0
dest_pid=

cleanup() {
	if [ -n "$dest_pid" ] && kill -0 "$dest_pid" 2>/dev/null; then
		kill -KILL "$dest_pid" 2>/dev/null
	fi
	if [ "$tap_failed" -ne 0 ] || [ "${KEEP:-0}" = 1 ]; then
		echo "# logs kept in $T"
	else
		rm -rf "$T"
	fi
}
trap cleanup EXIT

# plan N: N checks of the test, plus the sanitizer check finish() adds.
plan() { echo "1..$(($1 + 1))"; }

# ok CONDITION-EXIT-CODE DESCRIPTION: use as `check "desc" test ...`
check() {
	local desc=$1
	shift
	tap_n=$((tap_n + 1))
	if "$@"; then
		echo "ok $tap_n - $desc"
	else
		echo "not ok $tap_n - $desc"
		tap_failed=$((tap_failed + 1))
	fi
}

# Dumps a file into the TAP stream as comments (for failures).
diag_file() {
	[ -f "$1" ] && sed 's/^/# /' "$1" | tail -n "${2:-40}"
}

# mkimage DIR [args...]
mkimage() {
	local dir=$1
	shift
	"$RDMIG_MKIMAGE" -D "$dir" "$@" >"$T/mkimage.out" 2>&1 || {
		diag_file "$T/mkimage.out"
		return 1
	}
}

# start_dest LOG [args...]: rdmig-dest in the background, returns when it is
# ready (the '\0' on --status-fd).  Sets dest_pid.
start_dest() {
	local log=$1 byte
	shift
	rm -f "$T/status"
	mkfifo "$T/status"
	exec 8<>"$T/status"
	"$RDMIG_DEST" "$@" --status-fd 9 9>"$T/status" >"$log" 2>&1 &
	dest_pid=$!
	byte=$(timeout 60 head -c1 <&8 | od -An -tx1 | tr -d ' ')
	exec 8<&-
	[ "$byte" = 00 ] || {
		echo "# rdmig-dest did not report ready (got '$byte')"
		diag_file "$log"
		return 1
	}
}

# wait_dest: waits (at most 120 s) for rdmig-dest; its exit code goes to
# $code.  Not in a subshell: only this shell can wait for its child.
wait_dest() {
	local i
	for i in $(seq 1200); do
		kill -0 "$dest_pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$dest_pid" 2>/dev/null; then
		echo "# rdmig-dest still running after 120 s: killing it"
		kill -KILL "$dest_pid"
	fi
	wait "$dest_pid"
	code=$?
	dest_pid=
}

# field LOG NAME: a key=value of rdmig-dest's summary line.
field() {
	grep -o "summary: .*" "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | tail -1
}

# standin_lazy OUT: lazy pages the stand-in registered, summed over processes.
standin_lazy() {
	grep -o 'lazy [^(]*(\([0-9]*\) pages)' "$1" | sed 's/.*(\([0-9]*\) pages)/\1/' |
		awk '{ s += $1 } END { print s + 0 }'
}

# standin_ok OUT NPAGES: every process verified NPAGES pages, no mismatch.
standin_ok() {
	! grep -q MISMATCH "$1" &&
		grep -q "pages $2 verified, mismatches 0" "$1" &&
		! grep -q "mismatches [1-9]" "$1"
}

# consistent LOG: every lazy page is accounted for (installed or dropped).
consistent() {
	local lazy fault drain dropped left
	lazy=$(field "$1" lazy)
	fault=$(field "$1" fault)
	drain=$(field "$1" drain)
	dropped=$(field "$1" dropped)
	left=$(field "$1" left)
	[ -n "$lazy" ] && [ "$((fault + drain + dropped))" -eq "$lazy" ] && [ "$left" -eq 0 ] || {
		echo "# lazy=$lazy fault=$fault drain=$drain dropped=$dropped left=$left"
		return 1
	}
}

# Under ASan/UBSan a report can hide behind an expected non-zero exit.
sanitizer_clean() {
	! grep -rqE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$T" --include='*.log' \
		--include='*.out'
}

finish() {
	check "no sanitizer reports in any log" sanitizer_clean
	[ "$tap_failed" -eq 0 ]
	exit $?
}

# conf_wants_tls AGENT CONF ARG...: the agent AGENT, started with --config
# CONF ARG..., reads CONF to its end (no line refused: exit 2) and stops
# only at the absent TLS identity /etc/rdmig/tls/agent.pem that CONF names
# (exit 78).
conf_wants_tls() {
	local apid st bin=$1 conf=$2 log=$T/$(basename "$1").log
	shift 2
	"$bin" --config "$conf" "$@" >"$log" 2>&1 &
	apid=$!
	for _ in $(seq 100); do kill -0 "$apid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$apid" 2>/dev/null && echo "# $bin still running after 10 s"
	wait "$apid"
	st=$?
	[ "$st" = 78 ] && grep -q 'cannot load the certificate (--tls-cert) /etc/rdmig/tls/agent.pem' "$log" || {
		echo "# exit $st"
		diag_file "$log"
		return 1
	}
}

# dest_conf_serves DEST CONF CTL: rdmig-dest DEST --serve starts with CONF
# and rdmigctl CTL gets "ok" from its health; stopped again.
dest_conf_serves() {
	local st=0
	"$1" --serve --config "$2" --api-socket "$T/dest.sock" --work-root "$T/work" \
		>"$T/dest.log" 2>&1 &
	dest_pid=$!
	for _ in $(seq 200); do
		"$3" --socket "$T/dest.sock" --timeout 2 health >"$T/health.out" 2>&1 && break
		kill -0 "$dest_pid" 2>/dev/null || break
		sleep 0.1
	done
	grep -q '^ok' "$T/health.out" || {
		diag_file "$T/health.out"
		diag_file "$T/dest.log"
		st=1
	}
	kill -TERM "$dest_pid" 2>/dev/null
	wait "$dest_pid"
	dest_pid=
	return $st
}
