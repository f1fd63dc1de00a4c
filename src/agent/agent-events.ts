/**
 * Kubernetes Events from the agent, on the resource they are about: a key this node will not
 * install again (NeedsRekey, Expired) and a soft expiry of an owned SA (SoftExpired: rekey before
 * the hard limit removes it). The controller's Events summarise every node's report; these say
 * which node and when, as it happens.
 *
 * Once per transition, not per pass: a resource reported NeedsRekey on every resync gives one
 * Event until its reason changes (and the recorder, ../kube/events.ts, aggregates repeats
 * anyway). Messages name SAs by identity and algorithm only (describeState, the refusal
 * message): never key bytes.
 */
import type { EventSubject } from '../kube/events.js';
import type { ResourceOutcome } from './node-state-report.js';
import type { IpsecResource } from '../crd/types.js';
import { API_GROUP, API_VERSION } from '../crd/types.js';
import { describeState } from '../plan/describe.js';
import type { ExpiredState } from '../xfrm/types.js';

/** The part of ../kube/events.ts EventRecorder this needs. */
export interface WarningSink {
  warning(subject: EventSubject, reason: string, message: string): void;
}

const KEY_REASONS: ReadonlySet<string> = new Set(['NeedsRekey', 'Expired']);

export class AgentEvents {
  /** Per resource (`Kind/name`), the key reason last reported, so each transition gives one Event. */
  readonly #reported = new Map<string, string>();

  constructor(
    private readonly sink: WarningSink,
    private readonly nodeName: string,
  ) {}

  /** After a pass: Events for resources whose key became NeedsRekey or Expired on this node. */
  reports(reports: readonly ResourceOutcome[], resources: readonly IpsecResource[]): void {
    const seen = new Set<string>();
    for (const report of reports) {
      const name = `${report.kind}/${report.name}`;
      seen.add(name);
      const reason = report.reason !== undefined && KEY_REASONS.has(report.reason) ? report.reason : undefined;
      if (reason === undefined) {
        this.#reported.delete(name);
        continue;
      }
      if (this.#reported.get(name) === reason) continue;
      this.#reported.set(name, reason);
      this.sink.warning(subjectOf(report.kind, report.name, resources), reason, `node ${this.nodeName}: ${report.message ?? reason}`);
    }
    for (const name of [...this.#reported.keys()]) if (!seen.has(name)) this.#reported.delete(name);
  }

  /** A soft lifetime limit of an owned SA was reached (XFRM_MSG_EXPIRE, soft). */
  softExpired(resource: string, sa: ExpiredState, resources: readonly IpsecResource[]): void {
    const [kind, ...rest] = resource.split('/');
    if (kind !== 'SecurityAssociation' && kind !== 'IpsecPolicy') return;
    this.sink.warning(
      subjectOf(kind, rest.join('/'), resources),
      'SoftExpired',
      `node ${this.nodeName}: sa ${describeState(sa)} reached its soft lifetime; rekey (a new SPI and a new key, on both nodes) before its hard lifetime removes it`,
    );
  }
}

function subjectOf(kind: string, name: string, resources: readonly IpsecResource[]): EventSubject {
  const uid = resources.find((resource) => resource.kind === kind && resource.metadata.name === name)?.metadata.uid;
  return { apiVersion: `${API_GROUP}/${API_VERSION}`, kind, name, ...(uid ? { uid } : {}) };
}
