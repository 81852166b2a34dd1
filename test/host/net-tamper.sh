#!/bin/bash
# A man in the middle between rdmig-dest and rdmig-source (rdmig-flipproxy)
# flips one byte of the source's stream after the handshake, without
# --verify.  In an image file chunk: rdmig-dest fails the migration with
# "control message failed authentication" before the images are ready, so
# nothing is restored, and no tampered byte reaches its images dir.  In a
# ReadResp (page data over TCP): the page is never installed, the restored
# stand-in never reads a wrong byte.  Through the same proxy without a flip
# the migration succeeds.
. "$(dirname "$0")/netlib.sh"
: "${RDMIG_FLIPPROXY:?}"
plan 17

mkimage "$T/src" --size 16M
secret "$T/secret"
mkdir "$T/dst-file" "$T/dst-page" "$T/dst"

# dest_args ID: rdmig-dest's options to take migration ID through the proxy.
dest_args() {
	echo "--source 127.0.0.1:$px_port -t tcp -m $1 --secret-file $T/secret"
}

# untampered SRC DST: every file of DST is one of SRC, and none of its bytes
# differs from SRC's but for the zeros of parts never written (a file in
# progress, holes).
untampered() {
	local f n bad=0
	while IFS= read -r f; do
		n=${f##*/}
		if [ ! -f "$1/$n" ]; then
			echo "# $n is not a file of the source"
			bad=1
		elif [ -n "$(cmp -l "$1/$n" "$f" 2>/dev/null | awk '$3 != 0')" ]; then
			echo "# $n has bytes the source never sent"
			bad=1
		fi
	done < <(find "$2" -type f)
	return $bad
}

# 1. A flipped byte in the first image file chunk (body field 7, ImageFile):
# offset 30 is in the data of inventory.img (the last 16 bytes are the MAC).
start_source "$T/source-file.log" -m "m1:$T/src:$T/secret"
proxy "$T/proxy-file.log" --type 7 --offset 30
# shellcheck disable=SC2046
timeout 30 "$RDMIG_DEST" -D "$T/dst-file" $(dest_args m1) --connect-timeout 5 \
	--status-fd 9 9>"$T/status-file" >"$T/dest-file.log" 2>&1
code=$?
log=$T/dest-file.log
check "image chunk: the proxy flipped a byte after the handshake" \
	grep -q "flipped frame [4-9][0-9]* (type 7," "$T/proxy-file.log"
check "... rdmig-dest exits 1" test "$code" -eq 1
check "... with the authentication error" \
	grep -q "refused: control message failed authentication" "$log"
check "... never reported the images ready, nothing was restored" \
	eval "test ! -s '$T/status-file' && grep -q 'cannot get the images from the source; nothing was restored' '$log'"
check "... and wrote no tampered byte" untampered "$T/src" "$T/dst-file"
check "the source got the destination's (authenticated) Abort" \
	grep -q "the destination aborted: control message failed authentication" \
	"$T/source-file.log"
wait_pid "$px_pid" 10
kill "$src_pid"
wait_pid "$src_pid" 10

# 2. A flipped byte in page data: the first ReadResp (body field 12).
start_source "$T/source-page.log" -m "m1:$T/src:$T/secret"
proxy "$T/proxy-page.log" --type 12 --offset 2000
# shellcheck disable=SC2046
start_dest "$T/dest-page.log" -D "$T/dst-page" $(dest_args m1)
check "page data: the images arrived intact, rdmig-dest is ready" \
	eval "test -n '$dest_pid' && same_meta '$T/src' '$T/dst-page'"
timeout 60 "$RDMIG_STANDIN" -D "$T/dst-page" --threads 2 >"$T/standin-page.out" 2>&1
rc=$?
wait_dest
log=$T/dest-page.log
check "... the proxy flipped a byte of a ReadResp" \
	grep -q "flipped frame [0-9]* (type 12," "$T/proxy-page.log"
check "... rdmig-dest exits 1 with the authentication error" \
	eval "test $code -eq 1 && grep -q 'refused: control message failed authentication' '$log'"
check "... the stand-in did not complete" test "$rc" -ne 0
check "... and never read a wrong byte" never_wrong "$T/standin-page.out"
wait_pid "$px_pid" 10
kill "$src_pid"
wait_pid "$src_pid" 10

# 3. The same proxy, no flip: the migration succeeds through it.
start_source "$T/source.log" -m "m1:$T/src:$T/secret" --once
proxy "$T/proxy.log"
# shellcheck disable=SC2046
start_dest "$T/dest.log" -D "$T/dst" $(dest_args m1)
timeout 60 "$RDMIG_STANDIN" -D "$T/dst" --threads 2 >"$T/standin.out" 2>&1
rc=$?
wait_dest
check "no flip: stand-in verified every page" \
	eval "test $rc -eq 0 && standin_ok '$T/standin.out' 4096"
check "... rdmig-dest exits 0, counts consistent" \
	eval "test $code -eq 0 && consistent '$T/dest.log'"
check "... the source acknowledged Done" \
	grep -q "the source confirmed every page arrived" "$T/dest.log"
wait_pid "$src_pid" 20
check "... rdmig-source --once exits 0" test "$code" -eq 0
wait_pid "$px_pid" 10
check "... the proxy forwarded every frame and flipped none" \
	eval "grep -q 'closed after [0-9]* frames' '$T/proxy.log' && ! grep -q flipped '$T/proxy.log'"
check "no authentication failure logged in the control case" \
	eval "! grep -q 'failed authentication' '$T/dest.log' '$T/source.log'"
for f in "$T"/proxy-*.log; do sed 's/^/# /' "$f"; done
[ "$tap_failed" -eq 0 ] || for f in "$T"/*.log; do diag_file "$f" 30; done
finish
