/**
 * Inbound exemptions for the UDP datagrams that carry ESP (NAT-T), added by the agent.
 *
 * The carrier datagrams are traffic between the two SA endpoints too, and the kernel checks
 * them against the inbound policies before it takes the ESP out: an `in` policy that demands
 * ESP for all traffic from the peer (the usual transport-mode setup) drops every one of them
 * (XfrmInTmplMismatch). IKE daemons exempt them with per-socket bypass policies; the agent, which
 * holds no per-socket policy, adds one allow policy per inbound ESP-in-UDP SA instead:
 *
 *   dir in, src SA.source/32 (or /128), dst SA.destination, proto udp, dport the SA's
 *   encapsulation destination port, any source port (a NAT may change it), no templates,
 *   priority EXEMPTION_PRIORITY
 *
 * The ESP inside is then decrypted and checked against the inbound policies like any other.
 * The exemption belongs to the SA's resource (it comes and goes with it). Pure.
 */
import type { IpsecResource } from '../crd/types.js';
import { buildSecurityPolicy } from '../model/build.js';
import { resourceName } from '../model/ordering.js';
import { inboundStateKeys, type DesiredEntry, type DesiredTables } from '../plan/planner.js';
import { policyKey, stateKey } from '../plan/identity.js';
import type { SecurityPolicy } from '../xfrm/types.js';

/** Better (lower) than any priority a user policy is likely to use; the exemption admits only UDP to the encapsulation port. */
export const EXEMPTION_PRIORITY = 1;

/** On a SecurityAssociation, `"false"` keeps the agent from adding its exemption (you write your own, or need none). */
export const EXEMPTION_ANNOTATION = 'ipsec.xfrm.io/udp-encap-exemption';

/** The resources (`SecurityAssociation/name`) that opted out through EXEMPTION_ANNOTATION. */
export function exemptionOptOuts(resources: readonly IpsecResource[]): Set<string> {
  return new Set(resources.filter((resource) => resource.metadata.annotations?.[EXEMPTION_ANNOTATION] === 'false').map((resource) => resourceName(resource)));
}

export function withEncapExemptions(tables: DesiredTables, options: { skip?: ReadonlySet<string> } = {}): DesiredTables {
  const inbound = inboundStateKeys({ desired: tables, observed: { states: [], policies: [] } });
  const taken = new Set(tables.policies.map((desired) => policyKey(desired.entry.id)));
  const added: DesiredEntry<SecurityPolicy>[] = [];
  for (const { resource, entry: sa } of tables.states) {
    const encap = sa.encapsulation;
    if (!encap || encap.type === 'espintcp' || !inbound.has(stateKey(sa.id)) || options.skip?.has(resource)) continue;
    const host = sa.id.family === 'inet6' ? 128 : 32;
    const built = buildSecurityPolicy(
      {
        direction: 'in',
        priority: EXEMPTION_PRIORITY,
        selector: { source: `${sa.source}/${host}`, destination: `${sa.id.destination}/${host}`, protocol: 'udp', destinationPort: encap.destinationPort },
      },
      { keys: { lookup: () => 'missing-secret' }, resolveDevice: () => undefined },
    );
    if (!built.ok) continue; // cannot happen for addresses the kernel accepted; never worth failing the SA over
    const key = policyKey(built.value.id);
    // Someone already asks for exactly this policy (a hand-written exemption, or a second SA
    // between the same endpoints): one is enough.
    if (taken.has(key)) continue;
    taken.add(key);
    added.push({ resource, entry: built.value });
  }
  return added.length === 0 ? tables : { ...tables, policies: [...tables.policies, ...added] };
}
