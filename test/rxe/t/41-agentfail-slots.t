#!/bin/bash
# Six concurrent migrations into four destination slots (issue 12's Tests,
# item 5), a soft-RoCE guest pair, both agents as in t/33-handover.t
# (`rdmigctl migrate --pid --to`, RDMA, --verify, mutual TLS), six 16 MiB
# rdmig-workloads, the destination agent with --max-migrations 4.  All six
# are accepted; four reserve a slot (and dump, at most --max-dumps at a
# time); the two others wait in the source agent's queue, queued with
# positions 1 and 2 (reason slot) in the API, their workloads running
# untouched on the source (never frozen: /proc/PID/status State, the
# generation advancing; a look that a freed slot's dump interrupts proves
# nothing, and at least one look ends while still queued), then migrate;
# all six end done, every page verified on the destination.
# Guest side: lib/agentfail-migrate.sh.
# shellcheck source-path=SCRIPTDIR source=../lib/tap.sh
. "$(dirname "$0")/../lib/tap.sh"
# shellcheck source=../lib/agentfail-tap.sh
. "$(dirname "$0")/../lib/agentfail-tap.sh"
tap_plan 37
af_setup
# No failure to time here: the destination's drain at its default speed.
af_run RDMIG_CASES=slots RDMIG_SIZE_MB=16 RDMIG_DEST_ARGS="'--max-migrations 4'" RDMIG_DRAIN_ARGS="''"
tap_is "$RUN_STATUS" 0 "the pair run exits 0"

af_true slots queue '.started == 6 and .refused == 0' \
	"six at once into four slots: all six accepted (rdmigctl migrate exits 0): $(af_json slots queue)"
waiting=$(grep -a '^\[source\] agentfail: json s[1-6] untouched ' <<<"$RUN_OUT" |
	sed 's/.* json \(s[1-6]\) untouched .*/\1/' | sort -u)
tap_is "$(wc -w <<<"$waiting")" 2 "two wait: $(tr '\n' ' ' <<<"$waiting")"
# shellcheck disable=SC2086 # the ids: words
set -- $waiting
# A look ended by its slot freeing (its dump began) proves nothing of the
# wait; the last in the queue waits for two slots, so at least one look is
# made entirely while queued.
for c in "${1:-none}" "${2:-none}"; do
	af_true "$c" untouched '.pid != null and (.after != "queued" or ((.state == "R" or .state == "S") and .gen1 > .gen0 and (.frozen | not)))' \
		"$c: while it waits its workload runs untouched on the source (not stopped, generation advancing, no images while queued)"
done
conclusive=0
for c in "${1:-none}" "${2:-none}"; do
	[ "$(af_json "$c" untouched | jq -r '.after' 2>/dev/null)" = queued ] && conclusive=$((conclusive + 1))
done
tap_ok "$([ "$conclusive" -ge 1 ] && echo 0 || echo 1)" \
	"at least one of them was looked at entirely while it waited ($conclusive of 2; a look its slot's freeing ended proves nothing)"
af_true slots queue '[.queued[].queue.position] | sort == [1, 2]' \
	"the two waiting for a slot are listed as queued, positions 1 and 2 in the API"
for c in s1 s2 s3 s4 s5 s6; do
	af_true $c source '.state == "done" and .error == null' "$c: done on the source agent"
	af_true $c dest '.state == "done" and .progress.pages_remaining == 0' "$c: done on the destination agent, every page moved"
	af_true $c verdict '.during and .after and .gen2 > .gen0' "$c: the workload verified all its memory on the destination"
	af_true $c verdict '.pid > 0 and (.state == "R" or .state == "S")' "$c: ... running there"
	af_true $c srcwl '.state == "gone"' "$c: ... and not on the source"
done
af_diag
tap_done
