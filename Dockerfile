# syntax=docker/dockerfile:1
# Ferry: build stage compiles TypeScript to dist/; the runtime stage has only production
# dependencies and dist/, runs as a non-root user, and takes `web` or `worker` as its command.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production HEALTH_PORT=9091 PORT=3000
WORKDIR /app
# openssh-client is not needed: Ferry's SSH adapters use the ssh2 library.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY bin ./bin
# The operation id memory (src/jobs/epoch.ts): compose mounts a volume here, owned by node.
RUN mkdir -p /home/node/.local/state/ferry && chown -R node:node /home/node/.local
USER node
EXPOSE 3000 9091
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s CMD ["node", "-e", "fetch('http://127.0.0.1:'+process.env.HEALTH_PORT+'/livez').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "--optimize-for-size", "--max-semi-space-size=1", "dist/main.js"]
CMD ["worker"]
