/**
 * XfrmClient against the host kernel's SPD, in a throwaway namespace: many policy shapes through
 * add → list → get → update → delete → list, each checked against `ip xfrm policy` output;
 * kernel refusals with their errno and extended-ack text; and policies made by `ip` decoded to
 * exactly what was asked.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';

import { isExists, isNotFound } from '../../../src/netlink/error.js';
import { DEFAULT_LIFETIME, makePolicy, makeSelector, makeTemplate } from '../../../src/xfrm/defaults.js';
import type { SecurityPolicy } from '../../../src/xfrm/types.js';
import { XfrmError } from '../../../src/xfrm/xfrm-error.js';
import { FWD_INDEX_AH, SUB_MARK_TUNNEL, V4_ICMP_SIX_TEMPLATES, V6_ICMP_TWO_TEMPLATES, withFirstTemplateSpi } from '../../support/policy-shapes.js';
import { parseIpPolicies, viewOf, type PolicyView } from './ip-policy-view.js';
import { useNetnsWithClient } from './netns.js';

const setup = useNetnsWithClient();

const deviceName = (ifindex: number): string => (ifindex === 1 ? 'lo' : `if${ifindex}`);

function ipViews(): PolicyView[] {
  return parseIpPolicies(setup.netns.ip('-s', '-d', 'xfrm', 'policy', 'list'));
}

/** What the kernel reports back for a policy we asked for: share is not stored (always any). */
function asReported(policy: SecurityPolicy, index: number): SecurityPolicy {
  return { ...policy, share: 'any', index, observed: undefined };
}

const ESP_TRANSPORT = makeTemplate({ family: 'inet', protocol: 'esp', mode: 'transport', reqid: 1 });

/** Shapes covering every field of xfrm_userpolicy_info, its selector and its attributes. */
const SHAPES: SecurityPolicy[] = [
  makePolicy({ direction: 'out', selector: makeSelector({ source: '10.0.0.0/24', destination: '10.0.1.0/24' }), templates: [ESP_TRANSPORT] }),
  SUB_MARK_TUNNEL,
  V6_ICMP_TWO_TEMPLATES,
  {
    ...withFirstTemplateSpi(FWD_INDEX_AH, 0x1234),
    lifetime: { ...DEFAULT_LIFETIME, hardAddExpiresSeconds: 100_000n, softPacketLimit: 50n, softByteLimit: 1n << 40n, hardUseExpiresSeconds: 3600n },
  },
  V4_ICMP_SIX_TEMPLATES,
  // IPv4 traffic in an IPv6 tunnel (the other mix of families).
  makePolicy({
    direction: 'out',
    selector: makeSelector({ source: '192.168.0.0/16', destination: '192.168.1.0/24', protocol: 17, destinationPort: 53 }),
    templates: [makeTemplate({ source: '2001:db8::1', destination: '2001:db8::2', protocol: 'esp', mode: 'tunnel', reqid: 20 })],
  }),
  // GRE keys travel in the port fields.
  makePolicy({
    direction: 'in',
    selector: { ...makeSelector({ source: '10.0.0.0/8', destination: '10.0.0.0/8', protocol: 47 }), sourcePort: 0x0102, sourcePortMask: 0xffff, destinationPort: 0x0304, destinationPortMask: 0xffff },
  }),
  makePolicy({ direction: 'in', selector: makeSelector({ source: '10.0.0.0/8', destination: '10.0.0.0/8', protocol: 132 }), action: 'block', priority: 7 }),
  // Same selector and direction, told apart by mark and by if_id.
  makePolicy({ direction: 'out', selector: makeSelector({ source: '10.9.0.0/16', destination: '10.8.0.0/16' }), mark: { value: 1, mask: 0xffff_ffff }, templates: [ESP_TRANSPORT] }),
  makePolicy({ direction: 'out', selector: makeSelector({ source: '10.9.0.0/16', destination: '10.8.0.0/16' }), mark: { value: 2, mask: 0xffff_ffff }, templates: [ESP_TRANSPORT] }),
  makePolicy({ direction: 'out', selector: makeSelector({ source: '10.9.0.0/16', destination: '10.8.0.0/16' }), ifId: 77, templates: [ESP_TRANSPORT] }),
  makePolicy({
    direction: 'fwd',
    selector: makeSelector({ source: '2001:db8:a::/48', destination: '2001:db8:b::/48', protocol: 6, sourcePort: 22 }),
    templates: [makeTemplate({ source: '2001:db8::a', destination: '2001:db8::b', protocol: 'esp', mode: 'beet', reqid: 0xffff_ffff, level: 'use' })],
  }),
];

