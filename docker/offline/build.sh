#!/usr/bin/env bash
# `make offline-images`: stand-ins for the official images docker-compose.yml and the Dockerfile
# name, for machines that reach no image registry (ours: CI and the developers'). TEST FIXTURES,
# labelled org.tickstockpl.test-fixture=true: built from Debian packages, tagged with exactly the
# official names so compose and `docker build` find them locally and never pull. Users with a
# registry never need them. What they must do like the official images is listed, and checked, in
# tests/e2e/test_offline_images.py.
#
# 1. a Debian bookworm base: `debootstrap --variant=minbase` from the mirror the host's apt uses,
#    then `docker import` (kept as tickstockpl-offline/debian:bookworm; skipped when present);
# 2. one small Dockerfile per stand-in, below this directory (apt over plain HTTP inside; no HTTPS,
#    so no certificate is needed or baked in);
# 3. the producer's Python wheels, built on the host into docker/wheels/ (the Dockerfile installs
#    from there when it is not empty: pip over HTTPS fails inside a container here).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BASE=tickstockpl-offline/debian:bookworm
WORK="$ROOT/var/offline-images"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"

say() { echo "offline-images: $*"; }

command -v docker >/dev/null || { say "docker is not installed"; exit 1; }
docker info >/dev/null 2>&1 || { say "no Docker daemon answers (DOCKER_HOST=${DOCKER_HOST:-unset})"; exit 1; }

# The mirror the host's apt uses (deb822 sources first, then the one-line format).
host_mirror() {
    local uri
    uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1 || true)
    [ -n "$uri" ] || uri=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        | awk '{print $2}' | grep -v security | head -n1 || true)
    echo "${uri:-http://deb.debian.org/debian}"
}

# The image names the project uses, read from the files themselves so they never drift.
compose_image() {  # the `image:` of one service in docker-compose.yml
    awk -v svc="  $1:" '$0 == svc {found=1; next} found && /^  [a-z]/ {exit} found && $1 == "image:" {print $2; exit}' \
        "$ROOT/docker-compose.yml"
}
dockerfile_base() { awk 'toupper($1) == "FROM" {print $2; exit}' "$ROOT/Dockerfile"; }

build_base() {
    if docker image inspect "$BASE" >/dev/null 2>&1; then
        say "$BASE present"
        return
    fi
    command -v debootstrap >/dev/null || { say "debootstrap is not installed (apt-get install debootstrap)"; exit 1; }
    local mirror rootfs
    mirror="${DEBIAN_MIRROR:-$(host_mirror)}"
    rootfs="$WORK/rootfs"
    rm -rf "$rootfs"
    mkdir -p "$rootfs"
    say "debootstrap --variant=minbase bookworm from $mirror"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -n 20 "$WORK/debootstrap.log"; exit 1; }
    chroot "$rootfs" apt-get clean
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/usr/share/doc/* \
        "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
    # apt inside the stand-in builds: no recommends, no docs, keep the layers small.
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
        >"$rootfs/etc/apt/apt.conf.d/90tickstockpl-offline"
    printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n' \
        >"$rootfs/etc/dpkg/dpkg.cfg.d/90tickstockpl-offline"
    tar -C "$rootfs" -c . | docker import \
        --change 'LABEL org.tickstockpl.test-fixture=true' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["bash"]' - "$BASE" >/dev/null
    rm -rf "$rootfs"
    say "$BASE imported"
}

build_standin() {  # build_standin <directory under docker/offline> <official image name>
    local dir="$1" tag="$2"
    [ -n "$tag" ] || { say "no image name found for $dir"; exit 1; }
    say "building $tag from docker/offline/$dir"
    DOCKER_BUILDKIT=0 docker build --quiet --force-rm --build-arg BASE="$BASE" --label "org.tickstockpl.stands-in-for=$tag" \
        -t "$tag" "$HERE/$dir" >"$WORK/build-$dir.log" 2>&1 || { cat "$WORK/build-$dir.log"; exit 1; }
}

# The producer's dependencies (pyproject.toml's list, not the project: it is built in the image) as
# wheels for Python 3.11, host and stand-in alike. Markers are evaluated for the host's 3.11.x;
# Debian's 3.11.2 also needs async-timeout (redis, < 3.11.3).
build_wheels() {
    local wheels="$ROOT/docker/wheels"
    say "pip wheel: the producer's dependencies into docker/wheels/"
    find "$wheels" -name '*.whl' -delete
    "$PYTHON" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
        "$ROOT/pyproject.toml" >"$WORK/requirements.txt"
    "$PYTHON" -m pip wheel --quiet --wheel-dir "$wheels" -r "$WORK/requirements.txt" \
        "setuptools>=68" wheel "async-timeout>=4.0.3" 2>&1 | { grep -v "^WARNING: Location .* is ignored" || true; }
}

mkdir -p "$WORK"
started=$SECONDS
build_base
images=("$(compose_image postgres)" "$(compose_image redis)" "$(compose_image prometheus)" "$(dockerfile_base)")
build_standin postgres "${images[0]}"
build_standin redis "${images[1]}"
build_standin prometheus "${images[2]}"
build_standin python "${images[3]}"
build_wheels
docker image prune --force --filter label=org.tickstockpl.test-fixture=true >/dev/null  # replaced ones
for image in "$BASE" "${images[@]}"; do
    docker image ls --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' "$image"
done
say "done in $((SECONDS - started)) s"
