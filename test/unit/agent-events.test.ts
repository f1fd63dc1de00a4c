/**
 * The agent's Events (src/agent/agent-events.ts) through the real EventRecorder into a sink that
 * keeps what it is given: one Event per transition to NeedsRekey or Expired, on the resource
 * (with its uid), naming the node; a soft expiry names the SA; no key bytes in any of them.
 */
import type { CoreV1Event } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';

import { AgentEvents } from '../../src/agent/agent-events.js';
import type { ResourceOutcome } from '../../src/agent/node-state-report.js';
import type { IpsecResource } from '../../src/crd/types.js';
import { EventRecorder, type EventSink } from '../../src/kube/events.js';
import { sa, TEST_KEYS } from '../support/entries.js';

class KeptSink implements EventSink {
  readonly created: CoreV1Event[] = [];
  async create(_namespace: string, event: CoreV1Event): Promise<unknown> {
    this.created.push(event);
    return event;
  }
  readonly updated: { name: string; count: number }[] = [];
  async update(_namespace: string, name: string, change: { count: number }): Promise<unknown> {
    this.updated.push({ name, count: change.count });
    return {};
  }
}

const resource = { apiVersion: 'ipsec.xfrm.io/v1alpha1', kind: 'SecurityAssociation', metadata: { name: 'a-to-b', uid: 'uid-1', generation: 1 }, spec: {} } as unknown as IpsecResource;
const report = (reason: string, message = reason): ResourceOutcome =>
  reason === 'Applied' ? { kind: 'SecurityAssociation', name: 'a-to-b', uid: 'uid-1', generation: 1, state: 'Applied', reason, message } : { kind: 'SecurityAssociation', name: 'a-to-b', state: 'Failed', reason, message };

function setup() {
  const sink = new KeptSink();
  const recorder = new EventRecorder(sink, { component: 'ipsec-operator-agent', host: 'node-a' });
  return { sink, recorder, events: new AgentEvents(recorder, 'node-a') };
}

describe("the agent's Events", () => {
  it('one Warning per transition to NeedsRekey or Expired, on the resource with its uid, naming the node', async () => {
    const { sink, recorder, events } = setup();
    events.reports([report('Applied')], [resource]);
    events.reports([report('NeedsRekey', 'SecurityAssociation/a-to-b: sa esp spi 0x100 is not installed: ...; rekey')], [resource]);
    events.reports([report('NeedsRekey', 'SecurityAssociation/a-to-b: sa esp spi 0x100 is not installed: ...; rekey')], [resource]); // the next resync: no new Event
    events.reports([report('Expired')], [resource]);
    events.reports([report('Applied')], [resource]);
    events.reports([report('Expired')], [resource]); // again after a recovery
    await recorder.flush();
    expect(sink.created.map((event) => [event.type, event.reason])).toEqual([
      ['Warning', 'NeedsRekey'],
      ['Warning', 'Expired'],
    ]);
    // The second Expired (after a recovery) is an Event again; the recorder counts it on the first.
    expect(sink.updated).toEqual([{ name: sink.created[1]!.metadata!.name, count: 2 }]);
    expect(sink.created[0]).toMatchObject({ involvedObject: { kind: 'SecurityAssociation', name: 'a-to-b', uid: 'uid-1', apiVersion: 'ipsec.xfrm.io/v1alpha1' }, source: { component: 'ipsec-operator-agent', host: 'node-a' } });
    expect(sink.created[0]!.message).toMatch(/^node node-a: SecurityAssociation\/a-to-b: .*rekey/);
  });

  it('a soft expiry: a Warning SoftExpired naming the SA and how to rekey, without its key bytes', async () => {
    const { sink, recorder, events } = setup();
    const entry = sa();
    events.softExpired('SecurityAssociation/a-to-b', entry, [resource]);
    events.softExpired('Secret/other', entry, [resource]); // not one of ours: nothing
    await recorder.flush();
    expect(sink.created).toHaveLength(1);
    expect(sink.created[0]).toMatchObject({ type: 'Warning', reason: 'SoftExpired', involvedObject: { name: 'a-to-b', uid: 'uid-1' } });
    expect(sink.created[0]!.message).toMatch(/node node-a: sa esp spi 0x.* reached its soft lifetime; rekey/);
    const text = JSON.stringify(sink.created);
    for (const bytes of Object.values(TEST_KEYS)) expect(text).not.toContain(bytes.toString('hex'));
  });
});
