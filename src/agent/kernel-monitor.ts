/**
 * The kernel monitor: XFRM events on a socket of their own, handed to `onEvent`. It starts
 * after the caches and before the workers, so that no event falls between the first
 * reconcile's dump and the monitor. The stream ending or failing while the agent runs means
 * drift could go unseen: that stops the agent (and its pod restarts it) rather than leaving it
 * running blind.
 */
import { XfrmMonitor } from '../xfrm/monitor.js';
import type { XfrmEvent } from '../xfrm/events.js';
import type { Runnable } from '../kube/runnables.js';
import type { SequenceReport } from '../xfrm/aevent-codec.js';

export function kernelMonitorRunnable(netns: string | undefined, onEvent: (event: XfrmEvent) => void): Runnable {
  let monitor: XfrmMonitor | undefined;
  let reading: Promise<void> | undefined;
  return {
    name: 'kernel monitor',
    start() {
      const opened = XfrmMonitor.open(netns === undefined ? {} : { netns });
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

/**
 * The kernel's sequence reports (XFRMNLGRP_AEVENTS, ./sequence-watch.ts), on a socket of their
 * own: a burst of reports that overflows its buffer loses only reports (the next reconcile's dump
 * marks the SAs anyway), never a table change that the drift monitor must see. Its stream ending
 * stops the agent like the kernel monitor's.
 */
export function sequenceMonitorRunnable(netns: string | undefined, onReport: (report: SequenceReport) => void): Runnable {
  let monitor: XfrmMonitor | undefined;
  let reading: Promise<void> | undefined;
  return {
    name: 'sequence monitor',
    start() {
      const opened = XfrmMonitor.open({ ...(netns === undefined ? {} : { netns }), groups: ['aevents'] });
      monitor = opened;
      reading = (async () => {
        for await (const event of opened) if (event.kind === 'sequence-reported') onReport(event.report);
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
