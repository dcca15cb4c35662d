#!/usr/bin/env bash
# An "unchanged model image" for the tests: a Debian root filesystem with only Python in it
# (debootstrap minbase + python3; no Node.js), cached in .cache/rootfs-bookworm so later runs are
# instant. Needs root and Debian's package mirror (as apt-get does).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="$root/.cache/rootfs-bookworm"
[ -f "$target/.complete" ] && exit 0
if ! command -v debootstrap >/dev/null; then
  echo "installing debootstrap (Debian's package)..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap) >/dev/null
fi
mirror="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)"
echo "building $target with debootstrap (minbase + python3; about a minute)..."
rm -rf "$target"
mkdir -p "$(dirname "$target")"
debootstrap --variant=minbase --include=python3 bookworm "$target" "${mirror:-http://deb.debian.org/debian}" >"$target.log" 2>&1 ||
  { tail -20 "$target.log"; exit 1; }
touch "$target/.complete"
