// The workload of bench:xfrm, in the three forms the bench feeds it: manifests (what the CLI
// reads), parsed resources (what the engine builds its desired tables from) and `ip -batch`
// lines (the iproute2 reference doing the same kernel work). Entry i of each form is the same
// kernel entry: an out policy 10.x.y.z/32 → 192.0.2.1/32 with one ESP transport template, and
// (with SAs) an ESP transport SA 10.x.y.z → 192.0.2.1, SPI 0x10000 + i, AES-GCM-128.
import { randomBytes } from 'node:crypto';

export interface Workload {
  readonly count: number;
  readonly withStates: boolean;
  /** One hex AEAD key (128-bit key + 32-bit salt) per SA; only ever written to the manifest's Secret and to ip's stdin. */
  readonly keys: readonly string[];
}

export const SECRET = 'bench-keys';
export const DESTINATION = '192.0.2.1';
export const AEAD = 'rfc4106(gcm(aes))';

export function workload(count: number, withStates: boolean): Workload {
  return { count, withStates, keys: withStates ? Array.from({ length: count }, () => randomBytes(20).toString('hex')) : [] };
}

export function sourceOf(i: number): string {
  return `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
}

export function spiOf(i: number): number {
  return 0x10000 + i;
}

/** The priority of policy i; `changed` is the one entry the one-change phase edits. */
export function priorityOf(i: number, changed: number | undefined): number {
  return i === changed ? 200 : 100;
}

/** Manifests as a user would write them: one YAML stream, a Secret first when there are SAs. */
export function manifestText(work: Workload, options: { readonly changed?: number; readonly empty?: boolean } = {}): string {
  if (options.empty) return '';
  const parts: string[] = [];
  if (work.withStates) {
    const data = work.keys.map((key, i) => `  sa-${i}: ${key}`).join('\n');
    parts.push(`apiVersion: v1\nkind: Secret\nmetadata:\n  name: ${SECRET}\nstringData:\n${data}\n`);
    for (let i = 0; i < work.count; i++) {
      parts.push(
        `apiVersion: ipsec.xfrm.io/v1alpha1\nkind: SecurityAssociation\nmetadata:\n  name: sa-${i}\nspec:\n` +
          `  source: ${sourceOf(i)}\n  destination: ${DESTINATION}\n  protocol: esp\n  spi: ${spiOf(i)}\n  mode: transport\n  reqid: 1\n` +
          `  aead:\n    algorithm: ${AEAD}\n    icvLength: 128\n    keyRef: {name: ${SECRET}, key: sa-${i}, encoding: hex}\n`,
      );
    }
  }
  for (let i = 0; i < work.count; i++) {
    parts.push(
      `apiVersion: ipsec.xfrm.io/v1alpha1\nkind: IpsecPolicy\nmetadata:\n  name: out-${i}\nspec:\n` +
        `  direction: out\n  priority: ${priorityOf(i, options.changed)}\n` +
        `  selector: {source: ${sourceOf(i)}/32, destination: ${DESTINATION}/32}\n` +
        `  templates: [{protocol: esp, mode: transport, reqid: 1}]\n`,
    );
  }
  return parts.join('---\n');
}

/** `ip -batch` input that adds (or deletes) the same entries. */
export function ipBatch(work: Workload, verb: 'add' | 'delete'): string {
  const lines: string[] = [];
  if (verb === 'add') {
    if (work.withStates) {
      for (let i = 0; i < work.count; i++) {
        lines.push(
          `xfrm state add src ${sourceOf(i)} dst ${DESTINATION} proto esp spi ${spiOf(i)} reqid 1 mode transport aead '${AEAD}' 0x${work.keys[i]} 128`,
        );
      }
    }
    for (let i = 0; i < work.count; i++) {
      lines.push(`xfrm policy add src ${sourceOf(i)}/32 dst ${DESTINATION}/32 dir out priority 100 tmpl proto esp reqid 1 mode transport`);
    }
  } else {
    for (let i = 0; i < work.count; i++) lines.push(`xfrm policy delete src ${sourceOf(i)}/32 dst ${DESTINATION}/32 dir out`);
    if (work.withStates) {
      for (let i = 0; i < work.count; i++) lines.push(`xfrm state delete src ${sourceOf(i)} dst ${DESTINATION} proto esp spi ${spiOf(i)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}
