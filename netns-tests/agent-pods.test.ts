// podnet api + 3 agents, each agent process inside its node namespace of a virtual cluster:
// nodes register and claim distinct subnets, pods created with kubectl get addresses
// (IPv4 + IPv6) from their node's subnets, pods on one node reach each other through the
// bridge, `podnet pod netns` names their namespace, and deleting a pod removes its
// sandbox, pause process, veth and addresses.
import t from 'tap';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { NetNS, Netlink } from '../src/kernel/index.js';
import { Cidr } from '../src/util/ipnet.js';
import type { Node, Pod } from '../src/client/types.js';
import { Scope, insideOwnNetns, skipReason, waitFor, testTempDir } from './lib/harness.js';
import { buildCluster } from './lib/cluster.js';
import { startApi } from './lib/api.js';
import { startAgent } from './lib/agents.js';
import type { AgentProcess } from './lib/agents.js';

const kubectlMissing = await execa('kubectl', ['version', '--client'], { reject: false }).then((r) => (r.exitCode === 0 ? undefined : 'kubectl is not installed'), () => 'kubectl is not installed');
const skip = skipReason() ?? kubectlMissing;

if (skip) {
  t.test('agents and pod sandboxes', { skip }, async () => undefined);
} else if (await insideOwnNetns(import.meta.url, 'agents')) {
  const scope = new Scope('agents');
  t.teardown(() => scope.cleanup());
  const cluster = await buildCluster(scope, { nodes: 3 });
  await cluster.attachSelf('198.18.0.100');
  const api = await startApi({ host: '198.18.0.100', nodes: ['n1', 'n2', 'n3'] });
  scope.defer(() => api.cleanup());
  const cache = testTempDir('kcache');
  scope.defer(() => rmSync(cache, { recursive: true, force: true }));
  const kubectl = async (...args: string[]) => {
    const r = await execa('kubectl', ['--kubeconfig', api.kubeconfig, '--cache-dir', cache, ...args], { reject: false, timeout: 30_000 });
    if (r.exitCode !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
    return String(r.stdout);
  };
  const agents: AgentProcess[] = [];
  for (const n of cluster.nodes) agents.push(await startAgent(scope, n, api, { clusterCidr: '10.244.0.0/16', clusterCidrV6: 'fd00:10:244::/56' }));
  const getNode = async (name: string) => (await api.call<Node>('GET', `/api/v1/nodes/${name}`)).body;
  const getPod = async (name: string) => (await api.call<Pod>('GET', `/api/v1/namespaces/default/pods/${name}`)).body;
  const inPod = (netns: string, cmd: string, args: string[], input?: string) => execa('nsenter', ['--net=/run/netns/' + netns, '--', cmd, ...args], { reject: false, timeout: 15_000, ...(input !== undefined ? { input } : {}) });

  await t.test('nodes register, become Ready and claim distinct subnets of both families', async (t) => {
    const nodes = await waitFor(async () => {
      const all = await Promise.all(['n1', 'n2', 'n3'].map(getNode));
      return all.every((n) => n.spec?.podCIDRs?.length === 2 && n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) ? all : undefined;
    }, 30_000, 'three Ready nodes with pod subnets').catch((e: unknown) => {
      for (const a of agents) t.comment(`--- agent ${a.node.name}\n${a.logs().slice(-3000)}`);
      throw e;
    });
    const v4 = nodes!.map((n) => n.spec!.podCIDRs![0]!);
    const v6 = nodes!.map((n) => n.spec!.podCIDRs![1]!);
    t.equal(new Set(v4).size, 3, `distinct IPv4 subnets: ${v4.join(' ')}`);
    t.equal(new Set(v6).size, 3, `distinct IPv6 subnets: ${v6.join(' ')}`);
    for (const c of v4) t.ok(Cidr.parse('10.244.0.0/16').contains(Cidr.parse(c).network) && c.endsWith('/24'), `${c} is a /24 of the cluster CIDR`);
    for (const c of v6) t.ok(c.startsWith('fd00:10:244:') && c.endsWith('/64'), `${c} is a /64 of the IPv6 cluster CIDR`);
    const lease = await api.call<{ spec?: { holderIdentity?: string; renewTime?: string } }>('GET', '/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1');
    t.equal(lease.body.spec?.holderIdentity, 'n1', 'the node renews its Lease');
    const out = await kubectl('get', 'nodes', '-o', 'wide');
    t.match(out, /n1\s+Ready/, 'kubectl shows the node Ready');
    t.match(out, /198\.18\.0\.1\b/, 'with its INTERNAL-IP');
  });

  const manifest = (name: string, node: string) => `apiVersion: v1
kind: Pod
metadata: {name: ${name}, labels: {app: demo}}
spec:
  nodeName: ${node}
  containers: [{name: c, image: podnet/demo}]
`;
  const dir = testTempDir('manifests');
  scope.defer(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'pods.yaml');
  writeFileSync(file, ['a1:n1', 'a2:n1', 'b1:n2'].map((x) => manifest(x.split(':')[0]!, x.split(':')[1]!)).join('---\n'));

  await t.test('pods created with kubectl get addresses from their node subnets', async (t) => {
    await kubectl('apply', '-f', file);
    const pods = await waitFor(async () => {
      const ps = await Promise.all(['a1', 'a2', 'b1'].map(getPod));
      return ps.every((p) => p.status?.phase === 'Running' && p.status.podIPs?.length === 2) ? ps : undefined;
    }, 20_000, 'three Running pods with addresses').catch((e: unknown) => {
      for (const a of agents) t.comment(`--- agent ${a.node.name}\n${a.logs().slice(-3000)}`);
      throw e;
    });
    const n1 = await getNode('n1');
    const n2 = await getNode('n2');
    for (const p of pods!) {
      const node = p.spec?.nodeName === 'n1' ? n1 : n2;
      const [c4, c6] = node.spec!.podCIDRs!.map((c) => Cidr.parse(c));
      const [ip4, ip6] = p.status!.podIPs!.map((x) => x.ip);
      t.ok(c4!.contains(ip4!), `${p.metadata.name}: ${ip4} is in ${c4}`);
      t.ok(c6!.contains(ip6!), `${p.metadata.name}: ${ip6} is in ${c6}`);
      t.equal(p.status?.podIP, ip4, 'podIP is the IPv4 address');
      t.equal(p.status?.hostIP, node.status?.addresses?.find((a) => a.type === 'InternalIP')?.address, 'hostIP is the node address');
      t.ok(p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'), 'Ready=True');
      t.not(ip4, c4!.nth(1n), 'not the gateway address');
    }
    const out = await kubectl('get', 'pods', '-o', 'wide');
    t.match(out, /a1\s+\S+\s+Running.*10\.244\.\d+\.\d+\s+n1/, 'kubectl get pods -o wide shows IP and NODE');
  });

  await t.test('pods on one node reach each other through the bridge (TCP, ICMP, IPv6)', async (t) => {
    const a1 = await agents[0]!.netnsOf('default', 'a1');
    const a2 = await agents[0]!.netnsOf('default', 'a2');
    t.match(a1, /^pnt-\d+-n1-default\.a1$/, `podnet pod netns prints ${a1}`);
    const p1 = await getPod('a1');
    const [ip4, ip6] = p1.status!.podIPs!.map((x) => x.ip);
    const srv = execa('nsenter', ['--net=/run/netns/' + a1, '--', 'socat', 'TCP-LISTEN:8080,reuseaddr,fork', 'EXEC:/bin/cat'], { reject: false });
    scope.defer(() => srv.kill('SIGKILL'));
    const echoed = await waitFor(async () => {
      const r = await inPod(a2, 'socat', ['-t', '2', '-', `TCP:${ip4}:8080`], 'hello from a2\n');
      return r.stdout.includes('hello from a2') ? r.stdout : undefined;
    }, 10_000, 'a TCP echo from a1');
    t.match(echoed, /hello from a2/, 'TCP a2 -> a1 over IPv4');
    t.equal((await inPod(a2, 'ping', ['-c', '1', '-W', '2', ip4!])).exitCode, 0, 'ICMP a2 -> a1');
    t.equal((await inPod(a2, 'ping', ['-6', '-c', '1', '-W', '2', ip6!])).exitCode, 0, 'ICMPv6 a2 -> a1');
    const lo = await inPod(a1, 'ip', ['-j', 'link', 'show', 'lo']);
    t.match(lo.stdout, /"UP"/, 'lo is up in the pod');
    const route = await inPod(a1, 'ip', ['-j', 'route', 'show', 'default']);
    t.match(route.stdout, /"gateway":"10\.244\.\d+\.1"/, 'default route via the bridge gateway');
    const eth0 = JSON.parse((await inPod(a1, 'ip', ['-j', 'link', 'show', 'eth0'])).stdout) as { mtu: number }[];
    t.equal(eth0[0]?.mtu, 1500, 'pod MTU from the transport (host-gw: the underlay MTU)');
  });

  await t.test('deleting a pod removes its sandbox: namespace, pause, veth, addresses', async (t) => {
    const a2 = await agents[0]!.netnsOf('default', 'a2');
    const pauses = NetNS.pids(a2);
    t.ok(pauses.length >= 1, 'a pause process holds the pod namespace');
    const nl = Netlink.open(cluster.nodes[0]!.netns);
    scope.defer(() => nl.close());
    const vethsBefore = (await nl.links.list()).filter((l) => /^pn[0-9a-f]{11}$/.test(l.name)).length;
    const ip = (await getPod('a2')).status!.podIP!;
    await kubectl('delete', 'pod', 'a2', '--wait=true', '--timeout=20s');
    await waitFor(() => !existsSync(`/run/netns/${a2}`), 10_000, 'the pod namespace to go');
    t.notOk(existsSync(`/run/netns/${a2}`), 'namespace unpinned');
    await waitFor(() => pauses.every((p) => { try { process.kill(p, 0); return false; } catch { return true; } }), 5000, 'pause to exit');
    t.pass('pause exited');
    await waitFor(async () => (await nl.links.list()).filter((l) => /^pn[0-9a-f]{11}$/.test(l.name)).length === vethsBefore - 1, 5000, 'the host veth to go');
    t.pass('host veth gone');
    t.equal((await api.call('GET', '/api/v1/namespaces/default/pods/a2')).status, 404, 'the pod object is gone');
    // Its address is free again: a new pod on n1 may get it (round robin moves on, so check the IPAM state instead).
    const journal = await execa('cat', [join(agents[0]!.stateDir, 'ipam.journal')]);
    t.ok(journal.stdout.includes('"release"') || !journal.stdout.includes(ip), 'the address was released in the IPAM journal');
  });
}
