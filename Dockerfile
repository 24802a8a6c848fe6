# The gRPC service. Envoy runs beside it from the envoyproxy/envoy image (see docker-compose.yml).
# The base is pinned to the Node release the project runs everywhere else (the `node` package in
# package.json, 24.21.0): a floating tag would change the runtime under a rebuild.
FROM node:24.21.0-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY buf.yaml buf.gen.yaml tsconfig.json tsconfig.build.json ./
COPY proto proto
COPY scripts/generate.sh scripts/generate.sh
RUN bash scripts/generate.sh
COPY src src
RUN npx tsc -p tsconfig.build.json && npm prune --omit=dev

FROM node:24.21.0-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
# Read at run time for server reflection, at the same path Envoy's copy has.
COPY --from=build /app/src/gen/chat.binpb src/gen/chat.binpb
# The SQLite database of stored conversations (when DATABASE_URL is unset): the one place the
# service writes, a volume, so the root filesystem can stay read-only.
ENV DATA_DIR=/app/data
RUN mkdir -p /app/data && chown node:node /app/data
VOLUME /app/data
USER node
EXPOSE 50051
# grpc.health.v1 Check of chat.v1.ChatService over loopback, with grpc-js: no extra binary. It fails
# while the service drains (NOT_SERVING), so the container reads unhealthy during shutdown too.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["node", "dist/server/healthcheck.js"]
CMD ["node", "dist/main.js"]
