#!/bin/bash
# The Debian package, installed in two soft-RoCE guests as the quick start
# (docs/operations.md §0) says, migrates a running process: the .deb is
# built here from this tree (scripts/build-deb, as make deb; lintian errors
# fail it), then each guest runs the quick start's blocks as they are
# written (apt-get install ./rdmig_*.deb, the config lines, systemctl
# enable --now, rdmigctl migrate --pid --to --wait), with a systemctl that
# starts the agents from their installed units: the guests' PID 1 is not
# systemd (lib/shim/systemctl).  Every binary is the installed one
# (/usr/sbin/rdmig-source, /usr/sbin/rdmig-dest, /usr/bin/rdmigctl); the
# workload verifies its 64 MiB on guest B while pages move and after the
# last one.  The guests' roots are throw-away overlays.  Guest side:
# lib/package-migrate.sh.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
# shellcheck source=../lib/quickstart.sh
. "$(dirname "$0")/../lib/quickstart.sh"
top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$top/build}
case $build in /*) ;; *) build=$top/$build ;; esac
mig=$top/test/rxe/lib/package-migrate.sh
doc=$top/docs/operations.md
tap_plan 17

rxe_require_built "$build" test/rdmig-workload
rxe_require_cmds criu dpkg-buildpackage
debdir=$build/deb
bout=$("$top/scripts/build-deb" "$debdir" 2>&1)
tap_ok $? "scripts/build-deb builds the package (lintian: no error)"
deb=$(sed -n 's/^build-deb: \(\/.*\.deb\)$/\1/p' <<<"$bout")
if [[ ! -f $deb ]]; then
	tap_diag "$bout"
	echo "Bail out! no .deb to install"
	exit 1
fi
tap_diag "$(basename "$deb"): $(du -k "$deb" | cut -f1) KiB"
# unit_exec UNIT: the ExecStart of UNIT as the package installs it.
unit_exec() {
	dpkg-deb --fsys-tarfile "$deb" | tar -xOf - "./lib/systemd/system/$1.service" |
		sed -n 's/^ExecStart=//p'
}

rxe_secret "$top"
. "$top/test/lib/pki.sh"
# The names docs/operations.md §0 and §1.3 give the two hosts.
if ! { pki_ca "$secrets/pki" &&
	pki_cert "$secrets/pki" node-a "DNS:node-a.example,IP:192.0.2.1" &&
	pki_cert "$secrets/pki" node-b "DNS:node-b.example,IP:192.0.2.2"; }; then
	echo "Bail out! cannot make the test PKI (openssl)"
	exit 1
fi
env_common="RDMIG_BUILD=$build RDMIG_PKI=$secrets/pki RDMIG_SIZE_MB=64 RDMIG_DEB_DIR=$debdir"

tap_run_pair "$env_common" "$mig"
out="$RUN_OUT$RUN_ERR"
tap_is "$RUN_STATUS" 0 "the pair run exits 0"

# ran ROLE BLOCK...: every line of the doc's blocks ran in guest ROLE, as written.
ran() {
	local role=$1 b line missing=
	shift
	for b; do
		while IFS= read -r line; do
			grep -qxF "[$role] quickstart: $line" <<<"$RUN_OUT" || missing+="$line; "
		done < <(quickstart_lines "$doc" "$b")
	done
	[[ -z $missing ]] || tap_diag "not run in $role: $missing"
	[[ -z $missing ]]
}
ran dest both dest
tap_ok $? "guest B ran the quick start's 'both' and 'dest' blocks, line by line as written"
ran source both source
tap_ok $? "guest A ran the 'both' and 'source' blocks, line by line as written"
for r in source dest; do
	tap_like "$RUN_OUT" "^\[$r\] handover: package: install ok installed [0-9]" \
		"apt-get install put the package into guest ${r}'s overlay root"
done
for u in rdmig-source rdmig-dest; do
	r=${u#rdmig-}
	tap_like "$RUN_OUT" "^\[$r\] quickstart: systemctl: $u.service: ExecStart=$(unit_exec "$u")\$" \
		"$u started with the installed unit's ExecStart ($(unit_exec "$u"))"
	tap_like "$RUN_OUT" "^\[$r\] quickstart: systemctl: $u.service: READY=1 from the main process" \
		"... and reported ready (Type=notify) from its main process"
	tap_like "$RUN_OUT" "^\[$r\] handover: $u runs /usr/sbin/$u\$" "... which is the installed /usr/sbin/$u"
done
tap_like "$RUN_OUT" '^\[source\] quickstart: migration web1 \(source\): done$' \
	"the installed rdmigctl's report says done"
tap_like "$RUN_OUT" '^\[source\] quickstart:   dest: +192\.0\.2\.2:7472 \(destination agent: done\)' \
	"... the destination agent on 192.0.2.2:7472 says done too"
tap_handover_verified "$out"
tap_diag "report: $(grep -h '^\[source\] quickstart:   \(transport\|downtime\|total\|moved\):' <<<"$RUN_OUT" | sed 's/^\[source\] quickstart: *//' | tr -s ' ' | paste -sd ';' -)"
tap_done
