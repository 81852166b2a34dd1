#!/bin/bash
# Pre-copy rounds changed under rdmig-source (design.md §5, "Pre-copy"),
# with fake-criu.sh standing in for criu: every round's pages files are
# mapped when the round ends (and over RDMA registered, prereg.h).  This
# criu rewrites every page in each round after the first
# (FAKE_CRIU_PREDUMP_PARENT_FRAC=0), so round 1 is superseded: it is
# released once the chain is mapped and a destination still verifies every
# page.  Through FAKE_CRIU_HOOK, migration pv loses round 1's pages file
# during round 2: it fails before the freeze (no final dump ran); pz has
# round 2's pages zeroed during the final dump: it fails naming the file
# before anything is served, never a zero page.
. "$(dirname "$0")/netlib.sh"
: "${RDMIG_CTL:?}"
plan 6

fake=$(cd "$(dirname "$0")" && pwd)/fake-criu.sh
secret "$T/secret"
mkdir "$T/dst"
sock=$T/run/source.sock
root=$T/images/root
CTL=("$RDMIG_CTL" --socket "$sock")
export FAKE_CRIU_DELAY=0
# json_ok FILTER FILE: the JSON in FILE makes FILTER true.
json_ok() { jq -e "$1" "$2" >/dev/null; }

cat >"$T/hook.sh" <<'HOOK'
case $VERB:$DIR in
pre-dump:*/pv/round-2) rm -f "$DIR"/../round-1/pages-*.img ;;
dump:*/pz)
	for f in "$DIR"/round-2/pages-*.img; do
		s=$(stat -c %s "$f")
		truncate -s 0 "$f" && truncate -s "$s" "$f"
	done ;;
esac
HOOK
FAKE_CRIU_PREDUMP_PARENT_FRAC=0 FAKE_CRIU_HOOK=". $T/hook.sh" \
	start_source "$T/source.log" --api-socket "$sock" --images-root "$root" --criu "$fake"
"${CTL[@]}" migrate --pid $$ --secret-file "$T/secret" --id ps --precopy 2 >/dev/null 2>&1
wait_state ps serving
check "each round was mapped when it ended, before the final dump" \
	eval "grep -q 'pre-dump round $root/ps/round-1 .* mapped in' '$T/source.log' &&
	grep -q 'pre-dump round $root/ps/round-2 .* mapped in' '$T/source.log'"
check "round 1, whose pages round 2 all wrote again, is released once the chain is mapped" \
	eval "grep -q '$root/ps/round-1/pages-[0-9]*.img is not needed any more' '$T/source.log' &&
	! grep -q '$root/ps/round-2/pages-[0-9]*.img is not needed' '$T/source.log'"
# shellcheck disable=SC2046
start_dest "$T/dest.log" -D "$T/dst" $(net_args ps "$T/secret")
timeout 60 "$RDMIG_STANDIN" -D "$T/dst" --threads 2 >"$T/standin.out" 2>&1
rc=$?
wait_dest
check "a destination took ps, served from round 2 and the final dump: every page verified" \
	eval "test $rc -eq 0 && standin_ok '$T/standin.out' 1024 && test $code -eq 0"
"${CTL[@]}" migrate --pid $$ --secret-file "$T/secret" --id pv --precopy 2 >/dev/null 2>&1
wait_state pv failed
"${CTL[@]}" status pv --json >"$T/pv.json" 2>&1
check "round 1's pages file removed during round 2: failed before the freeze (no final dump ran)" \
	eval "json_ok '.state == \"failed\" and (.error | test(\"pre-dump round\"))' '$T/pv.json' &&
	! grep -q '^dump ' '$root/pv/fake-criu.args'"
"${CTL[@]}" migrate --pid $$ --secret-file "$T/secret" --id pz --precopy 2 >/dev/null 2>&1
wait_state pz failed
"${CTL[@]}" status pz --json >"$T/pz.json" 2>&1
check "round 2's pages zeroed during the final dump: failed naming the file, nothing served" \
	eval "json_ok '.state == \"failed\" and (.error | test(\"round-2/pages-[0-9]+.img changed after its pre-dump round\"))' '$T/pz.json' &&
	grep -q '^dump ' '$root/pz/fake-criu.args' && ! grep -q 'migration pz: serving' '$T/source.log'"
kill -TERM "$src_pid"
wait_pid "$src_pid" 20
check "rdmig-source stops on SIGTERM (exit 0)" test "$code" -eq 0

[ "$tap_failed" -eq 0 ] || {
	diag_file "$T/source.log"
	diag_file "$T/dest.log"
	for f in "$T"/*.out "$T"/*.json; do diag_file "$f" 5; done
}
finish
