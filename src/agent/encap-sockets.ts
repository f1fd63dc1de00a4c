/**
 * The UDP encapsulation sockets a node needs for its ESP-in-UDP SAs (NAT-T, RFC 3948).
 *
 * Linux decapsulates ESP-in-UDP only for datagrams that arrive on a UDP socket with UDP_ENCAP
 * set (../xfrm/udp-encap-socket.ts). So for every owned SA with `espinudp` or
 * `espinudp-nonike` encapsulation, the node that receives with it must hold a socket on the
 * SA's destination address and its encapsulation destination port. Which node that is, the
 * kernel says: binding an address the namespace does not have fails with EADDRNOTAVAIL, and the
 * SA is then one this node only sends with (sending needs no socket).
 *
 * A port another process already holds (an IKE daemon; binding fails with EADDRINUSE) is
 * reported, never fought over: that process's socket does the job if it set UDP_ENCAP (an IKE
 * daemon does), which cannot be checked from outside. Each sync tries again, so the agent takes
 * the port once the other process lets go of it.
 *
 * Split as elsewhere: `wantedEncapSockets` is pure (owned SAs in, sockets out), and
 * `EncapSocketManager` does the opening and closing through an injected opener.
 */
import { Gauge, type Registry } from 'prom-client';

import type { Logger } from '../kube/logger.js';
import type { Runnable } from '../kube/runnables.js';
import type { EncapType, SecurityAssociation } from '../xfrm/types.js';
import { UdpEncapSocket, type UdpEncapsulation } from '../xfrm/udp-encap-socket.js';

/** One socket to hold: an address and port of this node, and how the kernel must read it. */
export interface WantedEncapSocket {
  readonly address: string;
  readonly port: number;
  readonly encapsulation: UdpEncapsulation;
  /** The resources whose SAs receive on it (sorted). */
  readonly resources: readonly string[];
}

/** An SA whose encapsulation the agent cannot serve with a socket. */
export interface EncapProblem {
  readonly resource: string;
  readonly address: string;
  readonly port: number;
  readonly encapsulation: EncapType;
  readonly reason: 'Unsupported' | 'Conflict';
  readonly message: string;
}

export interface OwnedState {
  /** The resource that asked for the SA (`SecurityAssociation/name`). */
  readonly resource: string;
  readonly sa: SecurityAssociation;
}

export const ESPINTCP_REFUSAL =
  'espintcp (ESP in TCP, RFC 8229) is not supported: the kernel sends and receives it only over a TCP connection to the peer ' +
  'that user space opened and switched to the espintcp ULP, which ipsec-operator does not do; use espinudp';

/** SAs the agent refuses to install, with the reason (espintcp: nothing would carry them). */
export function refusedEncapsulations(states: readonly { resource: string; entry: SecurityAssociation }[]): Map<string, string> {
  const refused = new Map<string, string>();
  for (const { resource, entry } of states) if (entry.encapsulation?.type === 'espintcp') refused.set(resource, ESPINTCP_REFUSAL);
  return refused;
}

/** The sockets the owned SAs need, one per (address, port); first come (resource age order) first served. */
export function wantedEncapSockets(owned: readonly OwnedState[]): { wanted: WantedEncapSocket[]; problems: EncapProblem[] } {
  const byKey = new Map<string, { address: string; port: number; encapsulation: UdpEncapsulation; resources: Set<string> }>();
  const problems: EncapProblem[] = [];
  for (const { resource, sa } of owned) {
    const encap = sa.encapsulation;
    if (!encap) continue;
    const address = sa.id.destination;
    const port = encap.destinationPort;
    if (encap.type === 'espintcp') {
      problems.push({ resource, address, port, encapsulation: encap.type, reason: 'Unsupported', message: ESPINTCP_REFUSAL });
      continue;
    }
    const key = socketKey(address, port);
    const existing = byKey.get(key);
    if (!existing) {
      byKey.set(key, { address, port, encapsulation: encap.type, resources: new Set([resource]) });
    } else if (existing.encapsulation === encap.type) {
      existing.resources.add(resource);
    } else {
      // One socket has one UDP_ENCAP type: the kernel would read one of the two SAs' packets wrong.
      problems.push({
        resource,
        address,
        port,
        encapsulation: encap.type,
        reason: 'Conflict',
        message: `${endpoint(address, port)} already carries ${existing.encapsulation} for ${[...existing.resources].join(', ')}; this SA asks for ${encap.type} on the same port`,
      });
    }
  }
  const wanted = [...byKey.values()]
    .map((entry) => ({ address: entry.address, port: entry.port, encapsulation: entry.encapsulation, resources: [...entry.resources].sort() }))
    .sort(compareSockets);
  return { wanted, problems };
}

