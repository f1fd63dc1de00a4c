// The entry shapes of the VM kill loop (test/kernel/vm/ownership-kill-loop.test.ts): SA i and
// policy j of a set, varied over protocols, modes, algorithms, marks, interface ids, IPv6,
// subnets, ports and actions; `variant` 1 changes some of them (keys, reqids, replay windows,
// priorities) so that a switch between the two sets makes creates, in-place updates and replaces.
// Each feature recurs with a period of at most 13 (i % 4, % 7, % 10; j % 5, % 11, % 13), so 40 of
// each kind already hold every one (the 100 + 100 soak this loop replaced added none).

/** The keys the sets' SAs refer to (in the Secret `kill-loop-keys`); test values only. */
export const KEYS = { gcm: '11'.repeat(20), gcm2: '22'.repeat(20), aes: '33'.repeat(16), sha256: '44'.repeat(32), sha1: '55'.repeat(20) };

const ref = (key: keyof typeof KEYS) => ({ name: 'kill-loop-keys', key, encoding: 'hex' });

export function saDaddr(i: number): string {
  return i % 5 === 4 ? `2001:db8:1::${(i + 1).toString(16)}` : `198.51.${100 + (i >> 8)}.${i & 0xff}`;
}
export function saSaddr(i: number): string {
  return i % 5 === 4 ? '2001:db8:2::1' : '192.0.2.1';
}

/** SA i of set `variant`: variant 1 changes keys (a replace), reqids (in place or replace) and replay windows. */
export function saSpec(i: number, variant: number): Record<string, unknown> {
  const spec: Record<string, unknown> = { source: saSaddr(i), destination: saDaddr(i), spi: 0x1000 + i, reqid: 1 + (i % 9) + (variant === 1 && i % 10 === 5 ? 20 : 0) };
  switch (i % 4) {
    case 0:
      Object.assign(spec, { protocol: 'esp', aead: { algorithm: 'rfc4106(gcm(aes))', icvLength: 128, keyRef: ref(variant === 1 && i % 8 === 0 ? 'gcm2' : 'gcm') } });
      break;
    case 1:
      Object.assign(spec, {
        protocol: 'esp',
        mode: 'tunnel',
        replayWindow: variant === 1 && i % 3 === 0 ? 64 : 32,
        encryption: { algorithm: 'cbc(aes)', keyRef: ref('aes') },
        authentication: { algorithm: 'hmac(sha256)', truncationLength: 128, keyRef: ref('sha256') },
      });
      break;
    case 2:
      Object.assign(spec, { protocol: 'ah', authentication: { algorithm: 'hmac(sha1)', keyRef: ref('sha1') } });
      break;
    default:
      Object.assign(spec, { protocol: 'esp', mark: { value: 0x10 + (i % 3), mask: 0xff }, aead: { algorithm: 'rfc4106(gcm(aes))', icvLength: 128, keyRef: ref('gcm') } });
  }
  if (i % 7 === 6) spec.interfaceId = 5;
  return spec;
}

export function policySpec(j: number, variant: number): Record<string, unknown> {
  const direction = (['out', 'in', 'fwd'] as const)[j % 3]!;
  const selector =
    j % 5 === 0
      ? { source: `10.1.${j}.0/24`, destination: `10.2.${j}.0/24` }
      : { source: `10.1.${j}.1/32`, destination: `10.3.0.${j}/32`, ...(j % 4 === 1 ? { protocol: 'tcp', destinationPort: 2000 + j } : {}) };
  const spec: Record<string, unknown> = { direction, priority: 500 + (j % 5) + (variant === 1 && j % 6 === 0 ? 50 : 0), selector };
  if (j % 11 === 0) spec.mark = { value: 1 + (j % 3), mask: 0xff };
  if (j % 13 === 0) spec.action = 'block';
  else if (j % 4 === 2) spec.templates = [{ protocol: 'esp', mode: 'tunnel', source: '192.0.2.1', destination: `198.51.100.${j}`, reqid: 1 + (j % 9) + (variant === 1 && j % 8 === 2 ? 30 : 0) }];
  else spec.templates = [{ protocol: 'esp', mode: 'transport', reqid: 1 + (j % 9) }];
  return spec;
}

/** A resource document of ours, as JSON (a YAML stream takes it as is). */
export function document(kind: string, name: string, spec: Record<string, unknown>): string {
  return JSON.stringify({ apiVersion: 'ipsec.xfrm.io/v1alpha1', kind, metadata: { name }, spec });
}
