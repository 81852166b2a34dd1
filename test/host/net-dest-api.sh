#!/bin/bash
# rdmig-dest --serve: the destination agent's API over a UNIX socket, with
# rdmig-source serving over TCP.  A migration started with curl runs in a
# worker (a one-shot rdmig-dest) that runs "criu restore" itself: a fake
# criu that records its arguments, starts rdmig-standin as the restored
# process and exits once the restore finished, as `criu restore -d` does.
# Checked: the state sequence, done with full counters and times, the
# images in WORK_ROOT/ID, Done on the source, 409/403/400/405/404/503, an
# abort (aborted; the source keeps its checkpoint and serves it again), a
# shutdown by SIGTERM, and the secret in no worker's cmdline or environ
# and in no log.  Needs curl and python3.
. "$(dirname "$0")/netlib.sh"
plan 37

mkimage "$T/src" --size 16M
# A printable secret, so any leak is easy to grep for.
head -c 32 /dev/urandom | xxd -p | tr -d '\n' >"$T/secret"
chmod 600 "$T/secret"
sec=$(cat "$T/secret")
sec64=$(base64 -w0 "$T/secret")
sum0=$(dir_sum "$T/src")
sock=$T/run/dest.sock
root=$T/root

# The fake criu records "cwd=... args=...", takes a second (so polling sees
# "restoring"), plays the restored process with the stand-in, writes
# --pidfile and exits once FIN is sent, as criu restore -d does.
cp "$(dirname "$0")/fake-criu-restore.sh" "$T/criu"
export FAKE_CRIU_ARGS=$T/criu.args FAKE_CRIU_DELAY=1
# Each process faults its first page before FIN, when no drain runs yet: the
# read-ahead check below has faults to count even when a loaded machine lets
# the drain install every page before the stand-in's scan touches one.
export FAKE_STANDIN_ARGS=--fault-before-fin

