// Switching the backend: both agents restarted vxlan -> udp -> host-gw -> vxlan. Each
// switch leaves only the new backend's device, routes and socket on the nodes, and pods
// made under the old backend reach each other under the new one. Then `podnet cleanup`
// removes every transport device and route.
import t from 'tap';
import { execa } from 'execa';
import type { Node, Pod } from '../src/client/types.js';
import { Scope, insideOwnNetns, skipReason, waitFor } from './lib/harness.js';
import { buildCluster } from './lib/cluster.js';
import type { VNode } from './lib/cluster.js';
import { startApi } from './lib/api.js';
import { CLI, startAgent } from './lib/agents.js';
import type { AgentProcess } from './lib/agents.js';

const skip = skipReason();
if (skip) t.test('backend switch', { skip }, async () => undefined);
else if (await insideOwnNetns(import.meta.url, 'tr-switch')) {
  const scope = new Scope('tr-switch');
  t.teardown(() => scope.cleanup());
  const cluster = await buildCluster(scope, { nodes: 2 });
  await cluster.attachSelf('198.18.0.100');
  const api = await startApi({ host: '198.18.0.100', nodes: ['n1', 'n2'] });
  scope.defer(() => api.cleanup());
  const agents: AgentProcess[] = [];
  for (const n of cluster.nodes) agents.push(await startAgent(scope, n, api, { backend: 'vxlan', extraArgs: ['--resync-period', '2s'] }));
  const inNode = (n: VNode, cmd: string, args: string[]) => execa('nsenter', ['--net=' + n.netns.path, '--', cmd, ...args], { reject: false });
  const links = async (n: VNode) => (JSON.parse((await inNode(n, 'ip', ['-j', 'link', 'show'])).stdout) as { ifname: string }[]).map((l) => l.ifname);
  const routes = async (n: VNode) => (await inNode(n, 'ip', ['route', 'show', 'proto', '222'])).stdout.trim();
  const udpSockets = async (n: VNode) => (await inNode(n, 'ss', ['-Hunl', 'sport = :8285'])).stdout.trim();
  const onBackend = (backend: string) =>
    waitFor(async () => {
      const nodes = await Promise.all(['n1', 'n2'].map(async (n) => (await api.call<Node>('GET', `/api/v1/nodes/${n}`)).body));
      return nodes.every((n) => n.metadata.annotations?.['podnet.io/backend-type'] === backend && n.status?.conditions?.some((c) => c.type === 'PodnetTransport' && c.status === 'True' && c.message?.startsWith(backend)));
    }, 30_000, `both nodes on ${backend}`).catch((e: unknown) => {
      t.comment(agents.map((a) => a.logs().slice(-2000)).join('\n'));
      throw e;
    });

  for (const [name, node] of [['a', 'n1'], ['c', 'n2']]) {
    await api.call('POST', '/api/v1/namespaces/default/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { nodeName: node, containers: [{ name: 'c', image: 'x' }] } });
  }
  const pods = await waitFor(async () => {
    const ps = await Promise.all(['a', 'c'].map(async (n) => (await api.call<Pod>('GET', `/api/v1/namespaces/default/pods/${n}`)).body));
    return ps.every((p) => p.status?.phase === 'Running') ? ps : undefined;
  }, 30_000, 'pods a and c Running');
  const aNs = await agents[0]!.netnsOf('default', 'a');
  const cIP = pods![1]!.status!.podIP!;
  const reach = () => waitFor(async () => (await execa('nsenter', ['--net=/run/netns/' + aNs, '--', 'ping', '-c', '1', '-W', '1', cIP], { reject: false })).exitCode === 0, 10_000, `a (n1) to reach c (n2) ${cIP}`);

  // An operator's own route on n1: no backend may touch it.
  const foreign = async () => (await inNode(cluster.nodes[0]!, 'ip', ['route', 'show', '10.99.0.0/24'])).stdout.trim();
  await t.test('vxlan: podnet.1 and routes through it', async (t) => {
    await onBackend('vxlan');
    await reach();
    await inNode(cluster.nodes[0]!, 'ip', ['route', 'add', '10.99.0.0/24', 'via', '198.18.0.2', 'dev', 'eth0']);
    t.match(await foreign(), /via 198\.18\.0\.2/, 'a route of the operator on n1 (not podnet\'s protocol)');
    for (const n of cluster.nodes) {
      t.ok((await links(n)).includes('podnet.1'), `${n.name} has podnet.1`);
      t.match(await routes(n), /dev podnet\.1/, `${n.name} routes the other subnet through podnet.1`);
    }
  });

  const steps: [string, string, RegExp, string[]][] = [
    ['udp', 'podnet.udp', /dev podnet\.udp/, ['podnet.1']],
    ['host-gw', '', /via 198\.18\.0\.\d dev eth0/, ['podnet.1', 'podnet.udp']],
    ['vxlan', 'podnet.1', /dev podnet\.1/, ['podnet.udp']],
  ];
  for (const [backend, dev, route, gone] of steps) {
    await t.test(`switch to ${backend}: the old backend's device, routes and socket are gone; pods still reach each other`, async (t) => {
      for (const a of agents) {
        await a.kill('SIGTERM');
        await a.restart({ backend });
      }
      await onBackend(backend);
      await reach();
      t.pass(`a (n1) reaches c (n2) over ${backend}`);
      for (const n of cluster.nodes) {
        const ls = await links(n);
        for (const g of gone) t.notOk(ls.includes(g), `${n.name}: ${g} removed`);
        if (dev) t.ok(ls.includes(dev), `${n.name}: ${dev} present`);
        const rs = await routes(n);
        t.match(rs, route, `${n.name}: ${rs}`);
        t.equal(rs.split('\n').length, 1, `${n.name}: one transport route (no leftover of the old backend)`);
        if (backend === 'udp') t.match(await udpSockets(n), /198\.18\.0\.\d:8285/, `${n.name}: the udp loop listens on 8285`);
        else t.equal(await udpSockets(n), '', `${n.name}: nothing listens on 8285 any more`);
      }
      t.match(await foreign(), /via 198\.18\.0\.2/, 'the operator\'s route on n1 is untouched');
    });
  }

  await t.test('podnet cleanup after a crash removes the transport device, routes and socket', async (t) => {
    // n1's agent, switched to udp, dies (SIGKILL): its TUN and routes stay behind.
    const n1 = cluster.nodes[0]!;
    const ag = agents[0]!;
    await ag.kill('SIGKILL');
    await ag.restart({ backend: 'udp' });
    // While n2 still runs vxlan, n1 says why it has no path instead of installing one.
    await waitFor(async () => (await api.call<Node>('GET', '/api/v1/nodes/n1')).body.status?.conditions?.some((c) => c.type === 'PodnetTransport' && c.status === 'False' && c.reason === 'BackendMismatch'), 20_000, 'n1: PodnetTransport=False BackendMismatch');
    t.equal(await routes(n1), '', 'n1 on udp, n2 on vxlan: no route, PodnetTransport=False (BackendMismatch)');
    await agents[1]!.kill('SIGTERM');
    await agents[1]!.restart({ backend: 'udp' });
    await waitFor(async () => (await routes(n1)).includes('dev podnet.udp'), 20_000, 'n1 routing through podnet.udp');
    await ag.kill('SIGKILL');
    t.ok((await links(n1)).includes('podnet.udp'), 'podnet.udp left behind by the crash');
    const r = await inNode(n1, process.execPath, [CLI, 'cleanup', '--node-name', 'n1', '--state-dir', ag.stateDir, '--netns-prefix', ag.netnsPrefix]);
    t.equal(r.exitCode, 0, `cleanup: ${r.stdout.trim()} ${r.stderr.slice(-300)}`);
    const ls = await links(n1);
    t.notOk(ls.includes('podnet.udp'), 'podnet.udp removed');
    t.notOk(ls.includes('podnet.1'), 'podnet.1 removed');
    t.equal(await routes(n1), '', 'no proto 222 route left');
    t.equal(await udpSockets(n1), '', 'no socket on 8285');
  });
}
