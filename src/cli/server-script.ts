/**
 * The entry of dist/bundle/server.cjs (scripts/bundle.mjs): the commands as one CommonJS script,
 * which ./entry.ts runs `agent`, `controller` and `mesh` from with a V8 code cache
 * (./code-cache.ts). Its imports of the commands stay lazy (esbuild turns them into deferred
 * module initialisers), so each command still evaluates only its own modules.
 */
export { main } from './main.js';

/**
 * Evaluates the long-running commands' modules without running them, so that V8 compiles their
 * code before ./produce-code-cache.ts takes the cache.
 */
export async function loadServerCommands(): Promise<void> {
  await import('./serve.js');
  await import('./mesh.js');
}
