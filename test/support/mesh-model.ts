/**
 * A model checker for the mesh's rotation state machine (src/mesh/rotation.ts).
 *
 * A world is a few nodes, each with its persisted local state, its kernel (inbound SAs by SPI,
 * the SA each outbound policy pins), its published advertisement and its own, possibly stale,
 * view of every other node's advertisement. Every step is one of the things that happen
 * independently in a cluster: an agent converges (decide + apply), an agent publishes what its
 * kernel holds, the API server delivers one node's advertisement to one other node (watches
 * deliver in order, at any delay), a node starts a rotation, a packet that was in flight on an
 * SA arrives, a node reboots (its kernel empty, a new boot id), its agent restarts with a new
 * boot id while the kernel keeps its SAs, a node joins or leaves. The checker explores every reachable world by
 * breadth-first search (so every interleaving of these steps) and checks, after each step:
 *
 * - no node sends on an SA the receiver does not hold with the same key (sender, receiver,
 *   generations, boot ids, public keys) — the receiver drops such packets (XfrmInNoStates);
 * - no packet in flight meets a receiver that removed its SA;
 * - no SPI names two keys on one receiver, no quarantined SPI is allocated again, and no
 *   outbound SA is created twice (its counter would restart under the same key): no key is
 *   installed outbound a second time, ever, and each new outbound SA of a link is newer than
 *   all before it under the same pair of boot ids;
 * - no clear-text gap where the old pair still works: a member stops sending encrypted to a
 *   member (drops its outbound SA without a successor) only when the receiver no longer holds
 *   that SA.
 *
 * SA keys are symbolic here (the name of everything the derivation binds): the derivation
 * itself is tested against the RFC vectors elsewhere; this checks the protocol.
 */
import { createHash } from 'node:crypto';

import { advertise, decide, linkKey, startRotation, type RotationInput } from '../../src/mesh/rotation.js';
import { EMPTY_LOCAL_STATE, type InboundAllocation, type MeshAdvertisement, type MeshLocalState } from '../../src/mesh/types.js';

export interface ModelNode {
  readonly name: string;
  readonly address: string;
  /** The boot id's number: a reboot and an agent restarted with another boot id both change it. */
  boot: number;
  /** The boot number the kernel's contents date from: only a reboot empties it (and sets this to the new boot). */
  kernelSince: number;
  selected: boolean;
  /** Leaving (rule 7): still publishing, installing nothing new; `selected` goes false once it departed. */
  leaving: boolean;
  local: MeshLocalState;
  /** SPI -> the SA's symbolic key. */
  kernelIn: Map<number, string>;
  /** linkKey -> what the outbound policy pins. */
  kernelOut: Map<string, OutboundSa>;
  /** Per link, the newest (own boot, receiver boot, receiver generation, own generation) sent on since the kernel started. */
  highWater: Map<string, { fromBoot: string; toBoot: string; toGeneration: number; generation: number }>;
  /** Every outbound key this node ever installed (keys name boot ids: none is legitimately installed twice). */
  sent: Set<string>;
  /** Interned advertisement id (see `ads`), -1 for none. */
  ad: number;
  /** This node's view of every node's advertisement, by node index (-1: none seen). */
  views: number[];
  rotationsLeft: number;
  rebootsLeft: number;
  /** Agent restarts with a new boot id, the kernel kept. */
  restartsLeft: number;
  joinsLeft: number;
  leavesLeft: number;
}

export interface OutboundSa {
  readonly to: string;
  readonly toBoot: string;
  readonly spi: number;
  readonly key: string;
}

export interface World {
  granularity: 'steps' | 'passes';
  nodes: ModelNode[];
  /** `${receiver}|${receiver boot id}|${spi}` of packets still in flight on an SA the sender left. */
  inflight: Set<string>;
}

