# shellcheck shell=bash
#
# tests/lib/minbase.sh: a minimal Debian bookworm tree, built once, for tests/newcomer (a chroot)
# and tests/compose/run (the base image, through docker import). Source it from bash.
#
#   doms_minbase_tar   prints the path of the tarball of `debootstrap --variant=minbase bookworm`
#                      from deb.debian.org, building it first when it is not there
#
# The tarball lives in $DOMS_CACHE_DIR (default /var/cache/doms). It is debootstrap's output and
# nothing else: each user unpacks it afresh, so it cannot carry what an earlier run installed; the
# cache only saves the download. Delete it to build it again. Needs root.

DOMS_MINBASE_SUITE=bookworm
DOMS_MINBASE_MIRROR=http://deb.debian.org/debian

doms_minbase_tar() {
    local cache=${DOMS_CACHE_DIR:-/var/cache/doms} tree
    local tar=$cache/$DOMS_MINBASE_SUITE-minbase.tar
    if [[ -s $tar ]]; then
        printf '%s\n' "$tar"
        return 0
    fi
    if ! command -v debootstrap >/dev/null; then
        { apt-get -q update && DEBIAN_FRONTEND=noninteractive apt-get -q install -y \
            --no-install-recommends debootstrap; } >/dev/null 2>&1 </dev/null || {
            printf 'minbase: cannot install debootstrap\n' >&2
            return 1
        }
    fi
    mkdir -p "$cache"
    # Built beside its final name and renamed, so that an interrupted debootstrap never leaves
    # a tarball that looks complete. A subshell, so that its trap cleans up after any exit.
    (
        tree=$(mktemp -d "$cache/minbase.XXXXXX")
        trap 'rm -rf "$tree" "$tree.log" "$tar.tmp.$BASHPID"' EXIT
        printf 'minbase: debootstrap --variant=minbase %s (once; cached in %s)\n' \
            "$DOMS_MINBASE_SUITE" "$tar" >&2
        if ! debootstrap --variant=minbase "$DOMS_MINBASE_SUITE" "$tree" "$DOMS_MINBASE_MIRROR" \
            >"$tree.log" 2>&1; then
            tail -n 20 "$tree.log" >&2
            printf 'minbase: debootstrap failed\n' >&2
            exit 1
        fi
        # mktemp made it 0700; it is the new system's "/".
        chmod 0755 "$tree"
        tar -C "$tree" -cf "$tar.tmp.$BASHPID" . && mv -f "$tar.tmp.$BASHPID" "$tar"
    ) || return 1
    printf '%s\n' "$tar"
}
