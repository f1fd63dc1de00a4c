# The two front-door commands (see README.md). Both install what they need first.
.PHONY: test demo bootstrap image

bootstrap:
	scripts/bootstrap.sh

# Every suite in `npm test`: unit, host kernel, VM kernels 6.1 and 6.12, control plane, end to end,
# the chart on a real node (kubelet + containerd 2 in the test VM).
test: bootstrap
	npm test

# The main job on a local default: control plane, VM nodes, examples, encrypted traffic.
demo: bootstrap
	node --import ./scripts/ts-register.mjs scripts/demo.ts

# The image from the Dockerfile, as an OCI archive (buildah; bases from Debian packages, see
# scripts/build-image.sh). Prints where it is.
image:
	scripts/build-image.sh
