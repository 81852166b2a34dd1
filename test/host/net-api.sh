#!/bin/bash
# rdmig-source's API: started empty with --api-socket (no --migration),
# migrations are started, followed and aborted with rdmigctl; a destination
# then connects exactly as for --migration.  Every byte verified; an aborted
# migration is refused to destinations; the secret never shows up in any
# output or log.  Binaries: RDMIG_CTL besides netlib.sh's.
. "$(dirname "$0")/netlib.sh"
: "${RDMIG_CTL:?}"
plan 28

mkimage "$T/src" --size 16M
mkdir "$T/dst" "$T/dst-aborted"
# A printable secret, so any leak is easy to grep for.
head -c 32 /dev/urandom | xxd -p | tr -d '\n' >"$T/secret"
chmod 600 "$T/secret"
sec=$(cat "$T/secret")
sum0=$(dir_sum "$T/src")
sock=$T/run/source.sock
CTL=("$RDMIG_CTL" --socket "$sock")

start_source "$T/source.log" --api-socket "$sock" --images-root "$T"
check "rdmig-source starts with --api-socket and no --migration" alive "$src_pid"
wait_log "$T/source.log" "api: serving on $sock" >/dev/null
check "the API socket is mode 0600" test "$(stat -c %a "$sock" 2>/dev/null)" = 600
"${CTL[@]}" health >"$T/health.out" 2>&1
check "rdmigctl health: ok, source agent, no migration" \
	grep -q "^ok: source agent .*, 0 migrations (0 active)" "$T/health.out"

"${CTL[@]}" migrate --images "$T/src" --secret-file "$T/secret" --id m1 >"$T/migrate.out" 2>&1
check "rdmigctl migrate --images --secret-file (no --to) exits 0" test $? -eq 0
check "... and names the migration, pending while its images are mapped" \
	grep -q "^migration m1 started (pending)" "$T/migrate.out"
for _ in $(seq 200); do
	"${CTL[@]}" status m1 2>/dev/null | grep -q '^migration m1 (source): serving' && break
	sleep 0.1
done
"${CTL[@]}" status m1 >"$T/status1.out" 2>&1
check "rdmigctl status m1 shows it serving its images" \
	eval "grep -q '^migration m1 (source): serving' '$T/status1.out' && grep -q 'images: *$T/src' '$T/status1.out'"
"${CTL[@]}" status >"$T/table.out" 2>&1
check "rdmigctl status lists it" grep -q "^m1 *source *serving" "$T/table.out"

# shellcheck disable=SC2046
start_dest "$T/dest.log" -D "$T/dst" $(net_args m1 "$T/secret")
timeout 60 "$RDMIG_STANDIN" -D "$T/dst" --threads 2 >"$T/standin.out" 2>&1
rc=$?
wait_dest
check "the destination took m1: stand-in verified every page" \
	eval "test $rc -eq 0 && standin_ok '$T/standin.out' 4096"
check "... rdmig-dest exits 0, counts consistent" \
	eval "test $code -eq 0 && consistent '$T/dest.log'"
"${CTL[@]}" status m1 --json >"$T/status-done.json" 2>&1
check "rdmigctl status m1 --json says done, final" \
	eval "grep -q '\"state\": \"done\"' '$T/status-done.json' && grep -q '\"final\": true' '$T/status-done.json'"
total=$(sed -n 's/.*"pages_total": \([0-9]*\).*/\1/p' "$T/status-done.json")
fetched=$(sed -n 's/.*"pages_fetched": \([0-9]*\).*/\1/p' "$T/status-done.json")
check "... every lazy page fetched ($fetched of $total), none remaining" \
	eval "test -n '$total' && test '$total' -gt 0 && test '$fetched' = '$total' && grep -q '\"pages_remaining\": 0' '$T/status-done.json'"
check "... with the destination's address and a finish time" \
	eval "grep -q '\"dest\": \"127.0.0.1:' '$T/status-done.json' && ! grep -q '\"finished\": null' '$T/status-done.json'"

"${CTL[@]}" migrate --images "$T/src" --secret-file "$T/secret" --id m1 >"$T/dup.out" 2>&1
check "a second migrate with id m1 exits 1" test $? -eq 1
check "... saying it already exists" grep -q 'migration "m1" already exists (done)' "$T/dup.out"

