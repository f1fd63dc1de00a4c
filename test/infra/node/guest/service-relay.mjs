// The test node's stand-in for kube-proxy, for the one Service the operator uses: the
// "kubernetes" Service (ClusterIP 10.96.0.1:443), which in-cluster clients reach through
// KUBERNETES_SERVICE_HOST/PORT. The test control plane's apiserver listens on the host's
// loopback, which the guest reaches as 10.0.2.2; this relay listens on the ClusterIP (an address
// of the guest's lo, so pods reach it through their bridge gateway and hostNetwork pods
// directly) and splices each connection to the apiserver. TLS passes through untouched: the
// serving certificate names 10.96.0.1 and kubernetes.default.svc.
//
//   node service-relay.mjs --listen 10.96.0.1:443 --to 10.0.2.2:PORT
import { connect, createServer } from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { listen: { type: 'string' }, to: { type: 'string' } } });
const split = (endpoint) => {
  const at = endpoint?.lastIndexOf(':') ?? -1;
  if (at <= 0) throw new Error('usage: service-relay.mjs --listen ADDR:PORT --to ADDR:PORT');
  return { host: endpoint.slice(0, at), port: Number(endpoint.slice(at + 1)) };
};
const listen = split(values.listen);
const target = split(values.to);

const server = createServer((client) => {
  const upstream = connect(target);
  // Either side closing or failing ends both: a half-open splice would hang the client's watch.
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', close).on('close', close);
  upstream.on('error', close).on('close', close);
  client.pipe(upstream);
  upstream.pipe(client);
});
server.listen(listen, () => console.log(`relaying ${values.listen} -> ${values.to}`));
