// Which cache events wake the agent (src/agent/cache-changes.ts): spec and deletion changes of
// resources that select the node (before or after), key data, the node's labels; not status
// writes, finalizer patches or resources of other nodes.
import { describe, expect, it } from 'vitest';
import { concernsNode, labelsChanged, resourceChanged, secretChanged, type SelectableResource } from '../../src/agent/cache-changes.js';

const mine = { 'ipsec.xfrm.io/node': 'a' };
const policy = (node: string, generation: number, extra: Partial<SelectableResource['metadata']> = {}): SelectableResource & { status?: unknown } => ({
  metadata: { name: 'p', generation, ...extra },
  spec: { nodeSelector: { matchLabels: { 'ipsec.xfrm.io/node': node } } },
});

describe('the agent wakes on changes that concern its node', () => {
  it('ignores status writes and finalizer patches (same generation, no deletion)', () => {
    const written = { ...policy("a", 1), status: { conditions: [] } };
    expect(resourceChanged(policy("a", 1), written, mine)).toBe(false);
  });
  it('wakes on a spec change or a deletion of a resource that selects it', () => {
    expect(resourceChanged(policy('a', 1), policy('a', 2), mine)).toBe(true);
    expect(resourceChanged(policy('a', 1), policy('a', 1, { deletionTimestamp: '2026-12-02T05:00:00Z' }), mine)).toBe(true);
  });
  it('wakes when a resource stops or starts selecting it, not for another node\'s resource', () => {
    expect(resourceChanged(policy('a', 1), policy('b', 2), mine)).toBe(true);
    expect(resourceChanged(policy('b', 1), policy('a', 2), mine)).toBe(true);
    expect(resourceChanged(policy('b', 1), policy('c', 2), mine)).toBe(false);
    expect(concernsNode(policy('b', 1), mine)).toBe(false);
  });
  it('wakes on anything while its labels are unknown (no guessing)', () => {
    expect(concernsNode(policy('b', 1), undefined)).toBe(true);
    expect(resourceChanged(policy('b', 1), policy('c', 2), undefined)).toBe(true);
  });
  it('wakes on key data and label changes only', () => {
    expect(secretChanged({ data: { k: 'AA==' } }, { data: { k: 'AA==' }, metadata: { resourceVersion: '2' } })).toBe(false);
    expect(secretChanged({ data: { k: 'AA==' } }, { data: { k: 'AQ==' } })).toBe(true);
    expect(labelsChanged({ metadata: { labels: mine } }, { metadata: { labels: { ...mine }, annotations: { x: 'y' } } })).toBe(false);
    expect(labelsChanged({ metadata: { labels: mine } }, { metadata: { labels: { ...mine, zone: 'z' } } })).toBe(true);
  });
});
