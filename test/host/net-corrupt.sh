#!/bin/bash
# A corrupt checkpoint: rdmig-source refuses to start, names the bad file,
# exits non-zero, and never listens.
. "$(dirname "$0")/netlib.sh"
cases=(truncate magic garbage empty pages-short mm-garbage no-pstree)
plan $((${#cases[@]} * 2 + 1))

secret "$T/secret"
mkimage "$T/good" --size 4M
for c in "${cases[@]}"; do
	d=$T/img-$c
	cp -r "$T/good" "$d"
	case $c in
	truncate) f=pagemap-4242.img; truncate -s 30 "$d/$f" ;;
	magic) f=pagemap-4242.img; printf '\x11\x22\x33\x44' | dd of="$d/$f" conv=notrunc status=none ;;
	garbage) f=pagemap-4242.img; head -c 1040 /dev/urandom >"$d/$f" ;;
	empty) f=pagemap-4242.img; : >"$d/$f" ;;
	pages-short) f=pages-1.img; truncate -s 1000 "$d/$f" ;;
	mm-garbage) f=mm-4242.img; head -c 156 /dev/urandom >"$d/$f" ;;
	no-pstree) f=pstree.img; rm "$d/$f" ;;
	esac
	timeout 20 "$RDMIG_SOURCE" -t tcp -l 127.0.0.1:0 -m "m1:$d:$T/secret" --once \
		>"$T/source-$c.log" 2>&1
	code=$?
	check "$c: rdmig-source exits 1 without listening" \
		eval "test $code -eq 1 && ! grep -q 'listening on' '$T/source-$c.log'"
	check "$c: the error names $f" grep -q "error: $d/$f: " "$T/source-$c.log"
	grep "error: $d/$f" "$T/source-$c.log" | sed 's/^.*error: /# /'
done
[ "$tap_failed" -eq 0 ] || for c in "${cases[@]}"; do diag_file "$T/source-$c.log"; done

# The good copy still starts: the checks above are about the corruption.
start_source "$T/source-good.log" -m "m1:$T/good:$T/secret"
check "the intact checkpoint is served" test -n "$src_port"
finish
