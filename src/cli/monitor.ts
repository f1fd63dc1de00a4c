/**
 * `monitor`: kernel XFRM events, one line each, like `ip xfrm monitor`; `--json` prints one
 * JSON object per line instead (keys are redacted by KeyMaterial). Runs until interrupted.
 */
import { processSignals } from './signals.js';
import { XfrmMonitor } from '../xfrm/monitor.js';
import type { XfrmEvent } from '../xfrm/events.js';
import { describePolicy, describeSelector, describeState } from '../plan/describe.js';

export function describeEvent(event: XfrmEvent): string {
  switch (event.kind) {
    case 'state-added':
      return `Added SA: ${describeState(event.state)}`;
    case 'state-updated':
      return `Updated SA: ${describeState(event.state)}`;
    case 'state-deleted':
      return `Deleted SA: ${describeState(event.state)}`;
    case 'states-flushed':
      return `Flushed SAs: proto ${event.protocol}`;
    case 'state-expired':
      return `Expired SA (${event.hard ? 'hard' : 'soft'}): ${describeState(event.state)}`;
    case 'policy-added':
      return `Added policy: ${describePolicy(event.policy)}`;
    case 'policy-updated':
      return `Updated policy: ${describePolicy(event.policy)}`;
    case 'policy-deleted':
      return `Deleted policy: ${describePolicy(event.policy)}`;
    case 'policies-flushed':
      return `Flushed policies: ptype ${event.type}`;
    case 'policy-expired':
      return `Expired policy (${event.hard ? 'hard' : 'soft'}): ${describePolicy(event.policy)}`;
    case 'acquire':
      return `Acquire: ${event.protocol} ${event.source} -> ${event.destination} for ${describeSelector(event.selector)}`;
    case 'default-policy-changed':
      return `Default policy: in ${event.in} fwd ${event.forward} out ${event.out}`;
    case 'sequence-reported': {
      const { report } = event;
      const state = report.replayState;
      return `Sequence (${report.cause}): ${report.id.protocol} spi 0x${report.id.spi.toString(16).padStart(8, '0')} dst ${report.id.destination} oseq-hi ${state.outboundSequenceHigh} oseq ${state.outboundSequence} seq-hi ${state.inboundSequenceHigh} seq ${state.inboundSequence}`;
    }
    case 'overrun':
      return `Events lost (${event.reason}${event.detail ? `: ${event.detail}` : ''}): resynchronise from a dump`;
  }
}

const toJson = (event: XfrmEvent) => JSON.stringify(event, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value));

export async function runMonitor(options: { readonly netns: string | undefined; readonly json: boolean }): Promise<number> {
  const monitor = XfrmMonitor.open(options.netns === undefined ? {} : { netns: options.netns });
  const stop = () => monitor.close();
  // SIGINT/SIGTERM end the stream cleanly (exit 0); ./signals.ts owns the process's handlers.
  const stopSignal = processSignals().claim();
  stopSignal.addEventListener('abort', stop, { once: true });
  if (stopSignal.aborted) stop();
  try {
    for await (const event of monitor) {
      process.stdout.write(`${options.json ? toJson(event) : describeEvent(event)}\n`);
    }
    return 0;
  } finally {
    stopSignal.removeEventListener('abort', stop);
  }
}
