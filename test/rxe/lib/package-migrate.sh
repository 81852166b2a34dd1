#!/bin/bash
# Runs in a soft-RoCE guest pair (test/rxe/t/39-package.t): the Debian
# package, installed and started as docs/operations.md §0 (the quick start)
# says, migrates a running process between the guests.
#   package-migrate.sh source   guest A (node-a, 192.0.2.1): rdmig-workload
#       runs here; the quick start's "both" and "source" blocks install the
#       package, configure and start rdmig-source and run rdmigctl migrate.
#   package-migrate.sh dest     guest B (node-b, 192.0.2.2): the "both" and
#       "dest" blocks install the package, configure and start rdmig-dest;
#       the restored workload verifies all its memory (handover-migrate.sh's
#       dest_verify).
# The blocks run as they are written in the doc (bash -e -v, from the
# directory of the .deb), with lib/shim/systemctl first in PATH: the guests'
# PID 1 is the test bed's init, not systemd, and the shim starts each
# service from its installed unit (ExecStart, limits, umask, READY=1).
# Before them, each guest puts its agent's TLS files where §1.3 says.
# The guests' roots are throw-away overlays: the package leaves with them.
# Environment: that of handover-migrate.sh, and RDMIG_DEB_DIR (the .deb's
# directory), RDMIG_PKI with ca.pem and node-a/node-b's .pem and .key.
# shellcheck source-path=SCRIPTDIR
set -u
role=${1:?usage: package-migrate.sh source|dest}
lib=$(cd "$(dirname "$0")" && pwd)
doc=$(cd "$lib/../../.." && pwd)/docs/operations.md
debdir=${RDMIG_DEB_DIR:?}
# The quick start's migration id.
export RDMIG_ID=web1
# shellcheck source=handover-migrate.sh
RDMIG_HANDOVER_LIB=1 . "$lib/handover-migrate.sh" "$role"
# shellcheck source=quickstart.sh
. "$lib/quickstart.sh"
# The installed rdmigctl, with its default sockets (/run/rdmig/*.sock).
ctl=/usr/bin/rdmigctl
shim=/run/rdmig-shim

# install_tls NAME: NAME's certificate and key and the CA, as in §1.3.
install_tls() {
	install -D -m 0600 "$pki/$1.key" /etc/rdmig/tls/agent.key &&
		install -D -m 0644 "$pki/$1.pem" /etc/rdmig/tls/agent.pem &&
		install -D -m 0644 "$pki/ca.pem" /etc/rdmig/tls/ca.pem
}

# quickstart BLOCK...: the blocks' lines, in one bash -e -v; its status.
quickstart() {
	local b script=$top/quickstart.sh
	: >"$script"
	for b; do
		quickstart_lines "$doc" "$b" >>"$script" || {
			say "no quick start block '$b' in $doc"
			return 1
		}
	done
	(cd "$debdir" && PATH=$lib/shim:$PATH bash -e -v "$script" </dev/null) 2>&1 |
		sed -u 's/^/quickstart: /'
	return "${PIPESTATUS[0]}"
}

# agent_report UNIT: what runs as UNIT's main process, and the package.
agent_report() {
	local pid
	pid=$(cat "$shim/$1.service.pid" 2>/dev/null)
	say "$1 runs $(readlink "/proc/${pid:-0}/exe" 2>/dev/null || echo nothing)"
	say "package: $(dpkg-query -W -f '${Status} ${Version}' rdmig 2>&1)"
}

# stop_agent UNIT: systemctl stop, then the agent's log.
stop_agent() {
	PATH=$lib/shim:$PATH systemctl stop "$1" 2>&1 | sed 's/^/handover: /'
	sed "s/^/$role: /" "$shim/$1.service.log" 2>/dev/null
}

source_side() {
	local st=0 ok=0
	rm -rf "$top" && mkdir -p "$top"
	if ! install_tls node-a || ! quickstart both || ! start_workload; then
		say "the package or the workload is not there"
		echo 1 >"$shared/migrated"
		return 1
	fi
	check_workload || st=1
	local dapi=("$ctl" --api "https://$RDMIG_PEER_ADDR:$api_port" --tls-cert /etc/rdmig/tls/agent.pem
		--tls-key /etc/rdmig/tls/agent.key --tls-ca /etc/rdmig/tls/ca.pem)
	for _ in $(seq 1200); do
		"${dapi[@]}" --timeout 2 health >/dev/null 2>&1 && break
		sleep 0.1
	done
	say "destination agent: $("${dapi[@]}" health 2>&1)"
	# The block ends with rdmigctl migrate --wait: its status is the block's.
	export PID=$wpid
	quickstart source || ok=$?
	say "the quick start's source block exited $ok"
	[ "$ok" = 0 ] || st=1
	agent_report rdmig-source
	"$ctl" status "$id" --json | tr -d ' \n' | sed 's/^/handover: json: /'
	echo
	echo "$ok" >"$shared/migrated"
	wait_file "$shared/verified" 600 || say "no verdict from the destination"
	stop_agent rdmig-source
	return "$st"
}

dest_side() {
	local st=0
	rm -rf "$top" && mkdir -p "$top"
	if install_tls node-b && quickstart both dest; then
		agent_report rdmig-dest
		dest_verify /run/rdmig/dest.sock || st=1
	else
		say "the quick start's dest blocks failed"
		echo 1 >"$shared/verified"
		st=1
	fi
	stop_agent rdmig-dest
	return "$st"
}

case $role in
source) source_side ;;
dest) dest_side ;;
*)
	echo "package-migrate.sh: unknown role $role" >&2
	exit 2
	;;
esac
