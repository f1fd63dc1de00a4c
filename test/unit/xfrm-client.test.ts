/**
 * XfrmClient over a fake in-memory kernel: typed operations, errors as XfrmError with the
 * entry they belong to, dumps that set foreign entries aside, and applyBatch at 10,000 entries.
 */
import { describe, expect, it } from 'vitest';

import { isExists, isNotFound } from '../../src/netlink/error.js';
import { XfrmClient, type XfrmBatchRequest } from '../../src/xfrm/client.js';
import { makePolicy, makeSelector, makeState, makeTemplate } from '../../src/xfrm/defaults.js';
import { encodeState } from '../../src/xfrm/state-codec.js';
import type { SecurityAssociation, SecurityPolicy } from '../../src/xfrm/types.js';
import { XfrmError } from '../../src/xfrm/xfrm-error.js';
import { FakeXfrmKernel } from './fixtures/fake-xfrm-kernel.js';
import { key } from './fixtures/xfrm-builders.js';

function setup(receiveBufferBytes = 212_992): { kernel: FakeXfrmKernel; client: XfrmClient } {
  const kernel = new FakeXfrmKernel({ receiveBufferBytes });
  return { kernel, client: new XfrmClient(kernel.transport, { receiveBufferBytes }) };
}

function sa(spi: number): SecurityAssociation {
  return makeState({
    id: { family: 'inet', destination: '192.0.2.2', spi, protocol: 'esp', mark: undefined },
    source: '192.0.2.1',
    mode: 'tunnel',
    algorithms: { kind: 'aead', aead: { name: 'rfc4106(gcm(aes))', key: key('ab'.repeat(20)), icvBits: 128 } },
    replay: { window: 128, useEsnAttribute: true },
    flags: ['esn'],
  });
}

function policy(i: number): SecurityPolicy {
  return makePolicy({
    direction: (['in', 'out', 'fwd'] as const)[i % 3]!,
    selector: makeSelector({ source: `10.${(i >> 8) & 0xff}.${i & 0xff}.0/24`, destination: '10.200.0.0/16' }),
    templates: [makeTemplate({ source: '192.0.2.1', destination: '192.0.2.2', protocol: 'esp', mode: 'tunnel', reqid: i })],
  });
}

describe('SAD operations', () => {
  it('add, get, list, update, delete', async () => {
    const { client } = setup();
    await client.addState(sa(1));
    await client.addState(sa(2));
    const got = await client.getState(sa(1).id);
    expect({ ...got, observed: undefined }).toEqual(sa(1));
    expect((await client.listStates()).map((s) => s.id.spi).sort()).toEqual([1, 2]);
    await client.updateState({ ...sa(2), lifetime: { ...sa(2).lifetime, hardAddExpiresSeconds: 60n } });
    expect((await client.getState(sa(2).id)).lifetime.hardAddExpiresSeconds).toBe(60n);
    await client.deleteState(sa(1).id);
    expect((await client.sadInfo()).count).toBe(1);
    await client.flushStates();
    expect(await client.listStates()).toEqual([]);
  });

  it('missing and duplicate SAs: ESRCH and EEXIST as XfrmError, without key bytes', async () => {
    const { client } = setup();
    const missing = await client.getState(sa(9).id).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(XfrmError);
    expect(isNotFound(missing)).toBe(true);
    expect(missing).toMatchObject({ code: 'ESRCH', operation: 'XFRM_MSG_GETSA esp spi 0x00000009 dst 192.0.2.2', index: undefined });
    await client.addState(sa(9));
    const duplicate = await client.addState(sa(9)).catch((e: unknown) => e);
    expect(isExists(duplicate)).toBe(true);
    expect(JSON.stringify(duplicate) + String(duplicate)).not.toMatch(/abab/);
  });

  it('dumpStates sets entries outside the model aside, with the reason', async () => {
    const { kernel, client } = setup();
    await client.addState(sa(1));
    const mip6 = Buffer.from(encodeState(sa(2)));
    mip6[76] = 43; // IPPROTO_ROUTING: a Mobile IPv6 state
    kernel.foreignStateBodies.push(mip6);
    const dumped = await client.dumpStates();
    expect(dumped.entries.map((s) => s.id.spi)).toEqual([1]);
    expect(dumped.skipped).toEqual([{ reason: expect.stringMatching(/protocol 43 is not esp, ah or ipcomp/) }]);
    expect(await client.listStates()).toHaveLength(1);
  });

  it('refuses an invalid SA before sending (validation, EINVAL)', async () => {
    const { kernel, client } = setup();
    const error = await client.addState({ ...sa(3), tfcPad: 5, mode: 'transport' }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'EINVAL', validation: true, message: expect.stringMatching(/TFC padding is only for esp in tunnel mode/) });
    expect(kernel.transport.requests).toHaveLength(0);
  });
});