export interface Budget {
  /**
   * `steps` (default): converging and publishing are separate steps, so anything may happen
   * between an agent's apply and its publication (a slow status write, a SIGKILL).
   * `passes`: one step converges and publishes, as an agent's reconcile does when it is not killed.
   */
  readonly granularity?: 'steps' | 'passes';
  readonly rotations?: Readonly<Record<string, number>>;
  /** Reboots: the kernel empty, a new boot id. */
  readonly reboots?: Readonly<Record<string, number>>;
  /** The agent restarted with a new boot id while the kernel keeps its SAs (the churn test's --boot-id). */
  readonly restarts?: Readonly<Record<string, number>>;
  /** Nodes that start outside the mesh and may join once. */
  readonly joins?: readonly string[];
  /** Nodes that may leave once. */
  readonly leaves?: readonly string[];
}

const MESH_UID = 'model-mesh';

// Advertisements are immutable; interning them makes worlds cheap to copy and compare.
const adTable: MeshAdvertisement[] = [];
const adIds = new Map<string, number>();
function intern(ad: MeshAdvertisement): number {
  const text = JSON.stringify(ad);
  let id = adIds.get(text);
  if (id === undefined) {
    id = adTable.length;
    adTable.push(ad);
    adIds.set(text, id);
  }
  return id;
}
const adOf = (id: number): MeshAdvertisement | undefined => (id < 0 ? undefined : adTable[id]);
const bootId = (node: ModelNode): string => `${node.name}-boot${node.boot}`;
/** Whether the receiver's kernel still dates from the boot id an SA to it names (then it may hold the SA). */
const kernelOf = (receiver: ModelNode, toBootId: string): boolean => Number(/-boot(\d+)$/.exec(toBootId)![1]) >= receiver.kernelSince;
const publicKey = (node: string, generation: number): string => `${node}#${generation}`;

export function inboundKey(receiver: ModelNode, a: InboundAllocation): string {
  return `${a.from}@${a.fromGeneration}/${a.fromBootId}/${a.fromPublicKey}>${receiver.name}@${a.generation}/${a.bootId}/${publicKey(receiver.name, a.generation)}|${a.family}`;
}

function input(world: World, node: ModelNode): RotationInput {
  const peers = new Map<string, MeshAdvertisement>();
  if (node.selected) {
    node.views.forEach((id, index) => {
      const ad = adOf(id);
      if (ad && index !== world.nodes.indexOf(node)) peers.set(world.nodes[index]!.name, ad);
    });
  }
  return {
    meshUid: MESH_UID,
    self: { node: node.name, bootId: bootId(node), addresses: { inet: node.address }, podCIDRs: [] },
    local: node.local,
    peers,
    previous: adOf(node.ad),
    installed: { inbound: new Set(node.kernelIn.keys()), outbound: new Map([...node.kernelOut].map(([link, out]) => [link, out.spi])) },
    idle: (a) => isIdle(world, node, a.spi),
    publicKeyOf: (generation) => publicKey(node.name, generation),
    now: 0,
    backstopMs: Number.POSITIVE_INFINITY,
    leaving: node.leaving,
  };
}

/** Ground truth for the agent's "no packet for a grace period": nobody sends on it, nothing in flight. */
function isIdle(world: World, receiver: ModelNode, spi: number): boolean {
  for (const packet of world.inflight) {
    const [name, boot, inflightSpi] = packet.split('|') as [string, string, string];
    if (name === receiver.name && Number(inflightSpi) === spi && kernelOf(receiver, boot)) return false;
  }
  return !world.nodes.some((s) => [...s.kernelOut.values()].some((o) => o.to === receiver.name && kernelOf(receiver, o.toBoot) && o.spi === spi));
}

export function initialWorld(nodes: readonly { name: string; address: string }[], budget: Budget): World {
  const joins = new Set(budget.joins ?? []);
  return {
    granularity: budget.granularity ?? 'steps',
    nodes: nodes.map(({ name, address }) => {
      const joining = joins.has(name);
      const started = startRotation(EMPTY_LOCAL_STATE, 0);
      if (!started.ok) throw new Error(started.reason);
      return {
        name,
        address,
        boot: 1,
        kernelSince: 1,
        selected: !joining,
        leaving: false,
        local: joining ? EMPTY_LOCAL_STATE : started.local,
        kernelIn: new Map(),
        kernelOut: new Map(),
        highWater: new Map(),
        sent: new Set(),
        ad: -1,
        views: nodes.map(() => -1),
        rotationsLeft: budget.rotations?.[name] ?? 0,
        rebootsLeft: budget.reboots?.[name] ?? 0,
        restartsLeft: budget.restarts?.[name] ?? 0,
        joinsLeft: joining ? 1 : 0,
        leavesLeft: (budget.leaves ?? []).includes(name) ? 1 : 0,
      };
    }),
    inflight: new Set(),
  };
}

