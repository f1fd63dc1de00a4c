/**
 * The agent's IpsecMesh work, one pass at a time, around the node's reconcile
 * (./node-worker.ts):
 *
 *   prepare (before the engine runs): for every mesh that selects this node, or that it is
 *     leaving, open its key store (../mesh/key-store.ts), make the first key pair or the one a
 *     rotation request asks for (X25519 from the OS CSPRNG, stored before anything uses it),
 *     read what the kernel holds of the mesh, run the rotation state machine
 *     (../mesh/rotation.ts decide), persist its next local state, and turn the decision into
 *     kernel entries (../mesh/entries.ts). Those join the hand-written resources' desired
 *     entries under the resource `IpsecMesh/<name>`: one engine, one ledger, the same
 *     ownership rules and sequence rule.
 *   publish (after the engine ran and the kernel was dumped again): what the kernel now holds
 *     may be published (rule 2, advertise), the rotation's progress, the NodeMeshReport for
 *     the node's IpsecNodeState `status.meshes[]`.
 *   committed (after the status write): the advertisement becomes `previous`, what this node
 *     published last, for the next pass.
 *
 * Until the mesh caches have synced, every mesh entry the ledger records is protected (kept,
 * never pruned) and nothing is published: fail static. A restarted agent resumes from its key
 * store and its own published report (the API server's copy).
 *
 * No key byte leaves this module but into the kernel entries: logs name meshes, nodes and
 * generations only.
 */
import { readFileSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { NodeMeshReport } from '../crd/mesh-contract.js';
import type { Logger } from '../kube/logger.js';
import type { KernelTables } from '../engine/converge.js';
import type { DesiredTables, ObservedTables } from '../plan/planner.js';
import { stateKey } from '../plan/identity.js';
import { buildMeshEntries, meshReqid, meshResource, type MeshKeys } from '../mesh/entries.js';
import { MeshKeyStore } from '../mesh/key-store.js';
import { advertise, decide, startRotation, type MeshDecision, type RotationInput } from '../mesh/rotation.js';
import type { MeshAdvertisement } from '../mesh/types.js';
import type { SecurityAssociation } from '../xfrm/types.js';
import { generateX25519KeyPair, type X25519KeyPair } from '../mesh/x25519.js';
import { statusEqual } from '../kube/status.js';
import { InboundActivity, OutboundDrain, foreignSpis, installedMesh, sequenceUsage, softLimitReached, type MeshKernelInput, type OwnerOf } from './mesh-kernel.js';
import { apiTime, emptyAdvertisement, meshReport, progressed, readyPeers, shouldStart } from './mesh-progress.js';
import { meshEntriesSpec, meshTimers, meshView, type MeshView } from './mesh-view.js';
import type { MeshSnapshot } from './mesh-caches.js';

export const MESH_RESOURCE_PREFIX = 'IpsecMesh/';

/** Why the engine set a mesh's resource aside (../agent/node-reconciler.ts), as the mesh sees it. */
export type SetAside = ReadonlyMap<string, { readonly reason: string; readonly message: string }>;

export interface MeshWorkerParts {
  readonly nodeName: string;
  readonly stateDirectory: string;
  readonly bootId: string;
  readonly caches: { snapshot(): MeshSnapshot | undefined };
  readonly logger: Logger;
  /** Milliseconds since the epoch; default Date.now. */
  readonly now?: () => number;
  /** Default: X25519 from the OS CSPRNG. */
  readonly generateKeyPair?: () => X25519KeyPair;
}

/** What one mesh carried from prepare to publish. */
interface MeshContext {
  readonly view: MeshView;
  readonly store: MeshKeyStore | undefined;
  readonly leaving: boolean;
  readonly input?: Omit<RotationInput, 'installed' | 'local'>;
  readonly decision?: MeshDecision;
  /** Outbound SAs of the mesh that must not go in this pass (OutboundDrain), as the kernel holds them. */
  readonly draining?: readonly SecurityAssociation[];
  readonly reason?: { readonly reason: string; readonly message: string };
}

export interface MeshPass {
  /** The mesh entries for the engine, beside the hand-written resources' ones. */
  readonly desired: DesiredTables;
  /** Mesh resources whose entries must be kept even though nothing desires them now. */
  readonly protect: ReadonlySet<string>;
  /** False while the mesh caches have not synced: nothing is published. */
  readonly synced: boolean;
  readonly contexts: readonly MeshContext[];
}

export class MeshWorker {
  readonly #parts: MeshWorkerParts;
  readonly #now: () => number;
  readonly #generate: () => X25519KeyPair;
  readonly #stores = new Map<string, MeshKeyStore>();
  readonly #activity = new Map<string, InboundActivity>();
  readonly #drains = new Map<string, OutboundDrain>();
  /** What this node published last, per mesh uid (after the status write). */
  readonly #published = new Map<string, MeshAdvertisement>();
  #pending = new Map<string, MeshAdvertisement>();
  /** Mesh resources whose outbound SA reached a soft limit since their last rotation started. */
  readonly #softLimit = new Set<string>();

  constructor(parts: MeshWorkerParts) {
    this.#parts = parts;
    this.#now = parts.now ?? Date.now;
    this.#generate = parts.generateKeyPair ?? generateX25519KeyPair;
  }

  /** The kernel told of a soft expiry of an SA this resource owns: ask the controller for a rotation. */
  softLimitReached(resource: string): void {
    if (resource.startsWith(MESH_RESOURCE_PREFIX)) this.#softLimit.add(resource);
  }

  async prepare(tables: Pick<KernelTables, 'dump'>, ownerOf: OwnerOf, ownedResources: Iterable<string>): Promise<MeshPass> {
    const snapshot = this.#parts.caches.snapshot();
    const meshResources = [...new Set([...ownedResources].filter((resource) => resource.startsWith(MESH_RESOURCE_PREFIX)))];
    if (snapshot === undefined) return { desired: { states: [], policies: [] }, protect: new Set(meshResources), synced: false, contexts: [] };
    const desired = { states: [] as DesiredTables['states'][number][], policies: [] as DesiredTables['policies'][number][] };
    const protect = new Set<string>();
    const contexts: MeshContext[] = [];
    const live = snapshot.meshes.filter((mesh) => !mesh.metadata.deletionTimestamp && mesh.metadata.uid);
    let observed: ObservedTables | undefined;
    for (const mesh of live) {
      const view = meshView({ mesh, nodes: snapshot.nodes, nodeStates: snapshot.nodeStates, nodeName: this.#parts.nodeName, bootId: this.#parts.bootId });
      const resource = meshResource(view.identity);
      let store: MeshKeyStore;
      try {
        store = await this.#store(view);
      } catch (error) {
        protect.add(resource);
        contexts.push({ view, store: undefined, leaving: !view.selected, reason: { reason: 'KeyStoreError', message: (error as Error).message } });
        this.#parts.logger.warn('mesh: cannot open the key store; its entries are kept as they are', { mesh: view.identity.name, error: (error as Error).message });
        continue;
      }
      const leaving = !view.selected;
      if (leaving && store.state.generations.length === 0) continue; // not a member, nothing of it here
      if (view.self === undefined) {
        protect.add(resource);
        continue;
      }
      if (!leaving && Object.keys(view.self.addresses).length === 0) {
        contexts.push({ view, store, leaving, reason: { reason: 'NoAddress', message: `the Node has no ${view.mesh.spec.addressType ?? 'InternalIP'} address in ${(view.mesh.spec.addressFamilies ?? ['IPv4']).join(', ')}` } });
        continue;
      }
      try {
        if (!leaving) await this.#rotate(view, store);
        observed ??= await tables.dump();
        const context = await this.#decide(view, store, leaving, observed, ownerOf);
        contexts.push(context);
        const entries = buildMeshEntries(meshEntriesSpec(view.mesh, view.identity), view.self, view.peers, context.decision!, keysOf(store));
        desired.states.push(...entries.states, ...drainingEntries(resource, entries, context.draining ?? []));
        desired.policies.push(...entries.policies);
      } catch (error) {
        protect.add(resource);
        contexts.push({ view, store, leaving, reason: { reason: 'MeshFailed', message: (error as Error).message } });
        this.#parts.logger.warn('mesh: this pass could not decide the entries; they are kept as they are', { mesh: view.identity.name, error: (error as Error).message });
      }
    }
    // Meshes deleted from the cluster: their entries are pruned (nothing desires them, nothing
    // needs a key to delete them), their key stores removed: no private key outlives its mesh.
    const liveUids = new Set(live.map((mesh) => mesh.metadata.uid ?? ''));
    for (const uid of [...this.#stores.keys()]) if (!liveUids.has(uid)) this.#forget(uid);
    await this.#removeStoresOfDeletedMeshes(liveUids);
    return { desired, protect, synced: true, contexts };
  }

  async #removeStoresOfDeletedMeshes(liveUids: ReadonlySet<string>): Promise<void> {
    let files: string[];
    try {
      files = await readdir(join(this.#parts.stateDirectory, 'mesh'));
    } catch {
      return; // no mesh was ever here
    }
    for (const file of files) {
      const uid = file.endsWith('.json') ? file.slice(0, -'.json'.length) : undefined;
      if (uid === undefined || liveUids.has(uid)) continue;
      await rm(join(this.#parts.stateDirectory, 'mesh', file), { force: true });
      this.#parts.logger.info('mesh: removed the key store of a mesh that no longer exists', { uid });
    }
  }

  /** The reports to publish, from the kernel as the pass left it. */
  async publish(pass: MeshPass, observed: ObservedTables, ownerOf: OwnerOf, setAside: SetAside): Promise<NodeMeshReport[] | undefined> {
    if (!pass.synced) return undefined;
    const reports: NodeMeshReport[] = [];
    const pending = new Map<string, MeshAdvertisement>();
    const now = this.#now();
    for (const context of pass.contexts) {
      const { view, store } = context;
      const uid = view.identity.uid;
      const resource = meshResource(view.identity);
      const expectedPeers = view.members.filter((node) => node !== this.#parts.nodeName).length;
      if (context.input === undefined || context.decision === undefined || store === undefined) {
        const previous = this.#published.get(uid) ?? view.published?.advertisement;
        const advertisement = context.reason?.reason === 'NoAddress' || previous === undefined ? emptyAdvertisement(this.#parts.nodeName, this.#parts.bootId) : previous;
        pending.set(uid, advertisement);
        reports.push(meshReport({ mesh: view.identity, advertisement, rotation: store?.rotation, rotationWanted: false, expectedPeers, readyPeers: 0, ...(context.reason ?? {}) }));
        continue;
      }
      const kernelInput = this.#kernelInput(view, store, observed, ownerOf);
      const installed = installedMesh(kernelInput);
      const input: RotationInput = { ...context.input, local: context.decision.local, installed };
      const published = advertise(input);
      const rotation = progressed(store.rotation, published.local, new Date(now));
      if (rotation?.state === 'Done' && store.rotation?.state !== 'Done') this.#parts.logger.info('mesh: rotation done', { mesh: view.identity.name, request: rotation.requestId, generation: rotation.generation });
      if (!statusEqual(published.local, store.state) || !statusEqual(rotation, store.rotation)) await store.save(published.local, rotation);
      if (context.leaving) {
        const departed = decide({ ...input, local: published.local }).departed;
        if (departed && installed.inbound.size === 0 && installed.outbound.size === 0) {
          this.#parts.logger.info('mesh: left the mesh; its key store is removed', { mesh: view.identity.name });
          await store.remove();
          this.#forget(uid);
          continue;
        }
      }
      const failure = setAside.get(resource);
      // A key the sequence rule will not install again (a flushed outbound SA, a hard expiry) needs new keys: a rotation.
      const needsKeys = failure !== undefined && (failure.reason === 'NeedsRekey' || failure.reason === 'Expired');
      const blocking = failure !== undefined && !needsKeys ? failure : undefined;
      pending.set(uid, published.advertisement);
      reports.push(
        meshReport({
          mesh: view.identity,
          advertisement: published.advertisement,
          rotation,
          rotationWanted: needsKeys || this.#softLimit.has(resource) || softLimitReached(kernelInput),
          expectedPeers: context.leaving ? 0 : expectedPeers,
          readyPeers: readyPeers(published.advertisement, view.peers, new Set(view.members)),
          sequenceUsage: sequenceUsage(kernelInput),
          ...(blocking ?? {}),
        }),
      );
    }
    this.#pending = pending;
    return reports.sort((a, b) => (a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0));
  }

  /** The status holding the last publish was written: its advertisements are what this node published. */
  committed(): void {
    for (const [uid, advertisement] of this.#pending) this.#published.set(uid, advertisement);
    for (const uid of [...this.#published.keys()]) if (!this.#pending.has(uid)) this.#published.delete(uid);
    this.#pending = new Map();
  }

  async #store(view: MeshView): Promise<MeshKeyStore> {
    let store = this.#stores.get(view.identity.uid);
    if (store === undefined) {
      store = await MeshKeyStore.open(this.#parts.stateDirectory, view.identity, this.#parts.nodeName);
      this.#stores.set(view.identity.uid, store);
    }
    return store;
  }

  #forget(uid: string): void {
    this.#stores.delete(uid);
    this.#activity.delete(uid);
    this.#drains.delete(uid);
    this.#published.delete(uid);
  }

  /** The first key pair of a member, and the one a rotation request asks for (once per requestId). */
  async #rotate(view: MeshView, store: MeshKeyStore): Promise<void> {
    const now = this.#now();
    if (store.state.generations.length === 0) {
      const started = startRotation(store.state, now);
      if (started.ok) {
        await store.addGeneration(started.generation, this.#generate(), started.local);
        this.#parts.logger.info('mesh: made the first key generation', { mesh: view.identity.name, generation: started.generation });
      }
      return;
    }
    if (!shouldStart(view.request, store.rotation)) return;
    const started = startRotation(store.state, now);
    if (!started.ok) {
      this.#parts.logger.info('mesh: rotation request waits for the last rotation to finish', { mesh: view.identity.name, request: view.request.requestId, why: started.reason });
      return;
    }
    const rotation = { requestId: view.request.requestId, state: 'Rotating' as const, generation: started.generation, startedAt: apiTime(new Date(now)) };
    await store.addGeneration(started.generation, this.#generate(), started.local, rotation);
    this.#softLimit.delete(meshResource(view.identity));
    this.#parts.logger.info('mesh: rotation started', { mesh: view.identity.name, request: view.request.requestId, reason: view.request.reason, generation: started.generation });
  }

  async #decide(view: MeshView, store: MeshKeyStore, leaving: boolean, observed: ObservedTables, ownerOf: OwnerOf): Promise<MeshContext> {
    const now = this.#now();
    const timers = meshTimers(view.mesh);
    const kernelInput = this.#kernelInput(view, store, observed, ownerOf);
    let activity = this.#activity.get(view.identity.uid);
    if (activity === undefined) {
      activity = new InboundActivity();
      this.#activity.set(view.identity.uid, activity);
    }
    activity.observe(observed.states, new Set(store.state.allocations.map((a) => a.spi)), now);
    let drain = this.#drains.get(view.identity.uid);
    if (drain === undefined) {
      drain = new OutboundDrain();
      this.#drains.set(view.identity.uid, drain);
    }
    drain.observe(kernelInput, now);
    const foreign = foreignSpis(kernelInput);
    const input: Omit<RotationInput, 'installed' | 'local'> = {
      meshUid: view.identity.uid,
      self: view.self!,
      peers: view.peers,
      previous: this.#published.get(view.identity.uid) ?? view.published?.advertisement,
      idle: (allocation) => activity.idle(allocation.spi, timers.gracePeriodMs, now),
      foreignSpi: (spi) => foreign.has(spi),
      publicKeyOf: (generation) => store.publicKey(generation),
      now,
      backstopMs: timers.backstopMs,
      leaving,
    };
    const decision = decide({ ...input, local: store.state, installed: installedMesh(kernelInput) });
    // Persisted before anything it implies is applied: a restarted agent resumes from here.
    if (!statusEqual(decision.local, store.state)) await store.save(decision.local);
    return { view, store, leaving, input, decision, draining: drain.kept(kernelInput, timers.gracePeriodMs, now) };
  }

  #kernelInput(view: MeshView, store: MeshKeyStore, observed: ObservedTables, ownerOf: OwnerOf): MeshKernelInput {
    return { observed, ownerOf, resource: meshResource(view.identity), reqid: meshReqid(view.identity.uid), self: view.self!, peers: view.peers, allocations: store.state.allocations };
  }
}

/**
 * The outbound SAs still draining that the decision no longer wants, desired as the kernel holds
 * them (the same content plans nothing): kept, not pruned, until their grace period is over.
 */
function drainingEntries(resource: string, entries: DesiredTables, draining: readonly SecurityAssociation[]): DesiredTables['states'][number][] {
  const wanted = new Set(entries.states.map(({ entry }) => stateKey(entry.id)));
  return draining.filter((sa) => !wanted.has(stateKey(sa.id))).map((sa) => ({ resource, entry: { ...sa, observed: undefined } }));
}

function keysOf(store: MeshKeyStore): MeshKeys {
  return { privateKey: (generation) => store.privateKey(generation), publicKey: (generation) => Buffer.from(store.publicKey(generation), 'base64') };
}

/** This boot's id (/proc/sys/kernel/random/boot_id): every mesh key is bound to it. */
export function readBootId(): string {
  return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
}