# api METHOD PATH [BODY]: the body goes to $T/resp, the HTTP status to stdout.
api() {
	local data=()
	[ $# -gt 2 ] && data=(-H 'Content-Type: application/json' -d "$3")
	curl -s -o "$T/resp" -w '%{http_code}' --unix-socket "$sock" -X "$1" "${data[@]}" \
		"http://localhost$2"
}
# jget FILE EXPR: a value of the JSON in FILE (EXPR indexes `j`), "None" for null.
jget() {
	python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null
}
# follow ID FILE: polls the migration until it is final (120 s at most),
# appending every new state seen to FILE; the last JSON is $T/ID.json.
follow() {
	local st last end=$((SECONDS + 120))
	last=$(tail -1 "$2" 2>/dev/null)
	while [ "$SECONDS" -lt "$end" ]; do
		curl -s --unix-socket "$sock" "http://localhost/v1/migrations/$1" >"$T/$1.json"
		st=$(jget "$T/$1.json" 'j["state"]')
		[ "$st" != "$last" ] && echo "$st" >>"$2" && last=$st
		[ "$(jget "$T/$1.json" 'j["final"]')" = True ] && return 0
		sleep 0.05
	done
	return 1
}
# in_order FILE: the states seen only ever move forward.
in_order() {
	python3 - "$1" <<'PY'
import sys
order = ["pending", "connecting", "receiving", "restoring", "postcopy", "draining", "done"]
seen = open(sys.argv[1]).read().split()
ranks = [order.index(s) for s in seen]
sys.exit(0 if ranks == sorted(ranks) and len(set(ranks)) == len(ranks) else 1)
PY
}
# restoring ID: the migration's state is restoring ($T/resp holds its JSON).
restoring() {
	api GET "/v1/migrations/$1" >/dev/null
	[ "$(jget "$T/resp" 'j["state"]')" = restoring ]
}
# sup_states ID: the states the supervisor logged for ID, on one line.
sup_states() {
	sed -n "s/.*info: migration $1: \(connecting\|receiving\|restoring\|postcopy\|draining\)\b.*/\1/p; s/.*info: migration $1: done in .*/done/p" \
		"$T/sup.log" | tr '\n' ' ' | sed 's/ $//'
}
# worker ID: the pid of ID's worker, from the supervisor's log.
worker() { sed -n "s/.*migration $1: worker \([0-9]*\) started.*/\1/p" "$T/sup.log" | tail -1; }

start_source "$T/source.log" -m "m1:$T/src:$T/secret" -m "m2:$T/src:$T/secret" \
	-m "m3:$T/src:$T/secret"
"$RDMIG_DEST" --serve --api-socket "$sock" --work-root "$root" --criu "$T/criu" \
	--max-migrations 1 -o "$T/sup.log" &
sup_pid=$!
track "$sup_pid"
wait_log "$T/sup.log" "api: serving on $sock" >/dev/null
check "rdmig-dest --serve listens on its socket (0600), work root made 0700" \
	eval "test \"\$(stat -c %a '$sock')\" = 600 && test \"\$(stat -c %a '$root')\" = 700"
code=$(api GET /v1/health)
check "health: 200, role dest, takes a lazy dump" eval "test $code = 200 && test \"\$(jget '$T/resp' 'j[\"role\"]')\" = dest && test \"\$(jget '$T/resp' 'j[\"lazy_dump\"]')\" = True"

# 1. A migration with criu restore run by the worker.
body="{\"id\":\"m1\",\"source\":\"127.0.0.1:$src_port\",\"transport\":\"tcp\",\"secret\":\"base64:$sec64\",\"restore\":true,\"criu_opts\":{\"shell_job\":true,\"tcp_established\":true,\"ext_unix_sk\":true,\"file_locks\":true,\"link_remap\":true,\"manage_cgroups\":\"soft\",\"log_level\":3}}"
code=$(curl -s -D "$T/m1.headers" -o "$T/resp" -w '%{http_code}' --unix-socket "$sock" -X POST \
	-H 'Content-Type: application/json' -d "$body" http://localhost/v1/migrations)
check "POST m1: 202 with Location /v1/migrations/m1" \
	eval "test $code = 202 && grep -qi '^Location: /v1/migrations/m1' '$T/m1.headers'"
check "... the resource: role dest, tcp, the source, images in WORK_ROOT/m1" \
	eval "test \"\$(jget '$T/resp' 'j[\"role\"],j[\"transport\"],j[\"source\"],j[\"images_dir\"]')\" = \"('dest', 'tcp', '127.0.0.1:$src_port', '$root/m1')\""
jget "$T/resp" 'j["state"]' >"$T/m1.states"
follow m1 "$T/m1.states"
check "m1 ends done, no error" \
	eval "test \"\$(jget '$T/m1.json' 'j[\"state\"],j[\"error\"]')\" = \"('done', None)\""
# Polling may miss a short state (a busy machine), so the polled list is
# only checked for order and ends; the supervisor's log below has them all.
check "the states polled moved forward, pending to done ($(tr '\n' ' ' <"$T/m1.states"))" \
	eval "in_order '$T/m1.states' && head -1 '$T/m1.states' | grep -qx pending && tail -1 '$T/m1.states' | grep -qx done"
seq_logged=$(sup_states m1)
check "the supervisor saw every state: $seq_logged" \
	eval "echo '$seq_logged' | grep -Eqx 'connecting receiving restoring postcopy( draining)? done'"
total=$(jget "$T/m1.json" 'j["progress"]["pages_total"]')
fetched=$(jget "$T/m1.json" 'j["progress"]["pages_fetched"]')
check "progress: every page fetched ($fetched of $total), none remaining" \
	eval "test '$total' -gt 0 && test '$fetched' = '$total' && test \"\$(jget '$T/m1.json' 'j[\"progress\"][\"pages_remaining\"]')\" = 0"
check "... bytes = pages x 4096" \
	eval "test \"\$(jget '$T/m1.json' 'j[\"progress\"][\"bytes\"]')\" = $((total * 4096))"
ra=$(jget "$T/m1.json" '(j["readahead"]["pattern"], j["readahead"]["sequential"], j["readahead"]["random"])')
check "readahead: the stand-in's scan detected as a pattern with its faults counted ($ra)" \
	eval "jget '$T/m1.json' 'int(j[\"readahead\"][\"pattern\"] in (\"sequential\", \"strided\", \"random\") and j[\"readahead\"][\"sequential\"] + j[\"readahead\"][\"strided\"] + j[\"readahead\"][\"random\"] > 0)' | grep -qx 1"
times=$(jget "$T/m1.json" '(j["times"]["received_ms"], j["times"]["restore_ms"], j["times"]["resumed_ms"], j["times"]["total_ms"])')
# resumed_ms ends at the restorer's FIN, restore_ms at criu's exit: each within total_ms;
# received_ms (images in) comes before the FIN, by at least the fake criu's 1 s.
check "times: received_ms + 1000 <= resumed_ms (to FIN), 1000 <= restore_ms (criu's run) <= total_ms ($times)" \
	eval "jget '$T/m1.json' 'int(1000 <= j[\"times\"][\"restore_ms\"] <= j[\"times\"][\"total_ms\"] and 1000 <= j[\"times\"][\"resumed_ms\"] <= j[\"times\"][\"total_ms\"] and 0 <= j[\"times\"][\"received_ms\"] <= j[\"times\"][\"resumed_ms\"] - 1000)' | grep -qx 1 && test \"\$(jget '$T/m1.json' 'j[\"times\"][\"finished\"] is not None')\" = True"
check "the images landed in WORK_ROOT/m1 (mode 0700)" \
	eval "same_meta '$T/src' '$root/m1' && test \"\$(stat -c %a '$root/m1')\" = 700"
wait_log "$root/m1/standin.out" "verified, mismatches" >/dev/null
check "the restored process (stand-in) verified every page" \
	eval "standin_ok '$root/m1/standin.out' 4096 && test \"\$(standin_lazy '$root/m1/standin.out')\" = '$total'"
check "criu restore got the criu_opts as options (log_level as its -v), in the work dir" \
	grep -q "^cwd=$root/m1 args=restore -D $root/m1 -W $root/m1 --lazy-pages -d -v3 -o $root/m1/restore.log --pidfile $root/m1/restore.pid --shell-job --tcp-established --ext-unix-sk --file-locks --link-remap --manage-cgroups=soft\$" "$T/criu.args"
check "the source saw Done with every page" \
	grep -q "migration m1 done: the destination installed $total pages" "$T/source.log"
check "the worker logged to WORK/rdmig-dest.log and exited 0" \
	eval "grep -q 'summary: status=ok' '$root/m1/rdmig-dest.log' && grep -q 'migration m1: done in .*worker exited with status 0' '$T/sup.log'"

# 2. Refusals.
code=$(api POST /v1/migrations "$body")
check "the same id again: 409, already exists" \
	eval "test $code = 409 && grep -q 'migration \\\\\"m1\\\\\" already exists (done)' '$T/resp'"
c1=$(api POST /v1/migrations '{"id":"b1",')
c2=$(api POST /v1/migrations '{"id":"b2","transport":"tcp","secret":"base64:'"$sec64"'"}')
c3=$(api POST /v1/migrations '{"id":"b3","source":"127.0.0.1:1","pid":42}')
c4=$(api POST /v1/migrations '{"id":"b4","source":"127.0.0.1:1"}')
check "bad bodies: 400 (bad JSON $c1, no source $c2, a source-only field $c3)" \
	test "$c1 $c2 $c3" = "400 400 400"
check "no secret: 400, the dest has no default secret" \
	eval "test $c4 = 400 && grep -q 'no default secret' '$T/resp'"
c5=$(api POST /v1/migrations '{"id":"b5","source":"127.0.0.1:1","secret_file":"'"$T"'/no-such"}')
c6=$(api POST /v1/migrations '{"id":"b6","source":"127.0.0.1:1","images_dir":"'"$T"'/src","secret":"base64:'"$sec64"'"}')
check "unreadable secret_file: 400; an images_dir outside the work root: 403 ($c5 $c6)" \
	eval "test '$c5 $c6' = '400 403' && grep -q 'not below the work root $root (--work-root)' '$T/resp'"
c7=$(api POST /v1/migrations '{"id":"b7","source":"127.0.0.1:1","images_dir":"'"$root"'/m1","secret":"base64:'"$sec64"'"}')
check "an existing images_dir below the root: 409, the agent writes only where it created ($c7)" \
	eval "test '$c7' = 409 && grep -q 'exists: the agent receives only into a directory it creates' '$T/resp'"
code=$(api GET /v1/migrations/b6)
check "refused requests created no migration and no directory" \
	eval "test $code = 404 && test ! -e '$root/b4' && test ! -e '$root/b5' && test -z \"\$(ls '$root' | grep -v '^m1\$')\""
code=$(api POST /v1/migrations/m1/rollback)
check "rollback: 405 on the dest agent" test "$code" = 405

# 3. Abort: a migration waiting for an external restore (restore: false).
code=$(api POST /v1/migrations "{\"id\":\"m2\",\"source\":\"127.0.0.1:$src_port\",\"transport\":\"tcp\",\"secret\":\"base64:$sec64\",\"restore\":false}")
wait_until 120 restoring m2
check "m2 started (202) and waits for the restore (restoring)" \
	eval "test $code = 202 && test \"\$(jget '$T/resp' 'j[\"state\"]')\" = restoring"
w=$(worker m2)
track "$w"
tr '\0' ' ' <"/proc/$w/cmdline" >"$T/m2.cmdline" 2>/dev/null
tr '\0' '\n' <"/proc/$w/environ" >"$T/m2.environ" 2>/dev/null
check "the worker ($w) got the secret on --secret-fd: not in its cmdline or environ" \
	eval "grep -q -- '-m m2 --secret-fd 4 --progress-fd 3' '$T/m2.cmdline' && test -s '$T/m2.environ' && ! grep -qF -e '$sec' -e '$sec64' '$T/m2.cmdline' '$T/m2.environ'"
code=$(api POST /v1/migrations "{\"id\":\"m3\",\"source\":\"127.0.0.1:$src_port\",\"transport\":\"tcp\",\"secret\":\"base64:$sec64\"}")
check "--max-migrations 1 reached: 503" test "$code" = 503
code=$(api DELETE /v1/migrations/m2)
follow m2 "$T/m2.states"
check "DELETE m2: 202, then aborted, final, 'aborted through the API'" \
	eval "test $code = 202 && test \"\$(jget '$T/m2.json' 'j[\"state\"],j[\"final\"],j[\"error\"]')\" = \"('aborted', True, 'aborted through the API')\""
check "... its worker is gone" eval "! kill -0 $w 2>/dev/null"
code=$(api DELETE /v1/migrations/m2)
check "DELETE again: 200, still aborted" \
	eval "test $code = 200 && test \"\$(jget '$T/resp' 'j[\"state\"]')\" = aborted"
wait_log "$T/source.log" "migration m2.*the destination aborted" >/dev/null
check "the source heard the abort and keeps the checkpoint" \
	grep -q "migration m2, .*the destination aborted: migration aborted on the destination (cancelled); keeping the checkpoint" "$T/source.log"
mkdir "$T/dst2"
# shellcheck disable=SC2046
start_dest "$T/dest2.log" -D "$T/dst2" $(net_args m2 "$T/secret")
timeout 60 "$RDMIG_STANDIN" -D "$T/dst2" --threads 2 >"$T/standin2.out" 2>&1
rc=$?
wait_dest
check "... and serves m2 again to a one-shot rdmig-dest: every page verified, exit 0" \
	eval "test $rc -eq 0 && test $code -eq 0 && standin_ok '$T/standin2.out' 4096"

# 4. A failing worker: the source serves no migration x1 (told apart from a wrong
# secret only after a proof: net-oneanswer.sh); its reason reaches the API.
code=$(api POST /v1/migrations "{\"id\":\"x1\",\"source\":\"127.0.0.1:$src_port\",\"transport\":\"tcp\",\"secret\":\"base64:$sec64\"}")
follow x1 "$T/x1.states"
check "a migration the source does not serve: failed with the source's reason ($code)" \
	eval "test $code = 202 && test \"\$(jget '$T/x1.json' 'j[\"state\"]')\" = failed && grep -q 'cannot get the images from the source: the source refused our authentication' '$T/x1.json'"

# 5. SIGTERM: the running worker is stopped, the agent exits 0 and removes its socket.
code=$(api POST /v1/migrations "{\"id\":\"m3\",\"source\":\"127.0.0.1:$src_port\",\"transport\":\"tcp\",\"secret_file\":\"$T/secret\",\"restore\":false}")
wait_until 120 restoring m3
w3=$(worker m3)
track "$w3"
check "m3 (secret_file) is waiting for its restore" \
	eval "test $code = 202 && test \"\$(jget '$T/resp' 'j[\"state\"]')\" = restoring"
kill -TERM "$sup_pid"
wait_pid "$sup_pid" 30
check "SIGTERM: rdmig-dest --serve exits 0 and removes its socket" \
	eval "test $code -eq 0 && test ! -e '$sock'"
check "... after its worker stopped: m3 aborted, the source keeps its checkpoint" \
	eval "! kill -0 $w3 2>/dev/null && grep -q 'migration m3: aborted: aborted: the destination agent is shutting down' '$T/sup.log' && grep -q 'migration m3, .*keeping the checkpoint' '$T/source.log'"
check "the source's images are untouched" test "$(dir_sum "$T/src")" = "$sum0"
check "the secret is in no log and no response" \
	eval "! grep -rqF -e '$sec' -e '$sec64' '$T'/*.log '$T/resp' '$T'/*.json '$root'/*/*.log"
[ "$tap_failed" -eq 0 ] || {
	diag_file "$T/sup.log" 60
	diag_file "$root/m1/rdmig-dest.log"
	diag_file "$root/m2/rdmig-dest.log" 20
	diag_file "$T/source.log" 20
	diag_file "$T/criu.args"
	diag_file "$T/resp"
}
finish
