#!/usr/bin/env bash
# The Dockerfile's steps without Docker: build the single executable from a clean copy of the
# sources (as the build stage does) and lay out the carrier image's filesystem in
# dist/carrier/rootfs (as the final stage does). test/package.test.ts runs this and tests the result.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/dist/carrier"
src="$out/build-src"
rm -rf "$out"
mkdir -p "$src" "$out/rootfs"

# --- build stage (FROM node:20-bookworm-slim AS build; WORKDIR /src)
cp "$root/package.json" "$root/package-lock.json" "$root/tsconfig.json" "$src/"
(cd "$src" && npm ci --no-audit --no-fund)
cp -r "$root/src" "$src/src"
cp -r "$root/python-shim" "$src/python-shim"
mkdir -p "$src/scripts" && cp "$root/scripts/package.mjs" "$root/scripts/bundle-deps.mjs" "$src/scripts/"
(cd "$src" && npm run package)
(cd "$src" && ./dist/asya-runtime --version)

# --- carrier stage (COPY --from=build /src/dist/asya-runtime /asya-runtime)
cp "$src/dist/asya-runtime" "$out/rootfs/asya-runtime"
rm -rf "$src"
echo "carrier filesystem: $out/rootfs ($(du -h "$out/rootfs/asya-runtime" | cut -f1) asya-runtime)"
