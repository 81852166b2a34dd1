#!/bin/bash
# meson install --destdir: the agents in sbindir, rdmigctl in bindir, the
# man pages, the systemd units (whose ExecStart names the installed agents)
# and the commented example configurations in confdir, and nothing else;
# the installed configurations are read by the installed agents.
# Args: the source tree, the build tree (configured, built).
. "$(dirname "$0")/lib.sh"
src=${1:?}
build=${2:?}
plan 5

# opt NAME: the build's value of a meson option.
opt() {
	meson introspect "$build" --buildoptions |
		python3 -c 'import json, sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == sys.argv[1]))' "$1"
}
prefix=$(opt prefix)
# Relative directories are below the prefix, absolute ones stay (confdir).
under() { case $1 in /*) echo "$1" ;; *) echo "$prefix/$1" ;; esac; }
sbindir=$(under "$(opt sbindir)")
bindir=$(under "$(opt bindir)")
mandir=$(under "$(opt mandir)")
confdir=$(under "$(opt confdir)")
unitdir=$(opt systemdunitdir)
[ -n "$unitdir" ] || unitdir=$(pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null)
[ -n "$unitdir" ] || unitdir=$prefix/lib/systemd/system

root=$T/root
check "meson install --destdir exits 0" \
	eval "meson install -C '$build' --destdir '$root' --no-rebuild --quiet >'$T/install.out' 2>&1 ||
	      { diag_file '$T/install.out'; false; }"

sort >"$T/want" <<EOF
$sbindir/rdmig-source
$sbindir/rdmig-dest
$bindir/rdmigctl
$mandir/man8/rdmig-source.8
$mandir/man8/rdmig-dest.8
$mandir/man8/rdmigctl.8
$mandir/man5/rdmig.conf.5
$unitdir/rdmig-source.service
$unitdir/rdmig-dest.service
$unitdir/rdmig-source.socket
$unitdir/rdmig-dest.socket
$confdir/rdmig-source.conf
$confdir/rdmig-dest.conf
EOF
(cd "$root" && find . -type f -o -type l) | sed 's|^\.||' | sort >"$T/got"
check "the installed tree is exactly the agents, rdmigctl, 4 man pages, 4 units, 2 configs" \
	eval "diff -u '$T/want' '$T/got' >'$T/tree.diff' || { diag_file '$T/tree.diff'; false; }"

# Each unit's ExecStart runs an installed agent.
execs_ok() {
	local u exe
	for u in rdmig-source rdmig-dest; do
		exe=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$root$unitdir/$u.service")
		[ "$exe" = "$sbindir/$u" ] && [ -x "$root$exe" ] || {
			echo "# $u.service: ExecStart runs '$exe', not the installed $sbindir/$u"
			return 1
		}
	done
}
check "each service's ExecStart is the installed agent in $sbindir" execs_ok

# The configurations are commented examples: every line parses, and the
# agent stops only at the TLS identity of docs/operations.md §1.3, absent
# here (exit 78), never at a line of the file (exit 2).
check "the installed rdmig-source reads the installed rdmig-source.conf to its end and wants /etc/rdmig/tls/agent.pem" \
	conf_wants_tls "$root$sbindir/rdmig-source" "$root$confdir/rdmig-source.conf" -t tcp \
	-l 127.0.0.1:0 --api-socket "$T/source.sock" --images-root "$T/images"
# rdmig-dest reads its TLS files only with a TCP API (commented out here),
# so --serve starts; the installed rdmigctl asks it.
check "the installed rdmig-dest --serve starts with the installed rdmig-dest.conf; the installed rdmigctl reaches it" \
	dest_conf_serves "$root$sbindir/rdmig-dest" "$root$confdir/rdmig-dest.conf" "$root$bindir/rdmigctl"
finish
