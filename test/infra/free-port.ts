// A free TCP port on the host's loopback, for test servers that need one before they start.
import { createServer } from 'node:net';

/**
 * Ports this process has handed out. A port is free when we ask and taken only later, when the
 * child process given it binds it, so the kernel can hand the same ephemeral port out again
 * in between (bench:scale got one port for the controller and an agent: EADDRINUSE). No port is
 * given twice by one process.
 */
const handedOut = new Set<number>();

/** A loopback TCP port that is free now and was not handed out before by this process. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = await probe();
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error('no free loopback port found that was not handed out already');
}

function probe(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}
