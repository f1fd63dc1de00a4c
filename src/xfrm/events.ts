/**
 * Multicast notifications of the XFRM netlink socket, decoded into a typed union.
 *
 * The kernel sends a notification for every change with the nlmsg_pid and nlmsg_seq of the
 * request that caused it (0/0 for the kernel's own changes, such as expiry), so a listener can
 * tell its own changes (origin.portId === its request socket's portId) from everyone else's.
 * Groups: XFRMNLGRP_SA (NEWSA/UPDSA/DELSA/FLUSHSA), XFRMNLGRP_POLICY (NEWPOLICY/UPDPOLICY/
 * DELPOLICY/FLUSHPOLICY, and GETDEFAULT when the default policy changes), XFRMNLGRP_EXPIRE
 * (EXPIRE, POLEXPIRE), XFRMNLGRP_ACQUIRE (ACQUIRE), XFRMNLGRP_AEVENTS (NEWAE, ./aevent-codec.ts).
 */
import { AttributeDecoder } from '../netlink/attributes.js';
import { NetlinkCodecError, UnsupportedEntryError } from '../netlink/codec-error.js';
import type { NetlinkMessage } from '../netlink/message.js';
import * as K from './abi/constants.js';
import {
  xfrm_user_acquire,
  xfrm_user_expire,
  xfrm_user_polexpire,
  xfrm_userpolicy_default,
  xfrm_userpolicy_id,
  xfrm_userpolicy_info,
  xfrm_usersa_flush,
  xfrm_usersa_id,
  xfrm_usersa_info,
} from './abi/structs.js';
import { formatAddress } from './address.js';
import { indexAttributes, splitBody, structAttribute } from './body.js';
import { FAMILY, POLICY_TYPE, PROTOCOL } from './enums.js';
import { decodePolicyFrom, policyDirection } from './policy-codec.js';
import { decodeStateFrom, decodeStateHead } from './state-codec.js';
import type { ExpiredState, PolicyType, SecurityAssociation, SecurityPolicy, Selector, XfrmProtocol } from './types.js';
import { decodeSelector } from './selector.js';
import { decodeSequenceReport, type SequenceReport } from './aevent-codec.js';

/** Who caused a change: the requester's netlink port id and request sequence (0/0: the kernel). */
export interface EventOrigin {
  readonly portId: number;
  readonly sequence: number;
}

export type DefaultPolicyAction = 'unspecified' | 'block' | 'accept';

export type XfrmEvent =
  | { readonly kind: 'state-added'; readonly state: SecurityAssociation; readonly origin: EventOrigin }
  | { readonly kind: 'state-updated'; readonly state: SecurityAssociation; readonly origin: EventOrigin }
  | { readonly kind: 'state-deleted'; readonly state: SecurityAssociation; readonly origin: EventOrigin }
  /** XFRM_MSG_FLUSHSA: every SA of `protocol` ('any': esp, ah and ipcomp) is gone. */
  | { readonly kind: 'states-flushed'; readonly protocol: XfrmProtocol | 'any'; readonly origin: EventOrigin }
  /**
   * XFRM_MSG_EXPIRE: a soft limit was reached (renew), or a hard one (the SA is deleted). The
   * kernel sends the SA without its algorithms (./types.ts ExpiredState).
   */
  | { readonly kind: 'state-expired'; readonly state: ExpiredState; readonly hard: boolean; readonly origin: EventOrigin }
  | { readonly kind: 'policy-added'; readonly policy: SecurityPolicy; readonly origin: EventOrigin }
  | { readonly kind: 'policy-updated'; readonly policy: SecurityPolicy; readonly origin: EventOrigin }
  | { readonly kind: 'policy-deleted'; readonly policy: SecurityPolicy; readonly origin: EventOrigin }
  /** XFRM_MSG_FLUSHPOLICY: every policy of `type` is gone. */
  | { readonly kind: 'policies-flushed'; readonly type: PolicyType; readonly origin: EventOrigin }
  | { readonly kind: 'policy-expired'; readonly policy: SecurityPolicy; readonly hard: boolean; readonly origin: EventOrigin }
  /**
   * XFRM_MSG_ACQUIRE: outbound traffic matched `policy` but the SA for one of its templates is
   * missing; a key manager is expected to negotiate one. `sequence` identifies the acquire.
   */
  | {
      readonly kind: 'acquire';
      readonly protocol: XfrmProtocol;
      readonly source: string;
      readonly destination: string;
      readonly selector: Selector;
      readonly policy: SecurityPolicy;
      readonly sequence: number;
      readonly origin: EventOrigin;
    }
  /** XFRM_MSG_GETDEFAULT multicast: the default action for traffic without a policy changed. */
  | {
      readonly kind: 'default-policy-changed';
      readonly in: DefaultPolicyAction;
      readonly forward: DefaultPolicyAction;
      readonly out: DefaultPolicyAction;
      readonly origin: EventOrigin;
    }
  /** XFRM_MSG_NEWAE (group AEVENTS): an SA's replay state, at a threshold crossing or on its timer. */
  | { readonly kind: 'sequence-reported'; readonly report: SequenceReport; readonly origin: EventOrigin }
  /**
   * Events were lost (the receive buffer overflowed: ENOBUFS) or one could not be decoded: the
   * listener's picture may be stale. Resynchronise from a dump.
   */
  | { readonly kind: 'overrun'; readonly reason: 'ENOBUFS' | 'undecodable'; readonly detail?: string };

