/**
 * The agent's UDP encapsulation sockets, without a kernel: which sockets the owned SAs need,
 * what a sync opens and closes, how a port someone else holds or an address of another node is
 * reported, and the inbound exemptions for the carrier datagrams.
 */
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';

import {
  AgentEncapSockets,
  ESPINTCP_REFUSAL,
  EncapSocketManager,
  EncapSocketMetrics,
  refusedEncapsulations,
  wantedEncapSockets,
  type OpenEncapSocket,
  type OwnedState,
  type WantedEncapSocket,
} from '../../src/agent/encap-sockets.js';
import { EXEMPTION_PRIORITY, withEncapExemptions } from '../../src/agent/encap-exemptions.js';
import { policyKey } from '../../src/plan/identity.js';
import { encapSocketWarnings } from '../../src/cli/encap-check.js';
import type { SecurityAssociationSpec } from '../../src/crd/types.js';
import { policy, sa } from '../support/entries.js';

const udp = (sourcePort = 4500, destinationPort = 4500, type: 'espinudp' | 'espinudp-nonike' | 'espintcp' = 'espinudp'): Pick<SecurityAssociationSpec, 'encapsulation'> => ({
  encapsulation: { type, sourcePort, destinationPort },
});

function owned(resource: string, overrides: Partial<SecurityAssociationSpec>): OwnedState {
  return { resource: `SecurityAssociation/${resource}`, sa: sa(overrides) };
}

/** A kernel stand-in: which ports are local, which another process holds; records opens and closes. */
function fakeOpener(options: { local: readonly string[]; heldElsewhere?: readonly string[]; failWith?: Record<string, string> }) {
  const log: string[] = [];
  const open: OpenEncapSocket = ({ address, port, encapsulation }) => {
    const where = `${address}:${port}`;
    const fail = (code: string) => Object.assign(new Error(`binding ${where}: ${code}`), { code });
    if (options.failWith?.[where]) throw fail(options.failWith[where]!);
    if (!options.local.includes(address)) throw fail('EADDRNOTAVAIL');
    if (options.heldElsewhere?.includes(where)) throw fail('EADDRINUSE');
    log.push(`open ${where} ${encapsulation}`);
    return { close: () => log.push(`close ${where}`) };
  };
  return { open, log };
}

