// The process entry point for the bundle (scripts/bundle.mjs); bin/ipsec-operator.js does the
// same for the unbundled build. The long-running commands (the ones that load the Kubernetes
// client, 2.3 MB of the bundle) run from dist/bundle/server.cjs with its V8 code cache when the
// bundle has one (./code-cache.ts); the others, and every command of a bundle built without it
// (the host tests' single-file bundles), from the ES module chunks.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runCachedScript } from './code-cache.js';
import { runProcess, type Main } from './process.js';

const SERVER_COMMANDS = new Set(['agent', 'controller', 'mesh']);
const argv = process.argv.slice(2);
const server = fileURLToPath(new URL('./server.cjs', import.meta.url));

await runProcess(argv, async () => {
  if (SERVER_COMMANDS.has(argv[0] ?? '') && existsSync(server)) return runCachedScript(server, `${server}.cache`).exports['main'] as Main;
  return (await import('./main.js')).main;
});
