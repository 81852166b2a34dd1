# shellcheck shell=bash
# quickstart_lines DOC NAME: the lines of the code block that follows the
# line "<!-- quickstart: NAME -->" in DOC (docs/operations.md §0), as they
# are written; nothing (and status 1) when there is no such block.
quickstart_lines() {
	awk -v want="<!-- quickstart: $2 -->" '
		$0 == want { found = 1; next }
		found == 1 && /^```/ { found = 2; next }
		found == 2 && /^```/ { exit }
		found == 2 { print }
		END { exit found != 2 }' "$1"
}