export type Action = { readonly name: string; readonly apply: (world: World) => string | undefined };

/** Every action of a world; `apply` mutates a copy and returns a violation, if any. */
export function actions(world: World): Action[] {
  const list: Action[] = [];
  world.nodes.forEach((node, index) => {
    if (world.granularity === 'steps') {
      list.push({ name: `converge ${node.name}`, apply: (w) => converge(w, w.nodes[index]!) });
      if (node.selected) list.push({ name: `publish ${node.name}`, apply: (w) => publish(w, w.nodes[index]!) });
    } else {
      list.push({
        name: `pass ${node.name}`,
        apply: (w) => converge(w, w.nodes[index]!) ?? (w.nodes[index]!.selected ? publish(w, w.nodes[index]!) : undefined),
      });
    }
    world.nodes.forEach((other, otherIndex) => {
      if (other !== node && node.views[otherIndex] !== other.ad) {
        list.push({ name: `deliver ${other.name}->${node.name}`, apply: (w) => void (w.nodes[index]!.views[otherIndex] = w.nodes[otherIndex]!.ad) });
      }
    });
    if (node.selected && !node.leaving && node.rotationsLeft > 0 && startRotation(node.local, 0).ok) {
      list.push({ name: `rotate ${node.name}`, apply: (w) => rotate(w.nodes[index]!) });
    }
    if (node.selected && node.rebootsLeft > 0) list.push({ name: `reboot ${node.name}`, apply: (w) => reboot(w, w.nodes[index]!) });
    if (node.selected && node.restartsLeft > 0) list.push({ name: `restart ${node.name} with a new boot id`, apply: (w) => restartWithNewBootId(w, w.nodes[index]!) });
    if (!node.selected && node.joinsLeft > 0) list.push({ name: `join ${node.name}`, apply: (w) => join(w.nodes[index]!) });
    if (node.selected && !node.leaving && node.leavesLeft > 0) list.push({ name: `leave ${node.name}`, apply: (w) => leave(w.nodes[index]!) });
  });
  // Packets in flight arrive together: which one first changes nothing the receiver decides.
  if (world.inflight.size > 0) list.push({ name: 'packets in flight arrive', apply: (w) => void (w.inflight = new Set()) });
  return list;
}

