# shellcheck shell=bash
# Host-side helpers of the soft-RoCE test bed: error reporting, host tool
# checks, the kernel cache and the initramfs. Sourced by test/rxe/run.
#
# Every fatal path ends in rxe_die: one line on stderr, non-zero status, so a
# caller (CI, test/rxe/check) never has to guess why a run stopped.

RXE_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RXE_PROJECT=$(git -C "$RXE_LIB" rev-parse --show-toplevel 2>/dev/null) ||
	RXE_PROJECT=$(cd "$RXE_LIB/../../.." && pwd)
# Kernel and initramfs; RDMIG_RXE_CACHE may share them between checkouts.
RXE_CACHE=${RDMIG_RXE_CACHE:-$RXE_PROJECT/.cache/rxe}
# Run directories must be inside the project tree: it is the guests' only
# writable share.
RXE_RUNS=$RXE_PROJECT/.cache/rxe/runs

# Modules the initramfs needs to mount the root; dependencies are added
# from modules.dep, so only the leaves are named here.
RXE_INITRAMFS_MODULES="virtio_pci 9pnet_virtio 9p overlay"

rxe_die() {
	local status=1
	if [[ $1 =~ ^[0-9]+$ ]]; then
		status=$1
		shift
	fi
	printf 'rxe: %s\n' "$*" >&2
	exit "$status"
}

rxe_note() {
	printf 'rxe: %s\n' "$*" >&2
}

rxe_verbose() {
	[[ ${RXE_VERBOSE:-0} -gt 0 ]] && printf 'rxe: %s\n' "$*" >&2
	return 0
}

# rxe_install PKG...: install Debian packages the test bed needs, when
# running as root (a fresh CI machine) and RDMIG_RXE_NO_INSTALL is unset;
# otherwise, or if apt fails, stop with the command to run.
rxe_install() {
	local log=$RXE_CACHE/apt-install.log
	if [[ -n ${RDMIG_RXE_NO_INSTALL:-} || $(id -u) -ne 0 ]] ||
		! command -v apt-get >/dev/null 2>&1; then
		rxe_die "missing host package(s): $* (install with: apt-get install $*)"
	fi
	rxe_note "installing missing host package(s): $*"
	if ! apt-get install -y -q --no-install-recommends "$@" >"$log" 2>&1; then
		# A fresh machine may have no package lists yet.
		apt-get update -q >>"$log" 2>&1
		apt-get install -y -q --no-install-recommends "$@" >>"$log" 2>&1 ||
			rxe_die "cannot install host package(s) $* (log: $log)"
	fi
}

