/**
 * What a node's reconcile does for encapsulated SAs, against the fake kernel: inbound ESP in
 * UDP gets its carrier exemption (owned by the SA's resource, gone with it, opt-out per SA),
 * espintcp is set aside with its reason.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { reconcileNode, type NodeInputs } from '../../src/agent/node-reconciler.js';
import { EXEMPTION_ANNOTATION, EXEMPTION_PRIORITY } from '../../src/agent/encap-exemptions.js';
import { ESPINTCP_REFUSAL } from '../../src/agent/encap-sockets.js';
import type { IpsecPolicySpec, SecurityAssociationSpec, IpsecResource } from '../../src/crd/types.js';
import { Ledger } from '../../src/ownership/ledger.js';
import { FakeKernel } from '../support/fake-kernel.js';
import { policySpec, saSpec, TEST_KEYS } from '../support/entries.js';

let directory: string;
let ledger: Ledger;
beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'ipsecop-encap-'));
  ledger = await Ledger.open(join(directory, 'ledger.json'));
});
afterEach(async () => {
  await ledger.close();
  await rm(directory, { recursive: true, force: true });
});

let clock = 0;
const meta = (name: string, extra: Partial<IpsecResource['metadata']> = {}) => ({ name, generation: 1, creationTimestamp: `2026-01-01T00:00:${String(clock++).padStart(2, '0')}Z`, ...extra });
const saResource = (name: string, spec: Partial<SecurityAssociationSpec>, extra: Partial<IpsecResource['metadata']> = {}) => ({
  apiVersion: 'ipsec.xfrm.io/v1alpha1' as const,
  kind: 'SecurityAssociation' as const,
  metadata: meta(name, extra),
  spec: saSpec(spec),
});
const policyResource = (name: string, spec: Partial<IpsecPolicySpec>) => ({ apiVersion: 'ipsec.xfrm.io/v1alpha1' as const, kind: 'IpsecPolicy' as const, metadata: meta(name), spec: policySpec(spec) });
const inputs = (resources: NodeInputs['resources']): NodeInputs => ({ resources, secrets: new Map([['keys', new Map(Object.entries(TEST_KEYS))]]), nodeLabels: {}, resolveDevice: () => undefined });
const encap = (type: 'espinudp' | 'espintcp' = 'espinudp') => ({ encapsulation: { type, sourcePort: 4500, destinationPort: 4500 } });

// This node is 10.0.0.1; it receives b-to-a (its `in` policy's template picks reqid 2).
const bToA = (extra: Partial<IpsecResource['metadata']> = {}) => saResource('b-to-a', { source: '10.0.0.2', destination: '10.0.0.1', spi: 0x201, reqid: 2, ...encap() }, extra);
const aToB = () => saResource('a-to-b', { source: '10.0.0.1', destination: '10.0.0.2', spi: 0x200, reqid: 1, ...encap() });
const aIn = () => policyResource('a-in', { direction: 'in', selector: { source: '10.0.0.2/32', destination: '10.0.0.1/32' }, templates: [{ protocol: 'esp', reqid: 2 }] });

const exemptions = (kernel: FakeKernel) => kernel.policies.filter((policy) => policy.id.selector.protocol === 17);

describe('reconcileNode with encapsulated SAs', () => {
  it('adds the carrier exemption of an inbound ESP-in-UDP SA, owned by that SA, and removes it with the SA', async () => {
    const kernel = new FakeKernel();
    const result = await reconcileNode(inputs([aToB(), bToA(), aIn()]), kernel, ledger);
    expect(result.converged).toBe(true);
    expect(exemptions(kernel).map((policy) => [policy.id.direction, policy.id.selector.source.address, policy.id.selector.destination.address, policy.id.selector.destinationPort, policy.priority, policy.templates.length])).toEqual([
      ['in', '10.0.0.2', '10.0.0.1', 4500, EXEMPTION_PRIORITY, 0],
    ]);
    expect(result.reports.find((report) => report.name === 'b-to-a')).toMatchObject({ state: 'Applied', entries: 2 });
    expect(result.reports.find((report) => report.name === 'a-to-b')).toMatchObject({ state: 'Applied', entries: 1 });

    // A second pass changes nothing: the exemption is exactly what the kernel holds.
    expect((await reconcileNode(inputs([aToB(), bToA(), aIn()]), kernel, ledger)).changes).toBe(0);

    await reconcileNode(inputs([aToB(), aIn()]), kernel, ledger);
    expect(exemptions(kernel)).toEqual([]);
  });

  it('adds none for an SA annotated to opt out', async () => {
    const kernel = new FakeKernel();
    await reconcileNode(inputs([aToB(), bToA({ annotations: { [EXEMPTION_ANNOTATION]: 'false' } }), aIn()]), kernel, ledger);
    expect(exemptions(kernel)).toEqual([]);
    expect(kernel.states).toHaveLength(2);
  });

  it('sets an espintcp SA aside with the reason, and applies the rest', async () => {
    const kernel = new FakeKernel();
    const tcp = saResource('tcp', { source: '10.0.0.2', destination: '10.0.0.1', spi: 0x202, reqid: 3, ...encap('espintcp') });
    const result = await reconcileNode(inputs([aToB(), tcp]), kernel, ledger);
    expect(result.reports.find((report) => report.name === 'tcp')).toMatchObject({ state: 'Failed', reason: 'UnsupportedEncapsulation', message: ESPINTCP_REFUSAL, entries: 0 });
    expect(kernel.states.map((state) => state.id.spi)).toEqual([0x200]);
  });
});