describe('policies through the client, checked against ip', () => {
  it('adds every shape, and lists them exactly as ip shows them', async () => {
    for (const policy of SHAPES) await setup.client.addPolicy(policy);
    const listed = await setup.client.listPolicies();
    expect(listed).toHaveLength(SHAPES.length);
    const views = ipViews();
    expect(new Set(views.map((v) => JSON.stringify(v)))).toEqual(new Set(listed.map((p) => JSON.stringify(viewOf(p, deviceName)))));
    for (const shape of SHAPES) {
      const found = listed.find((p) => JSON.stringify(p.id) === JSON.stringify(shape.id));
      expect(found, JSON.stringify(shape.id)).toBeDefined();
      expect(asReported(found!, found!.index)).toEqual(asReported(shape, shape.index === 0 ? found!.index : shape.index));
      // The kernel keeps the direction in the low 3 bits of the index it chooses.
      expect(found!.index & 7).toBe({ in: 0, out: 1, fwd: 2 }[shape.id.direction]);
    }
    expect(await setup.client.spdInfo()).toMatchObject({ inbound: 3, outbound: 7, forward: 2 });
  });

  it('gets each one by identity', async () => {
    for (const shape of SHAPES) {
      const got = await setup.client.getPolicy(shape.id);
      expect(asReported(got, 0)).toEqual(asReported(shape, 0));
    }
  });

  it('updates priority, action, templates and lifetime in place, keeping the index', async () => {
    const [target] = SHAPES;
    const before = await setup.client.getPolicy(target!.id);
    const changed: SecurityPolicy = {
      ...target!,
      priority: 999,
      action: 'block',
      lifetime: { ...DEFAULT_LIFETIME, hardAddExpiresSeconds: 60n },
      templates: [makeTemplate({ source: '10.0.0.1', destination: '10.0.0.9', protocol: 'esp', mode: 'tunnel', reqid: 42 })],
    };
    await setup.client.updatePolicy(changed);
    const after = await setup.client.getPolicy(target!.id);
    expect(after.index).toBe(before.index);
    expect(asReported(after, 0)).toEqual(asReported(changed, 0));
    const view = ipViews().find((v) => v.index === before.index);
    expect(view).toEqual(viewOf(after, deviceName));
    expect(view).toMatchObject({ priority: 999, action: 'block' });
  });

  it('UPDPOLICY of a missing policy creates it (an upsert)', async () => {
    const fresh = makePolicy({ direction: 'in', selector: makeSelector({ source: '198.51.100.0/24', destination: '198.51.100.0/24' }) });
    await setup.client.updatePolicy(fresh);
    expect(asReported(await setup.client.getPolicy(fresh.id), 0)).toEqual(asReported(fresh, 0));
    await setup.client.deletePolicy(fresh.id);
  });

  it('deletes each one; afterwards the list and ip are empty', async () => {
    for (const shape of SHAPES) await setup.client.deletePolicy(shape.id);
    expect(await setup.client.listPolicies()).toEqual([]);
    expect(setup.netns.ip('xfrm', 'policy', 'list').trim()).toBe('');
    expect(await setup.client.spdInfo()).toMatchObject({ inbound: 0, outbound: 0, forward: 0 });
  });
});