/**
 * - `Held`: the agent holds the socket; the kernel decapsulates on it.
 * - `HeldElsewhere`: another process holds the port (EADDRINUSE); it receives for these SAs if
 *   it set UDP_ENCAP, which an IKE daemon does.
 * - `NotLocal`: the address is not this node's (EADDRNOTAVAIL): it only sends with these SAs.
 * - `Failed`: any other refusal (message says which).
 */
export type EncapSocketState = 'Held' | 'HeldElsewhere' | 'NotLocal' | 'Failed';

export interface EncapSocketStatus {
  readonly address: string;
  readonly port: number;
  readonly encapsulation: UdpEncapsulation;
  readonly state: EncapSocketState;
  readonly message: string;
  readonly resources: readonly string[];
}

export interface EncapSocketHandle {
  close(): void;
}

/** Opens and binds a socket, or throws an error with an errno `code` (UdpEncapSocketError). */
export type OpenEncapSocket = (request: { address: string; port: number; encapsulation: UdpEncapsulation }) => EncapSocketHandle;

export class EncapSocketManager {
  readonly #open: OpenEncapSocket;
  readonly #held = new Map<string, { encapsulation: UdpEncapsulation; handle: EncapSocketHandle }>();

  constructor(open: OpenEncapSocket) {
    this.#open = open;
  }

  /** Keys ("address|port") of the sockets held now. */
  held(): string[] {
    return [...this.#held.keys()].sort();
  }

  /**
   * Closes the sockets nobody needs any more (and those whose encapsulation changed), opens the
   * missing ones, and says where each wanted socket stands. Never throws for a socket.
   */
  sync(wanted: readonly WantedEncapSocket[]): EncapSocketStatus[] {
    const wantedByKey = new Map(wanted.map((socket) => [socketKey(socket.address, socket.port), socket]));
    for (const [key, held] of this.#held) {
      if (wantedByKey.get(key)?.encapsulation === held.encapsulation) continue;
      held.handle.close();
      this.#held.delete(key);
    }
    return [...wantedByKey.entries()].map(([key, socket]) => this.#ensure(key, socket)).sort(compareSockets);
  }

  /** Closes every socket (the agent stops; the kernel stops decapsulating on those ports). */
  closeAll(): void {
    for (const held of this.#held.values()) held.handle.close();
    this.#held.clear();
  }

  #ensure(key: string, socket: WantedEncapSocket): EncapSocketStatus {
    const base = { address: socket.address, port: socket.port, encapsulation: socket.encapsulation, resources: socket.resources };
    const where = endpoint(socket.address, socket.port);
    if (this.#held.has(key)) return { ...base, state: 'Held', message: `held by ipsec-operator (${socket.encapsulation})` };
    try {
      const handle = this.#open({ address: socket.address, port: socket.port, encapsulation: socket.encapsulation });
      this.#held.set(key, { encapsulation: socket.encapsulation, handle });
      return { ...base, state: 'Held', message: `held by ipsec-operator (${socket.encapsulation})` };
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code === 'EADDRINUSE') {
        return {
          ...base,
          state: 'HeldElsewhere',
          message: `another process holds ${where}; the kernel decapsulates these SAs only if that socket has UDP_ENCAP set (an IKE daemon's does). The agent takes the port when it is released`,
        };
      }
      if (code === 'EADDRNOTAVAIL') return { ...base, state: 'NotLocal', message: `${socket.address} is not an address of this node: it only sends with these SAs` };
      return { ...base, state: 'Failed', message: error instanceof Error ? error.message : String(error) };
    }
  }
}

/** `ipsec_operator_encap_sockets{state}`: the wanted sockets by state, plus `Unsupported` SAs (espintcp). */
export class EncapSocketMetrics {
  readonly #sockets: Gauge<'state'>;

  constructor(registry: Registry) {
    this.#sockets = new Gauge({
      name: 'ipsec_operator_encap_sockets',
      help: 'UDP encapsulation sockets the node needs for its ESP-in-UDP SAs, by state (Held, HeldElsewhere, NotLocal, Failed), and Unsupported SAs (espintcp)',
      labelNames: ['state'],
      registers: [registry],
    });
    for (const state of ['Held', 'HeldElsewhere', 'NotLocal', 'Failed', 'Unsupported']) this.#sockets.set({ state }, 0);
  }