/** Whether `event` was caused by a request sent from the socket with port id `portId`. */
export function isOwnEvent(event: XfrmEvent, portId: number): boolean {
  return 'origin' in event && portId !== 0 && event.origin.portId === portId;
}

function defaultAction(value: number): DefaultPolicyAction {
  if (value === K.XFRM_USERPOLICY_BLOCK) return 'block';
  if (value === K.XFRM_USERPOLICY_ACCEPT) return 'accept';
  return 'unspecified';
}

function stateWithInfoAttribute(message: NetlinkMessage, where: string): SecurityAssociation {
  // DELSA: struct xfrm_usersa_id, then XFRMA_SA (the full xfrm_usersa_info) and the SA's attributes.
  const { attributes } = splitBody(message.payload, xfrm_usersa_id, where);
  const info = structAttribute(attributes, K.XFRMA_SA, xfrm_usersa_info, where);
  if (!info) throw new NetlinkCodecError(where, 'XFRM_MSG_DELSA without XFRMA_SA');
  return decodeStateFrom(info, attributes, where);
}

function policyWithInfoAttribute(message: NetlinkMessage, where: string): SecurityPolicy {
  // DELPOLICY: struct xfrm_userpolicy_id, then XFRMA_POLICY (the full xfrm_userpolicy_info) and the policy's attributes.
  const { head, attributes } = splitBody(message.payload, xfrm_userpolicy_id, where);
  policyDirection(head.dir, where); // per-socket policies (dir 3..5) are not part of the model
  const info = structAttribute(attributes, K.XFRMA_POLICY, xfrm_userpolicy_info, where);
  if (!info) throw new NetlinkCodecError(where, 'XFRM_MSG_DELPOLICY without XFRMA_POLICY');
  return decodePolicyFrom(info, attributes, where);
}

/**
 * Decodes one notification. Returns undefined for messages that are not XFRM events this
 * union describes (REPORT, MIGRATE, MAPPING) and for well-formed entries outside the
 * model (per-socket policies, Mobile IPv6 SAs). Throws NetlinkCodecError for garbled ones.
 */
