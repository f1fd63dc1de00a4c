#!/usr/bin/env node
// Bundles the CLI (all commands, dependencies included) into one ES module,
// dist/bundle/ipsec-operator.mjs. Loading one file instead of a few thousand matters where
// files are slow to open: the test VM reads this checkout over 9p under emulation, where
// starting an agent from node_modules took minutes. The native addon stays a separate file
// (found from the package root, as from dist/).
//
// Minified: under emulation (the test node: qemu TCG) starting a process is mostly parsing and
// evaluating this file. Measured in the test VM (one agent, nothing else running, host load
// 14-15): exec to /healthz 22.8 s from the plain 7.9 MB bundle, 15.7 s from the minified 2.6 MB
// one. Names are kept (keepNames) so errors and logs still name their classes and functions; the
// linked source map maps positions back to src/.
import { build } from 'esbuild';

await build({
  entryPoints: [new URL('../src/cli/entry.ts', import.meta.url).pathname],
  outfile: new URL('../dist/bundle/ipsec-operator.mjs', import.meta.url).pathname,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  sourcemap: 'linked',
  minify: true,
  keepNames: true,
  // The licences' comments of the bundled packages are kept (in the bundle's last comment).
  legalComments: 'eof',
  logLevel: 'warning',
  // CommonJS dependencies call require(); give the ES module one.
  banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
});
