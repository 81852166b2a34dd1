#!/bin/bash
# Runs inside ONE soft-RoCE guest: post-copy migration of a runc container
# (Debian's runc 1.1.5 driving Debian's criu 3.17) with rdmig-dest in place
# of `criu lazy-pages`.
#   1. builds an OCI bundle: a read-only rootfs that binds the guest's /usr
#      (so /bin, /lib... exist), the build's test/ directory (rdmig-workload)
#      and a writable /io directory; config.json from `runc spec`, adjusted
#      with python3: no terminal, no network namespace, the process is
#      rdmig-workload (RDMIG_SIZE_MB MiB, 2 threads rewriting and verifying
#      it, report and check files in /io);
#   2. `runc run -d` (stdio on pipes, as runc's own checkpoint tests do),
#      the workload verifies itself, `runc checkpoint --image-path DUMP`
#      (a plain full dump; the container is gone afterwards);
#   3. rdmig-source serves DUMP over RDMA (--once); rdmig-dest receives the
#      images into RESTORE and listens on WORK/lazy-pages.socket;
#      `runc restore -d --lazy-pages --image-path RESTORE --work-path WORK`;
#   4. the restored workload verifies all its memory while pages still move,
#      rdmig-dest must exit 0 (summary left=0), the source must see Done,
#      then the workload verifies again (its generation must have grown)
#      and exits.
# Prints `runc-migrate: ...` lines, among them one `times: ...` line.
# Environment: RDMIG_BUILD (build dir), RDMIG_SECRET (secret file),
# RDMIG_SIZE_MB (default 32), RDMIG_TRANSPORT (rdma|tcp), RDMIG_PORT (7471),
# RDMIG_ADDR, RDMIG_RUNC_DIR (default /tmp/rdmig-runc), RDMIG_RUNC_WORK
# (1, default: give runc restore --work-path WORK and rdmig-dest -W WORK;
# 0: neither, so both default to the image directory), RDMIG_DEST_ARGS
# (more rdmig-dest options).
set -u
# shellcheck source=runc-bundle.sh
. "$(dirname "$0")/runc-bundle.sh"
B=${RDMIG_BUILD:?}
: "${RDMIG_SECRET:?}"
size=${RDMIG_SIZE_MB:-32}
kind=${RDMIG_TRANSPORT:-rdma}
port=${RDMIG_PORT:-7471}
top=${RDMIG_RUNC_DIR:-/tmp/rdmig-runc}
use_work=${RDMIG_RUNC_WORK:-1}
id=rdmig-wl
bundle=$top/bundle
io=$top/io
report=$io/report
check=$io/check

