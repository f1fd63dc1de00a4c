/**
 * XfrmClient: typed operations on the kernel's SAD and SPD over one NETLINK_XFRM socket.
 *
 * Each method names its `ip xfrm` equivalent. Every failure is an XfrmError (a NetlinkError:
 * errno, code, the kernel's extended-ack text, sequence), so callers test `isNotFound(error)`
 * or `isExists(error)` rather than parsing text. Requests are validated before anything is
 * sent (XfrmError with `validation: true`, EINVAL).
 *
 * The same code runs on the host and inside the test VM: it needs only a kernel with
 * CONFIG_XFRM_USER (SAs additionally need the esp/ah/ipcomp modules of that kernel).
 */
import { NetlinkCodecError, UnsupportedEntryError } from '../netlink/codec-error.js';
import { NetlinkConnection, type BatchOutcome, type NetlinkTransport } from '../netlink/connection.js';
import type { NetlinkMessage } from '../netlink/message.js';
import { NetlinkSocket } from '../netlink/socket.js';
import {
  deletePolicyRequest,
  deleteStateRequest,
  dumpPoliciesRequest,
  dumpStatesRequest,
  flushPoliciesRequest,
  flushStatesRequest,
  getPolicyRequest,
  getStateRequest,
  newPolicyRequest,
  newStateRequest,
  getSequenceReportRequest,
  setReplayThresholdRequest,
  parseSequenceReport,
  parsePolicyMessage,
  parseSadInfo,
  parseSpdInfo,
  parseStateMessage,
  sadInfoRequest,
  spdInfoRequest,
  stateDirectionProbeRequest,
  updatePolicyRequest,
  updateStateRequest,
  type XfrmRequest,
} from './messages.js';
import { describePolicyId } from './policy-codec.js';
import { describeStateId } from './state-codec.js';
import type { SequenceReport } from './aevent-codec.js';
import type { PolicyId, PolicyType, SadInfo, SecurityAssociation, SecurityPolicy, SpdInfo, StateId, XfrmProtocol } from './types.js';
import { XfrmError } from './xfrm-error.js';

export interface XfrmClientOptions {
  /** Network namespace: a name under /run/netns or an absolute path. Default: this process's. */
  readonly netns?: string;
  /** Per request (and per dump attempt). Default 10 s. */
  readonly requestTimeoutMs?: number;
  /**
   * Receive buffer to ask for. Default 8 MiB: room for the acks of a large batch in flight. The
   * kernel grants it with CAP_NET_ADMIN (SO_RCVBUFFORCE), else caps it at net.core.rmem_max.
   */
  readonly receiveBufferBytes?: number;
  /** Unanswered requests at once in applyBatch. Default: what the granted receive buffer holds (16..1024). */
  readonly maxInFlight?: number;
  /** Largest datagram applyBatch sends. Default 64 KiB. */
  readonly maxDatagramBytes?: number;
}

/** One change for applyBatch. */
export type XfrmBatchRequest =
  | { readonly op: 'add-state'; readonly state: SecurityAssociation }
  | { readonly op: 'update-state'; readonly state: SecurityAssociation }
  | { readonly op: 'delete-state'; readonly id: StateId }
  | { readonly op: 'add-policy'; readonly policy: SecurityPolicy }
  | { readonly op: 'update-policy'; readonly policy: SecurityPolicy }
  | { readonly op: 'delete-policy'; readonly id: PolicyId };

/** The outcome of one applyBatch entry, at the same index as its request. */
export type XfrmBatchResult =
  | { readonly ok: true; readonly index: number; readonly operation: string }
  | { readonly ok: false; readonly index: number; readonly operation: string; readonly error: XfrmError };

/** A dump, with the entries the model cannot represent (kept out, but counted and explained). */
export interface DumpResult<T> {
  readonly entries: T[];
  readonly skipped: Array<{ readonly reason: string }>;
}

const DEFAULT_RECEIVE_BUFFER = 8 * 1024 * 1024;
/**
 * Receive-buffer bytes to budget per unanswered request: an ack is a small skb, but the kernel
 * charges its truesize (~830 bytes measured on 6.18), and error acks carry extended-ack text. Generous on
 * purpose: overflowing loses acks (ENOBUFS).
 */
const BYTES_PER_ACK = 2048;

export class XfrmClient {
  readonly #connection: NetlinkConnection;
  readonly #netnsCookie: bigint | undefined;

