#!/bin/bash
# A runc container through both agents over TCP (issue 13, design.md §12),
# with a fake runc (fake-runc.sh, over the fake criu) on both sides:
# rdmig-source --runc reads the container's init pid and bundle from runc's
# state.json, checkpoints it with `runc checkpoint`, reserves the migration
# on rdmig-dest --serve naming the bundle, hands it over with the
# container; the destination's worker runs `runc restore --lazy-pages ...
# --bundle B -d ID` as its lazy-pages daemon, where the stand-in plays the
# container and verifies every page.  (1) All the way: done, both APIs
# report the container, runc's argv as design.md §12 gives it.  (2) A
# bundle missing on the destination: refused before the freeze (nothing
# checkpointed, the container still there), and a request's container.bundle
# mapping it to one that is there goes through.  (3) A rollback restores
# the container on the source with runc restore (same id, same bundle),
# also after the source agent restarted (its record keeps the container),
# never with a bare criu restore.  (4) Options runc cannot pass: 400.
# (5) container.root confined to rdmig-source --runtime-root: a root
# outside it, a symbolic link out of it, "..": 403 naming the option,
# nothing checkpointed; no root in the request: the first --runtime-root;
# a FIFO as state.json refused at once.  (6) state.json is read off the
# loop: on a FUSE mount whose read hangs (test/tools/hangfs.py; skipped
# where FUSE cannot be mounted), /v1/health answers while the start
# waits; released, the start fails cleanly (its error, nothing frozen).
# Binaries: RDMIG_CTL besides netlib.sh's.
. "$(dirname "$0")/netlib.sh"
: "${RDMIG_CTL:?}"
plan 28
command -v curl >/dev/null || { echo "1..0 # SKIP curl not found"; exit 0; }

here=$(cd "$(dirname "$0")" && pwd)
secret "$T/secret"
sock=$T/run/source.sock
root=$T/images
runc_root=$T/runc
b=$T/bundles
mkdir -p "$root" "$T/droot" "$runc_root" "$b/web/rootfs" "$b/db/rootfs" "$b/far/rootfs"
touch "$b/web/config.json" "$b/db/config.json" "$b/far/config.json"
CTL=("$RDMIG_CTL" --socket "$sock")
# criu run directly by the source agent is written down: a container never is.
# Looked for by the migration's images directory, never by its id alone: $T
# is a random name that may hold any id ("rdmig-host.VDaoc1" holds "c1").
cat >"$T/criu.sh" <<EOF
#!/bin/bash
echo "criu \$*" >>"$T/criu-direct.args"
exec "$here/fake-criu.sh" "\$@"
EOF
chmod +x "$T/criu.sh"
touch "$T/criu-direct.args"

