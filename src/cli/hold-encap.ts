/**
 * `hold-encap -f PATH... [--netns NAME]`: holds the UDP encapsulation sockets the ESP-in-UDP
 * SAs of the manifests need, until SIGTERM or SIGINT.
 *
 * For machines configured with `apply` and no agent: the kernel decapsulates ESP in UDP only
 * on a UDP socket with UDP_ENCAP set, so some process has to hold one on each address and port
 * an SA receives on. This is the agent's socket manager (../agent/encap-sockets.ts) on its own:
 * sockets only for addresses of the namespace, a port another process holds is reported and
 * left to it, and every `--retry-seconds` (default 10) it tries again, so it takes a port as
 * soon as the other process lets go. The sockets go when this process ends.
 */
import { Registry } from 'prom-client';

import { loadManifests, formatManifestError } from '../model/manifests.js';
import { desiredTables } from '../model/desired.js';
import { readDevices } from '../engine/devices.js';
import { AgentEncapSockets, type EncapSocketReport } from '../agent/encap-sockets.js';
import type { SecurityAssociation } from '../xfrm/types.js';
import { InputError, UsageError } from './errors.js';

export interface HoldEncapOptions {
  readonly files: readonly string[];
  readonly netns: string | undefined;
  readonly nodeLabels: Record<string, string> | undefined;
  readonly retrySeconds: string | undefined;
}

export async function runHoldEncap(options: HoldEncapOptions, signal: AbortSignal = stopSignal()): Promise<number> {
  const retrySeconds = Number(options.retrySeconds ?? '10');
  if (!Number.isFinite(retrySeconds) || retrySeconds <= 0) throw new UsageError('--retry-seconds must be a positive number');
  const manifests = await loadManifests(options.files).catch((error: Error) => {
    throw new InputError(error.message);
  });
  const devices = await readDevices(options.netns);
  const desired = desiredTables(manifests, { labels: options.nodeLabels, resolveDevice: (name) => devices.indexByName.get(name) });
  const errors = [...manifests.errors, ...desired.errors];
  if (errors.length > 0) {
    for (const error of errors) process.stderr.write(`${formatManifestError(error)}\n`);
    throw new InputError(`${errors.length} problem${errors.length === 1 ? '' : 's'} in the input; no socket was opened`);
  }
  const owners = new Map<SecurityAssociation, string>(desired.tables.states.filter(({ entry }) => entry.encapsulation).map(({ resource, entry }) => [entry, resource]));
  if (owners.size === 0) throw new InputError('the manifests hold no SecurityAssociation with encapsulation: there is nothing to hold');

  const sockets = new AgentEncapSockets({ netns: options.netns, registry: new Registry() });
  let last = '';
  const pass = () => {
    const reports = sockets.sync([...owners.keys()], (sa) => owners.get(sa));
    const text = reports.map(describe).join('\n');
    if (text !== last) process.stdout.write(`${text}\n`);
    last = text;
    return reports;
  };
  try {
    const first = pass();
    if (!first.some((report) => report.state === 'Held' || report.state === 'HeldElsewhere' || report.state === 'NotLocal')) {
      process.stderr.write('ipsec-operator: no socket could be held\n');
      return 1;
    }
    process.stdout.write('holding; SIGTERM or SIGINT ends it (and with it, receiving on the sockets it holds)\n');
    while (!signal.aborted) {
      await sleep(retrySeconds * 1000, signal);
      if (!signal.aborted) pass();
    }
    return 0;
  } finally {
    sockets.closeAll();
  }
}

function describe(report: EncapSocketReport): string {
  const where = report.address.includes(':') ? `[${report.address}]:${report.port}` : `${report.address}:${report.port}`;
  return `${where} ${report.encapsulation} ${report.state} (${report.resources.join(', ')}): ${report.message}`;
}

function stopSignal(): AbortSignal {
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  return controller.signal;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
