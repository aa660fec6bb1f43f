#!/usr/bin/env bash
# Makes the runtime base image locally, for building deploy/Containerfile where no container
# registry can be reached: Debian bookworm from a Debian mirror with debootstrap (minbase),
# without documentation and package lists, imported as IMAGE (default
# localhost/debian:bookworm-slim). The root file system is kept as a tarball in $CACHE_DIR
# (default /var/tmp), one per day, so later calls that day only import it.
# Usage (as root): deploy/make-base-image.sh [IMAGE]
# Environment: DEBIAN_MIRROR (default: this machine's Debian mirror, else deb.debian.org),
# CACHE_DIR.
set -euo pipefail
image=${1:-localhost/debian:bookworm-slim}
cache=${CACHE_DIR:-/var/tmp}
tarball="$cache/sekisho-debian-bookworm-$(date +%F).tar.gz"

if [ -z "${DEBIAN_MIRROR:-}" ]; then
  # The mirror apt uses for bookworm's main archive (deb822 or one-line sources).
  DEBIAN_MIRROR=$(grep -hsE '^(URIs:|deb) ' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list /etc/apt/sources.list |
    grep -oE 'https?://[^ ]+/debian/?( |$)' | head -1 | tr -d ' ' || true)
  DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
fi

if [ ! -s "$tarball" ]; then
  root=$(mktemp -d "$cache/sekisho-rootfs.XXXXXX")
  trap 'rm -rf "$root"' EXIT
  echo "debootstrap bookworm from $DEBIAN_MIRROR" >&2
  debootstrap --variant=minbase bookworm "$root" "$DEBIAN_MIRROR" >/dev/null
  rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar --numeric-owner -C "$root" -c . | gzip -1 >"$tarball.tmp"
  mv "$tarball.tmp" "$tarball"
  # Yesterday's tarballs go.
  find "$cache" -maxdepth 1 -name 'sekisho-debian-bookworm-*.tar.gz' ! -path "$tarball" -delete
fi
podman import --quiet --change 'CMD ["bash"]' "$tarball" "$image" >/dev/null
echo "$image"
