// The test VM's control server: runs commands in the guest for the host harness
// (test/infra/vm/client.ts). Started by the guest's init with the host's node; plain ESM
// JavaScript because it runs as is, without a build step.
//
// Protocol: HTTP/1.1 + JSON, every request carries 'Authorization: Bearer <token>'.
//   GET  /health                    -> { ok, kernel, uptimeSeconds }
//   POST /exec     CommandSpec + { stdin?, timeoutMs? }
//                                   -> { exitCode, signal, stdout, stderr, timedOut }
//   POST /spawn    CommandSpec       -> { id, pid }
//   GET  /procs/:id                 -> ProcessStatus { id, pid, running, exitCode, signal, stdout, stderr }
//   POST /procs/:id/kill  { signal? }                 -> ProcessStatus
//   POST /procs/:id/wait  { timeoutMs }               -> ProcessStatus (running=true on timeout)
//   POST /poweroff                  -> { ok }, then the server exits and init powers off
// CommandSpec = { argv: string[] } | { script: string } (run by 'sh -c'), plus env?, cwd?.
// Errors: 4xx/5xx with { error }.
//
// Reachability: it listens on the guest's eth0 address only, and accepts connections only
// from qemu's user-network gateway (where the host's loopback-only hostfwd comes from)
// carrying the token the host put on the kernel command line.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    listen: { type: 'string' },
    port: { type: 'string' },
    peer: { type: 'string' },
  },
});
if (!args.listen || !args.port || !args.peer) {
  throw new Error('usage: control-server.mjs --listen ADDR --port PORT --peer ALLOWED_REMOTE_ADDR');
}
const token = Buffer.from(process.env.IPSEC_OPERATOR_VM_TOKEN ?? '');
if (token.length === 0) throw new Error('IPSEC_OPERATOR_VM_TOKEN is not set');
delete process.env.IPSEC_OPERATOR_VM_TOKEN;

// Per stream, a spawned process keeps the last 1 MiB; exec returns up to 64 MiB.
const SPAWN_OUTPUT_LIMIT = 1 << 20;
const EXEC_OUTPUT_LIMIT = 64 << 20;
const MAX_BODY = 64 << 20;

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Keeps the last `limit` bytes written to it. */
class TailBuffer {
  constructor(limit) {
    this.limit = limit;
    this.chunks = [];
    this.size = 0;
    this.dropped = 0;
  }
  push(chunk) {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size > this.limit && this.chunks.length > 0) {
      const excess = this.size - this.limit;
      const head = this.chunks[0];
      if (head.length <= excess) {
        this.chunks.shift();
        this.size -= head.length;
        this.dropped += head.length;
      } else {
        this.chunks[0] = head.subarray(excess);
        this.size -= excess;
        this.dropped += excess;
      }
    }
  }
  text() {
    const body = Buffer.concat(this.chunks).toString('utf8');
    return this.dropped > 0 ? `[... ${this.dropped} earlier bytes dropped ...]\n${body}` : body;
  }
}

function commandOf(body) {
  if (Array.isArray(body.argv)) {
    if (body.argv.length === 0 || !body.argv.every((a) => typeof a === 'string')) {
      throw new HttpError(400, 'argv must be a non-empty array of strings');
    }
    return { file: body.argv[0], argv: body.argv.slice(1) };
  }
  if (typeof body.script === 'string') return { file: '/bin/sh', argv: ['-c', body.script] };
  throw new HttpError(400, 'give either argv (string[]) or script (string)');
}

function envOf(body) {
  if (body.env === undefined) return process.env;
  if (typeof body.env !== 'object' || body.env === null) throw new HttpError(400, 'env must be an object');
  return { ...process.env, ...body.env };
}

/** Starts a command in its own process group, so kill and timeouts reach its children too. */
function start(body) {
  const { file, argv } = commandOf(body);
  const child = spawn(file, argv, {
    cwd: typeof body.cwd === 'string' ? body.cwd : '/',
    env: envOf(body),
    detached: true,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    child.once('spawn', () => resolve(child));
    child.once('error', (err) => reject(new HttpError(422, `cannot start ${JSON.stringify(file)}: ${err.message}`)));
  });
}

function killGroup(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch (err) {
    if (err.code !== 'ESRCH') throw err;
  }
}