say() { echo "runc-migrate: $*"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
errs() { grep -hE 'Error|error|Warn' "$@" 2>/dev/null | tail -n 14 | sed 's/^/runc-migrate:   /'; }

for c in runc criu python3; do
	command -v "$c" >/dev/null || {
		say "$c is not installed"
		exit 2
	}
done

# ask_check [REQUEST]: have the workload verify its memory (or exit).
ask_check() {
	rm -f "$report"
	echo "${1:-check}" >"$check.new" && mv -f "$check.new" "$check"
	for _ in $(seq 600); do
		[ -s "$report" ] && break
		sleep 0.1
	done
	if [ ! -s "$report" ]; then
		say "no report from the workload"
		return 1
	fi
	cat "$report"
	grep -qE '^workload: ([a-z]+ )?OK' "$report"
}
last_gen() { sed -n 's/.*generation \([0-9]*\).*/\1/p' "$report" | head -n 1; }

# cstate: the container's status (running, stopped; empty when gone).
cstate() { runc state "$id" 2>/dev/null | sed -n 's/^ *"status": "\([a-z]*\)".*/\1/p'; }
cpid() { runc state "$id" 2>/dev/null | sed -n 's/^ *"pid": \([0-9]*\).*/\1/p'; }

cleanup() {
	runc kill "$id" KILL >/dev/null 2>&1
	sleep 0.5
	runc delete -f "$id" >/dev/null 2>&1
}

make_bundle() {
	rm -rf "$top" && mkdir -p "$top/dump" "$top/restore" "$top/work" || return 1
	runc_workload_bundle "$bundle" "$B/test" "$io" "$size"
}

# Pipes for the container's stdio, as runc's own checkpoint tests use
# (runc restore hands pipes back to criu as inherited fds).  The guest's
# devtmpfs has no /dev/fd, which bash's <(...) needs.
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
exec {in_r}<> <(:)
exec {out_w}<> <(:)

main() {
	local t1 t2 t3 t4 t5 spid dpid st=0 g0 g1 g2 cs workarg=() dwork=
	make_bundle || {
		say "cannot build the bundle"
		return 1
	}
	say "runc $(runc --version | head -n 1 | awk '{print $3}'), criu $(criu --version | head -n 1 | awk '{print $2}')"
	(cd "$bundle" && runc run -d "$id" <&"$in_r" >&"$out_w" 2>&"$out_w")
	st=$?
	if [ $st -ne 0 ]; then
		say "runc run -d failed ($st)"
		return 1
	fi
	for _ in $(seq 600); do
		[ -s "$io/pid" ] && break
		sleep 0.1
	done
	say "container $id running: status $(cstate), pid $(cpid)"
	sleep 1
	ask_check || {
		cleanup
		return 1
	}
	g0=$(last_gen)
	say "before checkpoint: generation $g0"
	t1=$(now)
	runc checkpoint --image-path "$top/dump" "$id"
	st=$?
	t2=$(now)
	if [ $st -ne 0 ]; then
		say "runc checkpoint failed ($st)"
		errs "$top/dump/dump.log"
		cleanup
		return 1
	fi
	cs=$(cstate)
	say "checkpointed in $(secs "$t1" "$t2") s: $(du -sh "$top/dump" | cut -f1), $(find "$top/dump" -type f | wc -l) files; container state after it: ${cs:-gone}"

	"$B/source-agent/rdmig-source" -t "$kind" -l "$RDMIG_ADDR:$port" \
		-m "c1:$top/dump:$RDMIG_SECRET" --verify --once 2>&1 | sed -u 's/^/source: /' &
	spid=$!
	if [ "$use_work" = 1 ]; then
		dwork=$top/work
		workarg=(--work-path "$dwork")
	else
		dwork=$top/restore
	fi
	# shellcheck disable=SC2086 # RDMIG_DEST_ARGS is split on purpose
	"$B/dest-agent/rdmig-dest" --source "$RDMIG_ADDR:$port" -t "$kind" -m c1 \
		--secret-file "$RDMIG_SECRET" --verify -D "$top/restore" -W "$dwork" \
		--connect-timeout 120 --status-fd 3 -o "$top/rdmig-dest.log" ${RDMIG_DEST_ARGS:-} \
		3>"$top/ready" &
	dpid=$!
	for _ in $(seq 3000); do
		[ -s "$top/ready" ] && break
		kill -0 "$dpid" 2>/dev/null || break
		sleep 0.1
	done
	t3=$(now)
	if [ ! -s "$top/ready" ]; then
		say "rdmig-dest never became ready"
		cat "$top/rdmig-dest.log"
		kill "$spid" 2>/dev/null
		return 1
	fi
	say "rdmig-dest ready $(secs "$t2" "$t3") s after the checkpoint: $(find "$top/restore" -type f | wc -l) files received; socket $(ls "$dwork"/lazy-pages.socket 2>&1)"
	(cd "$bundle" && runc restore -d --lazy-pages --image-path "$top/restore" "${workarg[@]}" "$id" \
		<&"$in_r" >&"$out_w" 2>&"$out_w")
	st=$?
	t4=$(now)
	if [ $st -ne 0 ]; then
		say "runc restore failed ($st)"
		errs "$dwork/restore.log"
		kill "$dpid" "$spid" 2>/dev/null
		wait "$dpid"
		cat "$top/rdmig-dest.log"
		cleanup
		return 1
	fi
	say "restored in $(secs "$t3" "$t4") s: status $(cstate), pid $(cpid)"
	say "verifying while pages still move"
	ask_check || st=1
	g1=$(last_gen)
	g1=${g1:-0}
	for _ in $(seq 1800); do
		kill -0 "$dpid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$dpid" 2>/dev/null; then
		say "rdmig-dest still running after 180 s"
		kill "$dpid"
		st=1
	fi
	if wait "$dpid"; then
		say "rdmig-dest exited 0"
	else
		say "rdmig-dest failed"
		st=1
	fi
	t5=$(now)
	sed 's/^/dest: /' "$top/rdmig-dest.log"
	wait "$spid"
	sleep 1
	ask_check || st=1
	g2=$(last_gen)
	g2=${g2:-0}
	if [ "$g1" -gt "$g0" ] && [ "$g2" -gt "$g1" ]; then
		say "container workload kept rewriting after restore: generation $g0 -> $g1 -> $g2"
	else
		say "container workload did not progress: generation $g0 -> $g1 -> $g2"
		st=1
	fi
	ask_check exit >/dev/null
	for _ in $(seq 50); do
		[ "$(cstate)" = stopped ] && break
		sleep 0.1
	done
	say "after exit: $(cstate)"
	runc delete -f "$id" >/dev/null 2>&1
	say "times: transport=$kind checkpoint=$(secs "$t1" "$t2") handover=$(secs "$t2" "$t3")" \
		"restore=$(secs "$t3" "$t4") all_pages=$(secs "$t3" "$t5") (s; all_pages from restore start)"
	return $st
}

main