  record(statuses: readonly EncapSocketStatus[], problems: readonly EncapProblem[]): void {
    for (const state of ['Held', 'HeldElsewhere', 'NotLocal', 'Failed'] as const) {
      this.#sockets.set({ state }, statuses.filter((status) => status.state === state).length);
    }
    this.#sockets.set({ state: 'Unsupported' }, problems.filter((problem) => problem.reason === 'Unsupported').length);
  }
}

export function socketKey(address: string, port: number): string {
  return `${address}|${port}`;
}

function endpoint(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

function compareSockets(a: { address: string; port: number }, b: { address: string; port: number }): number {
  return a.address === b.address ? a.port - b.port : a.address < b.address ? -1 : 1;
}

/** One line of IpsecNodeState `status.encapsulationSockets`. */
export interface EncapSocketReport {
  readonly address: string;
  readonly port: number;
  readonly encapsulation: EncapType;
  readonly state: EncapSocketState | EncapProblem['reason'];
  readonly message: string;
  /** Resource names without the kind (they are all SecurityAssociations). */
  readonly resources: readonly string[];
}

/**
 * What the agent runs: after each reconcile, the owned SAs of the kernel dump decide the
 * sockets; the result goes to the node state, the metric and (on changes) the log.
 */
export class AgentEncapSockets {
  readonly #manager: EncapSocketManager;
  readonly #metrics: EncapSocketMetrics;
  readonly #logger: Logger | undefined;
  #reports: EncapSocketReport[] = [];

  constructor(options: { netns: string | undefined; registry: Registry; logger?: Logger; open?: OpenEncapSocket }) {
    const netns = options.netns;
    this.#manager = new EncapSocketManager(options.open ?? ((request) => UdpEncapSocket.open({ ...request, ...(netns === undefined ? {} : { netns }) })));
    this.#metrics = new EncapSocketMetrics(options.registry);
    this.#logger = options.logger;
  }

  /** `ownerOf`: the resource that owns an SA of the dump, or undefined for foreign SAs (not ours to serve). */
  sync(states: readonly SecurityAssociation[], ownerOf: (sa: SecurityAssociation) => string | undefined): readonly EncapSocketReport[] {
    const owned: OwnedState[] = [];
    for (const sa of states) {
      const resource = sa.encapsulation ? ownerOf(sa) : undefined;
      if (resource !== undefined) owned.push({ resource, sa });
    }
    owned.sort((a, b) => (a.resource < b.resource ? -1 : a.resource > b.resource ? 1 : 0));
    const { wanted, problems } = wantedEncapSockets(owned);
    const statuses = this.#manager.sync(wanted);
    this.#metrics.record(statuses, problems);
    const reports: EncapSocketReport[] = [
      ...statuses.map((status) => ({ ...status, resources: status.resources.map(bareName) })),
      ...problems.map((problem) => ({
        address: problem.address,
        port: problem.port,
        encapsulation: problem.encapsulation,
        state: problem.reason,
        message: problem.message,
        resources: [bareName(problem.resource)],
      })),
    ];
    this.#logChanges(reports);
    this.#reports = reports;
    return reports;
  }

  /** The last sync's reports, for IpsecNodeState. */
  reports(): readonly EncapSocketReport[] {
    return this.#reports;
  }

  closeAll(): void {
    this.#manager.closeAll();
  }

  #logChanges(reports: readonly EncapSocketReport[]): void {
    if (!this.#logger) return;
    const before = new Map(this.#reports.map((report) => [`${report.address}|${report.port}|${report.resources.join(',')}`, report.state]));
    for (const report of reports) {
      if (before.get(`${report.address}|${report.port}|${report.resources.join(',')}`) === report.state || report.state === 'NotLocal') continue;
      const fields = { address: report.address, port: report.port, encapsulation: report.encapsulation, state: report.state, resources: report.resources.join(',') };
      if (report.state === 'Held') this.#logger.info('holding a UDP encapsulation socket', fields);
      else this.#logger.warn(`UDP encapsulation socket: ${report.message}`, fields);
    }
  }
}

function bareName(resource: string): string {
  return resource.startsWith('SecurityAssociation/') ? resource.slice('SecurityAssociation/'.length) : resource;
}

/**
 * The sockets as a component of the agent: nothing to open at start (each reconcile decides
 * which sockets the owned SAs need); every socket is closed on stop, after the workers have
 * stopped syncing them.
 */
export function encapSocketsRunnable(sockets: Pick<AgentEncapSockets, 'closeAll'>): Runnable {
  return {
    name: 'encapsulation sockets',
    start: () => undefined,
    stop: () => sockets.closeAll(),
  };
}
