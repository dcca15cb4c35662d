# First version: builds the runtime and ships it with Node.js 20 for images that can take a Node
# layer. The injectable single executable (no Node in the model image) is the packaging issue's work.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json ./
RUN npm ci
COPY src ./src
COPY python-shim ./python-shim
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /opt/asya-runtime
COPY --from=build /src/package.json ./
COPY --from=build /src/dist ./dist
COPY --from=build /src/python-shim ./python-shim
COPY --from=build /src/node_modules ./node_modules
RUN ln -s /opt/asya-runtime/dist/cli.js /usr/local/bin/asya-runtime
ENTRYPOINT ["asya-runtime"]
