/**
 * The agent's hold on the node's kernel tables: the XFRM request socket and the ownership
 * ledger, locked for as long as the agent runs. It starts first: an agent that cannot open the
 * socket or take the lock must not start, and must say so before waiting on the API server.
 */
import { openKernelTables, type OpenKernelTables } from '../engine/kernel.js';
import { Ledger, ledgerPath } from '../ownership/ledger.js';
import type { Runnable } from '../kube/runnables.js';

/** A CLI apply on the node may hold the lock for a while: wait it out instead of crash-looping. */
export const LEDGER_LOCK_WAIT_MS = 30_000;

export interface KernelHandles {
  readonly tables: OpenKernelTables;
  readonly ledger: Ledger;
}

export class KernelAccess {
  private tables: OpenKernelTables | undefined;
  private ledger: Ledger | undefined;
  readonly runnable: Runnable;

  constructor(netns: string | undefined, stateDirectory: string) {
    const path = ledgerPath(stateDirectory, netns);
    this.runnable = {
      name: 'kernel socket and ownership ledger',
      start: async () => {
        this.tables = await openKernelTables(netns);
        // Compaction waits for the end of a full pass, off a drift repair's path (./node-worker.ts).
        this.ledger = await Ledger.open(path, { scope: this.tables.scope, lockWaitMs: LEDGER_LOCK_WAIT_MS, deferCompaction: true });
      },
      stop: async () => {
        try {
          await this.ledger?.close();
        } finally {
          this.tables?.close();
        }
      },
    };
  }

  /** Whether the socket and the ledger are open (the other components start after this one). */
  isOpen(): boolean {
    return this.tables !== undefined && this.ledger !== undefined;
  }

  handles(): KernelHandles {
    if (this.tables === undefined || this.ledger === undefined) throw new Error('the kernel socket and the ledger are not open yet');
    return { tables: this.tables, ledger: this.ledger };
  }
}
