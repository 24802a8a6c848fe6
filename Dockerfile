# The gRPC service. Envoy runs beside it from the envoyproxy/envoy image (see docker-compose.yml).
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY buf.yaml buf.gen.yaml tsconfig.json tsconfig.build.json ./
COPY proto proto
COPY scripts/generate.sh scripts/generate.sh
RUN bash scripts/generate.sh
COPY src src
RUN npx tsc -p tsconfig.build.json && npm prune --omit=dev

FROM node:24-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
# Read at run time for server reflection, at the same path Envoy's copy has.
COPY --from=build /app/src/gen/chat.binpb src/gen/chat.binpb
USER node
EXPOSE 50051
CMD ["node", "dist/main.js"]
