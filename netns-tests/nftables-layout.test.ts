// The nftables proxy layout (src/proxy/nftables/README.md) with real packets: the real mode
// (createNftablesMode) programs a "node" namespace that routes between three pod namespaces
// (each on its own veth and /24, like a point-to-point CNI) and an off-cluster client. Checked:
// pod → ClusterIP DNAT (both endpoints used, pod source kept), no-endpoint reject for TCP
// (reset) and UDP (ICMP port unreachable), hairpin (a pod reaching itself through its
// Service is masqueraded), off-cluster clients masqueraded, NodePort, ClientIP affinity
// (10 of 10 to one endpoint), eTP Local (only the local endpoint, client IP kept), iTP Local
// without a local endpoint (dropped), and a one-endpoint change applied live as element ops
// only (the v2 layout's point: no rule, chain or verdict changes, so no validation at commit),
// and a table of the v2 layout (an endpoint map per service port) taken over by a restarted
// mode (v3: endpoint slots in shared bucket maps).
//
// Everything happens in namespaces the harness makes (the test itself runs in its own, see
// insideOwnNetns). Servers are socat processes started detached and killed by process group.
import t from 'tap';
import { execa } from 'execa';
import type { EndpointSlice, Service } from '../src/client/types.js';
import type { NetNS } from '../src/kernel/index.js';
import { NftExecutor } from '../src/kernel/nftables/executor.js';
import type { NftTransaction } from '../src/kernel/nftables/ops.js';
import { createNftablesMode } from '../src/proxy/nftables/index.js';
import { buildSnapshot } from '../src/proxy/snapshot.js';
import type { ProxyNodeConfig, ProxySnapshot } from '../src/proxy/types.js';
import { service, slice } from '../src/proxy/nftables/testdata/fixtures.js';
import { createLogger } from '../src/util/log.js';
import { Scope, insideOwnNetns, sh, skipReason, waitFor } from './lib/harness.js';

