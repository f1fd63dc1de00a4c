#!/usr/bin/env node
// Bundles the CLI (all commands, dependencies included) into one ES module,
// dist/bundle/ipsec-operator.mjs. Loading one file instead of a few thousand matters where
// files are slow to open: the test VM reads this checkout over 9p under emulation, where
// starting an agent from node_modules took minutes. The native addon stays a separate file
// (found from the package root, as from dist/).
import { build } from 'esbuild';

await build({
  entryPoints: [new URL('../src/cli/entry.ts', import.meta.url).pathname],
  outfile: new URL('../dist/bundle/ipsec-operator.mjs', import.meta.url).pathname,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  sourcemap: 'linked',
  logLevel: 'warning',
  // CommonJS dependencies call require(); give the ES module one.
  banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
});