describe('wantedEncapSockets', () => {
  it('wants one socket per destination address and encapsulation port, shared by the SAs that use it', () => {
    const { wanted, problems } = wantedEncapSockets([
      owned('b-to-a', { source: '10.0.0.2', destination: '10.0.0.1', spi: 0x11, ...udp() }),
      owned('c-to-a', { source: '10.0.0.3', destination: '10.0.0.1', spi: 0x12, ...udp(4500, 4500) }),
      owned('d-to-a', { source: '10.0.0.4', destination: '10.0.0.1', spi: 0x13, ...udp(4500, 4600) }),
      owned('a-to-b', { source: '10.0.0.1', destination: '10.0.0.2', spi: 0x14, ...udp() }),
      owned('plain', { source: '10.0.0.2', destination: '10.0.0.1', spi: 0x15 }),
      owned('v6', { source: '2001:db8::2', destination: '2001:db8::1', spi: 0x16, ...udp() }),
    ]);
    expect(problems).toEqual([]);
    expect(wanted).toEqual([
      { address: '10.0.0.1', port: 4500, encapsulation: 'espinudp', resources: ['SecurityAssociation/b-to-a', 'SecurityAssociation/c-to-a'] },
      { address: '10.0.0.1', port: 4600, encapsulation: 'espinudp', resources: ['SecurityAssociation/d-to-a'] },
      // Every SA's destination: the kernel decides at bind time whether it is this node's.
      { address: '10.0.0.2', port: 4500, encapsulation: 'espinudp', resources: ['SecurityAssociation/a-to-b'] },
      { address: '2001:db8::1', port: 4500, encapsulation: 'espinudp', resources: ['SecurityAssociation/v6'] },
    ]);
  });

  it('refuses espintcp with its reason, and a second encapsulation type on one port as a conflict', () => {
    const { wanted, problems } = wantedEncapSockets([
      owned('old', { destination: '10.0.0.1', spi: 0x21, ...udp() }),
      owned('newer', { destination: '10.0.0.1', spi: 0x22, ...udp(4500, 4500, 'espinudp-nonike') }),
      owned('tcp', { destination: '10.0.0.1', spi: 0x23, ...udp(4500, 4500, 'espintcp') }),
    ]);
    expect(wanted).toEqual([{ address: '10.0.0.1', port: 4500, encapsulation: 'espinudp', resources: ['SecurityAssociation/old'] }]);
    expect(problems).toEqual([
      {
        resource: 'SecurityAssociation/newer',
        address: '10.0.0.1',
        port: 4500,
        encapsulation: 'espinudp-nonike',
        reason: 'Conflict',
        message: expect.stringContaining('10.0.0.1:4500 already carries espinudp for SecurityAssociation/old'),
      },
      { resource: 'SecurityAssociation/tcp', address: '10.0.0.1', port: 4500, encapsulation: 'espintcp', reason: 'Unsupported', message: ESPINTCP_REFUSAL },
    ]);
    expect(ESPINTCP_REFUSAL).toContain('RFC 8229');
    expect(refusedEncapsulations([{ resource: 'SecurityAssociation/tcp', entry: sa({ spi: 0x24, ...udp(4500, 4500, 'espintcp') }) }, { resource: 'SecurityAssociation/udp', entry: sa({ spi: 0x25, ...udp() }) }])).toEqual(
      new Map([['SecurityAssociation/tcp', ESPINTCP_REFUSAL]]),
    );
  });
});

