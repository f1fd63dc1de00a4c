/**
 * The engine's view of one namespace's kernel tables, on top of the XFRM client: a dump of
 * both tables and pipelined batches of changes. The engine's KernelChange and the client's
 * batch request are the same union, so this is a thin edge.
 */
import { readFileSync, statSync } from 'node:fs';
import { release } from 'node:os';
import type { LedgerScope } from '../ownership/ledger.js';
import { XfrmClient } from '../xfrm/client.js';
import { kernelFeatures, type KernelFeatures } from '../xfrm/kernel-features.js';
import { errnoDescription } from '../netlink/errno.js';
import { isNotFound } from '../netlink/error.js';
import type { KernelChange, KernelOutcome } from '../apply/applier.js';
import type { KernelTables } from './converge.js';
import type { PolicyId, SecurityAssociation, SecurityPolicy, StateId } from '../xfrm/types.js';
import type { ObservedTables } from '../plan/planner.js';
import type { SequenceReport } from '../xfrm/aevent-codec.js';

export interface OpenKernelTables extends KernelTables {
  /** Port id of the socket the changes go out on (events caused by them carry it). */
  readonly portId: number;
  /** What this kernel keeps, learned when the tables were opened. */
  readonly features: KernelFeatures;
  /** The kernel's entries for these identities only (see KernelTables.read): always there. */
  read(ids: { readonly states: readonly StateId[]; readonly policies: readonly PolicyId[] }): Promise<ObservedTables>;
  /** Entries the dump held that the model cannot represent (counted as foreign). */
  readonly skipped: () => number;
  /** The boot and network namespace these tables belong to (what the ownership ledger describes). */
  readonly scope: LedgerScope;
  /** An SA's replay state and thresholds (XFRM_MSG_GETAE); undefined when there is no such SA. */
  readSequence(id: StateId): Promise<SequenceReport | undefined>;
  /** Sets an SA's replay threshold (XFRM_MSG_NEWAE), for SAs created before NEWSA carried one. */
  setReplayThreshold(id: StateId, packets: number): Promise<void>;
  close(): void;
}

export async function openKernelTables(netns: string | undefined): Promise<OpenKernelTables> {
  const client = await XfrmClient.open(netns === undefined ? {} : { netns });
  let features: KernelFeatures;
  try {
    features = await probeKernelFeatures(client);
  } catch (error) {
    client.close();
    throw error;
  }
  let skipped = 0;
  return {
    portId: client.portId,
    scope: ledgerScope(netns, client.netnsCookie),
    features,
    skipped: () => skipped,
    async dump() {
      const states = await client.dumpStates();
      const policies = await client.dumpPolicies();
      skipped = states.skipped.length + policies.skipped.length;
      return { states: states.entries, policies: policies.entries };
    },
    async read(ids) {
      // One GET at a time: a handful of identities (see MAX_READ_IDENTITIES in ./converge.ts).
      const states: SecurityAssociation[] = [];
      const policies: SecurityPolicy[] = [];
      for (const id of ids.states) {
        const found = await absentIfNotFound(client.getState(id));
        if (found) states.push(found);
      }
      for (const id of ids.policies) {
        const found = await absentIfNotFound(client.getPolicy(id));
        if (found) policies.push(found);
      }
      return { states, policies };
    },
    async apply(changes: readonly KernelChange[]): Promise<readonly KernelOutcome[]> {
      if (changes.length === 0) return [];
      const results = await client.applyBatch(changes);
      return results.map((result) =>
        result.ok
          ? { ok: true }
          : {
              ok: false,
              errno: result.error.errno,
              code: result.error.code,
              // The kernel's own reason when it gave one (extended ack), else the errno's text.
              message: result.error.kernelMessage ?? result.error.detail ?? errnoDescription(result.error.errno),
            },
      );
    },
    readSequence: (id) => absentIfNotFound(client.getSequenceReport(id)),
    setReplayThreshold: (id, packets) => client.setReplayThreshold(id, packets),
    close: () => client.close(),
  };
}

async function absentIfNotFound<T>(lookup: Promise<T>): Promise<T | undefined> {
  try {
    return await lookup;
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

/**
 * What the running kernel keeps: SA direction asked of the kernel itself (a request that
 * changes nothing), the attributes the model cannot express yet from the release. One kernel
 * serves every network namespace, so os.release() holds for `netns` too.
 */
export async function probeKernelFeatures(client: Pick<XfrmClient, 'keepsStateDirection'>): Promise<KernelFeatures> {
  return kernelFeatures(release(), { 'sa-direction': await client.keepsStateDirection() });
}

/**
 * The boot id and the namespace's cookie (see NetlinkSocket.netnsCookie). Where the kernel
 * gives no cookie (before 5.14), the namespace file's inode stands in: weaker, since a
 * namespace made after another was freed can get the same inode again.
 */
export function ledgerScope(netns: string | undefined, cookie: bigint | undefined): LedgerScope {
  const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  if (cookie !== undefined) return { bootId, netns: cookie.toString() };
  const path = netns === undefined ? '/proc/self/ns/net' : netns.includes('/') ? netns : `/run/netns/${netns}`;
  return { bootId, netns: `inode:${statSync(path).ino}` };
}
