// Crash safety of the agent: kill -9 in the middle of 200 pod creations, restart: every pod
// gets networking exactly once (one namespace, one pause, one veth, one address each, no
// duplicates, nothing leaked), and a TCP connection between two pods stays up across the
// restart (sandboxes are owned by pause processes and adopted, not recreated).
import t from 'tap';
import { readdirSync } from 'node:fs';
import { execa } from 'execa';
import type { Pod } from '../src/client/types.js';
import { NetNS, Netlink } from '../src/kernel/index.js';
import { Scope, insideOwnNetns, skipReason, waitFor } from './lib/harness.js';
import { oneNodeCluster } from './lib/agents.js';

const skip = skipReason();
const N = 200;

if (skip) {
  t.test('agent crash safety', { skip }, async () => undefined);
} else if (await insideOwnNetns(import.meta.url, 'agent-crash')) {
  const scope = new Scope('crash');
  t.teardown(() => scope.cleanup());
  const { node, api, agent } = await oneNodeCluster(scope);
  const pod = (name: string): Pod => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default', labels: { app: 'crash' } }, spec: { nodeName: 'n1', containers: [{ name: 'c', image: 'x' }] } });
  const running = async () => (await api.call<{ items: Pod[] }>('GET', '/api/v1/namespaces/default/pods')).body.items.filter((p) => p.status?.phase === 'Running' && p.status.podIP);
  const podNetns = () => readdirSync('/run/netns').filter((n) => n.startsWith(agent.netnsPrefix));

  await t.test('a TCP connection between two pods survives kill -9 of the agent', async (t) => {
    for (const n of ['srv', 'cli']) await api.call('POST', '/api/v1/namespaces/default/pods', pod(n));
    await waitFor(async () => (await running()).length === 2, 30_000, 'two running pods').catch((e: unknown) => {
      t.comment(agent.logs().slice(-4000));
      throw e;
    });
    const srvIP = (await api.call<Pod>('GET', '/api/v1/namespaces/default/pods/srv')).body.status!.podIP!;
    const srvNs = await agent.netnsOf('default', 'srv');
    const cliNs = await agent.netnsOf('default', 'cli');
    const server = execa('nsenter', ['--net=/run/netns/' + srvNs, '--', 'socat', 'TCP-LISTEN:9000,reuseaddr', 'EXEC:/bin/cat'], { reject: false });
    scope.defer(() => server.kill('SIGKILL'));
    await new Promise((r) => setTimeout(r, 200));
    const client = execa('nsenter', ['--net=/run/netns/' + cliNs, '--', 'socat', '-', `TCP:${srvIP}:9000`], { reject: false, stdin: 'pipe' });
    scope.defer(() => client.kill('SIGKILL'));
    let echoed = '';
    client.stdout!.on('data', (d: Buffer) => (echoed += d.toString()));
    client.stdin!.write('before\n');
    await waitFor(() => echoed.includes('before'), 5000, 'the echo before the crash');
    await agent.kill('SIGKILL');
    client.stdin!.write('during\n');
    await waitFor(() => echoed.includes('during'), 5000, 'the echo while the agent is down');
    await agent.restart();
    await waitFor(async () => (await execa('nsenter', ['--net=' + node.netns.path, '--', 'curl', '-s', `http://${node.ip}:10260/readyz`], { reject: false })).stdout === 'ok', 20_000, 'the restarted agent to be ready');
    client.stdin!.write('after\n');
    await waitFor(() => echoed.includes('after'), 5000, 'the echo after the restart');
    t.equal(echoed, 'before\nduring\nafter\n', 'the same connection carried data before, during and after the restart');
    t.equal(client.exitCode, null, 'the client connection never closed');
    client.stdin!.end();
    server.kill('SIGKILL');
  });

  await t.test(`kill -9 in the middle of ${N} pod creations: every pod networked exactly once`, async (t) => {
    await Promise.all(Array.from({ length: N }, (_, i) => api.call('POST', '/api/v1/namespaces/default/pods', pod(`p${i}`))));
    await waitFor(() => podNetns().length >= 2 + N / 4, 60_000, 'a quarter of the sandboxes');
    await agent.kill('SIGKILL');
    const atCrash = podNetns().length;
    t.ok(atCrash > 2 && atCrash < N + 2, `killed with ${atCrash - 2} of ${N} sandboxes made`);
    await agent.restart();
    const pods = await waitFor(async () => {
      const r = await running();
      return r.length === N + 2 ? r : undefined;
    }, 90_000, 'every pod Running').catch((e: unknown) => {
      t.comment(agent.logs().slice(-4000));
      throw e;
    });
    const ips = pods!.map((p) => p.status!.podIP!);
    t.equal(new Set(ips).size, N + 2, 'no address is held twice');
    // Give the first resync after the restart time to collect garbage of the crash.
    await new Promise((r) => setTimeout(r, 6000));
    t.equal(podNetns().length, N + 2, 'one pod namespace per pod, none leaked');
    const pauseCounts = podNetns().map((n) => NetNS.pids(n).length);
    t.ok(pauseCounts.every((c) => c === 1), 'exactly one process (its pause) in every pod namespace');
    const nl = Netlink.open(node.netns);
    const veths = (await nl.links.list()).filter((l) => /^pn[0-9a-f]{11}$/.test(l.name));
    nl.close();
    t.equal(veths.length, N + 2, 'one host veth per pod, none leaked');
    const metrics = await execa('nsenter', ['--net=' + node.netns.path, '--', 'curl', '-s', '-H', 'Authorization: Bearer admin-token-0123456789', `http://${node.ip}:10260/metrics`], { reject: false });
    const allocated = /podnet_agent_ipam_allocated\{family="IPv4"\} (\d+)/.exec(metrics.stdout)?.[1];
    t.equal(Number(allocated), N + 2, 'IPAM holds exactly one address per pod (no leaked allocation)');
    // Each pod's namespace holds the address the API says it has.
    const sample = pods!.slice(0, 20);
    for (const p of sample) {
      const ns = await agent.netnsOf('default', p.metadata.name!);
      const out = await execa('nsenter', ['--net=/run/netns/' + ns, '--', 'ip', '-j', '-4', 'addr', 'show', 'eth0']);
      if (!out.stdout.includes(`"${p.status!.podIP}"`)) t.fail(`${p.metadata.name}: eth0 lacks ${p.status!.podIP}`);
    }
    t.pass('sampled pods carry their reported addresses');
  });
}