function converge(world: World, node: ModelNode): string | undefined {
  const released = new Set(node.local.releasedSpis);
  const decision = decide(input(world, node));
  const nextIn = new Map(decision.inbound.map((a) => [a.spi, inboundKey(node, a)]));
  for (const [spi, key] of nextIn) {
    if (node.kernelIn.get(spi) === key) continue;
    if (node.kernelIn.has(spi)) return `${node.name} puts ${key} on SPI ${spi}, which holds ${node.kernelIn.get(spi)}`;
    if (released.has(spi)) return `${node.name} allocates the quarantined SPI ${spi} to ${key}`;
  }
  node.kernelIn = nextIn;

  const byName = new Map(world.nodes.map((n) => [n.name, n]));
  const nextOut = new Map<string, OutboundSa>();
  let highWater = node.highWater;
  let sent = node.sent;
  for (const choice of decision.outbound) {
    // The key names the boot id it is derived with: the current one, or the one an SA kept across a boot id change was made under.
    const fromBoot = choice.fromBootId ?? bootId(node);
    const key = `${node.name}@${choice.generation}/${fromBoot}/${publicKey(node.name, choice.generation)}>${choice.to}@${choice.toGeneration}/${choice.toBootId}/${choice.toPublicKey}|${choice.family}`;
    const link = linkKey(choice.to, choice.family);
    const installed = node.kernelOut.get(link);
    if (installed?.key === key) {
      nextOut.set(link, installed);
      continue;
    }
    if (sent.has(key)) return `${node.name} installs ${key} again: an outbound SA created twice (counter restarts under the same key)`;
    // A new outbound SA must be newer than every one this link used under the same boot ids:
    // an older one would be going back.
    const mark = highWater.get(link);
    if (
      mark &&
      mark.fromBoot === fromBoot &&
      mark.toBoot === choice.toBootId &&
      (choice.toGeneration < mark.toGeneration || (choice.toGeneration === mark.toGeneration && choice.generation <= mark.generation))
    ) {
      return `${node.name} sends on ${key} after ${mark.toGeneration}/${mark.generation}: an outbound SA created again (counter restarts under the same key)`;
    }
    highWater = new Map(highWater).set(link, { fromBoot, toBoot: choice.toBootId, toGeneration: choice.toGeneration, generation: choice.generation });
    sent = new Set(sent).add(key);
    nextOut.set(link, { to: choice.to, toBoot: choice.toBootId, spi: choice.spi, key });
  }
  node.highWater = highWater;
  node.sent = sent;
  for (const [link, before] of node.kernelOut) {
    if (nextOut.get(link)?.key === before.key) continue;
    const receiver = byName.get(before.to)!;
    const stillWorks = kernelOf(receiver, before.toBoot) && receiver.kernelIn.get(before.spi) === before.key;
    if (!nextOut.has(link) && stillWorks && node.selected && !node.leaving && receiver.selected && !receiver.leaving) {
      return `${node.name} stops encrypting to ${receiver.name} (drops ${before.key} without a successor) while ${receiver.name} still holds it: a clear-text gap`;
    }
    world.inflight = new Set(world.inflight).add(`${before.to}|${before.toBoot}|${before.spi}`);
  }
  node.kernelOut = nextOut;
  node.local = decision.local;
  return undefined;
}

function publish(world: World, node: ModelNode): undefined {
  const published = advertise(input(world, node));
  node.local = published.local;
  node.ad = intern(published.advertisement);
  // A leaver whose SAs are gone and whom no peer lists withdraws its advertisement: it is out.
  if (node.leaving && decide(input(world, node)).departed && node.kernelIn.size === 0 && node.kernelOut.size === 0) {
    node.ad = -1;
    node.selected = false;
  }
  return undefined;
}

function rotate(node: ModelNode): string | undefined {
  const started = startRotation(node.local, 0);
  if (!started.ok) return `rotation offered but refused: ${started.reason}`;
  node.local = started.local;
  node.rotationsLeft--;
  return undefined;
}

/** The kernel starts empty with a new boot id; the state directory (keys, allocations) survives. */
function reboot(world: World, node: ModelNode): undefined {
  world.inflight = new Set(world.inflight);
  for (const packet of [...world.inflight]) if (packet.startsWith(`${node.name}|`)) world.inflight.delete(packet);
  node.boot++;
  node.kernelSince = node.boot;
  node.kernelIn = new Map();
  node.kernelOut = new Map();
  node.highWater = new Map();
  node.rebootsLeft--;
  return undefined;
}

/**
 * The agent restarts with another boot id; the kernel keeps every SA and policy. A restarted
 * agent's first act is a pass that converges before it publishes (a SIGKILL in between means
 * the next agent converges first again), so the restart and the first converge are one step.
 */
function restartWithNewBootId(world: World, node: ModelNode): string | undefined {
  node.boot++;
  node.restartsLeft--;
  return converge(world, node);
}

function join(node: ModelNode): string | undefined {
  const started = startRotation(EMPTY_LOCAL_STATE, 0);
  if (!started.ok) return started.reason;
  node.selected = true;
  node.local = started.local;
  node.joinsLeft--;
  return undefined;
}

/** Deselected: the agent leaves in two phases (rule 7 of src/mesh/rotation.ts). */
function leave(node: ModelNode): undefined {
  node.leaving = true;
  node.leavesLeft--;
  return undefined;
}

