# The two front-door commands (see README.md). Both install what they need first.
.PHONY: test demo bootstrap

bootstrap:
	scripts/bootstrap.sh

# Every suite: unit, host kernel, VM kernel, control plane, end to end.
test: bootstrap
	npm test

# The main job on a local default: control plane, VM nodes, examples, encrypted traffic.
demo: bootstrap
	node --import ./scripts/ts-register.mjs scripts/demo.ts
