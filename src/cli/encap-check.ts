/**
 * What `apply` adds and says for ESP-in-UDP (NAT-T) SAs, the same way the agent does:
 * - the inbound exemptions for the carrier datagrams (../agent/encap-exemptions.ts), unless an
 *   SA opts out with the `ipsec.xfrm.io/udp-encap-exemption: "false"` annotation;
 * - after applying, a warning for each SA that receives on an address and port of this
 *   namespace that no socket holds: the kernel drops what arrives there until some process
 *   holds a UDP_ENCAP socket on it (`ipsec-operator hold-encap`, an IKE daemon, or the agent).
 */
import type { DesiredResult } from '../model/desired.js';
import type { ManifestSet } from '../model/manifests.js';
import type { DesiredTables } from '../plan/planner.js';
import { exemptionOptOuts, withEncapExemptions } from '../agent/encap-exemptions.js';
import { ESPINTCP_REFUSAL, socketKey } from '../agent/encap-sockets.js';
import { UdpEncapSocket, type UdpEncapsulation } from '../xfrm/udp-encap-socket.js';

/** The desired tables with the agent's carrier exemptions added. */
export function withCliEncapExemptions(desired: DesiredResult, manifests: Pick<ManifestSet, 'securityAssociations'>): DesiredResult {
  const optOuts = exemptionOptOuts(manifests.securityAssociations.map(({ resource }) => resource));
  return { ...desired, tables: withEncapExemptions(desired.tables, { skip: optOuts }) };
}

type Probe = (request: { address: string; port: number; encapsulation: UdpEncapsulation }) => 'free' | 'held' | 'not-local' | string;

/** Binds and closes at once: free (nobody holds it), held (someone does), not-local, or the error. */
function probeWith(netns: string | undefined): Probe {
  return (request) => {
    try {
      UdpEncapSocket.open({ ...request, ...(netns === undefined ? {} : { netns }) }).close();
      return 'free';
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code === 'EADDRINUSE') return 'held';
      if (code === 'EADDRNOTAVAIL') return 'not-local';
      return error instanceof Error ? error.message : String(error);
    }
  };
}

/** One line per SA whose ESP-in-UDP would not be received here as things stand. */
export function encapSocketWarnings(tables: Pick<DesiredTables, 'states'>, netns: string | undefined, probe: Probe = probeWith(netns)): string[] {
  const lines: string[] = [];
  const seen = new Map<string, string>();
  for (const { resource, entry } of tables.states) {
    const encap = entry.encapsulation;
    if (!encap) continue;
    const address = entry.id.destination;
    const where = address.includes(':') ? `[${address}]:${encap.destinationPort}` : `${address}:${encap.destinationPort}`;
    if (encap.type === 'espintcp') {
      lines.push(`warning: ${resource}: ${ESPINTCP_REFUSAL}`);
      continue;
    }
    const key = socketKey(address, encap.destinationPort);
    const outcome = seen.get(key) ?? probe({ address, port: encap.destinationPort, encapsulation: encap.type });
    seen.set(key, outcome);
    if (outcome === 'held' || outcome === 'not-local') continue;
    lines.push(
      outcome === 'free'
        ? `warning: ${resource} receives ESP in UDP on ${where}, and no socket holds that port: the kernel drops what arrives there until a process holds a UDP_ENCAP socket on it (\`ipsec-operator hold-encap -f ...\` with these manifests, an IKE daemon, or the ipsec-operator agent)`
        : `warning: ${resource}: could not check the UDP encapsulation socket on ${where}: ${outcome}`,
    );
  }
  return lines;
}
