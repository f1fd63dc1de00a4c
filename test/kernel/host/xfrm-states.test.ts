/**
 * SAs on the host kernel, which has XFRM netlink but no esp/ah/ipcomp: an SA cannot be
 * installed here, but the kernel parses and validates every request before it looks up the
 * protocol. So each of our encodings must get past attribute parsing and verify_newsa_info and
 * fail only at the algorithm or type lookup — proof that the kernel accepts their structure.
 * (SA add/get/dump against a kernel with ESP is tested in the VM, test/kernel/vm/.) Also: the
 * running kernel reads attribute 33 as XFRMA_SA_DIR, and missing SAs answer ESRCH.
 */
import { describe, expect, it } from 'vitest';

import { NetlinkConnection } from '../../../src/netlink/connection.js';
import { isNotFound } from '../../../src/netlink/error.js';
import { NetlinkSocket } from '../../../src/netlink/socket.js';
import { XFRM_MSG_NEWSA, XFRMA_SA_DIR } from '../../../src/xfrm/abi/constants.js';
import { DEFAULT_LIFETIME, makeState } from '../../../src/xfrm/defaults.js';
import { KeyMaterial } from '../../../src/xfrm/key-material.js';
import { encodeState } from '../../../src/xfrm/state-codec.js';
import type { SecurityAssociation } from '../../../src/xfrm/types.js';
import { useNetnsWithClient } from './netns.js';

const setup = useNetnsWithClient();

const key = (bytes: number, fill: number): KeyMaterial => KeyMaterial.fromBytes(Buffer.alloc(bytes, fill));
const id = (spi: number, protocol: 'esp' | 'ah' | 'ipcomp' = 'esp') => ({ family: 'inet', destination: '192.0.2.2', spi, protocol, mark: undefined }) as const;
const GCM = { kind: 'aead', aead: { name: 'rfc4106(gcm(aes))', key: key(20, 1), icvBits: 128 } } as const;
const CBC_SHA256 = {
  kind: 'cipher',
  cipher: { name: 'cbc(aes)', key: key(16, 2) },
  auth: { name: 'hmac(sha256)', key: key(32, 3), truncationBits: 128 },
} as const;

const SHAPES: Array<[string, SecurityAssociation]> = [
  ['ESP AEAD rfc4106(gcm(aes)) transport', makeState({ id: id(0x100), source: '192.0.2.1', algorithms: GCM })],
  ['ESP AEAD rfc4309(ccm(aes))', makeState({ id: id(0x101), source: '192.0.2.1', algorithms: { kind: 'aead', aead: { name: 'rfc4309(ccm(aes))', key: key(19, 4), icvBits: 128 } } })],
  ['ESP AEAD rfc4543(gcm(aes))', makeState({ id: id(0x102), source: '192.0.2.1', algorithms: { kind: 'aead', aead: { name: 'rfc4543(gcm(aes))', key: key(20, 5), icvBits: 128 } } })],
  ['ESP AEAD rfc7539esp(chacha20,poly1305)', makeState({ id: id(0x103), source: '192.0.2.1', algorithms: { kind: 'aead', aead: { name: 'rfc7539esp(chacha20,poly1305)', key: key(36, 6), icvBits: 128 } } })],
  ['ESP cbc(aes)+hmac(sha256) tunnel IPv6, ESN 4096, marks, if_id, tfcpad, direction in', makeState({
    id: { family: 'inet6', destination: '2001:db8::2', spi: 0x104, protocol: 'esp', mark: { value: 1, mask: 0xff } },
    source: '2001:db8::1',
    mode: 'tunnel',
    reqid: 4,
    algorithms: CBC_SHA256,
    replay: { window: 4096, useEsnAttribute: true },
    flags: ['esn', 'noecn'],
    ifId: 5,
    tfcPad: 128,
    outputMark: { value: 2, mask: 0xffff },
    direction: 'in',
    lifetime: { ...DEFAULT_LIFETIME, softAddExpiresSeconds: 3000n, hardAddExpiresSeconds: 3600n },
  })],
  ['ESP in UDP (NAT-T), window 64 without ESN, mixed inner family, direction out', makeState({
    id: id(0x105),
    source: '192.0.2.1',
    mode: 'tunnel',
    algorithms: CBC_SHA256,
    encapsulation: { type: 'espinudp', sourcePort: 4500, destinationPort: 4500, originalAddress: '0.0.0.0' },
    selector: { family: 'inet6', source: { address: 'fd00::', prefixLength: 64 }, destination: { address: 'fd01::', prefixLength: 64 }, protocol: 0, sourcePort: 0, sourcePortMask: 0, destinationPort: 0, destinationPortMask: 0, ifindex: 0, user: 0 },
    direction: 'out',
  })],
  ['ESP beet, extra flags', makeState({ id: id(0x106), source: '192.0.2.1', mode: 'beet', algorithms: CBC_SHA256, extraFlags: ['dont-encap-dscp', 'oseq-may-wrap'] })],
  ['AH hmac(sha1) 96', makeState({ id: id(0x107, 'ah'), source: '192.0.2.1', algorithms: { kind: 'auth', auth: { name: 'hmac(sha1)', key: key(20, 7), truncationBits: 96 } }, replay: { window: 32, useEsnAttribute: false } })],
  ['IPComp deflate tunnel', makeState({ id: id(0x108, 'ipcomp'), source: '192.0.2.1', mode: 'tunnel', algorithms: { kind: 'compression', compression: { name: 'deflate' } } })],
];