async function exec(body) {
  const child = await start(body);
  const stdout = new TailBuffer(EXEC_OUTPUT_LIMIT);
  const stderr = new TailBuffer(EXEC_OUTPUT_LIMIT);
  child.stdout.on('data', (c) => stdout.push(c));
  child.stderr.on('data', (c) => stderr.push(c));
  child.stdin.on('error', () => {}); // the command may exit without reading its input
  child.stdin.end(typeof body.stdin === 'string' ? body.stdin : undefined);
  let timedOut = false;
  const timer =
    typeof body.timeoutMs === 'number'
      ? setTimeout(() => {
          timedOut = true;
          killGroup(child, 'SIGKILL');
        }, body.timeoutMs)
      : undefined;
  const [exitCode, signal] = await new Promise((resolve) => child.once('close', (c, s) => resolve([c, s])));
  clearTimeout(timer);
  return { exitCode, signal, stdout: stdout.text(), stderr: stderr.text(), timedOut };
}

const procs = new Map();
let nextId = 1;

function statusOf(p) {
  return {
    id: p.id,
    pid: p.child.pid,
    running: p.exit === undefined,
    exitCode: p.exit?.exitCode ?? null,
    signal: p.exit?.signal ?? null,
    stdout: p.stdout.text(),
    stderr: p.stderr.text(),
  };
}

async function spawnProc(body) {
  const child = await start(body);
  const p = {
    id: String(nextId++),
    child,
    stdout: new TailBuffer(SPAWN_OUTPUT_LIMIT),
    stderr: new TailBuffer(SPAWN_OUTPUT_LIMIT),
    exit: undefined,
    exited: undefined,
  };
  child.stdout.on('data', (c) => p.stdout.push(c));
  child.stderr.on('data', (c) => p.stderr.push(c));
  child.stdin.on('error', () => {});
  child.stdin.end();
  p.exited = new Promise((resolve) =>
    child.once('close', (exitCode, signal) => {
      p.exit = { exitCode, signal };
      resolve();
    }),
  );
  procs.set(p.id, p);
  return { id: p.id, pid: child.pid };
}

function procOf(id) {
  const p = procs.get(id);
  if (!p) throw new HttpError(404, `no spawned process with id ${id}`);
  return p;
}

async function readJson(req) {
  const chunks = [];
  let size = 0;
  for await (const c of req) {
    size += c.length;
    if (size > MAX_BODY) throw new HttpError(413, `request body over ${MAX_BODY} bytes`);
    chunks.push(c);
  }
  if (size === 0) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'request body is not JSON');
  }
}

function authorized(req) {
  if (req.socket.remoteAddress !== args.peer) return false;
  const given = Buffer.from((req.headers.authorization ?? '').replace(/^Bearer /, ''));
  return given.length === token.length && timingSafeEqual(given, token);
}

let poweringOff = false;

async function route(req) {
  const url = new URL(req.url ?? '/', 'http://guest');
  const body = req.method === 'POST' ? await readJson(req) : {};
  const key = `${req.method} ${url.pathname}`;
  if (key === 'GET /health') {
    return { ok: true, kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(), uptimeSeconds: process.uptime() };
  }
  if (key === 'POST /exec') return exec(body);
  if (key === 'POST /spawn') return spawnProc(body);
  if (key === 'POST /poweroff') {
    poweringOff = true;
    return { ok: true };
  }
  const m = /^\/procs\/([^/]+)(?:\/(kill|wait))?$/.exec(url.pathname);
  if (m) {
    const p = procOf(m[1]);
    if (req.method === 'GET' && !m[2]) return statusOf(p);
    if (req.method === 'POST' && m[2] === 'kill') {
      if (p.exit === undefined) killGroup(p.child, body.signal ?? 'SIGTERM');
      return statusOf(p);
    }
    if (req.method === 'POST' && m[2] === 'wait') {
      const timeoutMs = typeof body.timeoutMs === 'number' ? body.timeoutMs : 30_000;
      let timer;
      await Promise.race([p.exited, new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
      clearTimeout(timer);
      return statusOf(p);
    }
  }
  throw new HttpError(404, `no route ${key}`);
}

const server = createServer((req, res) => {
  const reply = (status, payload) => {
    const text = JSON.stringify(payload);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  if (!authorized(req)) {
    req.resume();
    reply(403, { error: 'forbidden' });
    return;
  }
  route(req).then(
    (payload) => {
      reply(200, payload);
      if (poweringOff) res.once('finish', () => shutdown());
    },
    (err) => reply(err instanceof HttpError ? err.status : 500, { error: err instanceof Error ? err.message : String(err) }),
  );
});

function shutdown() {
  for (const p of procs.values()) if (p.exit === undefined) killGroup(p.child, 'SIGKILL');
  server.close();
  process.exit(0);
}

server.keepAliveTimeout = 60_000;
server.listen(Number(args.port), args.listen, () => {
  console.log(`ipsec-operator-vm: [${readFileSync('/proc/uptime', 'utf8').split(' ')[0]}] control server ready on ${args.listen}:${args.port}`);
});
