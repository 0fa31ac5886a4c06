// Subnet leases: 20 agents register at once on a cluster CIDR with room for 16 node
// subnets: 16 get distinct subnets, the other 4 refuse to start with a clear error; a
// subnet is kept across restarts; a deleted Node's subnet becomes free for another node;
// an agent whose configured cluster CIDR disagrees with its claim refuses to start.
import t from 'tap';
import type { Node } from '../src/client/types.js';
import { Scope, insideOwnNetns, skipReason, waitFor } from './lib/harness.js';
import { buildCluster } from './lib/cluster.js';
import { startApi } from './lib/api.js';
import { startAgent } from './lib/agents.js';
import type { AgentProcess } from './lib/agents.js';

const skip = skipReason();
const AGENTS = 20;
const CIDR = '10.244.0.0/20'; // 16 subnets of /24

if (skip) {
  t.test('subnet leases', { skip }, async () => undefined);
} else if (await insideOwnNetns(import.meta.url, 'subnets')) {
  const scope = new Scope('subnets');
  t.teardown(() => scope.cleanup());
  const cluster = await buildCluster(scope, { nodes: AGENTS });
  await cluster.attachSelf('198.18.0.200');
  const names = cluster.nodes.map((n) => n.name);
  const api = await startApi({ host: '198.18.0.200', nodes: names });
  scope.defer(() => api.cleanup());
  const podCIDR = async (name: string) => (await api.call<Node>('GET', `/api/v1/nodes/${name}`)).body.spec?.podCIDR;
  const runningAgent = (a: AgentProcess) => a.proc.exitCode === null && a.proc.signalCode === null;
  const exited = (a: AgentProcess) => new Promise<number | null>((r) => (a.proc.exitCode !== null ? r(a.proc.exitCode) : a.proc.once('exit', (c) => r(c))));

  const agents = await Promise.all(cluster.nodes.map((n) => startAgent(scope, n, api, { clusterCidr: CIDR })));

  await t.test(`${AGENTS} agents racing for 16 subnets: 16 distinct claims, 4 clear refusals`, async (t) => {
    const outcome = await waitFor(async () => {
      const cidrs = await Promise.all(names.map(podCIDR));
      const failed = agents.filter((a) => !runningAgent(a));
      return cidrs.filter(Boolean).length + failed.length === AGENTS ? { cidrs, failed } : undefined;
    }, 60_000, 'every agent to claim a subnet or give up');
    const claimed = outcome!.cidrs.filter((c): c is string => !!c);
    t.equal(claimed.length, 16, 'the 16 subnets are all claimed');
    t.equal(new Set(claimed).size, claimed.length, `no subnet is claimed twice: ${claimed.sort().join(' ')}`);
    t.equal(outcome!.failed.length, 4, 'four agents found no subnet');
    for (const a of outcome!.failed) {
      t.not(a.proc.exitCode, 0, `${a.node.name} exited non-zero`);
      t.match(a.logs(), /PODNET_IPAM_EXHAUSTED: cluster CIDR 10\.244\.0\.0\/20 has no free \/24 subnet left/, `${a.node.name} says why`);
    }
  });

  await t.test('a restarted agent keeps its subnet', async (t) => {
    const a = agents.find(runningAgent)!;
    const before = await podCIDR(a.node.name);
    await a.kill('SIGTERM');
    const from = a.logs().length;
    await a.restart();
    const line = await waitFor(() => a.logs().slice(from).split('\n').find((l) => l.includes('"msg":"node network ready"')), 20_000, 'the restarted agent to set up its network');
    t.match(line, `"subnets":["${before}"]`, `the restarted agent uses ${before} again`);
    t.equal(await podCIDR(a.node.name), before, `${a.node.name} still holds ${before}`);
  });

  await t.test("a deleted Node's subnet becomes free for another node", async (t) => {
    const holder = agents.filter(runningAgent)[1]!;
    const freed = await podCIDR(holder.node.name);
    await holder.kill('SIGKILL');
    t.equal((await api.call('DELETE', `/api/v1/nodes/${holder.node.name}`)).status, 200, 'node deleted');
    const waiting = agents.find((x) => !runningAgent(x) && x !== holder)!;
    await waiting.restart();
    const got = await waitFor(() => podCIDR(waiting.node.name), 20_000, 'the waiting node to claim a subnet');
    t.equal(got, freed, `${waiting.node.name} got the freed subnet ${freed}`);
  });

  await t.test('an agent whose cluster CIDR disagrees with what it holds refuses to start', async (t) => {
    const a = agents.find(runningAgent)!;
    await a.kill('SIGTERM');
    const other = await startAgent(scope, a.node, api, { clusterCidr: '10.245.0.0/16', extraArgs: [] });
    // Same node, its own fresh state dir: the Node's podCIDR is outside the new cluster CIDR.
    const code = await Promise.race([exited(other), new Promise<string>((r) => setTimeout(() => r('still running after 20 s'), 20_000))]);
    t.not(code, 0, 'exits non-zero');
    t.match(other.logs(), /PODNET_IPAM_SUBNET_MISMATCH: node n\d+ holds pod subnets 10\.244\.\d+\.0\/24, which do not match the configured cluster CIDR 10\.245\.0\.0\/16/, 'and says why');
  });
}
