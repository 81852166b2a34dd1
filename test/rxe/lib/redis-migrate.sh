#!/bin/bash
# Post-copy migration of a real application from Debian, redis-server,
# with unmodified CRIU 3.17 and the rdmig agents (test/rxe/t/35-redis.t).
#   redis-migrate.sh source    in the source guest of a host pair
#   redis-migrate.sh dest      in the dest guest
#   redis-migrate.sh expect    anywhere (natively): print the expected digest
#   redis-migrate.sh gen resp|keys|values   the deterministic data set
# source: redis-server in its own pid namespace and session (unshare -p -f
#   setsid), no persistence, listening on 127.0.0.1:PORT only; RDMIG_REDIS_KEYS
#   keys of 2 KiB each are loaded with redis-cli --pipe and digested; every
#   client closes, then a plain `criu dump` (no --tcp-established: a
#   listening socket needs no option, only established connections do) and
#   rdmig-source --once serves the images.
# dest: rdmig-dest receives the images, `criu restore --lazy-pages`
#   restores redis; redis must answer PING, and the digest of EVERY key and
#   value is taken twice: at once (while pages still move: faults) and after
#   rdmig-dest exited (every page in); DEBUG DIGEST and DBSIZE too.
# The digest: sha256 of the sorted key list followed by the values in that
# order, one per line (redis-cli --scan, then MGET in batches of 500).
# Prints `redis-migrate: ...` lines (test/rxe/lib/guest.sh's say).  The
# machine-readable ones (tap.sh's guest_json WHO): "redis source json:
# {...}" (the source's dbsize, digest, debug_digest, dump (criu dump's exit
# status), times), "redis served json: {"exit"}" (rdmig-source's exit
# status), "redis dest json: {...}" (restore: criu restore's exit status,
# pid, ping, dest_running_at_start: rdmig-dest still moving pages when the
# first full read began, digest_moving, digest_after, dbsize,
# debug_digest, set, dest_exit: rdmig-dest's exit status, source_exit),
# "redis summary json: {...}" (rdmig-dest's summary line, guest.sh's
# summary_json).  RDMIG_REDIS_LIB=1: only the functions; the caller
# sources guest.sh (live, say) after this file.
# Environment: RDMIG_BUILD, RDMIG_SECRET,
# RDMIG_ADDR, RDMIG_SOURCE_ADDR (dest), RDMIG_SHARED_DIR (pair), RDMIG_PORT
# (7471), RDMIG_REDIS_PORT (6379), RDMIG_REDIS_KEYS (20000),
# RDMIG_REDIS_EXPECT (the expected digest, from `expect`), RDMIG_DEST_ARGS
# (more rdmig-dest options), RDMIG_CRIU_DIR (/tmp/rdmig-redis).
set -u
set -o pipefail
role=${1:?usage: redis-migrate.sh source|dest|expect|gen MODE}
nkeys=${RDMIG_REDIS_KEYS:-20000}
rport=${RDMIG_REDIS_PORT:-6379}
port=${RDMIG_PORT:-7471}
top=${RDMIG_CRIU_DIR:-/tmp/rdmig-redis}

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
rcli() { redis-cli -h 127.0.0.1 -p "$rport" "$@"; }

# gen resp|keys|values: key:NNNNNN -> 2048 bytes made of 64 blocks of 32,
# each naming its key and block, so a page in the wrong place shows.
gen() {
	awk -v n="$nkeys" -v mode="$1" 'BEGIN {
		A = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
		A = A A
		for (i = 0; i < n; i++) {
			k = sprintf("key:%06d", i)
			if (mode == "keys") {
				print k
				continue
			}
			v = ""
			for (j = 0; j < 64; j++)
				v = v sprintf("%06d.%02d.", i, j) substr(A, 1 + (i * 7 + j * 13) % 62, 22)
			if (mode == "resp")
				printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, length(v), v
			else
				print v
		}
	}'
}

expect() { { gen keys; gen values; } | sha256sum | cut -d' ' -f1; }

# digest TAG: prints the digest of what redis holds; keeps the key list in
# $top/TAG.keys.  Fails when redis does not answer.
digest() {
	local k=$top/$1.keys
	rcli --scan | LC_ALL=C sort >"$k" || return 1
	{
		cat "$k"
		awk '{ l = l " " $0 } NR % 500 == 0 { print "MGET" l; l = "" }
			END { if (l != "") print "MGET" l }' "$k" | rcli
	} | sha256sum | cut -d' ' -f1
}

# The pid of the running (not zombie: guest.sh's live) redis-server, or
# nothing.
redis_pid() {
	local p
	for p in $(pgrep -x redis-server); do
		live "$p" && echo "$p" && return 0
	done
}
rss_mib() { awk '/^RssAnon:/ { printf "%d", $2 / 1024 }' "/proc/$1/status" 2>/dev/null; }

wait_ping() {
	for _ in $(seq "$(($1 * 10))"); do
		[ "$(rcli PING 2>/dev/null)" = PONG ] && return 0
		sleep 0.1
	done
	return 1
}