describe('SPD operations', () => {
  it('add, get, update keeps the index, delete, spdInfo', async () => {
    const { client } = setup();
    await client.addPolicy(policy(1));
    const before = await client.getPolicy(policy(1).id);
    await client.updatePolicy({ ...policy(1), priority: 5 });
    const after = await client.getPolicy(policy(1).id);
    expect(after.index).toBe(before.index);
    expect(after.priority).toBe(5);
    expect(await client.spdInfo()).toMatchObject({ inbound: 0, outbound: 1, forward: 0, hashBuckets: 4 });
    await client.deletePolicy(policy(1).id);
    expect(isNotFound(await client.deletePolicy(policy(1).id).catch((e: unknown) => e))).toBe(true);
  });
});

describe('applyBatch', () => {
  it('10,000 entries: every result in order, bounded in flight, nothing lost', async () => {
    const { kernel, client } = setup();
    const requests: XfrmBatchRequest[] = Array.from({ length: 10_000 }, (_, i) => ({ op: 'add-policy', policy: policy(i) }));
    const results = await client.applyBatch(requests);
    expect(results.every((r, i) => r.ok && r.index === i)).toBe(true);
    expect(kernel.policies.size).toBe(10_000);
    expect(kernel.transport.droppedDatagrams).toBe(0);
    // 212,992 bytes of receive buffer at 2,048 per ack: at most 104 unanswered.
    expect(kernel.transport.maxUnanswered).toBeLessThanOrEqual(104);
    expect(Math.max(...kernel.transport.sent.map((d) => d.length))).toBeLessThanOrEqual(65_536);
  }, 60_000); // 10,000 encodes: seconds on a machine shared by parallel builds; nothing here is timed

  it('mixed changes: each failure names its entry, the rest apply', async () => {
    const { kernel, client } = setup();
    await client.addPolicy(policy(1));
    await client.addState(sa(7));
    const results = await client.applyBatch([
      { op: 'add-policy', policy: policy(2) },
      { op: 'add-policy', policy: policy(1) }, // EEXIST
      { op: 'delete-policy', id: policy(3).id }, // ENOENT
      { op: 'add-policy', policy: { ...policy(4), templates: new Array(7).fill(policy(4).templates[0]) } }, // refused locally
      { op: 'update-state', state: { ...sa(7), outputMark: { value: 1, mask: 1 } } },
      { op: 'delete-state', id: sa(8).id }, // ESRCH
      { op: 'add-state', state: sa(8) },
      { op: 'update-policy', policy: { ...policy(1), priority: 9 } },
    ]);
    expect(results.map((r) => (r.ok ? 'ok' : r.error.code))).toEqual(['ok', 'EEXIST', 'ENOENT', 'EINVAL', 'ok', 'ESRCH', 'ok', 'ok']);
    const refused = results[3];
    if (refused && !refused.ok) {
      expect(refused.error.validation).toBe(true);
      expect(refused.error.message).toMatch(/^entry 3: XFRM_MSG_NEWPOLICY dir out .*: EINVAL \(Invalid argument\): refused before sending: .*7 templates/);
    }
    const exists = results[1];
    if (exists && !exists.ok) expect(exists.error).toMatchObject({ index: 1, operation: expect.stringMatching(/^XFRM_MSG_NEWPOLICY dir out 10\.0\.1\.0\/24/) });
    expect(kernel.policies.size).toBe(2);
    expect(kernel.states.size).toBe(2);
  });

  it('an empty batch sends nothing', async () => {
    const { kernel, client } = setup();
    expect(await client.applyBatch([])).toEqual([]);
    expect(kernel.transport.sent).toHaveLength(0);
  });

  it('after close, calls reject with ECANCELED', async () => {
    const { client } = setup();
    client.close();
    await expect(client.listPolicies()).rejects.toMatchObject({ code: 'ECANCELED' });
    await expect(client.applyBatch([{ op: 'add-policy', policy: policy(1) }])).rejects.toMatchObject({ code: 'ECANCELED' });
  });
});
