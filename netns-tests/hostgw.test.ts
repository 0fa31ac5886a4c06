// Two node namespaces on an underlay, a pod namespace on each, host-gw style routes
// (each node routes the other's pod subnet via the other's underlay address), and real
// TCP traffic between the pods.
import t from 'tap';
import { Scope, nodeIn, sh, skipReason, waitFor } from './lib/harness.js';
import { addPod, buildCluster } from './lib/cluster.js';

const skip = skipReason();

t.test('pods on two nodes talk TCP over host-gw routes', { skip }, async (t) => {
  const scope = new Scope('hgw');
  t.teardown(() => scope.cleanup());
  const cluster = await buildCluster(scope, { nodes: 2 });
  const [n1, n2] = cluster.nodes as [(typeof cluster.nodes)[0], (typeof cluster.nodes)[0]];
  const podA = await addPod(scope, n1, 'a', { gateway: '10.244.1.1', prefix: 24 }, '10.244.1.2');
  const podB = await addPod(scope, n2, 'b', { gateway: '10.244.2.1', prefix: 24 }, '10.244.2.2');

  // Before routes: no path.
  const before = await sh(podA.netns, 'ping', ['-c1', '-W1', podB.ip], { reject: false });
  t.not(before.exitCode, 0, 'no route yet: the ping fails');

  await n1.nl.routes.ensure({ dst: '10.244.2.0/24', via: n2.ip });
  await n2.nl.routes.ensure({ dst: '10.244.1.0/24', via: n1.ip });

  await sh(podA.netns, 'ping', ['-c1', '-W2', podB.ip]);
  t.pass('ICMP crosses nodes');

  const server = nodeIn(
    podB.netns,
    async () => {
      const net = await import('node:net');
      await new Promise<void>((resolve) => {
        const srv = net.createServer((sock) => {
          sock.on('data', (d) => {
            sock.end(`echo:${d.toString()} from:${sock.remoteAddress}`);
            srv.close();
          });
        });
        srv.listen(8080, '0.0.0.0', () => process.stdout.write('listening\n'));
        srv.on('close', resolve);
      });
    },
    null,
  );
  t.teardown(() => server.kill('SIGKILL'));
  await waitFor(async () => String((await sh(podB.netns, 'ss', ['-Htln', 'sport = :8080'])).stdout).includes('8080'), 5000, 'server listening');

  const client = await nodeIn(
    podA.netns,
    async (to: string) => {
      const net = await import('node:net');
      return await new Promise<string>((resolve, reject) => {
        const s = net.connect(8080, to, () => s.write('hello'));
        let got = '';
        s.on('data', (d) => (got += d.toString()));
        s.on('end', () => resolve(got));
        s.on('error', reject);
      });
    },
    podB.ip,
  );
  t.equal(JSON.parse(String(client.stdout)), `echo:hello from:${podA.ip}`, 'TCP round trip; the pod source address is preserved (no NAT)');
  await server;

  // The route is what carries it: remove it and traffic stops.
  await n1.nl.routes.delete({ dst: '10.244.2.0/24' });
  const after = await sh(podA.netns, 'ping', ['-c1', '-W1', podB.ip], { reject: false });
  t.not(after.exitCode, 0, 'without the host-gw route the ping fails again');
});
