// Operating the agent on one node: egress masquerade (pods reach outside the cluster CIDR
// with the node address; cluster destinations see the pod address; --no-masquerade turns
// it off), adoption after a restart (a pod deleted meanwhile loses its sandbox; a sandbox
// whose pause was killed is made again with the same address), the authenticated
// endpoint, and `podnet cleanup` (refused while the agent runs, removes everything,
// safe twice).
import t from 'tap';
import { existsSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { execa } from 'execa';
import type { Node, Pod } from '../src/client/types.js';
import { NetNS, Netlink } from '../src/kernel/index.js';
import { Cidr } from '../src/util/ipnet.js';
import { Scope, insideOwnNetns, skipReason, waitFor } from './lib/harness.js';
import { ADMIN_TOKEN, nodeToken } from './lib/api.js';
import { CLI, oneNodeCluster, startAgent } from './lib/agents.js';

const skip = skipReason();

if (skip) {
  t.test('operating the agent', { skip }, async () => undefined);
} else if (await insideOwnNetns(import.meta.url, 'agent-ops')) {
  const scope = new Scope('ops');
  t.teardown(() => scope.cleanup());
  const first = await oneNodeCluster(scope);
  const { node, api } = first;
  let agent = first.agent;
  const getPod = async (name: string) => (await api.call<Pod>('GET', `/api/v1/namespaces/default/pods/${name}`)).body;
  const createPod = (name: string) => api.call('POST', '/api/v1/namespaces/default/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { nodeName: 'n1', containers: [{ name: 'c', image: 'x' }] } });
  const running = (name: string) => waitFor(async () => {
    const p = await getPod(name);
    return p.status?.phase === 'Running' && p.status.podIP ? p : undefined;
  }, 30_000, `pod ${name} Running`).catch((e: unknown) => {
    t.comment(agent.logs().slice(-3000));
    throw e;
  });
  const inNode = (cmd: string, args: string[]) => execa('nsenter', ['--net=' + node.netns.path, '--', cmd, ...args], { reject: false, timeout: 30_000 });
  const ready = () => waitFor(async () => (await inNode('curl', ['-s', `http://${node.ip}:10260/readyz`])).stdout === 'ok', 30_000, 'the agent to be ready');
  await ready();
  const subnet = Cidr.parse((await api.call<Node>('GET', '/api/v1/nodes/n1')).body.spec!.podCIDR!);

  /** A TCP server in this (test) namespace that answers with the address it saw. */
  const peerServer = async (host: string) => {
    const server = createServer((s: Socket) => s.end(`${s.remoteAddress}\n`));
    await new Promise<void>((r) => server.listen(0, host, () => r()));
    scope.defer(() => new Promise<void>((r) => server.close(() => r())));
    return (server.address() as AddressInfo).port;
  };
  const seenFrom = async (pod: string, host: string, port: number) => {
    const ns = await agent.netnsOf('default', pod);
    const r = await execa('nsenter', ['--net=/run/netns/' + ns, '--', 'socat', '-T', '3', '-', `TCP:${host}:${port}`], { reject: false, input: '', timeout: 10_000 });
    return r.stdout.trim();
  };

  await t.test('egress masquerade: outside the cluster CIDR with the node address, inside with the pod address', async (t) => {
    await createPod('egress');
    const pod = (await running('egress'))!;
    const outsidePort = await peerServer('198.18.0.100');
    t.equal(await seenFrom('egress', '198.18.0.100', outsidePort), node.ip, 'a destination outside the cluster CIDR sees the node address');
    // A destination inside the cluster CIDR (an address of this namespace, routed back to the pod subnet via the node).
    // (What a transport does between nodes, by hand: the node routes 10.244.250.1 to this namespace, which routes the pod subnet back.)
    const me = scope.netlink();
    await me.addrs.ensure('uplink', '10.244.250.1/32');
    await me.routes.ensure({ dst: subnet.toString(), via: node.ip });
    await node.nl.routes.ensure({ dst: '10.244.250.1/32', via: '198.18.0.100' });
    const insidePort = await peerServer('10.244.250.1');
    t.equal(await seenFrom('egress', '10.244.250.1', insidePort), pod.status!.podIP, 'a destination inside the cluster CIDR sees the pod address');
    const rules = await inNode('nft', ['list', 'chain', 'ip', 'podnet', 'egress-masquerade']);
    t.match(rules.stdout, /ip saddr 10\.244\.0\.0\/16 ip daddr != 10\.244\.0\.0\/16 ip daddr != 224\.0\.0\.0\/4 masquerade/, 'the rule as planned');

    await agent.kill('SIGTERM');
    agent = await startAgent(scope, node, api, { extraArgs: ['--no-masquerade'] });
    await ready();
    const gone = await inNode('nft', ['list', 'chain', 'ip', 'podnet', 'egress-masquerade']);
    t.not(gone.exitCode, 0, '--no-masquerade removes the chain');
    await running('egress');
    t.equal(await seenFrom('egress', '198.18.0.100', outsidePort), (await getPod('egress')).status!.podIP, 'without masquerade the outside sees the pod address');
  });

  await t.test('a restarted agent removes the sandbox of a pod deleted meanwhile, and remakes one whose pause died', async (t) => {
    for (const n of ['keep', 'drop']) await createPod(n);
    const keep = (await running('keep'))!;
    await running('drop');
    const dropNs = await agent.netnsOf('default', 'drop');
    const keepNs = await agent.netnsOf('default', 'keep');
    await agent.kill('SIGKILL');
    // While the agent is down: the pod goes (an admin forces it), and keep's pause is killed.
    t.equal((await api.call('DELETE', '/api/v1/namespaces/default/pods/drop?gracePeriodSeconds=0')).status, 200, 'pod deleted');
    for (const pid of NetNS.pids(keepNs)) process.kill(pid, 'SIGKILL');
    await agent.restart();
    await ready();
    await waitFor(() => !existsSync(`/run/netns/${dropNs}`), 10_000, 'the deleted pod\'s namespace to go');
    t.pass('the sandbox of the deleted pod was removed');
    await waitFor(() => existsSync(`/run/netns/${keepNs}`) && NetNS.pids(keepNs).length === 1, 15_000, 'keep\'s sandbox to be made again');
    const after = await getPod('keep');
    t.equal(after.status?.podIP, keep.status?.podIP, 'the remade sandbox kept the pod address');
    const out = await execa('nsenter', ['--net=/run/netns/' + keepNs, '--', 'ip', '-j', '-4', 'addr', 'show', 'eth0']);
    t.match(out.stdout, `"${keep.status!.podIP}"`, 'and carries it');
  });

  await t.test('the agent endpoint: health without a token, metrics only for tokens the API vouches for', async (t) => {
    const curl = (...args: string[]) => inNode('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', ...args]);
    t.equal((await curl(`http://${node.ip}:10260/healthz`)).stdout, '200', '/healthz');
    t.equal((await curl(`http://${node.ip}:10260/metrics`)).stdout, '401', '/metrics without a token');
    t.equal((await curl('-H', 'Authorization: Bearer nope', `http://${node.ip}:10260/metrics`)).stdout, '401', '/metrics with an unknown token');
    t.equal((await curl('-H', `Authorization: Bearer ${nodeToken('n1')}`, `http://${node.ip}:10260/metrics`)).stdout, '200', '/metrics with a node token');
    const m = await inNode('curl', ['-s', '-H', `Authorization: Bearer ${ADMIN_TOKEN}`, `http://${node.ip}:10260/metrics`]);
    t.match(m.stdout, /podnet_agent_sandbox_setup_seconds_count \d+/, 'Prometheus text with the sandbox setup histogram');
    t.match(m.stdout, /podnet_agent_sandboxes\{kind="pod"\} \d+/, 'and the sandbox gauge');
  });

  await t.test('podnet cleanup: refused while the agent runs; then removes everything, twice', async (t) => {
    const cleanup = () => inNode(process.execPath, [CLI, 'cleanup', '--node-name', 'n1', '--state-dir', agent.stateDir]);
    const refused = await cleanup();
    t.not(refused.exitCode, 0, 'refused while the agent holds the state dir');
    t.match(refused.stderr, /PODNET_IPAM_LOCKED/, 'saying the state dir is in use');
    t.ok(readdirSync('/run/netns').some((n) => n.startsWith(agent.netnsPrefix)), 'and nothing was removed');
    await agent.kill('SIGTERM');
    const first = await cleanup();
    t.equal(first.exitCode, 0, `cleanup succeeds: ${first.stdout.trim()} ${first.stderr.slice(-300)}`);
    t.notOk(readdirSync('/run/netns').some((n) => n.startsWith(agent.netnsPrefix)), 'no pod namespace left');
    const nl = Netlink.open(node.netns);
    scope.defer(() => nl.close());
    const links = (await nl.links.list()).map((l) => l.name);
    t.notOk(links.some((n) => n === 'podnet0' || /^pn[0-9a-f]{11}$/.test(n)), `no bridge or pod veth left (${links.join(' ')})`);
    t.not((await inNode('nft', ['list', 'table', 'ip', 'podnet'])).exitCode, 0, 'the nft table is gone');
    t.notOk(existsSync(agent.stateDir), 'the state dir is gone');
    t.equal((await cleanup()).exitCode, 0, 'a second cleanup succeeds too');
  });
}
