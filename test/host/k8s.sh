#!/bin/bash
# deploy/kubernetes/ without a cluster: yamllint accepts the manifests;
# each document survives a round trip through the Kubernetes API model of
# Debian's python3-kubernetes (no unknown field, no wrong type, no missing
# required field); the DaemonSets have what the agents need and start them
# as the units do (test/tools/k8scheck.py); the ConfigMap's configuration
# files are read by this build's agents.
# Args: the source tree.  RDMIG_SOURCE, RDMIG_DEST, RDMIG_CTL: the binaries.
. "$(dirname "$0")/lib.sh"
: "${RDMIG_SOURCE:?}" "${RDMIG_CTL:?}"
src=${1:?}
k8s=$src/deploy/kubernetes
tool=$src/test/tools/k8scheck.py
plan 5

if command -v yamllint >/dev/null; then
	check "yamllint accepts deploy/kubernetes/*.yaml" \
		eval "yamllint -f parsable -d '{extends: default, rules: {line-length: {max: 120}, document-start: disable}}' \
			'$k8s' >'$T/yamllint.out' 2>&1 || { diag_file '$T/yamllint.out'; false; }"
else
	echo "not ok $((tap_n += 1)) - yamllint is not installed (scripts/install-deps)"
	tap_failed=$((tap_failed + 1))
fi
check "every manifest is a Namespace, ConfigMap or DaemonSet of the Kubernetes API, field for field" \
	eval "'$tool' schema '$k8s' >'$T/schema.out' 2>&1 || { diag_file '$T/schema.out'; false; }"
check "the DaemonSets: host network and pids, privileged, /dev/infiniband, memlock, hostPaths, the ConfigMap, the Secret, the units' arguments" \
	eval "'$tool' agents '$k8s' '$src/systemd' >'$T/agents.out' 2>&1 || { diag_file '$T/agents.out'; false; }"
# agent_args AGENT: the DaemonSet's arguments on node 127.0.0.1, with this
# test's socket and directories.
agent_args() {
	"$tool" args "$k8s" "$1" 127.0.0.1 | sed "s|^/run/rdmig/|$T/|"
}
"$tool" conf "$k8s" rdmig-source.conf >"$T/source.conf"
"$tool" conf "$k8s" rdmig-dest.conf >"$T/dest.conf"
mapfile -t sargs < <(agent_args rdmig-source)
mapfile -t dargs < <(agent_args rdmig-dest)
check "rdmig-source with the DaemonSet's arguments reads the ConfigMap's rdmig-source.conf to its end, then wants the Secret's certificate" \
	conf_wants_tls "$RDMIG_SOURCE" "$T/source.conf" "${sargs[@]}" -t tcp --images-root "$T/images"
check "rdmig-dest with the DaemonSet's arguments reads the ConfigMap's rdmig-dest.conf to its end, then wants the Secret's certificate" \
	conf_wants_tls "$RDMIG_DEST" "$T/dest.conf" "${dargs[@]}" --work-root "$T/work"
finish