# No established connection on the redis port: CRIU would need
# --tcp-established (and the network lock) for one.
wait_no_clients() {
	for _ in $(seq 100); do
		[ -z "$(ss -Htn state established "( sport = :$rport or dport = :$rport )" 2>/dev/null)" ] && return 0
		sleep 0.1
	done
	return 1
}

share() { [ -n "${RDMIG_SHARED_DIR:-}" ] && printf '%s\n' "$2" >"$RDMIG_SHARED_DIR/$1"; }

# redis_launch: redis-server (no persistence, 127.0.0.1:$rport, DEBUG
# allowed) in its own pid namespace, in the background; 0 once it answers
# PING (60 s at most), else 1 with a line saying so.
redis_launch() {
	(cd / && exec unshare -p -f setsid redis-server --bind 127.0.0.1 --port "$rport" \
		--save '' --appendonly no --daemonize no --enable-debug-command yes \
		--logfile '' </dev/null >/dev/null 2>&1) &
	wait_ping 60 && return 0
	say "redis-server does not answer PING"
	return 1
}

source_side() {
	local B=${RDMIG_BUILD:?} secret=${RDMIG_SECRET:?} rpid t0 t1 d0 dd0 n st piped
	rm -rf "$top" && mkdir -p "$top/dump"
	if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
		say "redis-server or redis-cli is missing (scripts/install-deps)"
		return 1
	fi
	redis_launch || return 1
	rpid=$(redis_pid)
	say "redis-server pid $rpid (1 in its namespace), $(redis-server --version | cut -d' ' -f1-3)"
	t0=$(now)
	piped=$(gen resp | rcli --pipe 2>&1)
	t1=$(now)
	say "loaded in $(secs "$t0" "$t1") s: $(tail -n 1 <<<"$piped")"
	n=$(rcli DBSIZE)
	say "source dbsize $n, used_memory $(rcli INFO memory | sed -n 's/^used_memory_human:\([^\r]*\).*/\1/p'), rss $(rss_mib "$rpid") MiB"
	t0=$(now)
	d0=$(digest before) || {
		say "cannot read the data back"
		return 1
	}
	t1=$(now)
	dd0=$(rcli DEBUG DIGEST)
	say "source digest $d0 ($(secs "$t0" "$t1") s)"
	say "source debug digest $dd0"
	share dbsize0 "$n"
	share digest0 "$d0"
	share debugdigest0 "$dd0"
	if ! wait_no_clients; then
		say "a client connection is still open:"
		ss -Htn state established "( sport = :$rport or dport = :$rport )"
		return 1
	fi
	say "listening: $(ss -Htln "sport = :$rport" | awk '{ print $4 }' | tr '\n' ' ')"
	t0=$(now)
	criu dump -t "$rpid" -D "$top/dump" -v4 -o dump.log
	st=$?
	t1=$(now)
	say "redis source json: $(jq -nc --arg n "$n" --arg d "$d0" --arg dd "$dd0" --argjson st "$st" \
		--argjson s "$(secs "$t0" "$t1")" \
		'{dbsize: ($n | tonumber? // $n), digest: $d, debug_digest: $dd, dump: $st, dump_s: $s}')"
	if [ $st -ne 0 ]; then
		say "criu dump failed ($st)"
		grep -E 'Error|error' "$top/dump/dump.log" | tail -n 8
		return 1
	fi
	say "dumped in $(secs "$t0" "$t1") s: $(du -sh "$top/dump" | cut -f1)"
	"$B/source-agent/rdmig-source" -t rdma -l "$RDMIG_ADDR:$port" \
		-m "m1:$top/dump:$secret" --verify --once 2>&1 | sed -u 's/^/source: /'
	st=${PIPESTATUS[0]}
	share source-status "$st"
	say "redis served json: {\"exit\":$st}"
	return "$st"
}

