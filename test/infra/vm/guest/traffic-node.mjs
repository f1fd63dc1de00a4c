// Numbered UDP traffic between test nodes, for proofs of zero loss (the mesh and rotation tests).
// Runs in one node's network namespace (`ip netns exec NS node traffic-node.mjs ...`); plain ESM
// JavaScript because it runs in the guest as is, without a build step.
//
// It binds, prints `ready ADDR`, and waits for SIGUSR1 (sent to every node once all are ready, so
// that nothing is sent to a peer that is not listening yet). Then every 1000/rate ms it sends one
// datagram to each peer: 8 bytes, the big-endian number of the
// datagram in that direction (1, 2, 3, ...). It counts what each peer sent it. On SIGTERM it
// stops sending, keeps receiving for --drain-ms (datagrams still in flight), prints one JSON line
//   {"self": ADDR, "sent": {PEER: n}, "received": {PEER: {"unique": n, "duplicates": n,
//    "highest": n, "missing": [first 64 numbers never received, up to highest]}}}
// and exits 0. A send that fails (no route, EPERM from a blocking policy) counts as sent: the
// receiver then misses it, which is what a loss proof must see. Nothing here knows about IPsec.
import { createSocket } from 'node:dgram';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    self: { type: 'string' },
    peers: { type: 'string' },
    port: { type: 'string', default: '7000' },
    rate: { type: 'string', default: '25' },
    'drain-ms': { type: 'string', default: '1500' },
  },
});
if (!args.self || !args.peers) throw new Error('usage: traffic-node.mjs --self ADDR --peers ADDR,ADDR [--port P] [--rate PER_SECOND] [--drain-ms MS]');
const port = Number(args.port);
const rate = Number(args.rate);
const drainMs = Number(args['drain-ms']);
const peers = args.peers.split(',').filter((peer) => peer !== '');
const family = args.self.includes(':') ? 'udp6' : 'udp4';

const sent = Object.fromEntries(peers.map((peer) => [peer, 0]));
/** Per peer: numbers received (a Set: duplicates are counted apart), and the highest. */
const received = new Map(peers.map((peer) => [peer, { numbers: new Set(), duplicates: 0, highest: 0 }]));

const socket = createSocket({ type: family, reuseAddr: true });
socket.on('message', (message, remote) => {
  const from = received.get(remote.address);
  if (!from || message.length !== 8) return;
  const number = Number(message.readBigUInt64BE(0));
  if (from.numbers.has(number)) from.duplicates += 1;
  else from.numbers.add(number);
  if (number > from.highest) from.highest = number;
});
socket.on('error', () => undefined); // ICMP errors of earlier sends: the receiver's count tells
socket.bind(port, args.self, () => {
  process.stdout.write(`ready ${args.self}\n`);
});

let sending = false;
process.on('SIGUSR1', () => {
  sending = true;
});
const timer = setInterval(() => {
  if (!sending) return;
  for (const peer of peers) {
    sent[peer] += 1;
    const datagram = Buffer.alloc(8);
    datagram.writeBigUInt64BE(BigInt(sent[peer]), 0);
    socket.send(datagram, port, peer, () => undefined);
  }
}, Math.max(1, Math.round(1000 / rate)));

process.on('SIGTERM', () => {
  sending = false;
  clearInterval(timer);
  setTimeout(() => {
    const summary = { self: args.self, sent, received: {} };
    for (const [peer, from] of received) {
      const missing = [];
      for (let number = 1; number <= from.highest && missing.length < 64; number += 1) if (!from.numbers.has(number)) missing.push(number);
      summary.received[peer] = { unique: from.numbers.size, duplicates: from.duplicates, highest: from.highest, missing };
    }
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    socket.close();
    process.exit(0);
  }, drainMs);
});
