# shellcheck shell=bash
# TAP helpers for the test bed's own tests (test/rxe/t/*.t) and for any
# shell test that drives test/rxe/run. Source it, call tap_plan, then the
# assertions; tap_done prints nothing but sets the exit status.

TAP_RXE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TAP_RUN=$TAP_RXE_DIR/run
tap_n=0
tap_failed=0

tap_plan() {
	echo "1..$1"
}

tap_diag() {
	printf '%s\n' "$@" | sed 's/^/# /'
}

# tap_ok STATUS DESCRIPTION: pass when STATUS (of a command run just before)
# is 0.  While TAP_TODO is set (to why), the assertion is marked "# TODO
# why": what is not built yet, asserted as it should be; it fails nothing
# and test/rxe/check counts it apart, never as passed.
tap_ok() {
	tap_n=$((tap_n + 1))
	local todo=${TAP_TODO:+ # TODO $TAP_TODO}
	if [[ $1 -eq 0 ]]; then
		echo "ok $tap_n - $2$todo"
	else
		echo "not ok $tap_n - $2$todo"
		[[ -n $todo ]] || tap_failed=$((tap_failed + 1))
	fi
}

# tap_is GOT WANT DESCRIPTION
tap_is() {
	[[ $1 == "$2" ]]
	tap_ok $? "$3"
	[[ $1 == "$2" ]] || tap_diag "got:  '$1'" "want: '$2'"
}

# tap_like TEXT ERE DESCRIPTION: TEXT has a line matching ERE.
tap_like() {
	grep -qE -- "$2" <<<"$1"
	local st=$?
	tap_ok $st "$3"
	[[ $st -eq 0 ]] || tap_diag "no line matches /$2/ in:" "$(tail -n 20 <<<"$1")"
}

# tap_unlike TEXT ERE DESCRIPTION
tap_unlike() {
	! grep -qE -- "$2" <<<"$1"
	local st=$?
	tap_ok $st "$3"
	[[ $st -eq 0 ]] || tap_diag "unexpected line matching /$2/:" "$(grep -E -- "$2" <<<"$1" | head -n 5)"
}

# tap_cmp A OP B DESCRIPTION: numeric comparison (OP: -lt -le -gt -ge -eq).
tap_cmp() {
	[[ $1 =~ ^[0-9]+$ && $3 =~ ^[0-9]+$ ]] && test "$1" "$2" "$3"
	local st=$?
	tap_ok $st "$4"
	[[ $st -eq 0 ]] || tap_diag "wanted: '$1' $2 '$3'"
}

# tap_run ARG...: run test/rxe/run ARG..., leaving RUN_OUT, RUN_ERR,
# RUN_STATUS and RUN_SECS (wall time, whole seconds).
tap_run() {
	local o e t
	o=$(mktemp) && e=$(mktemp) || return 1
	t=$(date +%s)
	"$TAP_RUN" "$@" >"$o" 2>"$e"
	RUN_STATUS=$?
	RUN_SECS=$(($(date +%s) - t))
	# shellcheck disable=SC2034 # read by the test scripts
	RUN_OUT=$(<"$o")
	# shellcheck disable=SC2034

	RUN_ERR=$(<"$e")
	# RDMIG_RXE_KEEP_OUT=DIR keeps each run's whole output (the agents' logs) there.
	if [[ -n ${RDMIG_RXE_KEEP_OUT:-} ]] && mkdir -p "$RDMIG_RXE_KEEP_OUT"; then
		cp -f "$o" "$RDMIG_RXE_KEEP_OUT/$(basename "$0" .t)-$t.out"
		cp -f "$e" "$RDMIG_RXE_KEEP_OUT/$(basename "$0" .t)-$t.err"
	fi
	rm -f "$o" "$e"
	local args="$*"
	args=$(tr -s '\n\t ' '   ' <<<"$args")
	[[ ${#args} -gt 100 ]] && args="${args:0:100}..."
	tap_diag "run $args -> status $RUN_STATUS in $RUN_SECS s"
}

# tap_run_pair ENV SCRIPT: "ENV SCRIPT source" and "ENV SCRIPT dest" in a
# guest pair (at most 900 s, 60 s of grace for the second), as tap_run.
tap_run_pair() {
	tap_run --timeout 900 --grace 60 --pair --source "$1 $2 source" --dest "$1 $2 dest"
}
# handover_json: the migration's JSON that handover-migrate.sh's source
# side printed last (RUN_OUT); empty without one.
handover_json() {
	grep -h '^\[source\] handover: json: ' <<<"$RUN_OUT" | tail -n 1 |
		sed 's/^\[source\] handover: json: //'
}
# handover_num PATH: the integer at PATH (dotted: times.total_ms) in
# handover_json; empty when absent or not an integer.
handover_num() {
	handover_json |
		python3 -c 'import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v.get(k) if isinstance(v, dict) else None
print(v if isinstance(v, int) and not isinstance(v, bool) else "")' "$1" 2>/dev/null
}
# tap_handover_verified TEXT: two assertions on a handover-migrate.sh run's
# output TEXT: the workload verified its memory on guest B twice, and no
# page was ever wrong; a third on RUN_OUT: every page of the 64 MiB moved.
tap_handover_verified() {
	local pages fetched bytes
	tap_like "$1" '^\[dest\] handover: the workload kept rewriting on the destination' \
		"the workload verified 64 MiB on guest B twice, rewriting it all along"
	tap_unlike "$1" 'CORRUPT|no report|MISMATCH' "never a wrong page"
	pages=$(handover_num progress.pages_total)
	fetched=$(handover_num progress.pages_fetched)
	bytes=$(handover_num progress.bytes)
	[[ -n $pages && $pages -ge 16384 && $fetched == "$pages" && ${bytes:-0} -ge 67108864 ]]
	tap_ok $? "every page moved: $fetched of $pages, $bytes bytes"
}
# tap_handover_diag: the report's figures from a handover run (RUN_OUT),
# and after a failed assertion its handover lines, the agents' errors and
# stderr.
tap_handover_diag() {
	tap_diag "report: $(grep -h '^\[source\] handover:   \(downtime\|dump\|restore\|total\|faults\|moved\):' <<<"$RUN_OUT" | sed 's/^\[source\] handover: *//' | tr -s ' ' | paste -sd ';' -)"
	[[ $tap_failed -gt 0 ]] || return 0
	tap_diag "--- the run's handover lines:" "$(grep -a 'handover: ' <<<"$RUN_OUT" | tail -n 60)"
	tap_diag "--- the agents' errors:" "$(grep -aE '(source|dest): .* (error|warn): ' <<<"$RUN_OUT" | tail -n 40)"
	tap_diag "--- stderr:" "$(tail -n 20 <<<"$RUN_ERR")"
}
tap_done() {
	[[ $tap_failed -eq 0 ]]
}

# tap_skip DESCRIPTION REASON
tap_skip() {
	tap_n=$((tap_n + 1))
	echo "ok $tap_n - $1 # SKIP $2"
}

# tap_one_line TEXT DESCRIPTION: TEXT (a captured stderr) is exactly one
# line of the form "rxe: ...", the test bed's promise for every failure.
tap_one_line() {
	[[ -n $1 && $(wc -l <<<"$1") -eq 1 && $1 == "rxe: "* ]]
	tap_ok $? "$2"
	[[ -n $1 && $(wc -l <<<"$1") -eq 1 && $1 == "rxe: "* ]] || tap_diag "stderr was:" "$1"
}

# rxe_require_built BUILD BIN...: bail out unless every BIN (a path under
# BUILD) is built.
rxe_require_built() {
	local build=$1 b
	shift
	for b in "$@"; do
		if [[ ! -x $build/$b ]]; then
			echo "Bail out! $build/$b is not built (run make)"
			exit 1
		fi
	done
}

# rxe_require_cmds CMD...: bail out unless every CMD is installed.
rxe_require_cmds() {
	local c
	for c in "$@"; do
		if ! command -v "$c" >/dev/null; then
			echo "Bail out! $c is not installed (scripts/install-deps)"
			exit 1
		fi
	done
}

# rxe_secret TOP: a fresh 32-byte secret, $secrets/s, under TOP/.cache/rxe
# (the share both guests can read), removed when the test exits.
rxe_secret() {
	mkdir -p "$1/.cache/rxe"
	secrets=$(mktemp -d "$1/.cache/rxe/secrets.XXXXXX") || exit 1
	# shellcheck disable=SC2064 # expand now: the path is fixed
	trap "rm -rf '$secrets'" EXIT
	head -c 32 /dev/urandom >"$secrets/s" && chmod 600 "$secrets/s"
}

# rxe_agents_pki TOP: rxe_secret TOP, and the agents' certificates for the
# pair's addresses in $secrets/pki (test/lib/pki.sh's pki_agents).
rxe_agents_pki() {
	rxe_secret "$1"
	# shellcheck source=../../lib/pki.sh
	. "$1/test/lib/pki.sh"
	pki_agents "$secrets/pki" 192.0.2.1 192.0.2.2 || {
		echo "Bail out! cannot make the test PKI (openssl)"
		exit 1
	}
}

# guest_obj WHO: the JSON of the last "WHO json: {...}" line in RUN_OUT
# (guest.sh's say_json, say_ctl...); {} when absent.
guest_obj() {
	local j
	j=$(grep -a " $1 json: " <<<"$RUN_OUT" | tail -n 1 | sed "s/.* $1 json: //")
	echo "${j:-{\}}"
}

# guest_json WHO FILTER: jq FILTER on the JSON of the last "WHO json: {...}"
# line in RUN_OUT (guest.sh's say_json), raw; empty when absent.
guest_json() {
	guest_obj "$1" | jq -r "$2 // empty" 2>/dev/null
}

# tap_json WHO FILTER DESCRIPTION: jq's FILTER holds (jq -e) on that JSON.
tap_json() {
	local j st
	j=$(guest_obj "$1")
	jq -e "$2" >/dev/null 2>&1 <<<"$j"
	st=$?
	tap_ok $st "$3"
	[[ $st -eq 0 ]] || tap_diag "$1: $j" "wanted: $2"
}

# tap_linkstall_diag: the events and pauses of a linkstall run, and after
# a failed assertion the agents' errors and stderr.
tap_linkstall_diag() {
	tap_diag "$(grep -aE 'linkstall: [a-z0-9]+: (event|source pauses|dest pauses|generations|verified)' <<<"$RUN_OUT")"
	[[ $tap_failed -gt 0 ]] || return 0
	tap_diag "--- the run's linkstall lines:" "$(grep -a 'linkstall: ' <<<"$RUN_OUT" | grep -v ' json: ' | tail -n 80)"
	tap_diag "--- stderr:" "$(tail -n 20 <<<"$RUN_ERR")"
}