/** The invariants that must hold in every world. */
export function violations(world: World): string[] {
  const found: string[] = [];
  const byName = new Map(world.nodes.map((n) => [n.name, n]));
  for (const sender of world.nodes) {
    for (const out of sender.kernelOut.values()) {
      const receiver = byName.get(out.to)!;
      if (!kernelOf(receiver, out.toBoot)) continue; // the receiver rebooted since: its kernel lost everything, not our doing
      if (receiver.kernelIn.get(out.spi) !== out.key) {
        found.push(`${sender.name} sends on ${out.key} (SPI ${out.spi}) but ${receiver.name} holds ${receiver.kernelIn.get(out.spi) ?? 'nothing'} there`);
      }
    }
  }
  for (const packet of world.inflight) {
    const [name, boot, spi] = packet.split('|') as [string, string, string];
    const receiver = byName.get(name)!;
    if (kernelOf(receiver, boot) && !receiver.kernelIn.has(Number(spi))) found.push(`a packet in flight to ${name} on SPI ${spi} finds no SA`);
  }
  return found;
}

/** What a finished run must look like: every rotation done, one SA per direction, nothing left over. */
export function unsettled(world: World): string[] {
  const problems: string[] = [];
  const members = world.nodes.filter((n) => n.selected && !n.leaving);
  for (const node of members) {
    const live = node.local.generations.filter((g) => !g.retiring);
    if (node.local.generations.length !== 1 || live.length !== 1) problems.push(`${node.name} holds generations ${node.local.generations.map((g) => g.generation).join(',')}`);
    if (node.rotationsLeft > 0) problems.push(`${node.name} did not rotate`);
    const newest = Math.max(...node.local.generations.map((g) => g.generation));
    const peers = members.filter((p) => p !== node);
    for (const peer of peers) {
      const out = node.kernelOut.get(linkKey(peer.name, 'inet'));
      const peerNewest = Math.max(...peer.local.generations.map((g) => g.generation));
      if (!out || !out.key.startsWith(`${node.name}@${newest}/${bootId(node)}/`) || !out.key.includes(`>${peer.name}@${peerNewest}/${bootId(peer)}/`)) {
        problems.push(`${node.name} -> ${peer.name} sends on ${out?.key ?? 'nothing'}, not generations ${newest}/${peerNewest}`);
      }
    }
    if (node.kernelIn.size !== peers.length) problems.push(`${node.name} holds ${node.kernelIn.size} inbound SAs for ${peers.length} peers`);
    if (node.local.allocations.length !== peers.length) problems.push(`${node.name} keeps ${node.local.allocations.length} allocations for ${peers.length} peers`);
  }
  for (const node of world.nodes.filter((n) => n.leaving && n.selected)) problems.push(`${node.name} never finished leaving`);
  for (const node of world.nodes.filter((n) => !n.selected && n.joinsLeft === 0)) {
    if (node.kernelIn.size > 0 || node.kernelOut.size > 0) problems.push(`${node.name} left but holds ${node.kernelIn.size} inbound and ${node.kernelOut.size} outbound SAs`);
  }
  return problems;
}

// Local states are immutable too (decide/advertise return new objects): interned by identity.
const localIds = new WeakMap<MeshLocalState, number>();
const localTexts = new Map<string, number>();
function localId(local: MeshLocalState): number {
  let id = localIds.get(local);
  if (id === undefined) {
    const text = JSON.stringify(local);
    id = localTexts.get(text);
    if (id === undefined) {
      id = localTexts.size;
      localTexts.set(text, id);
    }
    localIds.set(local, id);
  }
  return id;
}

// Maps and sets are replaced, never mutated: their canonical text is computed once per object.
const texts = new WeakMap<object, string>();
function textOf(collection: Map<unknown, unknown> | Set<unknown>, render: () => string[]): string {
  let text = texts.get(collection);
  if (text === undefined) {
    text = render().sort().join(',');
    texts.set(collection, text);
  }
  return text;
}