/** Failures that come after the structural checks: the algorithm or the protocol is missing here. */
const LOOKUP_FAILURE = /^Requested (type|AEAD algorithm|CRYPT algorithm|AUTH_TRUNC algorithm|AUTH algorithm|COMP algorithm) not found$/;

describe('SA requests pass the kernel structural checks', () => {
  for (const [name, sa] of SHAPES) {
    it(name, async () => {
      const error = await setup.client.addState(sa).catch((e: unknown) => e);
      expect(error).toMatchObject({ kernelMessage: expect.stringMatching(LOOKUP_FAILURE) });
      const update = await setup.client.updateState(sa).catch((e: unknown) => e);
      expect(update).toMatchObject({ kernelMessage: expect.stringMatching(LOOKUP_FAILURE) });
    });
  }
});

describe('XFRMA_SA_DIR is attribute 33 on the running kernel', () => {
  async function sendRaw(body: Buffer) {
    const socket = NetlinkSocket.open({ netns: setup.netns.name });
    const connection = new NetlinkConnection(socket);
    try {
      return await connection.request({ type: XFRM_MSG_NEWSA, flags: 0, body, operation: 'raw XFRM_MSG_NEWSA' }).catch((e: unknown) => e);
    } finally {
      connection.close();
    }
  }

  /** An inbound SA with a replay window, with the SA_DIR byte (the last attribute) patched. */
  function withDirectionByte(value: number): { body: Buffer; attributeOffset: number } {
    const body = Buffer.from(encodeState(makeState({ id: id(0x200), source: '192.0.2.1', algorithms: CBC_SHA256, replay: { window: 32, useEsnAttribute: false }, direction: 'in' })));
    const attributeOffset = body.length - 8;
    expect(body.readUInt16LE(attributeOffset + 2)).toBe(XFRMA_SA_DIR);
    body[attributeOffset + 4] = value;
    return { body, attributeOffset };
  }

  it('the kernel applies the OUT rules to value 2 in attribute 33', async () => {
    const error = await sendRaw(withDirectionByte(2).body);
    // "Replay window should be 0 for output SA" (6.18; the 6.10 text said "not be set for OUT SA").
    expect(error).toMatchObject({ code: 'EINVAL', kernelMessage: expect.stringMatching(/^Replay window should .* (OUT|output) SA$/) });
  });

  it('and refuses a value that is no direction, pointing at the attribute', async () => {
    const { body, attributeOffset } = withDirectionByte(3);
    const error = await sendRaw(body);
    // The kernel's attribute policy for 33 is a u8 in 1..2 (NLA_POLICY_RANGE): ERANGE, with
    // NLMSGERR_ATTR_OFFS counted from the start of the request's nlmsghdr.
    expect(error).toMatchObject({ code: 'ERANGE', kernelMessage: 'integer out of range', kernelOffset: 16 + attributeOffset });
  });
});

describe('SA lookups on an empty SAD', () => {
  it('get and delete of a missing SA: ESRCH', async () => {
    const getError = await setup.client.getState(id(0x300)).catch((e: unknown) => e);
    expect(getError).toMatchObject({ code: 'ESRCH' });
    expect(isNotFound(getError)).toBe(true);
    const deleteError = await setup.client.deleteState({ ...id(0x300), mark: { value: 1, mask: 1 } }).catch((e: unknown) => e);
    expect(isNotFound(deleteError)).toBe(true);
  });

  it('dump, count and flush', async () => {
    expect(await setup.client.listStates()).toEqual([]);
    expect(await setup.client.dumpStates()).toEqual({ entries: [], skipped: [] });
    expect((await setup.client.sadInfo()).count).toBe(0);
    await setup.client.flushStates();
    await setup.client.flushStates('ah');
  });
});
