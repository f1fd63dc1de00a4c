// The process entry point for the bundle (scripts/bundle.mjs); bin/ipsec-operator.js does the
// same for the unbundled build.
import { runProcess } from './process.js';

await runProcess(process.argv.slice(2));