  /** Wraps an open transport (tests pass a fake; `open` passes a NetlinkSocket). */
  constructor(transport: NetlinkTransport, options: Omit<XfrmClientOptions, 'netns' | 'receiveBufferBytes'> & { readonly receiveBufferBytes?: number } = {}) {
    const granted = options.receiveBufferBytes ?? 212_992;
    this.#netnsCookie = (transport as { readonly netnsCookie?: bigint }).netnsCookie;
    this.#connection = new NetlinkConnection(transport, {
      ...(options.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.requestTimeoutMs }),
      maxInFlight: options.maxInFlight ?? Math.max(16, Math.min(1024, Math.floor(granted / BYTES_PER_ACK))),
      ...(options.maxDatagramBytes === undefined ? {} : { maxDatagramBytes: options.maxDatagramBytes }),
    });
  }

  /** Opens a NETLINK_XFRM socket (in `netns` if given) and a client on it. */
  static async open(options: XfrmClientOptions = {}): Promise<XfrmClient> {
    const socket = NetlinkSocket.open({
      ...(options.netns === undefined ? {} : { netns: options.netns }),
      receiveBufferBytes: options.receiveBufferBytes ?? DEFAULT_RECEIVE_BUFFER,
    });
    return new XfrmClient(socket, { ...options, receiveBufferBytes: socket.receiveBufferBytes });
  }

  /** The kernel's cookie of the socket's network namespace (see NetlinkSocket.netnsCookie). */
  get netnsCookie(): bigint | undefined {
    return this.#netnsCookie;
  }

  /** The socket's port id: notifications caused by this client carry it (see isOwnEvent). */
  get portId(): number {
    return this.#connection.portId;
  }

  // ---- SAD ----

  /** `ip xfrm state list`: every SA the model can represent. */
  async listStates(): Promise<SecurityAssociation[]> {
    return (await this.dumpStates()).entries;
  }

  /** `ip xfrm state list`, with the entries outside the model (Mobile IPv6, unknown modes) reported as skipped. */
  async dumpStates(): Promise<DumpResult<SecurityAssociation>> {
    return this.#dump(dumpStatesRequest(), parseStateMessage);
  }

  /** `ip xfrm state get ID`. Rejects with ESRCH (isNotFound) when there is no such SA. */
  async getState(id: StateId): Promise<SecurityAssociation> {
    const request = this.#build(`XFRM_MSG_GETSA ${describeStateId(id)}`, () => getStateRequest(id));
    return this.#single(request, parseStateMessage);
  }

  /** `ip xfrm state add ...`. Rejects with EEXIST (isExists) when the SA exists. */
  async addState(sa: SecurityAssociation): Promise<void> {
    await this.#ack(this.#build(`XFRM_MSG_NEWSA ${describeStateId(sa.id)}`, () => newStateRequest(sa)));
  }

  /**
   * `ip xfrm state update ...`. On a live SA the kernel changes only lifetimes, encapsulation
   * ports, care-of address, output mark and if_id; other differences are silently ignored.
   */
  async updateState(sa: SecurityAssociation): Promise<void> {
    await this.#ack(this.#build(`XFRM_MSG_UPDSA ${describeStateId(sa.id)}`, () => updateStateRequest(sa)));
  }

  /** An SA's replay state, counters and thresholds (XFRM_MSG_GETAE). Rejects with ESRCH when there is no such SA. */
  async getSequenceReport(id: StateId): Promise<SequenceReport> {
    const request = this.#build(`XFRM_MSG_GETAE ${describeStateId(id)}`, () => getSequenceReportRequest(id));
    return this.#single(request, parseSequenceReport);
  }

  /** Sets an SA's replay threshold: how far its counter moves between two reports on XFRMNLGRP_AEVENTS. */
  async setReplayThreshold(id: StateId, packets: number): Promise<void> {
    await this.#ack(this.#build(`XFRM_MSG_NEWAE ${describeStateId(id)}`, () => setReplayThresholdRequest(id, packets)));
  }

  /** `ip xfrm state delete ID`. Rejects with ESRCH (isNotFound) when there is no such SA. */
  async deleteState(id: StateId): Promise<void> {
    await this.#ack(this.#build(`XFRM_MSG_DELSA ${describeStateId(id)}`, () => deleteStateRequest(id)));
  }

  /**
   * Whether the kernel keeps SA direction (XFRMA_SA_DIR, Linux 6.10+), asked with a request
   * that changes nothing (see stateDirectionProbeRequest). Rejects when the answer says
   * neither (EPERM without CAP_NET_ADMIN, for instance).
   */
  async keepsStateDirection(): Promise<boolean> {
    const request = stateDirectionProbeRequest();
    try {
      await this.#connection.request(request);
    } catch (error) {
      const failure = XfrmError.from(error, request.operation);
      if (failure.code === 'ESRCH') return false;
      if (failure.code === 'ERANGE' || failure.code === 'EINVAL') return true;
      throw failure;
    }
    return false; // an SA with SPI 0 answered: the direction was not even looked at
  }

  /** `ip xfrm state flush [proto P]`: every SA (or every SA of one protocol). */
  async flushStates(protocol?: XfrmProtocol): Promise<void> {
    await this.#ack(flushStatesRequest(protocol));
  }

  /** `ip xfrm state count` (and the hash table sizes `ip -s xfrm state count` shows). */
  async sadInfo(): Promise<SadInfo> {
    return this.#single(sadInfoRequest(), parseSadInfo);
  }

  // ---- SPD ----

  /** `ip xfrm policy list`: main and sub policies, without per-socket policies (dir 3..5). */
  async listPolicies(): Promise<SecurityPolicy[]> {
    return (await this.dumpPolicies()).entries;
  }

  /** `ip xfrm policy list`, with per-socket and other unrepresentable policies reported as skipped. */
  async dumpPolicies(): Promise<DumpResult<SecurityPolicy>> {
    return this.#dump(dumpPoliciesRequest(), parsePolicyMessage);
  }

  /** `ip xfrm policy get SELECTOR dir D [ptype] [mark] [if_id]`. Rejects with ENOENT (isNotFound). */
  async getPolicy(id: PolicyId): Promise<SecurityPolicy> {
    const request = this.#build(`XFRM_MSG_GETPOLICY ${describePolicyId(id)}`, () => getPolicyRequest(id));
    return this.#single(request, parsePolicyMessage);
  }

  /** `ip xfrm policy add ...`. Rejects with EEXIST (isExists) when a policy with this identity exists. */
  async addPolicy(policy: SecurityPolicy): Promise<void> {
    await this.#ack(this.#build(`XFRM_MSG_NEWPOLICY ${describePolicyId(policy.id)}`, () => newPolicyRequest(policy)));
  }

  /** `ip xfrm policy update ...`: creates or replaces atomically, keeping the index. */
  async updatePolicy(policy: SecurityPolicy): Promise<void> {
    await this.#ack(this.#build(`XFRM_MSG_UPDPOLICY ${describePolicyId(policy.id)}`, () => updatePolicyRequest(policy)));
  }

  /** `ip xfrm policy delete SELECTOR dir D [ptype] [mark] [if_id]`. Rejects with ENOENT (isNotFound). */
  async deletePolicy(id: PolicyId): Promise<void> {
    await this.#ack(this.#build(`XFRM_MSG_DELPOLICY ${describePolicyId(id)}`, () => deletePolicyRequest(id)));
  }

  /**
   * `ip xfrm policy flush [ptype sub]`: every policy of one type (main by default), in every
   * direction, per-socket policies included. Touches entries of others: use with care.
   */
  async flushPolicies(type: PolicyType = 'main'): Promise<void> {
    await this.#ack(flushPoliciesRequest(type));
  }

  /** `ip xfrm policy count` (and hash table sizes). */
  async spdInfo(): Promise<SpdInfo> {
    return this.#single(spdInfoRequest(), parseSpdInfo);
  }

  // ---- batches ----

  /**
   * Applies many changes, pipelined: as many requests per datagram as fit, a bounded number
   * unanswered at once, each acknowledged and matched by sequence number. Returns one result
   * per request, in order; a refused entry (its XfrmError names it by index and operation, with
   * the kernel's errno and reason) does not stop the others. Like `ip -batch` with `-force`.
   */
  async applyBatch(requests: readonly XfrmBatchRequest[]): Promise<XfrmBatchResult[]> {
    const built: Array<{ request: XfrmRequest } | { error: XfrmError; operation: string }> = requests.map((entry, index) => {
      try {
        return { request: toRequest(entry) };
      } catch (error) {
        // Described only when it failed: a request already carries its operation text.
        const operation = describeBatchRequest(entry);
        return { error: XfrmError.from(error, operation, index, error instanceof NetlinkCodecError), operation };
      }
    });
    const sendable = built.flatMap((entry, index) => ('request' in entry ? [{ index, request: entry.request }] : []));
    let outcomes: BatchOutcome[];
    try {
      outcomes = await this.#connection.batch(sendable.map((entry) => entry.request));
    } catch (error) {
      throw XfrmError.from(error, 'applyBatch');
    }
    const results: XfrmBatchResult[] = built.map((entry, index) =>
      'error' in entry
        ? { ok: false, index, operation: entry.operation, error: entry.error }
        : { ok: true, index, operation: entry.request.operation },
    );
    sendable.forEach(({ index, request }, position) => {
      const outcome = outcomes[position];
      if (outcome && !outcome.ok) {
        results[index] = { ok: false, index, operation: request.operation, error: XfrmError.from(outcome.error, request.operation, index) };
      }
    });
    return results;
  }

  /** Closes the socket; requests still waiting reject with ECANCELED. */
  close(): void {
    this.#connection.close();
  }

  #build(operation: string, build: () => XfrmRequest): XfrmRequest {
    try {
      return build();
    } catch (error) {
      throw XfrmError.from(error, operation, undefined, error instanceof NetlinkCodecError);
    }
  }

  async #ack(request: XfrmRequest): Promise<void> {
    try {
      await this.#connection.request(request);
    } catch (error) {
      throw XfrmError.from(error, request.operation);
    }
  }

  async #single<T>(request: XfrmRequest, parse: (message: NetlinkMessage) => T): Promise<T> {
    let replies: NetlinkMessage[];
    try {
      replies = await this.#connection.request(request);
    } catch (error) {
      throw XfrmError.from(error, request.operation);
    }
    const reply = replies[0];
    if (!reply) throw XfrmError.from(new NetlinkCodecError(request.operation, 'the kernel acknowledged without a reply'), request.operation);
    try {
      return parse(reply);
    } catch (error) {
      throw XfrmError.from(error, request.operation);
    }
  }

  async #dump<T>(request: XfrmRequest, parse: (message: NetlinkMessage) => T): Promise<DumpResult<T>> {
    let replies: NetlinkMessage[];
    try {
      replies = await this.#connection.dump(request);
    } catch (error) {
      throw XfrmError.from(error, request.operation);
    }
    const result: DumpResult<T> = { entries: [], skipped: [] };
    for (const reply of replies) {
      try {
        result.entries.push(parse(reply));
      } catch (error) {
        if (error instanceof UnsupportedEntryError) result.skipped.push({ reason: error.message });
        else throw XfrmError.from(error, request.operation);
      }
    }
    return result;
  }
}

