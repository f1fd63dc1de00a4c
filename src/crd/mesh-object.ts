/**
 * The IpsecMesh status as the controller writes it (the schema is ./mesh-schema.ts; the part the
 * agents read is ./mesh-contract.ts), and the reading of the spec's Go-style durations. Pure.
 */
import type { MeshRotationRequest } from './mesh-contract.js';
import type { Condition } from '../kube/conditions.js';

/** A mesh-wide rotation under way: every node in `pending` still gets a request in it. */
export interface MeshRound {
  /** The status' keyGeneration this round makes. */
  readonly keyGeneration: number;
  readonly reason: 'Interval' | 'Manual';
  /** RFC 3339. */
  readonly startedAt: string;
  /** Members of the round not yet asked (ascending names). */
  readonly pending: readonly string[];
}

/** Per member, as the controller reports it. */
export interface MeshNodeSummary {
  readonly name: string;
  readonly generation?: number;
  readonly peers?: number;
  readonly expectedPeers?: number;
  readonly rotating?: boolean;
  /** RFC 3339: when its last requested rotation completed. */
  readonly lastRotationTime?: string;
  /** CamelCase, when the node does not take part (no agent report, NoAddress, ...). */
  readonly reason?: string;
}

export interface IpsecMeshStatus {
  readonly observedGeneration?: number;
  readonly conditions?: readonly Condition[];
  readonly keyGeneration?: number;
  readonly lastRotationTime?: string;
  readonly members?: { readonly selected?: number; readonly ready?: number; readonly rotating?: number };
  readonly nodes?: readonly MeshNodeSummary[];
  readonly rotationRequests?: readonly MeshRotationRequest[];
  /** As stored: the API server keeps no empty list, so `pending` may be absent. */
  readonly round?: Omit<MeshRound, 'pending'> & { readonly pending?: readonly string[] };
  /** Requests issued so far: the next requestId's serial, so that no requestId is ever reused. */
  readonly requestSerial?: number;
  /** The rotate annotation was acted on and is being removed (a restarted controller must not act on it twice). */
  readonly rotateAnnotationHandled?: boolean;
}

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)/;

/**
 * Milliseconds of a duration in the schema's form (`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`, a subset
 * of Go's time.ParseDuration, as the API server's CEL `duration()` reads it). Throws RangeError
 * on anything else: the schema refuses it, so only an object that bypassed it gets here.
 */
export function parseDuration(text: string): number {
  let rest = text;
  let total = 0;
  if (rest === '') throw new RangeError('empty duration');
  while (rest !== '') {
    const match = DURATION.exec(rest);
    if (!match) throw new RangeError(`"${text}" is not a duration like 24h, 90m or 1h30m`);
    total += Number(match[1]) * UNIT_MS[match[2]!]!;
    rest = rest.slice(match[0].length);
  }
  return Math.round(total);
}
