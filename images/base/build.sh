#!/usr/bin/env bash
# Makes the base image the project's Dockerfiles build FROM, without a public registry:
# debootstrap a minimal Debian and `docker import` it. A site with Docker Hub sets
# BASE_IMAGE=debian:bookworm-slim instead and skips this.
set -euo pipefail
image=${1:?usage: build.sh IMAGE}
suite=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if docker image inspect "$image" >/dev/null 2>&1; then exit 0; fi
root=$(mktemp -d /var/tmp/bluegreen-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,ca-certificates,curl "$suite" "$root" "$mirror" >/dev/null
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
