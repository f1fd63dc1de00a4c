// The controller's cluster index (src/controller/cluster-index.ts): change by change it must
// give the verdicts a from-scratch judgement gives (the definition: findConflicts and
// buildErrors of src/controller/analysis.ts over the whole view), name every resource whose
// verdict a change moved, and do work in proportion to what changed (builds and touched keys
// counted on a cluster of 2,000 policies and 50 nodes).
import { describe, expect, it } from 'vitest';
import { ClusterIndex, type IndexedResource, type ResourceFacts } from '../../src/controller/cluster-index.js';
import { buildErrors, findConflicts, judge, selectedNodes, type ClusterView, type Verdict } from '../../src/controller/analysis.js';
import type { LegacyResourceReport, ResourceReport, ResourceStanding } from '../../src/crd/node-state.js';
import { appliedSetDigest } from '../../src/crd/applied-set.js';
import { resourceName } from '../../src/model/ordering.js';
import { policySpec, saSpec, TEST_KEYS } from '../support/entries.js';

/** What a node's IpsecNodeState says in the walk: the first format, or the bounded one with the set its digest is of. */
type Written =
  | { readonly format: 'legacy'; readonly reports: readonly LegacyResourceReport[] }
  | { readonly format: 'digest'; readonly reports: readonly ResourceReport[]; readonly claimed: ReadonlyMap<string, Proven>; readonly unlisted: number };
type Proven = { readonly uid: string | undefined; readonly generation: number };

const keyOf = (report: { kind: string; name: string }) => `${report.kind}/${report.name}`;

function standingOf(written: Written): ResourceStanding {
  if (written.format === 'legacy') return written;
  const members = [...written.claimed].map(([key, { uid, generation }]) => ({ kind: key.split('/')[0] as 'IpsecPolicy', name: key.split('/')[1]!, uid: uid ?? '', generation }));
  return { format: 'digest', reports: written.reports, applied: appliedSetDigest(members), unlisted: written.unlisted };
}

/**
 * The set a node is expected to have applied, from scratch: the resources that select it,
 * are not being deleted, and that it does not list.
 */
function expectedSet(view: ClusterView, node: string, listed: readonly { kind: string; name: string }[]): Map<string, Proven> {
  const labels = view.nodes.get(node);
  const set = new Map<string, Proven>();
  if (!labels) return set;
  const keys = new Set(listed.map(keyOf));
  for (const resource of view.resources) {
    if (resource.metadata.deletionTimestamp || keys.has(resourceName(resource))) continue;
    if (selectedNodes(resource.spec.nodeSelector, new Map([[node, labels]])).length === 0) continue;
    set.set(resourceName(resource), { uid: resource.metadata.uid ?? '', generation: resource.metadata.generation ?? 0 });
  }
  return set;
}

const sameSet = (a: ReadonlyMap<string, Proven>, b: ReadonlyMap<string, Proven>) => a.size === b.size && [...a].every(([key, value]) => b.get(key)?.uid === value.uid && b.get(key)?.generation === value.generation);

/**
 * The proofs of the walk, from scratch after every step: the rule of docs/design.md ("Node
 * reports") written out over whole sets, sharing no code with ../../src/controller/node-proof.ts.
 */
class ScratchProofs {
  readonly written = new Map<string, Written>();
  readonly proven = new Map<string, Map<string, Proven>>();

  write(node: string, next: Written | undefined): void {
    const before = this.written.get(node);
    if (next === undefined) {
      this.written.delete(node);
      this.proven.delete(node);
      return;
    }
    if (before?.format === 'legacy' && next.format === 'digest') {
      const proven = this.proven.get(node) ?? new Map<string, Proven>();
      for (const report of before.reports) if (report.state === 'Applied' && report.generation !== undefined) proven.set(keyOf(report), { uid: undefined, generation: report.generation });
      this.proven.set(node, proven);
    }
    this.written.set(node, next);
  }