describe('EncapSocketManager', () => {
  const want = (address: string, port: number, encapsulation: WantedEncapSocket['encapsulation'] = 'espinudp'): WantedEncapSocket => ({
    address,
    port,
    encapsulation,
    resources: [`SecurityAssociation/${address}-${port}`],
  });

  it('opens what is wanted once, keeps it across syncs and closes it when no SA needs it', () => {
    const kernel = fakeOpener({ local: ['10.0.0.1'] });
    const manager = new EncapSocketManager(kernel.open);
    expect(manager.sync([want('10.0.0.1', 4500)]).map((s) => s.state)).toEqual(['Held']);
    expect(manager.sync([want('10.0.0.1', 4500)]).map((s) => s.state)).toEqual(['Held']);
    expect(kernel.log).toEqual(['open 10.0.0.1:4500 espinudp']);
    expect(manager.held()).toEqual(['10.0.0.1|4500']);

    manager.sync([want('10.0.0.1', 4600)]);
    expect(kernel.log).toEqual(['open 10.0.0.1:4500 espinudp', 'close 10.0.0.1:4500', 'open 10.0.0.1:4600 espinudp']);
    manager.sync([]);
    expect(kernel.log.at(-1)).toBe('close 10.0.0.1:4600');
    expect(manager.held()).toEqual([]);
  });

  it('reopens a socket whose encapsulation type changed', () => {
    const kernel = fakeOpener({ local: ['10.0.0.1'] });
    const manager = new EncapSocketManager(kernel.open);
    manager.sync([want('10.0.0.1', 4500, 'espinudp')]);
    manager.sync([want('10.0.0.1', 4500, 'espinudp-nonike')]);
    expect(kernel.log).toEqual(['open 10.0.0.1:4500 espinudp', 'close 10.0.0.1:4500', 'open 10.0.0.1:4500 espinudp-nonike']);
  });

  it('reports a port another process holds without taking it, and takes it once it is free', () => {
    const heldElsewhere = ['10.0.0.1:4500'];
    const kernel = fakeOpener({ local: ['10.0.0.1'], heldElsewhere });
    const manager = new EncapSocketManager(kernel.open);
    const [status] = manager.sync([want('10.0.0.1', 4500)]);
    expect(status).toMatchObject({ state: 'HeldElsewhere', address: '10.0.0.1', port: 4500, resources: ['SecurityAssociation/10.0.0.1-4500'] });
    expect(status!.message).toContain('another process holds 10.0.0.1:4500');
    expect(kernel.log).toEqual([]);
    heldElsewhere.length = 0; // the other process exits
    expect(manager.sync([want('10.0.0.1', 4500)]).map((s) => s.state)).toEqual(['Held']);
  });

  it('says NotLocal for an SA this node only sends with, and Failed with the reason for anything else', () => {
    const kernel = fakeOpener({ local: ['10.0.0.1'], failWith: { '10.0.0.1:4501': 'ENOPROTOOPT' } });
    const manager = new EncapSocketManager(kernel.open);
    const statuses = manager.sync([want('10.0.0.2', 4500), want('10.0.0.1', 4501), want('10.0.0.1', 4500)]);
    expect(statuses.map((s) => [s.address, s.port, s.state])).toEqual([
      ['10.0.0.1', 4500, 'Held'],
      ['10.0.0.1', 4501, 'Failed'],
      ['10.0.0.2', 4500, 'NotLocal'],
    ]);
    expect(statuses[1]!.message).toContain('ENOPROTOOPT');
    expect(statuses[2]!.message).toContain('only sends');
  });

  it('closes everything on closeAll', () => {
    const kernel = fakeOpener({ local: ['10.0.0.1', '10.0.0.3'] });
    const manager = new EncapSocketManager(kernel.open);
    manager.sync([want('10.0.0.1', 4500), want('10.0.0.3', 4500)]);
    manager.closeAll();
    expect(kernel.log.filter((line) => line.startsWith('close')).sort()).toEqual(['close 10.0.0.1:4500', 'close 10.0.0.3:4500']);
    expect(manager.held()).toEqual([]);
  });

  it('exports the states as ipsec_operator_encap_sockets{state}', async () => {
    const registry = new Registry();
    const metrics = new EncapSocketMetrics(registry);
    const kernel = fakeOpener({ local: ['10.0.0.1'], heldElsewhere: ['10.0.0.1:4600'] });
    const statuses = new EncapSocketManager(kernel.open).sync([want('10.0.0.1', 4500), want('10.0.0.1', 4600), want('10.0.0.9', 4500)]);
    metrics.record(statuses, [{ resource: 'SecurityAssociation/tcp', address: '10.0.0.1', port: 4500, encapsulation: 'espintcp', reason: 'Unsupported', message: ESPINTCP_REFUSAL }]);
    const text = await registry.metrics();
    expect(text).toContain('ipsec_operator_encap_sockets{state="Held"} 1');
    expect(text).toContain('ipsec_operator_encap_sockets{state="HeldElsewhere"} 1');
    expect(text).toContain('ipsec_operator_encap_sockets{state="NotLocal"} 1');
    expect(text).toContain('ipsec_operator_encap_sockets{state="Failed"} 0');
    expect(text).toContain('ipsec_operator_encap_sockets{state="Unsupported"} 1');
  });
});