"${CTL[@]}" migrate --images "$T/src" --secret-file "$T/secret" --id m2 >"$T/m2.out" 2>&1
"${CTL[@]}" abort m2 >"$T/abort.out" 2>&1
check "rdmigctl abort m2 exits 0" test $? -eq 0
"${CTL[@]}" status m2 --json >"$T/status-m2.json" 2>&1
check "... m2 is aborted, final" \
	eval "grep -q '\"state\": \"aborted\"' '$T/status-m2.json' && grep -q '\"final\": true' '$T/status-m2.json'"
"${CTL[@]}" abort m2 >"$T/abort2.out" 2>&1
check "aborting it again: exit 0, already ended" \
	eval "test $? -eq 0 && grep -q 'already ended (aborted)' '$T/abort2.out'"
# shellcheck disable=SC2046
timeout 30 "$RDMIG_DEST" -D "$T/dst-aborted" $(net_args m2 "$T/secret") --connect-timeout 5 \
	>"$T/dest-aborted.log" 2>&1
code=$?
# Its secret is dropped: refused at the proof, like an unknown id (net-oneanswer.sh).
check "a destination connecting for m2 is refused (exit 1)" \
	eval "test $code -eq 1 && grep -q 'the source refused our authentication' '$T/dest-aborted.log'"
check "... and wrote no image file" no_images "$T/dst-aborted"

"${CTL[@]}" rollback nosuch >"$T/rollback-unknown.out" 2>&1
check "rollback of an unknown id exits 1: 404, no such migration" \
	eval "test $? -eq 1 && grep -q 'no migration \"nosuch\"' '$T/rollback-unknown.out'"
"${CTL[@]}" migrate --images "$T/src" --secret-file "$T/secret" --id m3 --transport rdma \
	>"$T/transport.out" 2>&1
check "migrate --transport rdma on a tcp source exits 1 naming the transport" \
	eval "test $? -eq 1 && grep -q 'this source serves over tcp' '$T/transport.out'"
"${CTL[@]}" rollback m1 >"$T/rollback.out" 2>&1
check "rollback of a done migration exits 1: 409, it would fork the process" \
	eval "test $? -eq 1 && grep -q 'is done: the destination has every page' '$T/rollback.out'"
"${CTL[@]}" status m3 >"$T/m3.out" 2>&1
check "refused requests created no migration" \
	eval "test $? -eq 1 && grep -q 'no migration \"m3\"' '$T/m3.out'"

# An inline secret (hex:) through the raw API.
if command -v curl >/dev/null; then
	curl -s --unix-socket "$sock" -X POST -H 'Content-Type: application/json' \
		-d "{\"id\":\"m4\",\"images_dir\":\"$T/src\",\"transport\":\"tcp\",\"secret\":\"hex:$(xxd -p "$T/secret" | tr -d '\n')\"}" \
		http://localhost/v1/migrations >"$T/inline.out" 2>&1
	check "an inline hex: secret starts a migration" grep -q '"state":"pending"' "$T/inline.out"
else
	tap_n=$((tap_n + 1))
	echo "ok $tap_n - an inline hex: secret starts a migration # SKIP no curl"
fi

# The HTTP statuses of a refused rollback: unknown 404, done 409.
if command -v curl >/dev/null; then
	c404=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$sock" -X POST \
		-H 'Content-Type: application/json' http://localhost/v1/migrations/nosuch/rollback)
	c409=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$sock" -X POST \
		-H 'Content-Type: application/json' http://localhost/v1/migrations/m1/rollback)
	check "rollback answers 404 for an unknown id, 409 for a done migration" \
		test "$c404 $c409" = "404 409"
else
	tap_n=$((tap_n + 1))
	echo "ok $tap_n - rollback answers 404 for an unknown id, 409 for a done migration # SKIP no curl"
fi

"${CTL[@]}" status --json >"$T/list.json" 2>&1
kill -TERM "$src_pid"
wait_pid "$src_pid" 20
check "rdmig-source stops on SIGTERM (exit 0) and removes its socket" \
	eval "test $code -eq 0 && test ! -e '$sock'"
check "the images dir is untouched (abort deletes nothing)" test "$(dir_sum "$T/src")" = "$sum0"
sechex=$(xxd -p "$T/secret" | tr -d '\n')
check "the secret appears in no rdmigctl output and no agent log" \
	eval "! grep -qF -e '$sec' -e '$sechex' '$T'/*.out '$T'/*.json '$T'/*.log"
[ "$tap_failed" -eq 0 ] || {
	diag_file "$T/source.log"
	diag_file "$T/dest.log"
	for f in "$T"/*.out; do diag_file "$f" 5; done
}
finish