  settle(view: ClusterView): void {
    for (const [node, written] of this.written) {
      if (written.format !== 'digest' || written.unlisted > 0) continue;
      const expected = expectedSet(view, node, written.reports);
      if (sameSet(expected, written.claimed)) this.proven.set(node, expected);
    }
  }

  facts(view: ClusterView): ResourceFacts {
    const conflicts = findConflicts(view);
    const listed = (node: string, key: string) => this.written.get(node)?.reports.find((report) => keyOf(report) === key);
    return {
      selectedNodes: (resource) => selectedNodes(resource.spec.nodeSelector, view.nodes),
      report: (node, key) => {
        const report = listed(node, key);
        if (report) return report;
        const proven = this.written.get(node)?.format === 'digest' ? this.proven.get(node)?.get(key) : undefined;
        const resource = view.resources.find((candidate) => resourceName(candidate) === key);
        if (!proven || !resource || (proven.uid !== undefined && proven.uid !== (resource.metadata.uid ?? ''))) return undefined;
        return { kind: resource.kind, name: resource.metadata.name, generation: proven.generation, state: 'Applied' };
      },
      entriesRemaining: (key) =>
        [...this.written].filter(([node]) => view.nodes.has(node)).reduce((sum, [node, written]) => {
          const report = listed(node, key);
          return sum + (report ? (report.entries ?? 0) : written.format === 'digest' && this.proven.get(node)?.has(key) ? 1 : 0);
        }, 0),
      buildErrors: (resource) => buildErrors(resource, view.secrets),
      conflict: (key) => conflicts.get(key),
    };
  }
}

/** mulberry32: a seeded walk is reproducible from its seed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The status of an agent that applied exactly `applied` and lists `reports`. */
function standing(applied: readonly IndexedResource[], reports: readonly ResourceReport[] = [], unlisted = 0): ResourceStanding {
  const members = applied.map((resource) => ({ kind: resource.kind, name: resource.metadata.name, uid: resource.metadata.uid ?? '', generation: resource.metadata.generation ?? 0 }));
  return { format: 'digest', applied: appliedSetDigest(members), reports, unlisted };
}

/** An SA the index holds, by key (the setup's SAs select every node). */
function saOf(index: ClusterIndex, key: string): IndexedResource {
  const name = key.slice('SecurityAssociation/'.length);
  return { apiVersion: 'ipsec.xfrm.io/v1alpha1', kind: 'SecurityAssociation', metadata: { name, generation: 1, resourceVersion: name }, spec: saSpec({ spi: 0x100 + Number(name.slice(2)) }) } as IndexedResource;
}

const SELECTORS = [undefined, { matchLabels: { role: 'a' } }, { matchLabels: { role: 'b' } }, { matchExpressions: [{ key: 'role', operator: 'Exists' as const }] }];