# container ID BUNDLE: a "running" container: a sleeping process as its init,
# runc's state.json for it (what the fake runc's checkpoint removes).
container() {
	sleep 300 &
	track $!
	mkdir -p "$runc_root/$1"
	printf '{"id":"%s","init_process_pid":%d,"config":{"labels":["bundle=%s"]}}\n' \
		"$1" $! "$2" >"$runc_root/$1/state.json"
}
# migrate_to MIG CONTAINER [ARGS...]: rdmigctl migrate --container to the
# destination agent, --wait; output in $T/MIG.out and .err, exit code in rc.
migrate_to() {
	"${CTL[@]}" migrate --container "$2" --runtime-root "$runc_root" --id "$1" "${@:3}" \
		--to "127.0.0.1:$dport" --wait >"$T/$1.out" 2>"$T/$1.err"
	rc=$?
}
# serve_local MIG CONTAINER: a migration of CONTAINER (bundle $b/db) without
# a destination, serving its checkpoint.
serve_local() {
	container "$2" "$b/db"
	"${CTL[@]}" migrate --container "$2" --runtime-root "$runc_root" --id "$1" \
		--secret-file "$T/secret" >"$T/$1.out" 2>&1
	wait_state "$1" serving 20
}
# rolled_back_runc MIG CONTAINER: rolled back with runc restore (same id,
# same bundle), never with a bare criu restore.
rolled_back_runc() {
	test "$(state "$1")" = rolled_back &&
		grep -qx "runc --root $runc_root restore --image-path $root/$1 --work-path $root/$1 --bundle $b/db -d $2" \
			"$root/$1/fake-runc.args" &&
		! grep -q 'criu restore' "$T/criu-direct.args"
}
# post_ctr MIG CONTAINER [ROOT]: POSTs a start of CONTAINER (in runc root
# ROOT, or none given) serving locally; the status in code, the body in
# $T/MIG.out.
post_ctr() {
	local r=${3+",\"root\":\"$3\""}
	code=$(curl -s -o "$T/$1.out" -w '%{http_code}' --unix-socket "$sock" -X POST \
		-H 'Content-Type: application/json' \
		-d "{\"id\":\"$1\",\"secret_file\":\"$T/secret\",\"container\":{\"runtime\":\"runc\",\"id\":\"$2\"$r}}" \
		http://localhost/v1/migrations)
}
# jq_src ID EXPR: EXPR (Python, on the migration `j`) of the source's view.
jq_src() {
	"${CTL[@]}" status "$1" --json 2>/dev/null |
		python3 -c "import json,sys; j=json.load(sys.stdin); print($2)" 2>/dev/null
}

export FAKE_RUNC_ARGS=$T/dest-runc.args
start_dagent d --work-root "$T/droot" --bundle-root "$b" --runc "$here/fake-runc.sh"
unset FAKE_RUNC_ARGS
start_source "$T/source.log" --api-socket "$sock" --images-root "$root" --criu "$T/criu.sh" \
	--runc "$here/fake-runc.sh" --runtime-root "$T/runc-unused" --runtime-root "$runc_root"

# (1) All the way.
container web "$b/web"
migrate_to c1 web
check "migrate --container --to --wait exits 0: the migration is done" \
	eval "test $rc -eq 0 && grep -q '^migration c1 (source): done' '$T/c1.out'"
check "the source checkpointed it with runc checkpoint (root, image and work path, id)" \
	grep -qx "runc --root $runc_root checkpoint --image-path $root/c1 --work-path $root/c1 web" \
	"$root/c1/fake-runc.args"
check "... and no bare criu dump; runc's state of the container is gone" \
	eval "! grep -qF -- '$root/c1' '$T/criu-direct.args' && test ! -e '$runc_root/web'"
check "the reservation named the bundle, before the freeze" \
	grep -q "reservation r-.* for migration c1: .*; its container's bundle is here: $b/web\$" "$T/d.log"
check "the destination's worker ran runc restore --lazy-pages with the bundle, under the same id" \
	grep -Eq "^runc --root $runc_root restore --lazy-pages --image-path $T/droot/c1 --work-path $T/droot/c1 --bundle $b/web -d --pid-file $T/droot/c1/restore.pid web\$" \
	"$T/dest-runc.args"
check "... as its lazy-pages daemon: the stand-in verified every page" \
	standin_ok "$T/droot/c1/standin.out" 1024
check "the source's API reports the container (id, root, bundle)" \
	test "$(jq_src c1 'j["container"]["runtime"], j["container"]["id"], j["container"]["root"], j["container"]["bundle"], j["pid"] > 0')" = "runc web $runc_root $b/web True"
code=$(dapi d GET /v1/migrations/c1)
check "the destination's API reports it too, done" \
	eval "test $code = 200 && python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); c=j[\"container\"]; sys.exit(not (j[\"state\"] == \"done\" and c[\"id\"] == \"web\" and c[\"bundle\"] == \"$b/web\"))' '$T/dapi.out'"
check "its worker started at the reservation (FEAT_EARLY) and proved itself before the checkpoint served" \
	eval "test \"\$(jq_src c1 'j[\"times\"][\"early_dest_ms\"] is not None')\" = True && grep -q 'migration c1: uses its reservation r-[0-9a-f]*: its POST adopts worker' '$T/d.log'"
check "... and that worker moved every lazy page: the destination's pages_total > 0, all fetched" \
	python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))["progress"]; sys.exit(not (p["pages_total"] > 0 and p["pages_fetched"] == p["pages_total"] and p["bytes"] > 0))' "$T/dapi.out"

# (2) The bundle is not on the destination: refused before the freeze.
container gone "$b/missing"
migrate_to c2 gone
check "a bundle missing on the destination: exit 1, nothing frozen, the bundle named" \
	eval "test $rc -eq 1 && grep -q 'nothing was frozen: .*bundle $b/missing: not here' '$T/c2.err'"
check "... no checkpoint made: the container is still there, no images dir" \
	eval "test -s '$runc_root/gone/state.json' && test ! -e '$root/c2'"
# ... unless the request maps it to a bundle that is there.
migrate_to c2b gone --dest-bundle "$b/far"
check "--dest-bundle (container.bundle) maps it to another path there: done, restored with that bundle" \
	eval "test $rc -eq 0 && test \"\$(state c2b)\" = done && grep -q -- '--bundle $b/far -d .* gone\$' '$T/dest-runc.args'"

# (3) Rollback on the source: no destination, so it was never restored elsewhere.
serve_local c3 db
check "a container migration without a destination serves its checkpoint" \
	eval "test \"\$(state c3)\" = serving && test ! -e '$runc_root/db'"
"${CTL[@]}" rollback c3 >"$T/c3-rb.out" 2>&1
wait_state c3 rolled_back 20
check "rollback: rolled back with runc restore (same id, same bundle), never criu restore" \
	rolled_back_runc c3 db
check "... the container runs here again" test -s "$runc_root/db/state.json"

# ... also after the source agent restarted: its record keeps the container.
serve_local c4 db2
check "the record keeps the container" \
	python3 -c "import json,sys; c=json.load(open(sys.argv[1]))['container']; sys.exit(not (c['id'] == 'db2' and c['bundle'] == '$b/db' and c['root'] == '$runc_root'))" \
	"$root/.records/c4.json"
