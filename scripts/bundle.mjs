#!/usr/bin/env node
// Bundles the CLI (all commands, dependencies included) into dist/bundle/: the entry
// dist/bundle/ipsec-operator.mjs and the chunks it imports, dist/bundle/chunks/*.mjs. Loading a
// few files instead of a few thousand matters where files are slow to open: the test VM reads
// this checkout over 9p under emulation, where starting an agent from node_modules took
// minutes. The native addon stays a separate file (found from the package root, as from dist/).
//
// Minified: under emulation (the test node: qemu TCG) starting a process is mostly parsing and
// evaluating this file. Measured in the test VM (one agent, nothing else running, host load
// 14-15): exec to /healthz 22.8 s from the plain 7.9 MB bundle, 15.7 s from the minified 2.6 MB
// one. Names are kept (keepNames) so errors and logs still name their classes and functions; the
// linked source maps map positions back to src/.
//
// Split (ES module chunks, `splitting`): src/cli/main.ts imports each command's module when that
// command runs, and each such import() becomes a chunk, with the modules several commands share
// in chunks of their own. So a process parses only what its command uses: `--help` the entry and
// main (~8 KB), `apply`/`diff` ~0.6 MB without the Kubernetes client, `agent` and `controller`
// ~2.3 MB. One file of 2.8 MB made every command, `--help` included, parse all of it (7-10 s in
// the test VM; bench/startup.ts measures it).
import { spawnSync } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';

const root = new URL('..', import.meta.url).pathname;
// --outdir DIR: elsewhere than dist/bundle (test/unit/bundle.test.ts builds its own copy).
const { values } = parseArgs({ options: { outdir: { type: 'string' } } });
const outdir = values.outdir === undefined ? new URL('../dist/bundle', import.meta.url).pathname : resolve(values.outdir);

const common = {
  absWorkingDir: root,
  bundle: true,
  platform: 'node',
  target: 'node20',
  sourcemap: 'linked',
  minify: true,
  keepNames: true,
  // The licences' comments of the bundled packages are kept (in each file's last comment).
  legalComments: 'eof',
  logLevel: 'warning',
};

const result = await build({
  ...common,
  entryPoints: {
    'ipsec-operator': new URL('../src/cli/entry.ts', import.meta.url).pathname,
    'produce-code-cache': new URL('../src/cli/produce-code-cache.ts', import.meta.url).pathname,
  },
  // The entry: dist/bundle/ipsec-operator.mjs (the image's entrypoint, and what tests and benches run).
  outdir,
  outExtension: { '.js': '.mjs' },
  chunkNames: 'chunks/[name]-[hash]',
  splitting: true,
  format: 'esm',
  metafile: true,
  // CommonJS dependencies call require(); give each ES module (entry and chunks) one.
  banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
});

// Chunks of earlier builds (their names hash their content) would pile up: remove every file in
// chunks/ this build did not write.
const written = new Set(Object.keys(result.metafile.outputs).map((path) => join(root, path)));
const chunks = join(outdir, 'chunks');
for (const name of readdirSync(chunks)) {
  if (!written.has(join(chunks, name))) rmSync(join(chunks, name), { force: true });
}

// The same commands as one CommonJS script, for a V8 code cache (src/cli/code-cache.ts: Node 20
// caches no ES module's compilation): `agent`, `controller` and `mesh` run from it, and would
// otherwise parse and compile 2.3 MB, mostly the Kubernetes client, at every start. import.meta.url
// (the addon and package.json are found from it) is the script's own URL there.
await build({
  ...common,
  entryPoints: [new URL('../src/cli/server-script.ts', import.meta.url).pathname],
  outfile: join(outdir, 'server.cjs'),
  format: 'cjs',
  define: { 'import.meta.url': '__importMetaUrl' },
  banner: { js: "var __importMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
});

// Its cache, produced by this node (the test VM runs the same binary; the image's comes from
// its build stage, used where the runtime stage has the same node).
const produced = spawnSync(process.execPath, [join(outdir, 'produce-code-cache.mjs')], { encoding: 'utf8' });
if (produced.status !== 0) {
  process.stderr.write(`bundle: producing the code cache failed:\n${produced.stdout}${produced.stderr}`);
  process.exit(1);
}
