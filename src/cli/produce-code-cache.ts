/**
 * Writes dist/bundle/server.cjs.cache, the V8 code cache of dist/bundle/server.cjs
 * (./code-cache.ts), with the node that runs it: V8 accepts a cache only from its own version
 * and flags, so this runs where the bundle will run (scripts/bundle.mjs on the build machine,
 * whose node the test VM runs too; a RUN in the Dockerfile's runtime stage for the image).
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
