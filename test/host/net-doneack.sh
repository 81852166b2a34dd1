#!/bin/bash
# A lost DoneAck (issue "post-copy that survives", item 1's edge): the
# destination has every page and sent Done, the source released its
# checkpoint, but its DoneAck never arrives.  The destination pauses and
# reconnects; the source, after the proof, answers its Attach{resume} with
# the DoneAck it missed (protocol.md §7.3), and the destination ends done.
# Then a lost Done: the source never had it, pauses with the destination,
# and the resumed destination says Done again.  A fresh destination of a
# done migration is refused.  rdmig-flipproxy --cut loses the one frame.
. "$(dirname "$0")/netlib.sh"
: "${RDMIG_FLIPPROXY:?}" "${RDMIG_CTL:?}"
plan 12

secret "$T/secret"
sock=$T/run/source.sock
CTL=("$RDMIG_CTL" --socket "$sock")
mkimage "$T/src" --size 8M
npages=2048
start_source "$T/source.log" -m "a1:$T/src:$T/secret" -m "a2:$T/src:$T/secret" --verify \
	--api-socket "$sock"
wait_log "$T/source.log" "api: serving on" >/dev/null

# through N ID TYPE: rdmig-dest takes ID through a proxy that loses the
# first frame of TYPE; the stand-in faults.  Leaves dcode and scode.
through() {
	local n=$1 id=$2
	proxy "$T/proxy$n.log" --cut "$3" || return 1
	mkdir "$T/dst$n"
	start_dest "$T/dest$n.log" -D "$T/dst$n" --source "127.0.0.1:$px_port" -t tcp -m "$id" \
		--secret-file "$T/secret" --verify --one-lane
	timeout 60 "$RDMIG_STANDIN" -D "$T/dst$n" --threads 2 >"$T/standin$n.out" 2>&1
	scode=$?
	wait_dest
	dcode=$code
	wait_pid "$px_pid" 10
}

# 1. DoneAck (16) lost.
through 1 a1 16
check "DoneAck lost: the proxy cut the source's DoneAck" grep -q '^cut frame [0-9]* (type 16' "$T/proxy1.log"
check "DoneAck lost: rdmig-dest ends done (exit 0) and the stand-in verified every page" \
	eval "[ $dcode -eq 0 ] && [ $scode -eq 0 ] && standin_ok '$T/standin1.out' $npages"
check "DoneAck lost: rdmig-dest paused once, then learnt the migration was done" \
	eval "grep -q 'pauses: count=1 ' '$T/dest1.log' &&
	      grep -q 'its DoneAck was lost' '$T/dest1.log'"
check "DoneAck lost: the source answered the reconnection with DoneAck again" \
	grep -q 'answering DoneAck again' "$T/source.log"
check "DoneAck lost: a1 is done on the source" test "$(state a1)" = done

# 2. Done (15) lost: the source pauses too and takes Done on the resumed connection.
through 2 a2 15
check "Done lost: the proxy cut the destination's Done" grep -q '^cut frame [0-9]* (type 15' "$T/proxy2.log"
check "Done lost: rdmig-dest ends done (exit 0) and the stand-in verified every page" \
	eval "[ $dcode -eq 0 ] && [ $scode -eq 0 ] && standin_ok '$T/standin2.out' $npages"
"${CTL[@]}" status a2 --json >"$T/a2.json" 2>&1
check "Done lost: a2 is done on the source after one pause" \
	eval "python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(not (j[\"state\"] == \"done\" and j[\"pause\"][\"count\"] == 1))' '$T/a2.json'"
check "Done lost: rdmig-dest counted one pause" grep -q 'pauses: count=1 ' "$T/dest2.log"

# 3. A fresh destination of a done migration: refused, nothing written.
mkdir "$T/dst3"
# shellcheck disable=SC2046
timeout 20 "$RDMIG_DEST" -D "$T/dst3" $(net_args a1 "$T/secret") --verify >"$T/dest3.log" 2>&1
code=$?
check "a fresh destination of done a1 fails (exit $code), told it is done" \
	eval "[ $code -ne 0 ] && grep -q 'migration is already done' '$T/dest3.log'"
check "... and received no image file" eval "! ls '$T/dst3'/*.img >/dev/null 2>&1"
check "the source still lists a1 done" test "$(state a1)" = done
kill -TERM "$src_pid"
wait_pid "$src_pid"
finish