describe('kernel refusals', () => {
  const policy = makePolicy({ direction: 'out', selector: makeSelector({ source: '10.5.0.0/16', destination: '10.6.0.0/16' }), templates: [ESP_TRANSPORT] });

  it('deleting a missing policy: ENOENT', async () => {
    const error = await setup.client.deletePolicy(policy.id).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(XfrmError);
    expect(isNotFound(error)).toBe(true);
    expect(error).toMatchObject({ code: 'ENOENT', operation: 'XFRM_MSG_DELPOLICY dir out 10.5.0.0/16 -> 10.6.0.0/16' });
  });

  it('getting a missing policy: ENOENT', async () => {
    expect(isNotFound(await setup.client.getPolicy(policy.id).catch((e: unknown) => e))).toBe(true);
  });

  it('adding twice: EEXIST', async () => {
    await setup.client.addPolicy(policy);
    const error = await setup.client.addPolicy(policy).catch((e: unknown) => e);
    expect(isExists(error)).toBe(true);
    expect(error).toMatchObject({ code: 'EEXIST', errno: 17 });
    await setup.client.deletePolicy(policy.id);
  });

  it('an optional tunnel template on an outbound policy: EINVAL with the kernel reason', async () => {
    const bad = { ...policy, templates: [makeTemplate({ source: '10.0.0.1', destination: '10.0.0.2', protocol: 'esp', mode: 'tunnel', level: 'use' })] } satisfies SecurityPolicy;
    const error = await setup.client.addPolicy(bad).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'EINVAL', kernelMessage: 'Mode in optional template not allowed in outbound policy' });
    expect((error as Error).message).toMatch(/^XFRM_MSG_NEWPOLICY dir out .*: EINVAL \(Invalid argument\): Mode in optional template not allowed in outbound policy$/);
  });

  it('a transport template changing family: EINVAL with the kernel reason', async () => {
    const bad = { ...policy, templates: [makeTemplate({ source: 'fd00::1', destination: 'fd00::2', protocol: 'esp', mode: 'transport' })] } satisfies SecurityPolicy;
    await expect(setup.client.addPolicy(bad)).rejects.toMatchObject({ code: 'EINVAL', kernelMessage: "Mode in template doesn't support a family change" });
  });

  it('refuses what it can check itself before sending (validation: true, EINVAL)', async () => {
    const error = await setup.client.addPolicy({ ...policy, index: 8 }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'EINVAL', validation: true });
    expect((error as Error).message).toMatch(/index 8 encodes direction 0/);
  });
});

