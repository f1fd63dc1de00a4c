/** The package version, reported in IpsecNodeState, logs and the build_info metric. */
import { readFileSync } from 'node:fs';

function packageVersion(): string {
  // dist/version.js and src/version.ts both sit one level below the package root.
  const text = readFileSync(new URL('../package.json', import.meta.url), 'utf8');
  return (JSON.parse(text) as { version: string }).version;
}

export const VERSION = packageVersion();