# dest_json: "redis dest json" of what dest_side found so far (its locals).
dest_json() {
	say "redis dest json: $(jq -nc --argjson restore "${rst:-null}" --argjson pid "${rpid:-null}" \
		--arg ping "${ping:-}" --argjson a0 "${alive0:-false}" --argjson a1 "${alive1:-false}" \
		--arg d1 "${d1:-}" --arg d2 "${d2:-}" --arg n "${n:-}" --arg dd "${dd:-}" \
		--arg set "${setget:-}" --argjson dx "${dexit:-null}" --arg sx "${sexit:-}" \
		'def s: if . == "" then null else . end;
		{restore: $restore, pid: $pid, ping: ($ping | s), dest_running_at_start: $a0,
		 dest_running_at_end: $a1, digest_moving: ($d1 | s), digest_after: ($d2 | s),
		 dbsize: ($n | s | tonumber? // .), debug_digest: ($dd | s), set: ($set | s),
		 dest_exit: $dx, source_exit: ($sx | s | tonumber? // .)}')"
}

dest_side() {
	local B=${RDMIG_BUILD:?} secret=${RDMIG_SECRET:?} src=${RDMIG_SOURCE_ADDR:-$RDMIG_ADDR}
	local sh=${RDMIG_SHARED_DIR:?} dpid rpid='' rst='' dexit='' t0 t1 t2 t3 d1='' d2='' dd='' n=''
	local alive0=false alive1=false rss0 rss1 ping='' setget='' sexit='' want
	rm -rf "$top" && mkdir -p "$top/restore" "$top/work"
	t0=$(now)
	# shellcheck disable=SC2086
	"$B/dest-agent/rdmig-dest" --source "$src:$port" -t rdma -m m1 --secret-file "$secret" \
		--verify -D "$top/restore" -W "$top/work" --connect-timeout 300 --status-fd 3 \
		-o "$top/work/rdmig-dest.log" ${RDMIG_DEST_ARGS:-} 3>"$top/work/ready" &
	dpid=$!
	for _ in $(seq 3000); do
		[ -s "$top/work/ready" ] && break
		kill -0 "$dpid" 2>/dev/null || break
		sleep 0.1
	done
	t1=$(now)
	if [ ! -s "$top/work/ready" ]; then
		say "rdmig-dest never became ready"
		wait "$dpid"
		dexit=$?
		sed 's/^/dest: /' "$top/work/rdmig-dest.log"
		dest_json
		return 1
	fi
	say "rdmig-dest ready: $(find "$top/restore" -type f | wc -l) image files received"
	(cd "$top/work" && criu restore -D "$top/restore" -W "$top/work" --lazy-pages -d \
		-v4 -o restore.log)
	rst=$?
	t2=$(now)
	if [ $rst -ne 0 ]; then
		say "criu restore failed ($rst)"
		grep -E 'Error|error' "$top/work/restore.log" | tail -n 8
		kill "$dpid" 2>/dev/null
		wait "$dpid"
		dexit=$?
		sed 's/^/dest: /' "$top/work/rdmig-dest.log"
		dest_json
		return 1
	fi
	rpid=$(redis_pid)
	say "restored in $(secs "$t1" "$t2") s: redis-server pid $rpid"
	# While pages still move: every value read faults in what is missing.
	kill -0 "$dpid" 2>/dev/null && alive0=true
	rss0=$(rss_mib "$rpid")
	ping=$(rcli PING 2>&1)
	say "ping after restore: $ping"
	d1=$(digest during) || d1=none
	kill -0 "$dpid" 2>/dev/null && alive1=true
	rss1=$(rss_mib "$rpid")
	say "digest while pages move: $d1 (rdmig-dest running at start: $alive0, at end: $alive1;" \
		"redis rss $rss0 -> $rss1 MiB; $(secs "$t2" "$(now)") s)"
	for _ in $(seq 6000); do
		kill -0 "$dpid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$dpid" 2>/dev/null; then
		say "rdmig-dest still running after 600 s"
		kill "$dpid"
	fi
	wait "$dpid"
	dexit=$?
	t3=$(now)
	sed 's/^/dest: /' "$top/work/rdmig-dest.log"
	say "redis summary json: $(summary_json "$top/work/rdmig-dest.log")"
	say "rdmig-dest exited $dexit"
	say "ping after the drain: $(rcli PING 2>&1)"
	n=$(rcli DBSIZE 2>&1)
	d2=$(digest after) || d2=none
	dd=$(rcli DEBUG DIGEST 2>&1)
	say "dest dbsize $n, redis rss $(rss_mib "$rpid") MiB"
	say "digest after the drain: $d2"
	say "dest debug digest $dd"
	want=${RDMIG_REDIS_EXPECT:-}
	say "expected digest ${want:-?}, the source's $(cat "$sh/digest0" 2>/dev/null || echo '?')"
	# Still a working server: a write and a read back.
	setget="$(rcli SET migrated yes 2>&1) $(rcli GET migrated 2>&1)"
	say "set after migration: $setget"
	say "times: restore=$(secs "$t1" "$t2") all_pages=$(secs "$t1" "$t3") (s, from restore start)"
	# The source command ends once it saw Done; give it a moment to say so.
	for _ in $(seq 300); do
		[ -s "$sh/source-status" ] && break
		sleep 0.1
	done
	sexit=$(cat "$sh/source-status" 2>/dev/null)
	say "source agent exit status: ${sexit:-?}"
	dest_json
	rcli SHUTDOWN NOSAVE >/dev/null 2>&1
	return "$dexit"
}

# RDMIG_REDIS_LIB=1: only the functions (for container-migrate.sh and
# linkstall-migrate.sh, which source guest.sh themselves).
[ "${RDMIG_REDIS_LIB:-0}" = 1 ] && return 0
GUEST_TAG=redis-migrate
# shellcheck source=guest.sh
. "$(dirname "${BASH_SOURCE[0]}")/guest.sh"
case $role in
source) source_side ;;
dest) dest_side ;;
expect) expect ;;
gen) gen "${2:?gen resp|keys|values}" ;;
*)
	echo "redis-migrate.sh: unknown role $role" >&2
	exit 2
	;;
esac