kill -KILL "$src_pid"
wait "$src_pid" 2>/dev/null
start_source "$T/source2.log" --api-socket "$sock" --images-root "$root" --criu "$T/criu.sh" \
	--runc "$here/fake-runc.sh" --runtime-root "$T/runc-unused" --runtime-root "$runc_root"
wait_state c4 serving 20
"${CTL[@]}" rollback c4 >"$T/c4-rb.out" 2>&1
wait_state c4 rolled_back 20
check "after a restart the rollback still restores the container with runc" \
	rolled_back_runc c4 db2
check "... and the API still reports the container" \
	test "$(jq_src c4 'j["container"]["id"]')" = db2

# (4) What runc cannot pass on is refused before anything runs.
container opts "$b/db"
code=$(curl -s -o "$T/c5.out" -w '%{http_code}' --unix-socket "$sock" -X POST \
	-H 'Content-Type: application/json' \
	-d "{\"id\":\"c5\",\"secret_file\":\"$T/secret\",\"container\":{\"runtime\":\"runc\",\"id\":\"opts\",\"root\":\"$runc_root\"},\"criu_opts\":{\"link_remap\":true}}" \
	http://localhost/v1/migrations)
check "criu_opts.link_remap with a container: 400, named; nothing checkpointed" \
	eval "test $code = 400 && grep -q 'link_remap' '$T/c5.out' && test -s '$runc_root/opts/state.json' && test ! -e '$root/c5'"
post_ctr c6 nosuch "$runc_root"
check "a container runc does not know: 404, named" \
	eval "test $code = 404 && grep -q 'container nosuch: not a runc container here' '$T/c6.out'"

# (5) container.root only in --runtime-root.  A runc root elsewhere, with a
# container in it, and ways out of the allowed one.
other=$T/other-runc
runc_root=$other container far "$b/db"
ln -s "$other" "$runc_root/link"
# refused_403 MIG ROOT: POSTed with container far in ROOT: 403 naming
# --runtime-root, nothing checkpointed (its state still there, its init
# running, no images directory).
refused_403() {
	post_ctr "$1" far "$2"
	test "$code" = 403 && grep -q -- "$3" "$T/$1.out" && test -s "$other/far/state.json" &&
		test ! -e "$root/$1" && ! grep -qF -- "$root/$1" "$T/criu-direct.args" &&
		test "$(ps -o stat= -p "$(sed 's/.*"init_process_pid":\([0-9]*\).*/\1/' "$other/far/state.json")" | cut -c1)" = S
}
check "container.root outside every --runtime-root: 403 naming it, nothing frozen" \
	refused_403 c7 "$other" 'not one of this agent.s runc roots (--runtime-root)'
check "container.root a symbolic link out of --runtime-root: 403, nothing frozen" \
	refused_403 c8 "$runc_root/link" 'a symbolic link on the way'
check "container.root with .. out of --runtime-root: 403, nothing frozen" \
	refused_403 c9 "$runc_root/../other-runc" 'not one of this agent.s runc roots'
# No root given: the first --runtime-root ($T/runc-unused here), where no container is.
post_ctr c10 db2
check "no container.root: the first --runtime-root is used (404 there, it is not runc's default)" \
	eval "test $code = 404 && grep -q 'not a runc container here ($T/runc-unused)' '$T/c10.out'"
mkdir -p "$runc_root/fifo"
mkfifo "$runc_root/fifo/state.json"
post_ctr c11 fifo "$runc_root"
check "a FIFO as state.json: 403 at once (never waited on), nothing checkpointed" \
	eval "test $code = 403 && grep -q 'state.json is not a regular file' '$T/c11.out' && test ! -e '$root/c11'"

# (6) A runc root whose read hangs.
hang=$T/hang
if hang_mount "$hang" hung/state.json; then
	kill -TERM "$src_pid"
	wait_pid "$src_pid" 10
	start_source "$T/source3.log" --api-socket "$sock" --images-root "$root" \
		--criu "$T/criu.sh" --runc "$here/fake-runc.sh" --runtime-root "$hang/mnt"
	wait_for_file "$sock"
	post_ctr c12 hung "$hang/mnt" &
	post_pid=$!
	health_while "$sock" "$hang.log" "read of /hung/state.json waits"
	touch "$hang/release"
	wait "$post_pid"
	check "a runc root on a hung FUSE mount: /v1/health answers while the start waits ($health, $pending)" \
		eval "grep -q 'looking up container hung off the loop' '$T/source3.log' && test '$health $pending' = '200 0'"
	check "... released, the start fails cleanly naming the container, nothing checkpointed" \
		eval "grep -q 'container hung: its state.json in $hang/mnt has no init pid' '$T/c12.out' && test ! -e '$root/c12' && alive $src_pid"
else
	skip_fuse "a runc root on a hung FUSE mount: /v1/health answers while the start waits" \
		"... released, the start fails cleanly naming the container, nothing checkpointed"
fi
hang_release "$hang"
finish
