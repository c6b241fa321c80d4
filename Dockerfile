# The gateway's container image: `docker build -t outlook-presence .`
#
# Build stage: the source and its dev dependencies compile and pack the same tarball a release
# ships (`npm pack` builds through the prepack script). Runtime stage: that tarball installed
# without dev dependencies, run as a numeric non-root user. The process writes nothing to disk
# (logs go to stdout), so the container runs with a read-only root file system; no volume is
# needed, not even /tmp.
#
# No container engine runs in this project's CI: .ci/dockerfile-run executes this file's COPY and
# RUN lines, in order, in a clean directory outside a container and starts the result as
# ENTRYPOINT + CMD would, with the HEALTHCHECK command as the health check. For that to hold,
# RUN lines use paths relative to their WORKDIR and take npm's install prefix from npm itself.
# The image build itself is not tested here.
ARG NODE_IMAGE=node:20.20.2-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json CHANGELOG.md README.md ./
COPY src ./src
COPY plugin ./plugin
RUN npm ci --no-audit --no-fund
RUN npm pack --silent && mv mattermost-outlook-presence-*.tgz outlook-presence.tgz

FROM ${NODE_IMAGE}
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080
WORKDIR /opt/outlook-presence
COPY --from=build /src/outlook-presence.tgz ./
RUN npm install -g --omit=dev --no-audit --no-fund --cache .npm-cache ./outlook-presence.tgz && rm -rf .npm-cache outlook-presence.tgz
# The node image's "node" user, by number so that Kubernetes' runAsNonRoot can verify it.
USER 1000:1000
EXPOSE 8080
STOPSIGNAL SIGTERM
# slim has no curl: Node's own fetch asks /healthz.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["outlook-presence"]
CMD ["start"]
