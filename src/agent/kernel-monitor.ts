/**
 * The agent's kernel listeners, each an XfrmMonitor on a socket of its own:
 * - the kernel monitor: XFRM table events, for drift (./drift-watch.ts);
 * - the sequence monitor: the kernel's sequence reports (XFRMNLGRP_AEVENTS, ./sequence-watch.ts).
 *   Apart from the first, so that a burst of reports that overflows its buffer loses only
 *   reports (the next reconcile's dump marks the SAs anyway), never a table change.
 * Both start after the caches and before the workers, so that no event falls between the first
 * reconcile's dump and the monitor. A stream ending or failing while the agent runs means drift
 * or sequence marks could go unseen: that stops the agent (and its pod restarts it) rather than
 * leaving it running blind.
 */
import { XfrmMonitor, type XfrmMonitorOptions } from '../xfrm/monitor.js';
import type { XfrmEvent } from '../xfrm/events.js';
import type { Runnable } from '../kube/runnables.js';
import type { SequenceReport } from '../xfrm/aevent-codec.js';

export function kernelMonitorRunnable(netns: string | undefined, onEvent: (event: XfrmEvent) => void): Runnable {
  return monitorRunnable('kernel monitor', netns === undefined ? {} : { netns }, onEvent);
}

export function sequenceMonitorRunnable(netns: string | undefined, onReport: (report: SequenceReport) => void): Runnable {
  return monitorRunnable('sequence monitor', { ...(netns === undefined ? {} : { netns }), groups: ['aevents'] }, (event) => {
    if (event.kind === 'sequence-reported') onReport(event.report);
  });
}

function monitorRunnable(name: string, options: XfrmMonitorOptions, onEvent: (event: XfrmEvent) => void): Runnable {
  let monitor: XfrmMonitor | undefined;
  let reading: Promise<void> | undefined;
  return {
    name,
    start() {
      const opened = XfrmMonitor.open(options);
      monitor = opened;
      reading = (async () => {
        for await (const event of opened) onEvent(event);
      })();
      reading.catch(() => undefined); // reported through done()
    },
    done: () => reading ?? Promise.resolve(),
    async stop() {
      monitor?.close();
      await reading?.catch(() => undefined);
    },
  };
}
