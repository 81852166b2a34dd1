# Helpers for the host tests that freeze real processes through
# rdmig-source (net-reserve.sh, net-queue.sh); sourced after netlib.sh.

# gate_criu: writes $T/criu.sh, a criu stand-in whose dump freezes the
# tree's root like criu (SIGSTOP, the pid appended to $T/frozen), waits
# for the gate $T/dump-go (open unless a case removes it, so a case can
# hold migrations in their dump however slow the machine; the bound is for
# a test gone wrong), writes the images (fake-criu.sh) and kills it;
# $T/fail-dump-PID makes the dump fail and leaves the process running, as
# criu does.
gate_criu() {
	cat >"$T/criu.sh" <<EOF
#!/bin/bash
[ "\$1" = dump ] || exec "$net_here/fake-criu.sh" "\$@"
prev= pid=
for a in "\$@"; do [ "\$prev" = -t ] && pid=\$a; prev=\$a; done
echo "\$pid" >>"$T/frozen"
kill -STOP "\$pid"
for _ in \$(seq 1200); do [ -e "$T/dump-go" ] && break; sleep 0.1; done
if [ -e "$T/fail-dump-\$pid" ]; then
	kill -CONT "\$pid"
	exit 1
fi
"$net_here/fake-criu.sh" "\$@"
rc=\$?
kill -KILL "\$pid"
exit \$rc
EOF
	chmod +x "$T/criu.sh"
	touch "$T/frozen" "$T/dump-go"
}

# workload NAME: a process counting into $T/NAME.count; sets wl_pid.
workload() {
	bash -c 'i=0; while :; do i=$((i + 1)); echo $i >"$1"; sleep 0.05; done' wl "$T/$1.count" &
	wl_pid=$!
	# Killed by the dump on purpose: no job report for it.
	disown "$wl_pid"
	track "$wl_pid"
	# Running, not still being exec'd: the source reads its resident memory
	# for the reservation (under 1 MiB once, read that early).
	wait_for_file "$T/$1.count" 30
}

# untouched NAME PID: never frozen, not stopped now (/proc/PID/status), and still counting.
untouched() {
	local c0 c st
	! grep -qx "$2" "$T/frozen" || return 1
	st=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$2/status") || return 1
	[ -n "$st" ] && [ "$st" != T ] && [ "$st" != t ] || return 1
	# The loop rewrites the file: a read may find it empty.
	c0=
	for _ in $(seq 300); do
		c=$(cat "$T/$1.count")
		[ -n "$c" ] && [ -z "$c0" ] && c0=$c
		[ -n "$c" ] && [ "$c" -gt "$c0" ] && return 0
		sleep 0.1
	done
	return 1
}