describe('AgentEncapSockets', () => {
  it('serves owned ESP-in-UDP SAs of the dump only, and reports sockets and refusals for the node state', async () => {
    const kernel = fakeOpener({ local: ['10.0.0.1'] });
    const registry = new Registry();
    const agent = new AgentEncapSockets({ netns: undefined, registry, open: kernel.open });
    const states = [
      sa({ source: '10.0.0.2', destination: '10.0.0.1', spi: 0x51, ...udp() }),
      sa({ source: '10.0.0.3', destination: '10.0.0.1', spi: 0x52, ...udp(4500, 4700) }), // foreign (an IKE daemon's)
      sa({ source: '10.0.0.1', destination: '10.0.0.2', spi: 0x53, ...udp() }),
      sa({ source: '10.0.0.4', destination: '10.0.0.1', spi: 0x54, ...udp(4500, 4800, 'espintcp') }),
    ];
    const owners = new Map([
      [0x51, 'SecurityAssociation/b-to-a'],
      [0x53, 'SecurityAssociation/a-to-b'],
      [0x54, 'SecurityAssociation/tcp'],
    ]);
    const reports = agent.sync(states, (state) => owners.get(state.id.spi));
    expect(reports.map((r) => [r.address, r.port, r.encapsulation, r.state, r.resources])).toEqual([
      ['10.0.0.1', 4500, 'espinudp', 'Held', ['b-to-a']],
      ['10.0.0.2', 4500, 'espinudp', 'NotLocal', ['a-to-b']],
      ['10.0.0.1', 4800, 'espintcp', 'Unsupported', ['tcp']],
    ]);
    expect(agent.reports()).toBe(reports);
    expect(kernel.log).toEqual(['open 10.0.0.1:4500 espinudp']);
    expect(await registry.metrics()).toContain('ipsec_operator_encap_sockets{state="Held"} 1');

    agent.sync([], () => undefined); // the SAs are gone
    expect(kernel.log.at(-1)).toBe('close 10.0.0.1:4500');
    expect(agent.reports()).toEqual([]);
  });
});

describe('withEncapExemptions', () => {
  // Node a (10.0.0.1) receives b-to-a (its `in` policy's template picks it) and sends a-to-b.
  const tables = () => ({
    states: [
      { resource: 'SecurityAssociation/a-to-b', entry: sa({ source: '10.0.0.1', destination: '10.0.0.2', spi: 0x31, reqid: 1, ...udp() }) },
      { resource: 'SecurityAssociation/b-to-a', entry: sa({ source: '10.0.0.2', destination: '10.0.0.1', spi: 0x32, reqid: 2, ...udp(4500, 4600) }) },
    ],
    policies: [
      { resource: 'IpsecPolicy/a-out', entry: policy({ direction: 'out', selector: { source: '10.0.0.1/32', destination: '10.0.0.2/32' }, templates: [{ protocol: 'esp', reqid: 1 }] }) },
      { resource: 'IpsecPolicy/a-in', entry: policy({ direction: 'in', selector: { source: '10.0.0.2/32', destination: '10.0.0.1/32' }, templates: [{ protocol: 'esp', reqid: 2 }] }) },
    ],
  });

  it('adds one allow policy for the carrier datagrams of each inbound ESP-in-UDP SA, owned by that SA', () => {
    const result = withEncapExemptions(tables());
    expect(result.states).toEqual(tables().states);
    expect(result.policies.slice(0, 2)).toEqual(tables().policies);
    expect(result.policies).toHaveLength(3);
    const exemption = result.policies[2]!;
    expect(exemption.resource).toBe('SecurityAssociation/b-to-a');
    // The same entry a hand-written IpsecPolicy would build to (any source port: a NAT may change it).
    expect(exemption.entry).toEqual(
      policy({ direction: 'in', priority: EXEMPTION_PRIORITY, selector: { source: '10.0.0.2/32', destination: '10.0.0.1/32', protocol: 'udp', destinationPort: 4600 }, templates: [] }),
    );
    expect(exemption.entry.templates).toEqual([]);
    expect(exemption.entry.action).toBe('allow');
  });

  it('adds nothing for outbound, plain ESP or espintcp SAs, nor twice for one identity', () => {
    const plain = tables();
    const noEncap = {
      ...plain,
      states: plain.states.map((s) => ({ ...s, entry: { ...s.entry, encapsulation: undefined } })),
    };
    expect(withEncapExemptions(noEncap)).toBe(noEncap);
    const tcp = { ...plain, states: plain.states.map((s) => ({ ...s, entry: { ...s.entry, encapsulation: { ...s.entry.encapsulation!, type: 'espintcp' as const } } })) };
    expect(withEncapExemptions(tcp).policies).toHaveLength(2);

    // A hand-written exemption with exactly this identity: the agent's is not added again.
    const handWritten = policy({ direction: 'in', priority: 50, selector: { source: '10.0.0.2/32', destination: '10.0.0.1/32', protocol: 'udp', destinationPort: 4600 }, templates: [] });
    const withOwn = { ...plain, policies: [...plain.policies, { resource: 'IpsecPolicy/a-in-udp', entry: handWritten }] };
    const result = withEncapExemptions(withOwn);
    expect(result.policies.map((p) => p.resource)).toEqual(['IpsecPolicy/a-out', 'IpsecPolicy/a-in', 'IpsecPolicy/a-in-udp']);
    expect(new Set(result.policies.map((p) => policyKey(p.entry.id))).size).toBe(3);
  });

  it('adds exemptions for IPv6 SAs with /128 hosts', () => {
    const result = withEncapExemptions({
      states: [{ resource: 'SecurityAssociation/v6', entry: sa({ source: '2001:db8::2', destination: '2001:db8::1', spi: 0x41, direction: 'in', ...udp() }) }],
      policies: [],
    });
    expect(result.policies.map((p) => [p.entry.id.selector.source, p.entry.id.selector.destination, p.entry.id.selector.protocol, p.entry.id.selector.destinationPort])).toEqual([
      [{ address: '2001:db8::2', prefixLength: 128 }, { address: '2001:db8::1', prefixLength: 128 }, 17, 4500],
    ]);
  });
});

