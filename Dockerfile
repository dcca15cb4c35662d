# The carrier image: the single executable and nothing else the model image needs, shipped for
# injection the way Istio, Dapr and Linkerd ship their binaries. An init container copies it into
# a shared emptyDir; the model container runs it (docs/deploy/).
#
# Docker does not run on the machines this is developed on, so scripts/build-carrier.sh performs
# these same steps without it, and test/package.test.ts checks that the two stay in sync and tests
# what the script produces. Change both together.

# --- build: bundle the supervisor, embed the shim, inject into the Node.js package.json pins
# (executableNode, fetched from the npm registry by scripts/package.mjs; this stage's own node only
# runs the build)
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json ./
# Exactly the lock file's versions (test/package.test.ts runs this step through build-carrier.sh).
RUN npm ci --no-audit --no-fund
COPY src ./src
COPY python-shim ./python-shim
COPY scripts/package.mjs scripts/bundle-deps.mjs ./scripts/
RUN npm run package
RUN ./dist/asya-runtime --version

# --- carrier: busybox for the init container's `cp`, the executable at /asya-runtime
FROM busybox:1.36
COPY --from=build /src/dist/asya-runtime /asya-runtime
USER 65532:65532
ENTRYPOINT ["cp", "/asya-runtime"]
CMD ["/asya/bin/asya-runtime"]