# rxe_need_cmds PKG:CMD...: make sure each CMD exists, installing the
# Debian package PKG that provides it if need be.
rxe_need_cmds() {
	local spec missing=()
	for spec in "$@"; do
		command -v "${spec#*:}" >/dev/null 2>&1 || missing+=("${spec%%:*}")
	done
	[[ ${#missing[@]} -eq 0 ]] && return 0
	mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
	rxe_install "${missing[@]}"
}

# The busybox in the initramfs runs before any library is reachable, so it
# must be the static build (busybox-static; it replaces the dynamic busybox).
rxe_check_busybox() {
	RXE_BUSYBOX=/bin/busybox
	if [[ ! -x $RXE_BUSYBOX ]] || ldd "$RXE_BUSYBOX" >/dev/null 2>&1; then
		rxe_install busybox-static
	fi
	if [[ ! -x $RXE_BUSYBOX ]] || ldd "$RXE_BUSYBOX" >/dev/null 2>&1; then
		rxe_die "$RXE_BUSYBOX is missing or not static (install busybox-static)"
	fi
}

rxe_check_host() {
	mkdir -p "$RXE_CACHE" || rxe_die "cannot create cache directory $RXE_CACHE"
	rxe_need_cmds qemu-system-x86:qemu-system-x86_64 cpio:cpio kmod:depmod \
		iproute2:ss util-linux:flock coreutils:tail apt:apt-get dpkg:dpkg
	rxe_check_busybox
}

# rxe_apt_kernel_pkg: print the versioned kernel image package that
# linux-image-amd64 depends on (e.g. linux-image-6.1.0-56-amd64). The answer
# is remembered until apt's package lists change, as apt-cache costs more
# than half a second a run.
rxe_apt_kernel_pkg() {
	local memo=$RXE_CACHE/kernel-package lists=/var/lib/apt/lists pkg
	if [[ -s $memo && -z $(find "$lists" -maxdepth 1 -newer "$memo" -name '*Packages*' 2>/dev/null) ]]; then
		cat "$memo"
		return 0
	fi
	pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1)
	[[ -n $pkg ]] && printf '%s\n' "$pkg" >"$memo"
	printf '%s\n' "$pkg"
}

rxe_cached_kernels() {
	local d
	for d in "$RXE_CACHE"/kernel-*/; do
		[[ -f $d/.complete ]] && basename "$d"
	done | sed 's/^kernel-//' | sort -V
}

# rxe_fetch_kernel PKG KVER: download and unpack one kernel image package
# into the cache. Runs under the cache lock.
rxe_fetch_kernel() {
	local pkg=$1 kver=$2 dir="$RXE_CACHE/kernel-$2" tmp deb
	tmp=$(mktemp -d "$RXE_CACHE/fetch.XXXXXX") || rxe_die "cannot create a directory in $RXE_CACHE"
	rxe_note "downloading $pkg into $RXE_CACHE (first use)"
	# Run apt in the download dir; as root apt would otherwise warn that
	# its sandbox user cannot write there.
	if ! (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$pkg") \
		>"$tmp/apt.log" 2>&1; then
		RXE_FETCH_ERROR=$(grep -m1 -E '^E:' "$tmp/apt.log" || tail -n 1 "$tmp/apt.log")
		rm -rf "$tmp"
		return 1
	fi
	deb=$(compgen -G "$tmp/*.deb" | head -n 1)
	mkdir -p "$tmp/root"
	if [[ -z $deb ]] || ! dpkg -x "$deb" "$tmp/root"; then
		rm -rf "$tmp"
		rxe_die "cannot unpack the kernel package $pkg (${deb:-no .deb downloaded})"
	fi
	[[ -f $tmp/root/boot/vmlinuz-$kver && -d $tmp/root/lib/modules/$kver ]] ||
		{ rm -rf "$tmp"; rxe_die "kernel package $pkg has no vmlinuz-$kver or modules"; }
	depmod -b "$tmp/root" "$kver" ||
		{ rm -rf "$tmp"; rxe_die "depmod -b failed for kernel $kver"; }
	rm -f "$deb"
	rm -rf "$dir"
	mv "$tmp/root" "$dir" && touch "$dir/.complete" && rm -rf "$tmp"
}

# rxe_kernel_prepare: set RXE_KVER and RXE_KDIR to a complete cached kernel,
# fetching it on first use. RDMIG_RXE_KVER pins a version.
rxe_kernel_prepare() {
	local pkg kver lockfd newest
	exec {lockfd}>"$RXE_CACHE/lock"
	flock "$lockfd" || rxe_die "cannot lock $RXE_CACHE/lock"
	if [[ -n ${RDMIG_RXE_KVER:-} ]]; then
		kver=$RDMIG_RXE_KVER
		pkg=linux-image-$kver
	else
		pkg=$(rxe_apt_kernel_pkg)
		if [[ -z $pkg && $(id -u) -eq 0 && -z $(rxe_cached_kernels) ]]; then
			rxe_note "no kernel package known to apt; running apt-get update"
			apt-get update -q >"$RXE_CACHE/apt-update.log" 2>&1
			pkg=$(rxe_apt_kernel_pkg)
		fi
		kver=${pkg#linux-image-}
	fi
	newest=$(rxe_cached_kernels | tail -n 1)
	if [[ -z $kver && -n $newest ]]; then
		kver=$newest
	elif [[ -z $kver ]]; then
		exec {lockfd}>&-
		rxe_die "cannot resolve the kernel package (apt-cache depends linux-image-amd64 gave nothing; run apt-get update)"
	fi
	if [[ ! -f $RXE_CACHE/kernel-$kver/.complete ]] && ! rxe_fetch_kernel "$pkg" "$kver"; then
		if [[ -n $newest && -z ${RDMIG_RXE_KVER:-} ]]; then
			rxe_note "cannot download $pkg (${RXE_FETCH_ERROR:-}); using the cached kernel $newest"
			kver=$newest
		else
			exec {lockfd}>&-
			rxe_die "cannot download kernel package $pkg: ${RXE_FETCH_ERROR:-apt-get download failed} (try apt-get update)"
		fi
	fi
	RXE_KVER=$kver
	RXE_KDIR=$RXE_CACHE/kernel-$kver
	RXE_VMLINUZ=$RXE_KDIR/boot/vmlinuz-$kver
	[[ -f $RXE_KDIR/boot/vmlinux ]] || rxe_extract_vmlinux
	# shellcheck disable=SC2034 # used by test/rxe/run
	[[ -f $RXE_KDIR/boot/vmlinux ]] && RXE_VMLINUZ=$RXE_KDIR/boot/vmlinux
	exec {lockfd}>&-
}

# rxe_extract_vmlinux: unpack the ELF kernel from the bzImage. qemu boots
# it directly through its PVH entry, which saves the ~3 s that
# decompressing the xz bzImage costs under TCG on every boot. Without it
# the bzImage is used as is.
rxe_extract_vmlinux() {
	local z=$RXE_KDIR/boot/vmlinuz-$RXE_KVER out=$RXE_KDIR/boot/vmlinux off
	command -v xz >/dev/null 2>&1 || return 0
	off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$z" | head -n 1 | cut -d: -f1)
	[[ -n $off ]] || return 0
	# tail dies of SIGPIPE when xz stops at the end of the stream, so the
	# pipeline's status says nothing; the ELF magic does.
	tail -c +"$((off + 1))" "$z" | xz -dc --single-stream >"$out.tmp" 2>/dev/null
	if [[ $(od -An -N4 -tx1 "$out.tmp" | tr -d ' ') == 7f454c46 ]]; then
		mv "$out.tmp" "$out"
	else
		rm -f "$out.tmp"
	fi
}

# rxe_moddeps KDIR KVER MOD...: print the .ko paths (relative to the module
# dir) of MODs and their dependencies, dependencies first.
rxe_moddeps() {
	local mdir=$1/lib/modules/$2
	shift 2
	awk -v want="$*" '
	function base(p) { sub(/.*\//, "", p); sub(/\.ko(\.[a-z]+)?$/, "", p); gsub(/-/, "_", p); return p }
	function visit(m,   i, n, d) {
		if (m in seen) return
		seen[m] = 1
		if (!(m in path)) { missing = missing " " m; return }
		# modules.dep lists the deepest dependency last.
		n = split(deps[m], d, " ")
		for (i = n; i >= 1; i--) visit(base(d[i]))
		print path[m]
	}
	{
		p = $1; sub(/:$/, "", p); m = base(p)
		path[m] = p; deps[m] = ""
		for (i = 2; i <= NF; i++) deps[m] = deps[m] " " $i
	}
	END {
		n = split(want, w, " ")
		for (i = 1; i <= n; i++) { gsub(/-/, "_", w[i]); visit(w[i]) }
		if (missing != "") { print "missing:" missing > "/dev/stderr"; exit 1 }
	}' "$mdir/modules.dep"
}

# rxe_initramfs_prepare: set RXE_INITRD to a cached initramfs for RXE_KVER.
# The key includes a hash of the init script and module list, so editing
# either rebuilds it.
rxe_initramfs_prepare() {
	local init=$RXE_LIB/initramfs-init hash out tmp mods m lockfd
	hash=$( { cat "$init"; echo "$RXE_INITRAMFS_MODULES"; sha256sum <"$RXE_BUSYBOX"; } |
		sha256sum | cut -c1-16)
	out=$RXE_CACHE/initramfs-$RXE_KVER-$hash.cpio
	# shellcheck disable=SC2034 # used by test/rxe/run
	RXE_INITRD=$out
	[[ -f $out ]] && return 0
	exec {lockfd}>"$RXE_CACHE/lock"
	flock "$lockfd" || rxe_die "cannot lock $RXE_CACHE/lock"
	if [[ -f $out ]]; then
		exec {lockfd}>&-
		return 0
	fi
	rxe_verbose "building initramfs $out"
	# shellcheck disable=SC2086 # a list of names
	mods=$(rxe_moddeps "$RXE_KDIR" "$RXE_KVER" $RXE_INITRAMFS_MODULES 2>&1) ||
		rxe_die "kernel $RXE_KVER lacks initramfs modules ($mods)"
	tmp=$(mktemp -d "$RXE_CACHE/initramfs.XXXXXX") || rxe_die "cannot create a directory in $RXE_CACHE"
	mkdir -p "$tmp/bin" "$tmp/modules"
	cp "$RXE_BUSYBOX" "$tmp/bin/busybox"
	cp "$init" "$tmp/init"
	chmod 755 "$tmp/init" "$tmp/bin/busybox"
	: >"$tmp/modules/order"
	for m in $mods; do
		cp "$RXE_KDIR/lib/modules/$RXE_KVER/$m" "$tmp/modules/" ||
			rxe_die "cannot copy module $m into the initramfs"
		basename "$m" >>"$tmp/modules/order"
	done
	# Old initramfs images of this kernel are superseded by this one.
	rm -f "$RXE_CACHE/initramfs-$RXE_KVER-"*.cpio
	(cd "$tmp" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) \
		>"$out.tmp" || rxe_die "cpio failed while building $out"
	mv "$out.tmp" "$out"
	rm -rf "$tmp"
	exec {lockfd}>&-
}

# rxe_prune_runs: keep only the newest run directories so kept failures do
# not pile up without bound.
rxe_prune_runs() {
	local keep=${RDMIG_RXE_KEEP_RUNS:-20}
	[[ -d $RXE_RUNS ]] || return 0
	find "$RXE_RUNS" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %p\n' |
		sort -rn | tail -n +"$((keep + 1))" | cut -d' ' -f2- |
		while IFS= read -r d; do rm -rf "$d"; done
}

# rxe_shell_quote ARG...: print ARGs as one POSIX sh command line.
rxe_shell_quote() {
	local a out=
	for a in "$@"; do
		out+=" '${a//\'/\'\\\'\'}'"
	done
	printf '%s' "${out# }"
}