describe('policies made by ip decode to exactly what was asked', () => {
  it('templates, marks, ports, ICMP, ifindex via dev lo, priority, type sub, limits, flags, if_id', async () => {
    setup.netns.ip('xfrm', 'policy', 'add', 'src', '10.0.0.0/24', 'dst', '10.0.1.0/24', 'proto', 'tcp', 'sport', '80', 'dport', '443', 'dir', 'out', 'priority', '100', 'mark', '5', 'mask', '0xff', 'ptype', 'sub', 'tmpl', 'src', '1.1.1.1', 'dst', '2.2.2.2', 'proto', 'esp', 'reqid', '7', 'mode', 'tunnel');
    setup.netns.ip(
      ...'xfrm policy add src fd00::/64 dst fd00:1::1/128 proto ipv6-icmp type 128 code 0 dev lo dir in action block if_id 9 flag localok icmp limit time-hard 100 limit packet-soft 50 tmpl src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x100 mode tunnel reqid 3 level use tmpl proto comp mode transport'.split(' '),
    );
    setup.netns.ip(...'xfrm policy add src 10.1.1.1/32 dst 10.2.2.2/32 proto icmp type 8 code 0 dir fwd index 10 priority 4294967295 tmpl src 203.0.113.1 dst 203.0.113.2 proto ah spi 0x1234 mode transport reqid 11'.split(' '));
    const listed = await setup.client.listPolicies();
    const expected: SecurityPolicy[] = [
      SUB_MARK_TUNNEL,
      { ...V6_ICMP_TWO_TEMPLATES, lifetime: { ...DEFAULT_LIFETIME, hardAddExpiresSeconds: 100n, softPacketLimit: 50n } },
      makePolicy({
        direction: 'fwd',
        selector: makeSelector({ source: '10.1.1.1/32', destination: '10.2.2.2/32', protocol: 1, icmpType: 8, icmpCode: 0 }),
        index: 10,
        priority: 0xffff_ffff,
        templates: [makeTemplate({ source: '203.0.113.1', destination: '203.0.113.2', protocol: 'ah', spi: 0x1234, mode: 'transport', reqid: 11 })],
      }),
    ];
    expect(listed).toHaveLength(3);
    for (const want of expected) {
      const got = listed.find((p) => p.id.direction === want.id.direction);
      expect(asReported(got!, want.index === 0 ? got!.index : want.index)).toEqual(asReported(want, want.index === 0 ? got!.index : want.index));
      expect(got!.observed?.current.addTime).toBeGreaterThan(0n);
    }
    await setup.client.flushPolicies('main');
    await setup.client.flushPolicies('sub');
    expect(await setup.client.listPolicies()).toEqual([]);
  });

  it('a policy whose template says esp needs no esp module', async () => {
    const policy = makePolicy({
      direction: 'out',
      selector: makeSelector({ source: '10.7.0.1/32', destination: '10.7.0.2/32' }),
      templates: [makeTemplate({ source: '10.7.0.1', destination: '10.7.0.2', protocol: 'esp', mode: 'transport', reqid: 5 })],
    });
    await setup.client.addPolicy(policy);
    expect(setup.netns.ip('xfrm', 'policy', 'list')).toMatch(/tmpl src 10\.7\.0\.1 dst 10\.7\.0\.2\n\t\tproto esp reqid 5 mode transport/);
    await setup.client.deletePolicy(policy.id);
  });
});

describe('per-socket policies', () => {
  /**
   * A process in the namespace that sets IP_XFRM_POLICY (17) on a UDP socket: an outbound
   * per-socket policy, which the kernel keeps as dir XFRM_POLICY_MAX + out = 4 and includes in
   * policy dumps. Python's socket module can pass the raw xfrm_userpolicy_info.
   */
  const HOLDER = [
    'import socket, struct, sys',
    'info = bytearray(168)',
    "struct.pack_into('<H', info, 40, 2)",
    "for i in range(4): struct.pack_into('<Q', info, 56 + 8 * i, 0xffffffffffffffff)",
    'info[160] = 1',
    's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
    's.setsockopt(socket.IPPROTO_IP, 17, bytes(info))',
    "print('ready', flush=True)",
    'sys.stdin.read()',
  ].join('\n');

  it('are left out of listPolicies and reported as skipped by dumpPolicies', async () => {
    const holder = spawn('ip', ['netns', 'exec', setup.netns.name, 'python3', '-c', HOLDER], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      const [chunk] = (await once(holder.stdout, 'data')) as [Buffer];
      expect(chunk.toString()).toContain('ready');
      expect(setup.netns.ip('xfrm', 'policy', 'list')).toMatch(/socket out/);
      const main = makePolicy({ direction: 'out', selector: makeSelector({ source: '10.8.0.0/16', destination: '10.9.0.0/16' }) });
      await setup.client.addPolicy(main);
      const dumped = await setup.client.dumpPolicies();
      expect(dumped.entries.map((p) => p.id)).toEqual([main.id]);
      expect(dumped.skipped).toEqual([{ reason: expect.stringMatching(/per-socket policy \(dir 4\)/) }]);
      expect(await setup.client.listPolicies()).toHaveLength(1);
      expect(await setup.client.spdInfo()).toMatchObject({ outbound: 1, outboundSocket: 1 });
      await setup.client.deletePolicy(main.id);
    } finally {
      holder.stdin.end();
      if (holder.exitCode === null) await once(holder, 'exit');
    }
  });
});