const skip = skipReason();
if (skip) t.test('nftables proxy layout: data path', { skip }, async () => undefined);
else if (await insideOwnNetns(import.meta.url, 'nftlayout')) {
  const scope = new Scope('nftlayout');
  t.teardown(() => scope.cleanup());

  // ---- topology ----
  const node = await scope.netns('node');
  const nl = scope.netlink(node);
  const pods: Record<'a' | 'b' | 'c', { ns: NetNS; ip: string; gw: string }> = {
    a: { ns: await scope.netns('pa'), ip: '10.244.1.5', gw: '10.244.1.1' },
    b: { ns: await scope.netns('pb'), ip: '10.244.2.5', gw: '10.244.2.1' },
    c: { ns: await scope.netns('pc'), ip: '10.244.3.5', gw: '10.244.3.1' },
  };
  for (const [name, p] of Object.entries(pods)) {
    await nl.links.ensure({ kind: 'veth', name: `p${name}0`, up: true, peer: { name: 'eth0', netns: p.ns } });
    await nl.addrs.ensure(`p${name}0`, `${p.gw}/24`);
    const pl = scope.netlink(p.ns);
    await pl.links.setUp('eth0');
    await pl.addrs.ensure('eth0', `${p.ip}/24`);
    await pl.routes.ensure({ dst: 'default', via: p.gw });
  }
  const ext = await scope.netns('ext');
  await nl.links.ensure({ kind: 'veth', name: 'px0', up: true, peer: { name: 'eth0', netns: ext } });
  await nl.addrs.ensure('px0', '198.18.0.1/24');
  const xl = scope.netlink(ext);
  await xl.links.setUp('eth0');
  await xl.addrs.ensure('eth0', '198.18.0.2/24');
  await xl.routes.ensure({ dst: '10.96.0.0/12', via: '198.18.0.1' });
  await sh(node, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);

  // Each pod answers with its name and the peer address it sees.
  for (const [name, p] of Object.entries(pods)) {
    const child = execa('nsenter', ['--net=' + p.ns.path, '--', 'socat', 'TCP-LISTEN:8080,reuseaddr,fork', `SYSTEM:echo ${name} $SOCAT_PEERADDR`], { detached: true, reject: false, stdio: 'ignore' });
    const pid = child.pid!;
    scope.defer(() => {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    });
    await waitFor(async () => /:8080\b/.test(String((await sh(p.ns, 'ss', ['-Htln'])).stdout)), 5000, `pod ${name} listening`);
  }
  const talk = (from: NetNS, target: string) => sh(from, 'socat', ['-T', '2', '-', `${target},connect-timeout=2`], { input: '', reject: false, timeout: 10_000 });
  /** Who answered and whom it saw, e.g. ['a', '10.244.3.5']. */
  const ask = async (from: NetNS, target: string): Promise<[string, string]> => {
    const r = await talk(from, target);
    const [who = '', peer = ''] = String(r.stdout).trim().split(' ');
    return [who, peer];
  };

  // ---- the Services ----
  const cfg: ProxyNodeConfig = { nodeName: 'node', family: 4, nodeIPs: ['198.18.0.1'], clusterCIDR: '10.244.0.0/16' };
  const ep = (p: 'a' | 'b' | 'c', onNode = true) => ({ ip: pods[p].ip, node: onNode ? 'node' : 'other' });
  const http = [{ name: 'http', port: 80, targetPort: 8080 }];
  const cip = (ip: string) => ({ clusterIP: ip, clusterIPs: [ip] });
  const services: Service[] = [
    service('web', { ...cip('10.96.0.10'), type: 'NodePort', ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }] }),
    service('empty', { ...cip('10.96.0.12'), ports: http }),
    service('empty-udp', { ...cip('10.96.0.13'), ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] }),
    service('self', { ...cip('10.96.0.14'), ports: http }),
    service('aff', { ...cip('10.96.0.20'), sessionAffinity: 'ClientIP', ports: http }),
    service('local', { ...cip('10.96.0.16'), type: 'NodePort', externalTrafficPolicy: 'Local', ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30082 }] }),
    service('itp', { ...cip('10.96.0.18'), internalTrafficPolicy: 'Local', ports: http }),
  ];
  const slices = (webEps: ReturnType<typeof ep>[]): EndpointSlice[] => [
    slice('web', webEps),
    slice('self', [ep('a')]),
    slice('aff', [ep('a'), ep('b')]),
    slice('local', [ep('a'), ep('b', false)]),
    slice('itp', [ep('b', false)]),
  ];
  const snap = (webEps: ReturnType<typeof ep>[]): ProxySnapshot => buildSnapshot(services, slices(webEps), cfg);

  let last: NftTransaction | undefined;
  let executor: NftExecutor | undefined;
  const newMode = () => createNftablesMode({
    netns: node,
    log: createLogger({ level: 'warn' }),
    openExecutor: (ns) => {
      executor = NftExecutor.open(ns);
      scope.defer(() => executor?.close());
      return {
        apply: (tx) => {
          last = tx;
          return executor!.apply(tx);
        },
        listTable: (f, n) => executor!.listTable(f, n),
        deleteTable: (f, n) => executor!.deleteTable(f, n),
      };
    },
  });
  let mode = newMode();
  let current = snap([ep('a'), ep('b')]);
  await mode.sync([current], undefined);

  await t.test('pod → ClusterIP: DNAT to both endpoints, the pod source kept', async (t) => {
    const seen = new Map<string, number>();
    for (let i = 0; i < 24; i++) {
      const [who, peer] = await ask(pods.c.ns, 'TCP:10.96.0.10:80');
      t.equal(peer, pods.c.ip, `answer ${i} from ${who} saw the pod's own address`);
      seen.set(who, (seen.get(who) ?? 0) + 1);
    }
    t.same([...seen.keys()].sort(), ['a', 'b'], `both endpoints answered: ${JSON.stringify([...seen])}`);
  });

  await t.test('no endpoints: TCP reset, UDP ICMP port unreachable (rejected before DNAT)', async (t) => {
    const tcp = await talk(pods.c.ns, 'TCP:10.96.0.12:80');
    t.match(String(tcp.stderr), /Connection refused/, `TCP: ${String(tcp.stderr).trim()}`);
    const udp = await sh(pods.c.ns, 'socat', ['-T', '2', '-', 'UDP:10.96.0.13:53'], { input: 'x\n', reject: false, timeout: 10_000 });
    t.match(String(udp.stderr), /Connection refused/, `UDP: ${String(udp.stderr).trim()}`);
  });

  await t.test('hairpin: a pod reaching itself through its Service is masqueraded', async (t) => {
    const [who, peer] = await ask(pods.a.ns, 'TCP:10.96.0.14:80');
    t.equal(who, 'a', 'the pod itself answered');
    t.equal(peer, pods.a.gw, `it saw the node's address (${peer}), not its own`);
  });

  await t.test('off-cluster client → ClusterIP: masqueraded', async (t) => {
    const [who, peer] = await ask(ext, 'TCP:10.96.0.10:80');
    t.ok(who === 'a' || who === 'b', `an endpoint answered (${who})`);
    t.equal(peer, pods[who as 'a' | 'b'].gw, `it saw the node's address (${peer})`);
  });

  await t.test('NodePort (eTP Cluster): answered, masqueraded', async (t) => {
    const [who, peer] = await ask(ext, 'TCP:198.18.0.1:30080');
    t.ok(who === 'a' || who === 'b', `an endpoint answered (${who})`);
    t.equal(peer, pods[who as 'a' | 'b'].gw, `masqueraded (${peer})`);
  });

  await t.test('ClientIP affinity: 10 of 10 connections to the same endpoint', async (t) => {
    const whos = new Set<string>();
    for (let i = 0; i < 10; i++) whos.add((await ask(pods.c.ns, 'TCP:10.96.0.20:80'))[0]);
    t.equal(whos.size, 1, `one endpoint: ${[...whos].join(',')}`);
    t.ok(whos.has('a') || whos.has('b'));
  });

  await t.test('eTP Local NodePort: only the local endpoint, the client address kept', async (t) => {
    for (let i = 0; i < 8; i++) {
      const [who, peer] = await ask(ext, 'TCP:198.18.0.1:30082');
      t.equal(who, 'a', `connection ${i}: the local endpoint`);
      t.equal(peer, '198.18.0.2', 'the client address kept');
    }
  });

  await t.test('iTP Local without a local endpoint: dropped (no answer, no reset)', async (t) => {
    const r = await talk(pods.c.ns, 'TCP:10.96.0.18:80');
    t.equal(String(r.stdout), '', 'no answer');
    t.notMatch(String(r.stderr), /Connection refused/, `not rejected: ${String(r.stderr).trim()}`);
  });

  await t.test('one endpoint removed, then added back: element ops only, the data path follows', async (t) => {
    const next = snap([ep('b')]);
    const changed = new Set(['default/web:http']);
    await mode.sync([next], changed);
    const ops = last!.ops.map((o) => o.op);
    t.ok(ops.length > 0 && ops.every((o) => o === 'flush-set' || o === 'add-elements' || o === 'delete-elements'), `element ops only: ${ops.join(', ')}`);
    t.ok(last!.ops.every((o) => o.op !== 'add-elements' || o.elements.every((e) => !e.verdict)), 'no verdict element');
    t.comment(`kernel ${executor!.lastApply!.kernelMs.toFixed(2)} ms for ${ops.length} ops`);
    for (let i = 0; i < 10; i++) t.equal((await ask(pods.c.ns, 'TCP:10.96.0.10:80'))[0], 'b', `connection ${i}: the remaining endpoint`);
    current = snap([ep('a'), ep('b'), ep('c')]);
    await mode.sync([current], changed);
    t.ok(last!.ops.every((o) => o.op === 'flush-set' || o.op === 'add-elements' || o.op === 'delete-elements'), `element ops only: ${last!.ops.map((o) => o.op).join(', ')}`);
    const seen = new Set<string>();
    for (let i = 0; i < 30 && seen.size < 3; i++) seen.add((await ask(pods.a.ns, 'TCP:10.96.0.10:80'))[0]);
    t.same([...seen].sort(), ['a', 'b', 'c'], 'all three endpoints answer (a through hairpin)');
  });

  await t.test('all endpoints gone: reject; back: answered — element ops only both ways', async (t) => {
    const changed = new Set(['default/web:http']);
    await mode.sync([snap([])], changed);
    t.ok(last!.ops.every((o) => o.op === 'flush-set' || o.op === 'add-elements' || o.op === 'delete-elements'), `element ops only: ${last!.ops.map((o) => o.op).join(', ')}`);
    t.match(String((await talk(pods.c.ns, 'TCP:10.96.0.10:80')).stderr), /Connection refused/, 'ClusterIP rejected');
    t.match(String((await talk(ext, 'TCP:198.18.0.1:30080')).stderr), /Connection refused/, 'NodePort rejected');
    await mode.sync([current], changed);
    t.ok(last!.ops.every((o) => o.op === 'flush-set' || o.op === 'add-elements' || o.op === 'delete-elements'), `element ops only: ${last!.ops.map((o) => o.op).join(', ')}`);
    t.ok(['a', 'b', 'c'].includes((await ask(pods.c.ns, 'TCP:10.96.0.10:80'))[0]), 'answered again');
  });

  await t.test('a table of the v2 layout (an endpoint map per service port) is taken over by a restarted agent', async (t) => {
    // What an older podnet left: web's service chain reading its own map (pod a only).
    const listed = String((await sh(node, 'nft', ['list', 'table', 'ip', 'podnet'])).stdout);
    const chain = /chain (service-[A-Z2-7]{8}-default\/web\/tcp\/http) \{/.exec(listed)?.[1];
    t.ok(chain, `web's service chain: ${chain}`);
    const old = `endpoints-${chain!.slice('service-'.length)}`;
    const script = [
      `add map ip podnet ${old} { typeof numgen random mod 65536 : ip daddr . tcp dport; flags interval; }`,
      `add element ip podnet ${old} { 0-65535 : 10.244.1.5 . 8080 }`,
      `flush chain ip podnet ${chain}`,
      `add rule ip podnet ${chain} meta l4proto tcp dnat ip to numgen random mod 65536 map @${old}`,
    ].join('\n');
    await sh(node, 'nft', ['-f', '-'], { input: script });
    for (let i = 0; i < 5; i++) t.equal((await ask(pods.c.ns, 'TCP:10.96.0.10:80'))[0], 'a', `old layout in place: connection ${i} to pod a`);
    // The agent restarts: a new mode reads the table, removes what the old layout left, writes v3.
    executor?.close();
    mode = newMode();
    const r = await mode.sync([current], undefined);
    t.equal(r.full, true, 'the first sync is full');
    const after = String((await sh(node, 'nft', ['list', 'table', 'ip', 'podnet'])).stdout);
    t.notMatch(after, /map (local-)?endpoints-[A-Z2-7]{8}-/, 'no per-service-port endpoint map left');
    t.match(after, /map endpoints-tcp-0 \{/, 'the bucket map is there');
    t.match(after, new RegExp(`chain ${chain!.replace(/[/.]/g, '\\$&')} \\{[^}]*map @endpoints-tcp-0`), 'the service chain reads its slot');
    const seen = new Set<string>();
    for (let i = 0; i < 30 && seen.size < 3; i++) seen.add((await ask(pods.a.ns, 'TCP:10.96.0.10:80'))[0]);
    t.same([...seen].sort(), ['a', 'b', 'c'], 'all three endpoints answer again');
  });

  await t.test('cleanup removes the table', async (t) => {
    await mode.cleanup();
    const r = await sh(node, 'nft', ['list', 'tables'], { reject: false });
    t.notMatch(String(r.stdout), /podnet/);
  });
}