function toRequest(entry: XfrmBatchRequest): XfrmRequest {
  switch (entry.op) {
    case 'add-state':
      return newStateRequest(entry.state);
    case 'update-state':
      return updateStateRequest(entry.state);
    case 'delete-state':
      return deleteStateRequest(entry.id);
    case 'add-policy':
      return newPolicyRequest(entry.policy);
    case 'update-policy':
      return updatePolicyRequest(entry.policy);
    case 'delete-policy':
      return deletePolicyRequest(entry.id);
  }
}

/** The operation text of a batch entry, even when it cannot be encoded. */
function describeBatchRequest(entry: XfrmBatchRequest): string {
  switch (entry.op) {
    case 'add-state':
      return `XFRM_MSG_NEWSA ${describeStateId(entry.state.id)}`;
    case 'update-state':
      return `XFRM_MSG_UPDSA ${describeStateId(entry.state.id)}`;
    case 'delete-state':
      return `XFRM_MSG_DELSA ${describeStateId(entry.id)}`;
    case 'add-policy':
      return `XFRM_MSG_NEWPOLICY ${safeDescribePolicy(entry.policy.id)}`;
    case 'update-policy':
      return `XFRM_MSG_UPDPOLICY ${safeDescribePolicy(entry.policy.id)}`;
    case 'delete-policy':
      return `XFRM_MSG_DELPOLICY ${safeDescribePolicy(entry.id)}`;
  }
}

function safeDescribePolicy(id: PolicyId): string {
  try {
    return describePolicyId(id);
  } catch {
    return `dir ${String(id.direction)}`;
  }
}
