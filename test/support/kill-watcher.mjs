// Guest-side half of the VM kill loop (test/kernel/vm/ownership-kill-loop.test.ts):
// one exec per round, so the host pays the TCG exec round-trip once. It runs the CLI, watches
// the ledger every 5 ms and SIGKILLs the CLI at the chosen moment (timed from the CLI's n-th
// ledger write, so the kill lands in the engine rather than in node's start-up; inotify wakes it
// at each write), then runs the
// recovery and `diff --prune`; with `kill.settled` it kills as soon as the ledger, folded from
// its snapshot and journal, has every record settled again after the run made some unsettled
// (the run's last write: the kernel changed and the records settled, the process not yet gone);
// with `kill.rollback`, delayMs after the write that makes a rollback's intents durable (a key
// set again with another phase), however many writes came before it.
// Then it prints one JSON object: the kernel and ledger before, right
// after the kill and at the end, the write times, the exit statuses and the watched run's output
// (its tail: what a refused run says it rolled back).
// Usage: node kill-watcher.mjs '<json spec>' (see Spec in the test file).
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, statSync, watch } from 'node:fs';

const spec = JSON.parse(process.argv[2]);
const base = `${spec.stateDir}/netns-${spec.netns}`;

function kernel() {
  const state = spawnSync('ip', ['-n', spec.netns, '-s', 'xfrm', 'state'], { encoding: 'utf8' });
  const policy = spawnSync('ip', ['-n', spec.netns, '-s', 'xfrm', 'policy'], { encoding: 'utf8' });
  return `${state.stdout}====\n${policy.stdout}`;
}
function read(path) {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
function ledger() {
  return { snapshot: read(`${base}/ledger.json`), journal: read(`${base}/ledger.journal`) };
}
/** What changes when the ledger is written: the journal's size and mtime, the snapshot's inode and mtime. */
function signature() {
  const parts = [];
  for (const name of ['ledger.json', 'ledger.journal']) {
    try {
      const s = statSync(`${base}/${name}`);
      parts.push(`${s.ino}:${s.size}:${s.mtimeMs}`);
    } catch {
      parts.push('-');
    }
  }
  return parts.join('/');
}
/** The journal's lines after its header, parsed; undefined at a torn last line (a write still going on). */
function journalLines(files) {
  const lines = [];
  for (const line of files.journal.split('\n').slice(1)) {
    const body = line.split('\t')[0];
    if (!body) continue;
    try {
      lines.push(JSON.parse(body));
    } catch {
      return undefined;
    }
  }
  return lines;
}
/** Whether every record of the ledger is `present` (undefined while a file is mid-write). */
function allPresent() {
  const phases = new Map();
  const files = ledger();
  const lines = journalLines(files);
  try {
    if (files.snapshot) for (const record of JSON.parse(files.snapshot).records) phases.set(record.key, record.phase);
  } catch {
    return undefined;
  }
  if (!lines) return undefined;
  for (const entry of lines) {
    for (const key of entry.remove ?? []) phases.delete(key);
    for (const record of entry.set ?? []) phases.set(record.key, record.phase);
  }
  return [...phases.values()].every((phase) => phase === 'present');
}
/**
 * Whether this run's journal lines hold a rollback's intents: a key set a second time with a
 * phase other than present (the way back of a create is a delete, of a delete a create); the
 * test file reads its landings by the same rule.
 */
function rollbackStarted(earlier, files) {
  const lines = journalLines(files);
  if (!lines) return false;
  const seen = new Set();
  for (const entry of files.snapshot === earlier.snapshot ? lines.slice(journalLines(earlier)?.length ?? 0) : lines) {
    for (const record of entry.set ?? []) {
      if (seen.has(record.key) && record.phase !== 'present') return true;
      seen.add(record.key);
    }
  }
  return false;
}
function run(args) {
  const started = Date.now();
  const r = spawnSync('node', [spec.cli, ...args], { encoding: 'utf8', timeout: 240_000 });
  return { status: r.status, signal: r.signal, ms: Date.now() - started, output: `${r.stdout}\n${r.stderr}`.slice(-3000) };
}

const before = { kernel: kernel(), ledger: ledger() };
const started = Date.now();
const child = spawn('node', [spec.cli, ...spec.args], { stdio: ['ignore', 'pipe', 'pipe'] });
let output = '';
const collect = (chunk) => (output = (output + chunk).slice(-8000));
child.stdout.setEncoding('utf8').on('data', collect);
child.stderr.setEncoding('utf8').on('data', collect);
const writes = [];
let last = signature();
// A kill point: `settled` and `rollback` wait for what the ledger shows, the others count writes.
const byWrites = spec.kill && !spec.kill.settled && !spec.kill.rollback;
let killAt = byWrites && spec.kill.write === 0 ? started + spec.kill.delayMs : undefined;
/** ms from the start to the write that made the rollback's intents durable (every run reports it). */
let rollbackMs;
let killed = false;
let sawUnsettled = false;
const exited = new Promise((resolve) => child.on('exit', (status, signal) => resolve({ status, signal })));
let done = false;
void exited.then(() => (done = true));
// inotify on the state directory, besides the 5 ms poll: the loop looks at the ledger as soon as
// the CLI writes it, so a kill aimed at a short window (the last write before the exit, a
// rollback's intents) is not late by a poll period. The directory exists from the first apply
// on; a round without it (the very first run) is watched by the poll alone.
let wake = () => undefined;
let directoryWatch;
try {
  directoryWatch = watch(base, () => wake()).on('error', () => undefined); // a removed directory: the poll goes on
} catch {
  directoryWatch = undefined;
}
while (!done) {
  const now = Date.now();
  const current = signature();
  if (current !== last) {
    last = current;
    writes.push(now - started);
    if (byWrites && writes.length === spec.kill.write) killAt = now + spec.kill.delayMs;
    if (rollbackMs === undefined && rollbackStarted(before.ledger, ledger())) {
      rollbackMs = now - started;
      if (spec.kill?.rollback) killAt = now + spec.kill.delayMs;
    }
    if (spec.kill?.settled) {
      const settled = allPresent();
      if (settled === false) sawUnsettled = true;
      if (settled === true && sawUnsettled) killAt = now;
    }
  }
  if (killAt !== undefined && now >= killAt && !killed) {
    killed = true;
    child.kill('SIGKILL');
  }
  // Woken by the next change in the state directory, or after 5 ms at the latest.
  await new Promise((resolve) => {
    wake = resolve;
    setTimeout(resolve, 5);
  });
}
directoryWatch?.close();
const outcome = await exited;
const afterKill = { kernel: kernel(), ledger: ledger(), ms: Date.now() - started };
const recovery = spec.recover ? run(spec.recover) : undefined;
const diff = spec.diff ? run(spec.diff) : undefined;
const end = { kernel: kernel(), ledger: ledger() };
process.stdout.write(JSON.stringify({ before, outcome: { ...outcome, killed: outcome.signal === 'SIGKILL', output }, writes, rollbackMs: rollbackMs ?? null, afterKill, recovery, diff, end, inotify: directoryWatch !== undefined, temporaries: spawnSync('sh', ['-c', `ls ${base} | grep -c tmp || true`], { encoding: 'utf8' }).stdout.trim() }));