export function fingerprint(world: World): string {
  const parts: string[] = [];
  for (const n of world.nodes) {
    parts.push(
      `${n.name} ${n.boot} ${n.kernelSince} ${n.selected ? 'S' : 'U'}${n.leaving ? 'L' : ''} ${localId(n.local)} ${n.ad} ${n.views.join(',')} ${n.rotationsLeft}${n.rebootsLeft}${n.restartsLeft}${n.joinsLeft}${n.leavesLeft}`,
      textOf(n.kernelIn, () => [...n.kernelIn].map(([spi, key]) => `${spi}=${key}`)),
      textOf(n.kernelOut, () => [...n.kernelOut].map(([link, out]) => `${link}=${out.spi}:${out.key}`)),
      textOf(n.highWater, () => [...n.highWater].map(([link, m]) => `${link}=${m.fromBoot}:${m.toBoot}:${m.toGeneration}:${m.generation}`)),
      textOf(n.sent, () => [...n.sent]),
    );
  }
  parts.push(textOf(world.inflight, () => [...world.inflight]));
  return createHash('sha1').update(parts.join('\n')).digest('base64');
}

/** Maps, sets and local states are replaced, never mutated, by the actions: a shallow copy suffices. */
export function clone(world: World): World {
  return { ...world, nodes: world.nodes.map((n) => ({ ...n, views: [...n.views] })) };
}

export interface ExplorationResult {
  readonly states: number;
  readonly transitions: number;
  readonly terminal: number;
  readonly violation?: { readonly message: string; readonly trace: readonly string[] };
  readonly unsettledTerminal?: { readonly problems: readonly string[]; readonly trace: readonly string[] };
}

/** Breadth-first over every reachable world; stops at the first violation (with its trace). */
export function explore(start: World, limit = 2_000_000): ExplorationResult {
  const visited = new Map<string, { parent: string | undefined; action: string }>();
  const startPrint = fingerprint(start);
  visited.set(startPrint, { parent: undefined, action: 'start' });
  const trace = (print: string): string[] => {
    const steps: string[] = [];
    for (let at: string | undefined = print; at !== undefined; at = visited.get(at)!.parent) steps.unshift(visited.get(at)!.action);
    return steps;
  };
  let queue: { world: World; print: string }[] = [{ world: start, print: startPrint }];
  let transitions = 0;
  let terminal = 0;
  let unsettledTerminal: ExplorationResult['unsettledTerminal'];
  while (queue.length > 0) {
    const next: typeof queue = [];
    for (const { world, print } of queue) {
      let moved = false;
      for (const action of actions(world)) {
        const copy = clone(world);
        const problem = action.apply(copy) ?? violations(copy)[0];
        transitions++;
        const copyPrint = fingerprint(copy);
        if (copyPrint === print) continue;
        moved = true;
        if (problem !== undefined) return { states: visited.size, transitions, terminal, violation: { message: problem, trace: [...trace(print), action.name] } };
        if (visited.has(copyPrint)) continue;
        visited.set(copyPrint, { parent: print, action: action.name });
        if (visited.size > limit) throw new Error(`more than ${limit} states`);
        next.push({ world: copy, print: copyPrint });
      }
      if (!moved) {
        terminal++;
        const problems = unsettled(world);
        if (problems.length > 0 && !unsettledTerminal) unsettledTerminal = { problems, trace: trace(print) };
      }
    }
    queue = next;
  }
  return { states: visited.size, transitions, terminal, ...(unsettledTerminal ? { unsettledTerminal } : {}) };
}

/** Runs a fair round-robin schedule until nothing changes: the steady state rotations start from. */
export function settle(world: World): World {
  const current = clone(world);
  for (let round = 0; round < 100; round++) {
    const before = fingerprint(current);
    for (const node of current.nodes) {
      converge(current, node);
      if (node.selected) publish(current, node);
      const index = current.nodes.indexOf(node);
      for (const other of current.nodes) other.views[index] = node.ad;
    }
    current.inflight = new Set();
    if (fingerprint(current) === before) return current;
  }
  throw new Error('the mesh did not settle in 100 rounds');
}