export function decodeEvent(message: NetlinkMessage): XfrmEvent | undefined {
  const origin: EventOrigin = { portId: message.portId, sequence: message.sequence };
  const where = `${K.xfrmMessageName(message.type)} event (port ${message.portId}, seq ${message.sequence})`;
  try {
    switch (message.type) {
      case K.XFRM_MSG_NEWSA:
      case K.XFRM_MSG_UPDSA: {
        const { head, attributes } = splitBody(message.payload, xfrm_usersa_info, where);
        const state = decodeStateFrom(head, attributes, where);
        return message.type === K.XFRM_MSG_NEWSA ? { kind: 'state-added', state, origin } : { kind: 'state-updated', state, origin };
      }
      case K.XFRM_MSG_DELSA:
        return { kind: 'state-deleted', state: stateWithInfoAttribute(message, where), origin };
      case K.XFRM_MSG_FLUSHSA: {
        if (message.payload.length < xfrm_usersa_flush.size) throw new NetlinkCodecError(where, 'empty payload, struct xfrm_usersa_flush needs 1 byte');
        const proto = xfrm_usersa_flush.read(message.payload, 0).proto;
        return { kind: 'states-flushed', protocol: PROTOCOL.lookup(proto) ?? 'any', origin };
      }
      case K.XFRM_MSG_EXPIRE: {
        const { head, attributes } = splitBody(message.payload, xfrm_user_expire, where);
        // Only the mark and if_id follow xfrm_user_expire (build_expire): no algorithms, no keys.
        return { kind: 'state-expired', state: decodeStateHead(head.state, attributes, where), hard: head.hard !== 0, origin };
      }
      case K.XFRM_MSG_NEWPOLICY:
      case K.XFRM_MSG_UPDPOLICY: {
        const { head, attributes } = splitBody(message.payload, xfrm_userpolicy_info, where);
        const policy = decodePolicyFrom(head, attributes, where);
        return message.type === K.XFRM_MSG_NEWPOLICY ? { kind: 'policy-added', policy, origin } : { kind: 'policy-updated', policy, origin };
      }
      case K.XFRM_MSG_DELPOLICY:
        return { kind: 'policy-deleted', policy: policyWithInfoAttribute(message, where), origin };
      case K.XFRM_MSG_FLUSHPOLICY: {
        // No fixed struct: only XFRMA_POLICY_TYPE, and only from kernels with sub-policies.
        const decoder = new AttributeDecoder(message.payload, where, K.xfrmAttributeName);
        decoder.finish();
        const typeAttribute = indexAttributes(decoder.all).get(K.XFRMA_POLICY_TYPE);
        const type = typeAttribute && typeAttribute.payload.length > 0 ? POLICY_TYPE.lookup(typeAttribute.payload.readUInt8(0)) : 'main';
        if (!type) throw new UnsupportedEntryError(where, 'unknown policy type');
        return { kind: 'policies-flushed', type, origin };
      }
      case K.XFRM_MSG_POLEXPIRE: {
        const { head, attributes } = splitBody(message.payload, xfrm_user_polexpire, where);
        return { kind: 'policy-expired', policy: decodePolicyFrom(head.pol, attributes, where), hard: head.hard !== 0, origin };
      }
      case K.XFRM_MSG_ACQUIRE: {
        const { head, attributes } = splitBody(message.payload, xfrm_user_acquire, where);
        const policy = decodePolicyFrom(head.policy, attributes, where);
        const protocol = PROTOCOL.lookup(head.id.proto);
        if (!protocol) throw new UnsupportedEntryError(where, `protocol ${head.id.proto}`);
        // The acquire carries no family for its addresses: they are in the family of the
        // template being acquired (the first with this protocol), else the traffic's.
        const family =
          policy.templates.find((template) => template.protocol === protocol)?.family ??
          FAMILY.lookup(head.sel.family) ??
          policy.id.selector.family ??
          'inet';
        return {
          kind: 'acquire',
          protocol,
          source: formatAddress(family, head.saddr),
          destination: formatAddress(family, head.id.daddr),
          selector: decodeSelector(head.sel, where),
          policy,
          sequence: head.seq,
          origin,
        };
      }
      case K.XFRM_MSG_NEWAE:
        return { kind: 'sequence-reported', report: decodeSequenceReport(message.payload, where), origin };
      case K.XFRM_MSG_GETDEFAULT: {
        if (message.payload.length < xfrm_userpolicy_default.size) {
          throw new NetlinkCodecError(where, `${message.payload.length}-byte payload, struct xfrm_userpolicy_default needs 3`);
        }
        const raw = xfrm_userpolicy_default.read(message.payload, 0);
        return { kind: 'default-policy-changed', in: defaultAction(raw.in), forward: defaultAction(raw.fwd), out: defaultAction(raw.out), origin };
      }
      default:
        return undefined;
    }
  } catch (error) {
    if (error instanceof UnsupportedEntryError) return undefined;
    throw error;
  }
}
