/**
 * The `ipsec-operator` process, shared by the bundle's entry (./entry.ts) and bin/: the
 * process-level handlers come first, before the commands and their dependencies load (seconds
 * in the test VM), because until then a SIGTERM to PID 1 would be dropped (./signals.ts) and a
 * failure would be reported by Node's defaults, which print whatever the value holds
 * (./fatal.ts). Sets the exit status the command returns.
 */
import { installFatalHandlers } from './fatal.js';
import { processSignals } from './signals.js';
import { compactHeapFor } from './heap-flags.js';

export type Main = (argv: readonly string[]) => Promise<number>;

/**
 * `loadMain` loads the commands (./main.ts); the bundle's entry passes one that runs the
 * long-running commands from a script with a code cache (./entry.ts).
 */
export async function runProcess(argv: readonly string[], loadMain: () => Promise<Main> = async () => (await import('./main.js')).main): Promise<void> {
  installFatalHandlers();
  const signals = processSignals();
  const main = await loadMain();
  // After the commands load: V8 accepts a code cache only under the flags it was made with, and
  // the agent's (./entry.ts, made with V8's defaults) would be rejected under the compact heap's.
  compactHeapFor(argv[0]);
  const status = await main(argv);
  // A long-running command has stopped everything it started; leave now rather than wait for
  // whatever a library still holds open (a keep-alive socket, a timer).
  if (signals.claimed) process.exit(status);
  process.exitCode = status;
}