describe('the cluster index', () => {
  it.each(Array.from({ length: 40 }, (_, seed) => [seed]))('agrees with a from-scratch judgement and names every verdict it moves (seed %i)', (seed) => {
    const next = random(seed + 1);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
    const index = new ClusterIndex();
    const resources = new Map<string, IndexedResource>();
    const nodes = new Map<string, Record<string, string>>();
    const secrets = new Map<string, Map<string, Buffer>>();
    const scratch = new ScratchProofs();
    let version = 0;
    let uids = 0;
    // The scratch facts read the walk's own record of what each node wrote, not this view's reports.
    const view = (): ClusterView => ({ resources: [...resources.values()], nodes, secrets, reports: new Map() });
    const verdicts = () => {
      scratch.settle(view());
      const facts = scratch.facts(view());
      return new Map([...resources.values()].map((resource) => [resourceName(resource), JSON.stringify(judge(resource, facts))]));
    };
    let before = verdicts();
    for (let step = 0; step < 60; step++) {
      let touched: Set<string>;
      const op = next();
      if (op < 0.35) {
        const name = `r${Math.floor(next() * 6)}`;
        const kind = next() < 0.5 ? 'SecurityAssociation' : 'IpsecPolicy';
        const nodeSelector = pick(SELECTORS);
        // Few SPIs and destinations, so identities collide; keys from two Secrets, one key sometimes absent.
        const spec =
          kind === 'SecurityAssociation'
            ? saSpec({ spi: pick([0x100, 0x101]), aead: { algorithm: 'rfc4106(gcm(aes))', icvLength: 128, keyRef: { name: pick(['keys', 'other']), key: 'gcm128' } }, ...(nodeSelector ? { nodeSelector } : {}) })
            : policySpec({ selector: { source: '10.0.0.1/32', destination: pick(['10.0.0.2/32', '10.0.0.3/32']) }, ...(nodeSelector ? { nodeSelector } : {}) });
        // Now and then deleted and created again under its name: a new uid, generation 1.
        const existing = next() < 0.1 ? undefined : resources.get(`${kind}/${name}`);
        const resource = {
          apiVersion: 'ipsec.xfrm.io/v1alpha1',
          kind,
          metadata: {
            name,
            uid: existing?.metadata.uid ?? `uid-${++uids}`,
            generation: (existing?.metadata.generation ?? 0) + 1,
            resourceVersion: String(++version),
            creationTimestamp: existing?.metadata.creationTimestamp ?? `2026-12-02T00:00:0${Math.floor(next() * 3)}Z`,
            ...(next() < 0.1 ? { deletionTimestamp: '2026-12-02T01:00:00Z' } : {}),
          },
          spec,
        } as IndexedResource;
        resources.set(resourceName(resource), resource);
        touched = index.upsertResource(resource);
      } else if (op < 0.45 && resources.size > 0) {
        const resource = pick([...resources.values()]);
        resources.delete(resourceName(resource));
        touched = index.removeResource(resource);
      } else if (op < 0.6) {
        const name = pick(['keys', 'other']);
        const roll = next();
        const data = roll < 0.3 ? undefined : new Map(Object.entries(TEST_KEYS).filter(([key]) => roll < 0.7 || key !== 'gcm128'));
        if (data) secrets.set(name, data);
        else secrets.delete(name);
        touched = index.setSecret(name, data);
      } else if (op < 0.8) {
        const name = pick(['n1', 'n2', 'n3']);
        const roll = next();
        const labels: Record<string, string> | undefined = roll < 0.2 ? undefined : roll < 0.6 ? { role: 'a' } : roll < 0.9 ? { role: 'b' } : {};
        if (labels) nodes.set(name, labels);
        else nodes.delete(name);
        touched = index.setNode(name, labels);
      } else {
        const node = pick(['n1', 'n2', 'n3']);
        const roll = next();
        const failedOrRemoved = (resource: IndexedResource): ResourceReport => {
          const state = pick(['Failed', 'Removed'] as const);
          return { kind: resource.kind, name: resource.metadata.name, generation: resource.metadata.generation ?? 0, state, ...(state === 'Failed' ? { reason: 'KernelRejected', message: 'no' } : {}), entries: Math.floor(next() * 2) };
        };
        let sent: Written | undefined;
        if (roll < 0.15) sent = undefined;
        else if (roll < 0.35) {
          // An agent of the first format: a report per resource, Applied ones too.
          const legacy = [...resources.values()]
            .filter(() => next() < 0.6)
            .map((resource): LegacyResourceReport => (next() < 0.5 ? { kind: resource.kind, name: resource.metadata.name, generation: resource.metadata.generation ?? 0, state: 'Applied', entries: 1 } : failedOrRemoved(resource)));
          sent = { format: 'legacy', reports: legacy };
        } else {
          const listed = [...resources.values()].filter(() => next() < 0.25).map(failedOrRemoved);
          // Mostly the very set the controller expects (a proof), else one the agent is behind
          // or ahead with (a member missing, one at another generation).
          const claimed = expectedSet(view(), node, listed);
          const shape = next();
          if (shape > 0.5 && claimed.size > 0) {
            const victim = pick([...claimed.keys()]);
            if (shape < 0.75) claimed.delete(victim);
            else claimed.set(victim, { ...claimed.get(victim)!, generation: claimed.get(victim)!.generation - 1 });
          }
          sent = { format: 'digest', reports: listed, claimed, unlisted: next() < 0.1 ? 1 : 0 };
        }
        scratch.write(node, sent);
        touched = index.setNodeState(node, node, sent && standingOf(sent));
      }
      const after = verdicts();
      for (const resource of resources.values()) {
        expect(JSON.stringify(judge(resource, index)), `step ${step}: ${resourceName(resource)}`).toBe(after.get(resourceName(resource)));
      }
      for (const [key, verdict] of after) if (before.get(key) !== verdict) expect([...touched], `step ${step}: ${key} moved but was not enqueued`).toContain(key);
      before = after;
    }
  });

  describe('work per change on 2,000 policies and 50 nodes', () => {
    const NODES = 50;
    const setup = () => {
      const index = new ClusterIndex();
      for (let node = 0; node < NODES; node++) index.setNode(`node-${node}`, { 'ipsec.xfrm.io/node': `node-${node}`, pool: node % 2 === 0 ? 'even' : 'odd' });
      index.setSecret('keys', new Map(Object.entries(TEST_KEYS)));
      const policies: IndexedResource[] = [];
      for (let i = 0; i < 2000; i++) {
        const resource = {
          apiVersion: 'ipsec.xfrm.io/v1alpha1',
          kind: 'IpsecPolicy',
          metadata: { name: `p${i}`, generation: 1, resourceVersion: String(i + 1), creationTimestamp: '2026-12-02T00:00:00Z' },
          spec: policySpec({ selector: { source: '10.0.0.1/32', destination: `10.${(i >> 8) & 255}.${i & 255}.1/32` }, nodeSelector: { matchLabels: { 'ipsec.xfrm.io/node': `node-${i % NODES}` } } }),
        } as IndexedResource;
        policies.push(resource);
        index.upsertResource(resource);
      }
      // Four SAs read the Secret; they are all the Secret's change may touch.
      for (let i = 0; i < 4; i++) {
        index.upsertResource({
          apiVersion: 'ipsec.xfrm.io/v1alpha1',
          kind: 'SecurityAssociation',
          metadata: { name: `sa${i}`, generation: 1, resourceVersion: `sa${i}`, creationTimestamp: '2026-12-02T00:00:00Z' },
          spec: saSpec({ spi: 0x100 + i }),
        } as IndexedResource);
      }
      return { index, policies };
    };

    it('builds every resource once when the caches fill', () => {
      const { index } = setup();
      expect(index.builds).toBe(2004);
    });

    it('an edit of one policy: one build, that policy enqueued', () => {
      const { index, policies } = setup();
      const builds = index.builds;
      const edited = { ...policies[7]!, metadata: { ...policies[7]!.metadata, generation: 2, resourceVersion: 'edited' }, spec: { ...policies[7]!.spec, priority: 5 } } as IndexedResource;
      expect([...index.upsertResource(edited)]).toEqual(['IpsecPolicy/p7']);
      expect(index.builds - builds).toBe(1);
      // The informer's resync hands the same object again: nothing to do.
      expect(index.upsertResource(edited).size).toBe(0);
      expect(index.builds - builds).toBe(1);
    });

    it('a Secret change: only the resources that read it, each built once', () => {
      const { index } = setup();
      const builds = index.builds;
      const touched = index.setSecret('keys', new Map(Object.entries({ ...TEST_KEYS, gcm128: Buffer.alloc(20, 0x99) })));
      expect([...touched].sort()).toEqual(['SecurityAssociation/sa0', 'SecurityAssociation/sa1', 'SecurityAssociation/sa2', 'SecurityAssociation/sa3']);
      expect(index.builds - builds).toBe(4);
      // A Secret nobody reads, and the same data again: nothing.
      expect(index.setSecret('unrelated', new Map([['k', Buffer.from('x')]])).size).toBe(0);
      expect(index.setSecret('keys', new Map(Object.entries({ ...TEST_KEYS, gcm128: Buffer.alloc(20, 0x99) }))).size).toBe(0);
      expect(index.builds - builds).toBe(4);
    });

    it('a Node relabelled: the resources whose selection of it changed, no build', () => {
      const { index } = setup();
      const builds = index.builds;
      // node-3 loses its per-node label: its 40 policies no longer select it; the 4 SAs select every node either way.
      const touched = index.setNode('node-3', { pool: 'odd' });
      expect(touched.size).toBe(40);
      expect([...touched].every((key) => Number(key.slice('IpsecPolicy/p'.length)) % NODES === 3)).toBe(true);
      expect(index.builds - builds).toBe(0);
      // A label no selector reads: nothing.
      expect(index.setNode('node-4', { 'ipsec.xfrm.io/node': 'node-4', pool: 'even', rack: 'r1' }).size).toBe(0);
    });

    it('an IpsecNodeState: only the resources whose standing changed', () => {
      const { index, policies } = setup();
      const mine = policies.filter((_, i) => i % NODES === 5);
      const sas = [...index.keys()].filter((key) => key.startsWith('SecurityAssociation/'));
      // node-5 applied its 40 policies and the 4 SAs every node selects: a proof of 44.
      const all = [...mine, ...sas.map((key) => saOf(index, key))];
      expect(index.setNodeState('node-5', 'node-5', standing(all)).size).toBe(44);
      // The agent's next write with one resource failed: one resource.
      const failed: ResourceReport = { kind: 'IpsecPolicy', name: mine[3]!.metadata.name, generation: 1, state: 'Failed', reason: 'KernelRejected', message: 'EINVAL' };
      const moved = standing(all.filter((resource) => resource !== mine[3]), [failed]);
      expect([...index.setNodeState('node-5', 'node-5', moved)]).toEqual([`IpsecPolicy/${mine[3]!.metadata.name}`]);
      // The same again (a write of other fields, say the kernel's counts): nothing.
      expect(index.setNodeState('node-5', 'node-5', moved).size).toBe(0);
    });

    it('two resources asking for one identity: the younger conflicts; deleting the older clears it', () => {
      const { index, policies } = setup();
      const twin = { ...policies[0]!, metadata: { ...policies[0]!.metadata, name: 'twin', resourceVersion: 'twin', creationTimestamp: '2026-12-02T00:00:05Z' } } as IndexedResource;
      expect([...index.upsertResource(twin)]).toEqual(['IpsecPolicy/twin']);
      expect(index.conflict('IpsecPolicy/twin')).toEqual({ winner: 'IpsecPolicy/p0', nodes: ['node-0'] });
      expect([...index.removeResource(policies[0]!)].sort()).toEqual(['IpsecPolicy/p0', 'IpsecPolicy/twin']);
      expect(index.conflict('IpsecPolicy/twin')).toBeUndefined();
    });
  });

  describe('the bounded IpsecNodeState: reports for what is not applied, a proof for the rest', () => {
    const NODES = 50;
    const policy = (i: number, generation = 1, node = i % NODES): IndexedResource =>
      ({
        apiVersion: 'ipsec.xfrm.io/v1alpha1',
        kind: 'IpsecPolicy',
        metadata: { name: `p${i}`, uid: `uid-p${i}`, generation, resourceVersion: `p${i}-${generation}`, creationTimestamp: '2026-12-02T00:00:00Z' },
        spec: policySpec({ selector: { source: '10.0.0.1/32', destination: `10.${(i >> 8) & 255}.${i & 255}.1/32` }, nodeSelector: { matchLabels: { 'ipsec.xfrm.io/node': `node-${node}` } } }),
      }) as IndexedResource;
    /** 2,000 policies on 50 nodes, every node's agent caught up. */
    const caughtUp = () => {
      const index = new ClusterIndex();
      for (let node = 0; node < NODES; node++) index.setNode(`node-${node}`, { 'ipsec.xfrm.io/node': `node-${node}` });
      const policies = Array.from({ length: 2000 }, (_, i) => policy(i));
      for (const resource of policies) index.upsertResource(resource);
      const on = (node: number, list: readonly IndexedResource[]) => list.filter((resource) => resource.spec.nodeSelector?.matchLabels?.['ipsec.xfrm.io/node'] === `node-${node}`);
      for (let node = 0; node < NODES; node++) index.setNodeState(`node-${node}`, `node-${node}`, standing(on(node, policies)));
      return { index, policies, on };
    };
    const verdictsOf = (index: ClusterIndex, resources: readonly IndexedResource[]) => new Map(resources.map((resource) => [resourceName(resource), judge(resource, index)]));

    it('applied through the digest alone: every policy Ready, with no report listed', () => {
      const { index, policies } = caughtUp();
      const verdicts = verdictsOf(index, policies);
      expect([...verdicts.values()].every((verdict) => verdict.ready && verdict.reason === 'Applied' && verdict.nodes.applied === 1)).toBe(true);
    });

    it('a failure listed: that policy fails with the node\'s reason and message, the node\'s others stay Applied', () => {
      const { index, policies, on } = caughtUp();
      const mine = on(7, policies);
      const failed: ResourceReport = { kind: 'IpsecPolicy', name: 'p7', generation: 1, state: 'Failed', reason: 'KernelRejected', message: 'the kernel refused it (EINVAL)' };
      expect([...index.setNodeState('node-7', 'node-7', standing(mine.slice(1), [failed]))]).toEqual(['IpsecPolicy/p7']);
      expect(judge(policies[7]!, index)).toMatchObject({ ready: false, reason: 'KernelRejected', message: 'node-7: the kernel refused it (EINVAL)' });
      for (const resource of mine.slice(1)) expect(judge(resource, index).ready).toBe(true);
    });

    it('an edit of one policy: only it waits, and none of the node\'s others leaves Ready at any step', () => {
      const { index, policies, on } = caughtUp();
      const before = verdictsOf(index, policies);
      const edited = policy(7, 2);
      const current = policies.map((resource) => (resource.metadata.name === 'p7' ? edited : resource));
      const others = (verdicts: Map<string, Verdict>) => [...verdicts].filter(([key]) => key !== 'IpsecPolicy/p7');
      // 1. The controller sees the edit first: only p7 is enqueued, and only p7 waits.
      expect([...index.upsertResource(edited)]).toEqual(['IpsecPolicy/p7']);
      let after = verdictsOf(index, current);
      expect(others(after)).toEqual(others(before));
      expect(after.get('IpsecPolicy/p7')).toMatchObject({ ready: false, reason: 'Pending', message: 'waiting for node node-7' });
      // 2. node-7 writes again before it caught up (its digest is of the old set): nothing moves.
      expect(index.setNodeState('node-7', 'node-7', standing(on(7, policies))).size).toBe(0);
      after = verdictsOf(index, current);
      expect(others(after)).toEqual(others(before));
      expect(after.get('IpsecPolicy/p7')!.reason).toBe('Pending');
      // 3. node-7 applied generation 2: p7 alone moves, to Ready.
      expect([...index.setNodeState('node-7', 'node-7', standing(on(7, current)))]).toEqual(['IpsecPolicy/p7']);
      after = verdictsOf(index, current);
      expect(others(after)).toEqual(others(before));
      expect(after.get('IpsecPolicy/p7')).toMatchObject({ ready: true, reason: 'Applied' });
    });

    it('the agent first: a digest of a set the controller does not expect yet proves nothing until the controller sees the edit', () => {
      const { index, policies, on } = caughtUp();
      const edited = policy(7, 2);
      const current = policies.map((resource) => (resource.metadata.name === 'p7' ? edited : resource));
      expect(index.setNodeState('node-7', 'node-7', standing(on(7, current))).size).toBe(0);
      // Still generation 1 in the controller's cache, proved before: Ready.
      expect(judge(policies[7]!, index).ready).toBe(true);
      // The edit arrives: the node's digest now matches, and p7 is Ready at generation 2 at once.
      expect([...index.upsertResource(edited)]).toEqual(['IpsecPolicy/p7']);
      expect(judge(edited, index)).toMatchObject({ ready: true, reason: 'Applied' });
    });

    it('a node that has not caught up: a new policy waits there, and a deletion waits for its report', () => {
      const { index, policies, on } = caughtUp();
      const added = policy(2000, 1, 3);
      expect([...index.upsertResource(added)]).toEqual(['IpsecPolicy/p2000']);
      expect(judge(added, index)).toMatchObject({ ready: false, reason: 'Pending', message: 'waiting for node node-3' });
      // p3 is deleted; node-3 (behind) has not seen it: its last proof holds p3, so its entries remain.
      const deleting = { ...policies[3]!, metadata: { ...policies[3]!.metadata, resourceVersion: 'p3-deleting', deletionTimestamp: '2026-12-02T01:00:00Z' } } as IndexedResource;
      index.upsertResource(deleting);
      expect(judge(deleting, index)).toMatchObject({ reason: 'Deleting', entriesRemaining: 1 });
      // node-3 caught up: it applied p2000 and removed p3 (listed Removed, 0 entries).
      const removed: ResourceReport = { kind: 'IpsecPolicy', name: 'p3', generation: 1, state: 'Removed', reason: 'Removed', entries: 0 };
      const touched = index.setNodeState('node-3', 'node-3', standing([...on(3, policies).filter((resource) => resource.metadata.name !== 'p3'), added], [removed]));
      expect([...touched].sort()).toEqual(['IpsecPolicy/p2000', 'IpsecPolicy/p3']);
      expect(judge(added, index).ready).toBe(true);
      expect(judge(deleting, index)).toMatchObject({ reason: 'Deleting', entriesRemaining: 0 });
    });

    it('a node that cannot list all its reports proves nothing meanwhile', () => {
      const { index, policies, on } = caughtUp();
      const edited = policy(7, 2);
      index.upsertResource(edited);
      const current = policies.map((resource) => (resource.metadata.name === 'p7' ? edited : resource));
      expect(index.setNodeState('node-7', 'node-7', standing(on(7, current), [], 1)).size).toBe(0);
      expect(judge(edited, index).reason).toBe('Pending');
    });

    it('a policy deleted and created again under its name is another resource: a proof of the old uid does not count', () => {
      const { index, policies } = caughtUp();
      const again = { ...policies[7]!, metadata: { ...policies[7]!.metadata, uid: 'uid-p7-again', resourceVersion: 'p7-again' } } as IndexedResource;
      expect([...index.upsertResource(again)]).toEqual(['IpsecPolicy/p7']);
      expect(judge(again, index).reason).toBe('Pending');
    });

    it('an agent of the first format is read as before, and its upgrade flips nothing to Pending', () => {
      const { index, policies, on } = caughtUp();
      const mine = on(9, policies);
      const legacy: ResourceStanding = { format: 'legacy', reports: mine.map((resource) => ({ kind: 'IpsecPolicy', name: resource.metadata.name, generation: 1, state: 'Applied', entries: 1 })) };
      // The first format's Applied reports, read as they are: nothing moves.
      index.setNodeState('node-9', 'node-9', legacy);
      const before = verdictsOf(index, mine);
      expect([...before.values()].every((verdict) => verdict.ready)).toBe(true);
      // Upgraded, but behind (it has not seen a policy added meanwhile): the old Applied reports stand.
      const added = policy(2009, 1, 9);
      index.upsertResource(added);
      index.setNodeState('node-9', 'node-9', standing(mine));
      expect(verdictsOf(index, mine)).toEqual(before);
      // Caught up: proved, still Ready, and the new one too.
      index.setNodeState('node-9', 'node-9', standing([...mine, added]));
      expect(verdictsOf(index, mine)).toEqual(before);
      expect(judge(added, index).ready).toBe(true);
    });
  });
});