describe('encapSocketWarnings (apply)', () => {
  const states = [
    { resource: 'SecurityAssociation/b-to-a', entry: sa({ source: '10.0.0.2', destination: '10.0.0.1', spi: 0x61, ...udp() }) },
    { resource: 'SecurityAssociation/c-to-a', entry: sa({ source: '10.0.0.3', destination: '10.0.0.1', spi: 0x62, ...udp() }) },
    { resource: 'SecurityAssociation/a-to-b', entry: sa({ source: '10.0.0.1', destination: '10.0.0.2', spi: 0x63, ...udp() }) },
    { resource: 'SecurityAssociation/held', entry: sa({ source: '10.0.0.2', destination: '10.0.0.1', spi: 0x64, ...udp(4500, 4600) }) },
    { resource: 'SecurityAssociation/tcp', entry: sa({ source: '10.0.0.2', destination: '10.0.0.1', spi: 0x65, ...udp(4500, 4700, 'espintcp') }) },
    { resource: 'SecurityAssociation/plain', entry: sa({ source: '10.0.0.2', destination: '10.0.0.1', spi: 0x66 }) },
  ];

  it('warns for each SA that receives on a local port nobody holds, once per probe, and for espintcp', () => {
    const probed: string[] = [];
    const lines = encapSocketWarnings({ states }, undefined, ({ address, port }) => {
      probed.push(`${address}:${port}`);
      if (address !== '10.0.0.1') return 'not-local';
      return port === 4600 ? 'held' : 'free';
    });
    expect(probed).toEqual(['10.0.0.1:4500', '10.0.0.2:4500', '10.0.0.1:4600']);
    expect(lines).toEqual([
      expect.stringContaining('SecurityAssociation/b-to-a receives ESP in UDP on 10.0.0.1:4500, and no socket holds that port'),
      expect.stringContaining('SecurityAssociation/c-to-a receives ESP in UDP on 10.0.0.1:4500'),
      `warning: SecurityAssociation/tcp: ${ESPINTCP_REFUSAL}`,
    ]);
    expect(lines[0]).toContain('ipsec-operator hold-encap');
  });

  it('passes on what else the probe met', () => {
    expect(encapSocketWarnings({ states: states.slice(0, 1) }, undefined, () => 'setting UDP_ENCAP: Protocol not available (ENOPROTOOPT)')).toEqual([
      'warning: SecurityAssociation/b-to-a: could not check the UDP encapsulation socket on 10.0.0.1:4500: setting UDP_ENCAP: Protocol not available (ENOPROTOOPT)',
    ]);
  });
});
