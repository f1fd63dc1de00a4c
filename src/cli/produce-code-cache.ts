/**
 * Writes dist/bundle/server.cjs.cache, the V8 code cache of dist/bundle/server.cjs
 * (./code-cache.ts), with the node that runs it: V8 accepts a cache only from its own version
 * and flags, so this runs with the node the bundle will run on: scripts/bundle.mjs on the build
 * machine, whose node the test VM runs too; for the image, the build stage's `npm run build`,
 * whose node is the runtime stage's when both come from the same suite or tag (otherwise the
 * cache is ignored and the script compiled from source).
 *   node dist/bundle/produce-code-cache.mjs
 */
import { fileURLToPath } from 'node:url';
import { produceCodeCache } from './code-cache.js';

const server = fileURLToPath(new URL('./server.cjs', import.meta.url));
const bytes = await produceCodeCache(server, `${server}.cache`, async (exports) => {
  await (exports['loadServerCommands'] as () => Promise<void>)();
});
process.stdout.write(`code cache: ${server}.cache, ${bytes} bytes of V8 data for ${process.version}\n`);
// The commands' modules are loaded, not run; nothing of theirs needs to finish.
process.exit(0);
