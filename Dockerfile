# syntax=docker/dockerfile:1
# The ipsec-operator image: one image, two commands (`controller`, `agent`; see docs/operations.md).
#   docker build -t ipsec-operator:0.1.0 .
# test/unit/chart-image.test.ts checks that what the chart runs exists in this image: the
# entrypoint, the files it imports, and the subcommands and flags in the CLI's usage text.

# The base images, as build arguments: the public node images by default; `make image`
# (scripts/build-image.sh) passes local bases made from Debian packages where no registry is reachable.
ARG BUILD_BASE=node:20-bookworm
ARG RUNTIME_BASE=node:20-bookworm-slim

# ---- build: TypeScript, the NETLINK_XFRM addon, production node_modules ----
FROM ${BUILD_BASE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# npm ci runs the package's install script (node-gyp rebuild --directory native): native/ first.
COPY package.json package-lock.json ./
COPY native/binding.gyp native/
COPY native/src/ native/src/
RUN npm ci --no-audit --no-fund \
 && test -f native/build/Release/xfrm_netlink.node
COPY tsconfig.json tsconfig.build.json ./
COPY src/ src/
COPY bin/ bin/
# npm run build ends with scripts/bundle.mjs (the single-file CLI).
COPY scripts/bundle.mjs scripts/
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

# ---- runtime ----
FROM ${RUNTIME_BASE}
# iproute2: the agent reads the node's interfaces with `ip -j link`. apt's package caches go
# too, not only the lists: `apt-get update` also writes /var/cache/apt/{pkgcache,srcpkgcache}.bin,
# 88 MB (36 MB compressed) that the image carried, a third of what every node has to pull and
# unpack (on the test node the image import took 234 s under emulation).
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules/ node_modules/
COPY --from=build /src/dist/ dist/
COPY --from=build /src/bin/ bin/
COPY --from=build /src/native/build/Release/xfrm_netlink.node native/build/Release/
COPY deploy/crds/ deploy/crds/
# The controller runs as this user (restricted Pod Security); the agent's pod sets runAsUser 0
# with only NET_ADMIN (see charts/ipsec-operator/templates/agent-daemonset.yaml).
USER 65532:65532
# The bundle (scripts/bundle.mjs: the CLI and its dependencies in one file), not bin/, which
# imports a few thousand files from dist/ and node_modules/: on a slow node (measured in the test
# node under qemu TCG, load 8-12) loading those took 6.4 minutes before /healthz answered, and at
# load 25-30 longer than the chart's startup probe allows, so the kubelet killed the agent (137).
ENTRYPOINT ["node", "/app/dist/bundle/ipsec-operator.mjs"]
CMD ["--help"]
