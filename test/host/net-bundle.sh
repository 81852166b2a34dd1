#!/bin/bash
# The bundle contract of a container migration (issue 13 item 2,
# design.md §12): a reservation naming a container's bundle is granted
# only when the bundle is on this destination, below one of its
# --bundle-root directories, with config.json and rootfs; otherwise it is
# refused with the reason, so the source refuses before any freeze.  No
# path from a request escapes the roots: not by "..", not by a symbolic
# link, not as a root itself; an agent without --bundle-root refuses every
# bundle; a relative or missing --bundle-root stops the agent at start.
. "$(dirname "$0")/netlib.sh"
plan 12
command -v curl >/dev/null || { echo "1..0 # SKIP curl not found"; exit 0; }

b=$T/bundles
mkdir -p "$T/droot" "$b/web/rootfs" "$b/noconf/rootfs" "$b/norootfs" "$T/outside/rootfs"
touch "$b/web/config.json" "$b/norootfs/config.json" "$T/outside/config.json"
ln -s "$T/outside" "$b/escape"

start_dagent d --work-root "$T/droot" --bundle-root "$b"
# reserve MIGRATION BUNDLE: the HTTP status of a reservation naming BUNDLE.
reserve() { dapi d POST /v1/reservations "{\"migration\":\"$1\",\"bytes\":0,\"bundle\":\"$2\"}"; }

code=$(reserve m1 "$b/web")
check "a bundle with config.json and rootfs below --bundle-root: 201, shown" \
	eval "test $code = 201 && grep -q '\"bundle\":\"$b/web\"' '$T/dapi.out'"
code=$(reserve m2 "$b/missing")
check "a bundle that is not here: 404, named" \
	eval "test $code = 404 && grep -q 'bundle $b/missing: not here' '$T/dapi.out'"
code=$(reserve m3 "$b/noconf")
check "a bundle without config.json: 404" \
	eval "test $code = 404 && grep -q 'no config.json file' '$T/dapi.out'"
code=$(reserve m4 "$b/norootfs")
check "a bundle without rootfs: 404" \
	eval "test $code = 404 && grep -q 'no rootfs directory' '$T/dapi.out'"
code=$(reserve m5 "$T/outside")
check "a bundle outside every bundle root: 403" \
	eval "test $code = 403 && grep -q 'not below a bundle root' '$T/dapi.out'"
code=$(reserve m6 "$b/../outside")
check "... nor out of one by \"..\": 403" test "$code" = 403
code=$(reserve m7 "$b/escape")
check "... nor by a symbolic link: 403" test "$code" = 403
code=$(reserve m8 "$b")
check "... and the root itself is no bundle: 403" test "$code" = 403
code=$(reserve m9 "web")
check "a relative bundle: 400" \
	eval "test $code = 400 && grep -q 'bundle.. must be an absolute path' '$T/dapi.out'"
code=$(dapi d GET /v1/reservations)
check "only the granted one holds a slot" \
	eval "test $code = 200 && test \$(grep -o '\"id\":\"r-' '$T/dapi.out' | wc -l) = 1"

start_dagent n --work-root "$T/droot"
code=$(dapi n POST /v1/reservations "{\"migration\":\"n1\",\"bytes\":0,\"bundle\":\"$b/web\"}")
check "an agent without --bundle-root refuses every bundle: 403" \
	eval "test $code = 403 && grep -q 'it has none' '$T/dapi.out'"

"$RDMIG_DEST" --serve --api-socket "$T/x.sock" --work-root "$T/droot" --bundle-root bundles \
	2>"$T/x.err"
check "a relative --bundle-root stops the agent at start" \
	eval "test $? -ne 0 && grep -q -- '--bundle-root bundles' '$T/x.err'"
finish
