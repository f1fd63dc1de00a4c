// The process entry point for the bundle (scripts/bundle.mjs); bin/ipsec-operator.js does the
// same for the unbundled build.
import { main } from './main.js';

process.exitCode = await main(process.argv.slice(2));
