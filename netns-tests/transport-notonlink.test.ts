// host-gw and a peer that is not on-link, said clearly in every place a human looks: one
// real node n1 (agent, --backend host-gw) and a Node object n9 posted by the test, whose
// InternalIP 203.0.113.9 is outside n1's underlay 198.18.0.0/24. n1 installs no route to
// n9's subnet, its PodnetTransport condition is False / NotOnLink naming n9 and the
// address, a Warning Event NotOnLink is recorded on Node n1 (once, not per resync), and
// the agent's log says NotOnLink. Moving n9 to an on-link address (198.18.0.9) brings the
// route, the condition back to True, and a Normal Event TransportReady.
//
// Everything is inside namespaces the harness makes (the test runs in its own, see
// insideOwnNetns); processes are stopped by the harness, by PID.
import t from 'tap';
import { execa } from 'execa';
import type { Condition, CoreEvent, KubeList, Node } from '../src/client/types.js';
import { CLI, oneNodeCluster } from './lib/agents.js';
import { ADMIN_TOKEN } from './lib/api.js';
import { Scope, insideOwnNetns, skipReason, waitFor } from './lib/harness.js';

const skip = skipReason();
if (skip) t.test('host-gw: a peer that is not on-link', { skip }, async () => undefined);
else if (await insideOwnNetns(import.meta.url, 'tr-notonlink')) {
  const scope = new Scope('tr-notonlink');
  t.teardown(() => scope.cleanup());
  const { node: n1, api, agent } = await oneNodeCluster(scope, { agent: { backend: 'host-gw', extraArgs: ['--resync-period', '2s'] } });

  const getNode = async (name: string) => (await api.call<Node>('GET', `/api/v1/nodes/${name}`)).body;
  const transport = async (): Promise<Condition | undefined> => (await getNode('n1')).status?.conditions?.find((c) => c.type === 'PodnetTransport');
  const routesTo = async (dst: string) => (await execa('nsenter', ['--net=' + n1.netns.path, '--', 'ip', '-4', 'route', 'show', dst])).stdout.trim();
  const eventsOnN1 = async (): Promise<CoreEvent[]> => {
    const r = await api.call<KubeList<CoreEvent>>('GET', '/api/v1/namespaces/default/events');
    if (r.status !== 200) throw new Error(`GET events: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body.items.filter((e) => e.involvedObject.kind === 'Node' && e.involvedObject.name === 'n1');
  };
  const diagnose = async () => `condition: ${JSON.stringify(await transport())}\nevents: ${JSON.stringify(await eventsOnN1())}\nagent log (tail):\n${agent.logs().slice(-3000)}`;

  await t.test('n1 runs host-gw with no peers: PodnetTransport=True', async (t) => {
    const c = await waitFor(async () => ((await transport())?.status === 'True' ? transport() : undefined), 30_000, 'n1 PodnetTransport=True').catch(async (e: unknown) => {
      t.comment(await diagnose());
      throw e;
    });
    t.equal(c?.reason, 'AllPeersReachable');
  });

  // n9's subnet: 10.244.200.0/24, unless n1 happened to choose that one. Set in the next
  // subtest: an await between two top-level subtests let tap end the root test in between
  // once ("cannot create subtest after parent test ends", every later subtest lost).
  let subnet = '10.244.200.0/24';

  await t.test('a peer that is not on-link: no route, condition False/NotOnLink, a Warning Event, a log line', async (t) => {
    if ((await getNode('n1')).spec?.podCIDRs?.[0] === subnet) subnet = '10.244.201.0/24';
    const created = await api.call<Node>('POST', '/api/v1/nodes', {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: 'n9', annotations: { 'podnet.io/backend-type': 'host-gw', 'podnet.io/backend-data': '{}' } },
      spec: { podCIDR: subnet, podCIDRs: [subnet] },
      status: { addresses: [{ type: 'InternalIP', address: '203.0.113.9' }, { type: 'Hostname', address: 'n9' }] },
    });
    t.equal(created.status, 201, `Node n9 posted (subnet ${subnet}, InternalIP 203.0.113.9)`);
    if (!created.body.status?.addresses?.length) {
      // Should the API not keep status on create, set it the way a kubelet would.
      const r = await api.call('PATCH', '/api/v1/nodes/n9/status', { status: { addresses: [{ type: 'InternalIP', address: '203.0.113.9' }] } }, { 'content-type': 'application/merge-patch+json' });
      t.equal(r.status, 200, 'n9 status addresses set');
    }

    const c = await waitFor(async () => {
      const x = await transport();
      return x?.status === 'False' ? x : undefined;
    }, 15_000, 'PodnetTransport=False on n1').catch(async (e: unknown) => {
      t.comment(await diagnose());
      throw e;
    });
    t.equal(c!.reason, 'NotOnLink', 'reason NotOnLink');
    t.match(c!.message, /\bn9\b/, `the message names the peer: ${c!.message}`);
    t.match(c!.message, /203\.0\.113\.9/, 'and its address');
    t.match(c!.message, /not on-link/, 'and says what is wrong');

    t.equal(await routesTo(subnet), '', `no route to ${subnet} on n1`);
    const all = (await execa('nsenter', ['--net=' + n1.netns.path, '--', 'ip', '-4', 'route', 'show', 'proto', '222'])).stdout;
    t.notMatch(all, new RegExp(subnet.replace(/\./g, '\\.').replace('/', '\\/')), 'none among the podnet routes either');

    const warning = await waitFor(async () => (await eventsOnN1()).find((e) => e.reason === 'NotOnLink'), 10_000, 'a NotOnLink Event on Node n1').catch(async (e: unknown) => {
      t.comment(await diagnose());
      throw e;
    });
    t.equal(warning!.type, 'Warning', 'a Warning Event');
    t.equal(warning!.metadata.namespace, 'default', 'in "default", as Events about Nodes are');
    t.match(warning!.metadata.name, /^n1\.[0-9a-f]{16}$/, `named like client-go's: ${warning!.metadata.name}`);
    t.match(warning!.message, /\bn9\b.*203\.0\.113\.9/, `its message names n9 and its address: ${warning!.message}`);
    t.same(warning!.source, { component: 'podnet-agent', host: 'n1' }, 'source podnet-agent on n1');
    t.equal(warning!.count, 1, 'count 1');

    const line = agent
      .logs()
      .split('\n')
      .find((l) => l.includes('NotOnLink') && l.includes('n9'));
    t.ok(line, `the agent log says NotOnLink: ${line ?? '(none)'}`);
    if (line) t.match(JSON.parse(line) as Record<string, unknown>, { level: 'warn', reason: 'NotOnLink', peer: 'n9' }, 'a warning with the reason and the peer');

    // Two resyncs later (--resync-period 2s) nothing was repeated: the same problem is one occurrence.
    await new Promise((r) => setTimeout(r, 4500));
    const again = (await eventsOnN1()).filter((e) => e.reason === 'NotOnLink');
    t.same(again.map((e) => e.count), [1], 'still one NotOnLink Event, count 1, after resyncs');
    t.equal(await routesTo(subnet), '', 'and still no route');
  });

  await t.test('podnet trace toward the off-link peer: Dropped at Routing on n1, saying NotOnLink', async (t) => {
    const target = subnet.replace(/0\/24$/, '5');
    const r = await execa(process.execPath, [CLI, 'trace', '--server', api.url, '--token', ADMIN_TOKEN, ...(api.certs ? ['--ca-file', api.certs.caFile] : []), '--from', 'node/n1', '--to', `${target}/icmp`, '--json'], { reject: false, timeout: 30_000 });
    const v = (JSON.parse(String(r.stdout) || '{}') as { verdict?: { kind: string; node?: string; reason: string; at?: string } }).verdict;
    t.equal(v?.kind, 'Dropped', `trace node/n1 → ${target}: ${v?.kind} at ${v?.at}: ${v?.reason ?? String(r.stderr)}`);
    t.equal(v?.node, 'n1', 'on n1');
    t.match(v?.reason ?? '', /NotOnLink/, 'the reason says NotOnLink');
    t.match(v?.reason ?? '', /n9/, 'and names the peer n9');
    t.equal(r.exitCode, 1, 'exit status 1');
  });

  await t.test('the peer moves on-link (198.18.0.9): the route appears, condition True, a Normal Event TransportReady', async (t) => {
    const r = await api.call('PATCH', '/api/v1/nodes/n9/status', { status: { addresses: [{ type: 'InternalIP', address: '198.18.0.9' }, { type: 'Hostname', address: 'n9' }] } }, { 'content-type': 'application/merge-patch+json' });
    t.equal(r.status, 200, 'n9 InternalIP is now 198.18.0.9');
    const route = await waitFor(async () => {
      const x = await routesTo(subnet);
      return x.includes('via 198.18.0.9') ? x : undefined;
    }, 15_000, `a route to ${subnet} via 198.18.0.9`).catch(async (e: unknown) => {
      t.comment(await diagnose());
      throw e;
    });
    t.match(route, new RegExp(`^${subnet.replace(/\./g, '\\.')} via 198\\.18\\.0\\.9 dev eth0 proto 222`), `n1: ${route}`);

    const c = await waitFor(async () => {
      const x = await transport();
      return x?.status === 'True' ? x : undefined;
    }, 15_000, 'PodnetTransport=True again');
    t.equal(c!.reason, 'AllPeersReachable', 'condition True, AllPeersReachable');

    const ready = await waitFor(async () => (await eventsOnN1()).find((e) => e.reason === 'TransportReady'), 10_000, 'a TransportReady Event on Node n1').catch(async (e: unknown) => {
      t.comment(await diagnose());
      throw e;
    });
    t.equal(ready!.type, 'Normal', 'a Normal Event TransportReady');
    t.match(ready!.message, /host-gw: every peer is programmed/, `message: ${ready!.message}`);
    const warnings = (await eventsOnN1()).filter((e) => e.type === 'Warning');
    t.same(warnings.map((e) => e.reason), ['NotOnLink'], 'the NotOnLink Warning is still there for the record (until the event TTL)');
  });
}
