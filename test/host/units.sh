#!/bin/bash
# The systemd units (systemd/): `systemd-analyze verify` accepts each, with
# ExecStart pointing at this build's binaries; each service is Type=notify
# with LimitMEMLOCK=infinity and KillMode=process, and a stop waits longer
# than a drain could be cut (TimeoutStopSec above 10 minutes); each socket
# names its service and the path of that service's --api-socket.
# Args: the systemd/ source dir; RDMIG_SOURCE, RDMIG_DEST: the binaries.
. "$(dirname "$0")/lib.sh"
: "${RDMIG_SOURCE:?}"
src=${1:?}
command -v systemd-analyze >/dev/null || { echo "1..0 # SKIP systemd-analyze not found"; exit 0; }
plan 6

mkdir "$T/units" "$T/bin"
ln -s "$RDMIG_SOURCE" "$T/bin/rdmig-source"
ln -s "$RDMIG_DEST" "$T/bin/rdmig-dest"
for u in rdmig-source.service rdmig-dest.service; do
	sed "s|@SBINDIR@|$T/bin|g" "$src/$u.in" >"$T/units/$u"
done
cp "$src/rdmig-source.socket" "$src/rdmig-dest.socket" "$T/units/"

# verify UNIT: systemd-analyze verify says nothing about it.
verify() {
	(cd "$T/units" && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no "./$1") \
		>"$T/$1.out" 2>&1 && [ ! -s "$T/$1.out" ] || { diag_file "$T/$1.out"; return 1; }
}
# prop UNIT KEY: the value systemd-analyze reads for KEY (the last one set).
prop() { sed -n "s/^$2=//p" "$T/units/$1" | tail -1; }

for u in rdmig-source rdmig-dest; do
	check "$u.service and $u.socket: systemd-analyze verify is silent" \
		eval "verify $u.service && verify $u.socket"
	check "$u.service: Type=notify, LimitMEMLOCK=infinity, KillMode=process, TimeoutStopSec=1h" \
		test "$(prop $u.service Type) $(prop $u.service LimitMEMLOCK) $(prop $u.service KillMode) $(prop $u.service TimeoutStopSec)" = "notify infinity process 1h"
	check "$u.socket: for $u.service, on the path of its --api-socket" \
		eval "[ \"\$(prop $u.socket Service)\" = $u.service ] &&
		      grep -q -- \"--api-socket \$(prop $u.socket ListenStream)\\\$\" '$T/units/$u.service'"
done
finish
