// The iptables proxy mode against a real kernel: iptables-restore --noflush / ip6tables-restore,
// ipset, the jumps from built-in chains. Every namespace comes from the harness (the file
// runs in its own namespace, see insideOwnNetns; each test makes more), and every tool runs
// with `nsenter --net=<namespace>`: nothing here touches the root network namespace.
//
// - foreign rules (a filter INPUT rule, a nat chain hooked from PREROUTING, in both
//   families) survive a full sync, a partial sync and cleanup; stale PODNET chains and stray
//   jumps left by an "earlier run" are removed by the first sync; cleanup is idempotent
// - real packets: a client namespace reaches a server namespace through a ClusterIP DNAT
//   (IPv4 and IPv6); a Service with no endpoint refuses at once (REJECT), not a timeout
// - a bad restore line is reported with its number and the lines around it
// - scale: 10,000 services × 10 endpoints full load and a one-endpoint partial sync, timed
//   next to a raw iptables-restore of the kube-proxy-style ruleset of /work/shared/bench
import { createHash } from 'node:crypto';
import t from 'tap';
import { execa } from 'execa';
import type { EndpointSlice, Service } from '../src/client/types.js';
import type { NetNS } from '../src/kernel/index.js';
import { iptablesRestore, iptablesSave } from '../src/kernel/iptables.js';
import { ipsetMembers, ipsetNames, ipsetRestore } from '../src/kernel/ipset.js';
import { createIptablesMode } from '../src/proxy/iptables/index.js';
import { endpoint, syntheticSnapshot, withPort } from '../src/proxy/iptables/fixtures.js';
import { buildSnapshot } from '../src/proxy/snapshot.js';
import type { ProxyNodeConfig, ProxySnapshot } from '../src/proxy/types.js';
import { isPodnetError } from '../src/util/errors.js';
import { silentLogger } from '../src/util/log.js';
import { Scope, insideOwnNetns, skipReason, waitFor } from './lib/harness.js';

const run = (ns: NetNS, cmd: string, args: string[], opts: { input?: string; reject?: boolean; timeout?: number } = {}) =>
  execa('nsenter', [`--net=${ns.path}`, '--', cmd, ...args], { timeout: opts.timeout ?? 60_000, reject: opts.reject ?? true, ...(opts.input !== undefined ? { input: opts.input } : {}) });

const svc = (name: string, ip4: string, ip6: string, extra: Partial<NonNullable<Service['spec']>> = {}): Service => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: 'default' },
  spec: { clusterIP: ip4, clusterIPs: [ip4, ip6], ipFamilies: ['IPv4', 'IPv6'], ports: [{ name: 'http', port: 80 }], ...extra },
});
const slice = (service: string, family: 4 | 6, ips: string[]): EndpointSlice => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name: `${service}-v${family}`, namespace: 'default', labels: { 'kubernetes.io/service-name': service } },
  addressType: family === 4 ? 'IPv4' : 'IPv6',
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  endpoints: ips.map((ip) => ({ addresses: [ip], nodeName: 'n1' })),
});

const node4: ProxyNodeConfig = { nodeName: 'n1', family: 4, nodeIPs: ['10.244.0.1'], clusterCIDR: '10.244.0.0/16' };
const node6: ProxyNodeConfig = { nodeName: 'n1', family: 6, nodeIPs: ['fd00:10:244::1'], clusterCIDR: 'fd00:10:244::/56' };

function snapshots(services: Service[], slices: EndpointSlice[]): ProxySnapshot[] {
  return [buildSnapshot(services, slices, node4), buildSnapshot(services, slices, node6)];
}

/** kube-proxy-shaped full ruleset, as svc-bench.sh's gen.py writes it (for the baseline timing). */
function kubeProxyStyle(S: number, E: number): string {
  const b32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const h = (s: string) => {
    const d = createHash('sha256').update(s).digest();
    let bits = 0;
    let acc = 0;
    let out = '';
    for (const byte of d) {
      acc = ((acc << 8) | byte) & 0xffff;
      bits += 8;
      while (bits >= 5 && out.length < 16) {
        out += b32[(acc >>> (bits - 5)) & 31];
        bits -= 5;
      }
      if (out.length >= 16) break;
    }
    return out;
  };
  const ip = (n: number) => `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
  const vip = (i: number) => ip(((10 << 24) | (96 << 16)) + 1 + i);
  const ep = (j: number) => ip(((10 << 24) | (244 << 16)) + 1 + j);
  const spn = (i: number) => `ns${Math.floor(i / 1000)}/svc${i}:http`;
  const svcC = (i: number) => `KUBE-SVC-${h(spn(i) + 'tcp')}`;
  const sepC = (i: number, k: number) => `KUBE-SEP-${h(`${spn(i)}tcp${ep(i * E + k)}:8080#${k}`)}`;
  const L = ['*nat', ':PREROUTING ACCEPT [0:0]', ':INPUT ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':POSTROUTING ACCEPT [0:0]', ':KUBE-SERVICES - [0:0]', ':KUBE-MARK-MASQ - [0:0]', ':KUBE-POSTROUTING - [0:0]'];
  for (let i = 0; i < S; i++) {
    L.push(`:${svcC(i)} - [0:0]`);
    for (let k = 0; k < E; k++) L.push(`:${sepC(i, k)} - [0:0]`);
  }
  L.push(
    '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
    '-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000',
    '-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN',
    '-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000',
    '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
  );
  for (let i = 0; i < S; i++) L.push(`-A KUBE-SERVICES -m comment --comment "${spn(i)} cluster IP" -p tcp -m tcp -d ${vip(i)}/32 --dport 80 -j ${svcC(i)}`);
  for (let i = 0; i < S; i++) {
    for (let k = 0; k < E; k++) L.push(`-A ${svcC(i)} ${k < E - 1 ? `-m statistic --mode random --probability ${(1 / (E - k)).toFixed(10)} ` : ''}-j ${sepC(i, k)}`);
    for (let k = 0; k < E; k++) {
      L.push(`-A ${sepC(i, k)} -s ${ep(i * E + k)}/32 -j KUBE-MARK-MASQ`, `-A ${sepC(i, k)} -p tcp -m tcp -j DNAT --to-destination ${ep(i * E + k)}:8080`);
    }
  }
  L.push('COMMIT', '');
  return L.join('\n');
}

const skip = skipReason();
if (skip) t.test('iptables proxy mode', { skip }, async () => undefined);
else if (await insideOwnNetns(import.meta.url, 'ipt')) {
  const scope = new Scope('ipt');
  t.teardown(() => scope.cleanup());
  const log = silentLogger();

  await t.test('foreign rules survive full sync, partial sync and cleanup; stale PODNET state is removed', async (t) => {
    const host = await scope.netns('host');
    for (const tool of ['iptables', 'ip6tables']) {
      await run(host, tool, ['-w', '-A', 'INPUT', '-p', 'tcp', '--dport', '9999', '-j', 'ACCEPT']);
      await run(host, tool, ['-w', '-t', 'nat', '-N', 'FOREIGN']);
      await run(host, tool, ['-w', '-t', 'nat', '-A', 'FOREIGN', '-p', 'tcp', '--dport', '9999', '-j', 'RETURN']);
      await run(host, tool, ['-w', '-t', 'nat', '-A', 'PREROUTING', '-j', 'FOREIGN']);
      // What an earlier run (another version) left: a stale chain hooked from OUTPUT.
      await run(host, tool, ['-w', '-t', 'nat', '-N', 'PODNET-STALE']);
      await run(host, tool, ['-w', '-t', 'nat', '-A', 'PODNET-STALE', '-j', 'RETURN']);
      await run(host, tool, ['-w', '-t', 'nat', '-A', 'OUTPUT', '-j', 'PODNET-STALE']);
    }
    const foreign = async (family: 4 | 6) => {
      const nat = await iptablesSave(family, 'nat', { netns: host });
      const filter = await iptablesSave(family, 'filter', { netns: host });
      return [
        filter.includes('-A INPUT -p tcp -m tcp --dport 9999 -j ACCEPT'),
        nat.includes(':FOREIGN - [0:0]'),
        nat.includes('-A FOREIGN -p tcp -m tcp --dport 9999 -j RETURN'),
        nat.includes('-A PREROUTING -j FOREIGN'),
      ].every(Boolean);
    };
    const ours = async (family: 4 | 6) => (await iptablesSave(family, 'nat', { netns: host })) + (await iptablesSave(family, 'filter', { netns: host }));

    const services = [svc('web', '10.96.0.10', 'fd00:10:96::a'), svc('api', '10.96.0.11', 'fd00:10:96::b', { type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }] }), svc('empty', '10.96.0.12', 'fd00:10:96::c')];
    const slices = [slice('web', 4, ['10.244.1.5', '10.244.1.6']), slice('web', 6, ['fd00:10:244:1::5']), slice('api', 4, ['10.244.1.7']), slice('api', 6, ['fd00:10:244:1::7'])];
    const mode = createIptablesMode({ netnsPath: host.path, log });
    const r1 = await mode.sync(snapshots(services, slices), undefined);
    t.same(r1, { servicesWritten: 6, servicesRemoved: 0, full: true }, 'first sync: full, 3 ports in each family');
    for (const family of [4, 6] as const) {
      const saved = await ours(family);
      t.ok(await foreign(family), `IPv${family}: foreign rules intact after the full sync`);
      t.notMatch(saved, /PODNET-STALE/, `IPv${family}: the stale chain and its jump are gone`);
      t.match(saved, /-A PREROUTING -m comment --comment "podnet service portals" -j PODNET-SERVICES/, `IPv${family}: nat PREROUTING jump`);
      t.match(saved, /-A OUTPUT -m comment --comment "podnet service portals" -j PODNET-SERVICES/, `IPv${family}: nat OUTPUT jump`);
      t.match(saved, /-A POSTROUTING -m comment --comment "podnet postrouting rules" -j PODNET-POSTROUTING/, `IPv${family}: nat POSTROUTING jump`);
      for (const c of ['INPUT', 'FORWARD', 'OUTPUT']) t.match(saved, new RegExp(`-A ${c} -m conntrack --ctstate NEW -m comment --comment "podnet service portals" -j PODNET-SERVICES`), `IPv${family}: filter ${c} jump`);
      t.equal((saved.match(/-j PODNET-SVC-/g) ?? []).length, 3, `IPv${family}: web and api dispatched (ClusterIP, and api's EXT)`);
      t.match(saved, /-A PODNET-SERVICES .*"default\/empty:http has no endpoints" .* -j REJECT/, `IPv${family}: empty REJECTs in filter`);
      t.match(saved, family === 4 ? /-j DNAT --to-destination 10\.244\.1\.5:8080/ : /-j DNAT --to-destination \[fd00:10:244:1::5\]:8080/, `IPv${family}: DNAT to the endpoint`);
      const members = (await ipsetMembers(`PODNET-SERVICE-IPS-${family}`, { netns: host }))!.sort();
      t.same(members, family === 4 ? ['10.244.0.1,tcp:30080', '10.96.0.10,tcp:80', '10.96.0.11,tcp:80'] : ['fd00:10:244::1,tcp:30080', 'fd00:10:96::a,tcp:80', 'fd00:10:96::b,tcp:80'], `IPv${family}: VIP set`);
    }
    t.equal(mode.lastSync()[0]!.stats.jumpsDeleted, 1, 'the stray jump counted');

    // Partial: web gets a third endpoint (IPv4 only).
    const slices2 = [slice('web', 4, ['10.244.1.5', '10.244.1.6', '10.244.1.9']), ...slices.slice(1)];
    const r2 = await mode.sync(snapshots(services, slices2), new Set(['default/web:http']));
    t.same(r2, { servicesWritten: 1, servicesRemoved: 0, full: false }, 'partial sync: one port written');
    const rep = mode.lastSync()[0]!;
    t.match(rep.stats, { chainsWritten: 2, chainsDeleted: 0 }, 'IPv4: the service chain and one new endpoint chain');
    t.equal(mode.lastSync()[1]!.natLines, 0, 'IPv6: nothing written');
    t.match(await ours(4), /DNAT --to-destination 10\.244\.1\.9:8080/, 'new endpoint programmed');
    t.ok(await foreign(4), 'IPv4 foreign rules intact after the partial sync');
    t.ok(await foreign(6), 'IPv6 foreign rules intact after the partial sync');

    // Partial: api removed.
    const r3 = await mode.sync(snapshots([services[0]!, services[2]!], slices2), new Set(['default/api:http']));
    t.same(r3, { servicesWritten: 0, servicesRemoved: 2, full: false }, 'api removed in both families');
    t.notMatch(await ours(4), /10\.96\.0\.11/, 'its rules are gone');
    t.notMatch(await ours(4), /PODNET-EXT-/, 'its EXT chain is gone');
    t.same((await ipsetMembers('PODNET-SERVICE-IPS-4', { netns: host }))!.sort(), ['10.96.0.10,tcp:80'], 'and its set members');

    await mode.cleanup();
    for (const family of [4, 6] as const) {
      t.notMatch(await ours(family), /PODNET/, `IPv${family}: no PODNET chain or jump after cleanup`);
      t.ok(await foreign(family), `IPv${family}: foreign rules intact after cleanup`);
    }
    t.same((await ipsetNames({ netns: host })).filter((n) => n.startsWith('PODNET')), [], 'no PODNET ipset after cleanup');
    await mode.cleanup();
    t.pass('cleanup again: idempotent');
    const again = await mode.sync(snapshots(services, slices), new Set(['default/web:http']));
    t.equal(again.full, true, 'after cleanup the next sync is full');
    await mode.cleanup();
  });

  await t.test('real packets: a ClusterIP connects, a Service with no endpoint refuses at once', async (t) => {
    const cli = await scope.netns('cli');
    const srv = await scope.netns('srv');
    const nl = scope.netlink(cli);
    await nl.links.ensure({ kind: 'veth', name: 'eth0', peer: { name: 'eth0', netns: srv } });
    const nls = scope.netlink(srv);
    for (const [h, a4, a6] of [
      [nl, '10.244.0.1/24', 'fd00:10:244::1/64'],
      [nls, '10.244.0.2/24', 'fd00:10:244::2/64'],
    ] as const) {
      await h.links.setUp('eth0');
      await h.addrs.ensure('eth0', a4);
      await h.addrs.ensure('eth0', a6, { nodad: true });
    }
    // The VIP ranges are routed out of eth0 (a node's default route would do the same).
    await run(cli, 'ip', ['route', 'add', '10.96.0.0/12', 'dev', 'eth0']);
    await run(cli, 'ip', ['-6', 'route', 'add', 'fd00:10:96::/112', 'dev', 'eth0']);

    // socat forks a child per connection: run it detached and kill its process group.
    const server = execa('nsenter', [`--net=${srv.path}`, '--', '/usr/bin/socat', 'TCP6-LISTEN:8080,ipv6only=0,reuseaddr,fork', 'SYSTEM:echo hello-from-server'], { detached: true, stdio: 'ignore', reject: false });
    const pid = server.pid!;
    scope.own(pid);
    scope.defer(() => {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    });
    await waitFor(async () => (await run(srv, 'ss', ['-Hltn', 'sport = :8080'])).stdout.includes('8080'), 5000, 'socat listening');

    const services = [svc('web', '10.96.0.10', 'fd00:10:96::a'), svc('empty', '10.96.0.11', 'fd00:10:96::b')];
    const slices = [slice('web', 4, ['10.244.0.2']), slice('web', 6, ['fd00:10:244::2'])];
    const mode = createIptablesMode({ netnsPath: cli.path, log });
    scope.defer(() => mode.cleanup());
    await mode.sync(snapshots(services, slices), undefined);

    const connect = async (target: string) => {
      const t0 = performance.now();
      const r = await run(cli, '/usr/bin/socat', ['-T3', 'STDIO', `TCP:${target},connect-timeout=5`], { input: '', reject: false, timeout: 15_000 });
      return { ok: r.exitCode === 0, out: String(r.stdout).trim(), err: String(r.stderr), ms: performance.now() - t0 };
    };
    for (const [label, vip] of [
      ['IPv4', '10.96.0.10:80'],
      ['IPv6', '[fd00:10:96::a]:80'],
    ] as const) {
      const c = await connect(vip);
      t.ok(c.ok, `${label}: connected to the ClusterIP ${vip} (${c.err.trim()})`);
      t.equal(c.out, 'hello-from-server', `${label}: DNATed to the server`);
    }
    for (const [label, vip] of [
      ['IPv4', '10.96.0.11:80'],
      ['IPv6', '[fd00:10:96::b]:80'],
    ] as const) {
      const c = await connect(vip);
      t.notOk(c.ok, `${label}: no endpoint, no connection`);
      t.match(c.err, /refused/i, `${label}: refused (REJECT → port unreachable), not timed out`);
      t.ok(c.ms < 2000, `${label}: fails fast (${c.ms.toFixed(0)} ms)`);
    }
    // Without any rule the same VIP would hang until the connect timeout: the REJECT is what answers.
    await mode.cleanup();
    const bare = await connect('10.96.0.11:80');
    t.notOk(bare.ok, 'after cleanup the empty VIP does not connect either');
    t.ok(bare.ms > 2000 || !/refused/i.test(bare.err), `but not by a quick refusal (${bare.ms.toFixed(0)} ms: ${bare.err.trim().split('\n').pop()})`);
  });

  await t.test('errors name the failing line and show the lines around it', async (t) => {
    const ns = await scope.netns('err');
    const input = ['*nat', ':PODNET-ERR - [0:0]', '-A PODNET-ERR -j RETURN', '-A PODNET-ERR -m no-such-match -j RETURN', '-A PODNET-ERR -j RETURN', 'COMMIT', ''].join('\n');
    const e = await iptablesRestore(4, input, 'testing a bad line', { netns: ns }).then(
      () => undefined,
      (err: unknown) => err,
    );
    t.ok(isPodnetError(e, 'PODNET_EXEC'), 'a PODNET_EXEC error');
    if (isPodnetError(e)) {
      t.equal(e.context.line, 4, 'line 4');
      t.match(e.message, /^testing a bad line: iptables-restore failed at line 4: .*no-such-match/, e.message);
      t.match(String(e.context.input), />4: -A PODNET-ERR -m no-such-match -j RETURN/, 'the failing line, marked');
      t.match(String(e.context.input), / 3: -A PODNET-ERR -j RETURN\n>4: .*\n 5: -A PODNET-ERR -j RETURN/, 'with its neighbours');
      t.comment(String(e));
    }
    t.notMatch(await iptablesSave(4, 'nat', { netns: ns }), /PODNET-ERR/, 'nothing of the failed input applied');
    const e2 = await ipsetRestore('create PODNET-E hash:ip,port family inet\nadd PODNET-E 10.0.0.1,bogus:80\n', 'testing ipset', { netns: ns }).then(
      () => undefined,
      (err: unknown) => err,
    );
    t.ok(isPodnetError(e2, 'PODNET_EXEC') && e2.context.line === 2, `ipset: line 2 (${String(e2)})`);
  });

  await t.test('scale: 10,000 services × 10 endpoints', async (t) => {
    const S = 10_000;
    const E = 10;
    // The baseline: a raw iptables-restore of the kube-proxy-style ruleset, in a fresh namespace.
    const base = await scope.netns('kp');
    const kp = kubeProxyStyle(S, E);
    let t0 = performance.now();
    await run(base, 'iptables-restore', ['-w'], { input: kp, timeout: 300_000 });
    const kpMs = performance.now() - t0;

    const ns = await scope.netns('scale');
    const mode = createIptablesMode({ netnsPath: ns.path, log });
    const snap = syntheticSnapshot({ services: S, endpoints: E });
    t0 = performance.now();
    await mode.sync([snap], undefined);
    const fullMs = performance.now() - t0;
    const full = mode.lastSync()[0]!;

    const sp = [...snap.services.values()][4321]!;
    const eps = [...sp.endpoints.slice(1), endpoint('10.250.0.1')];
    const next = withPort(snap, { ...sp, endpoints: eps, clusterEndpoints: eps, externalEndpoints: eps });
    t0 = performance.now();
    await mode.sync([next], new Set([sp.key]));
    const partMs = performance.now() - t0;
    const part = mode.lastSync()[0]!;

    // A new service: its bucket, not PODNET-SERVICES, is rewritten.
    const added = { ...next.services.get(sp.key)!, key: 'zz/new:http', namespace: 'zz', name: 'new', clusterIP: '10.111.0.1' };
    t0 = performance.now();
    await mode.sync([withPort(next, added)], new Set([added.key]));
    const newMs = performance.now() - t0;
    const newRep = mode.lastSync()[0]!;

    // A periodic full resync of the same state (everything ours rewritten in place).
    t0 = performance.now();
    await mode.sync([withPort(next, added)], undefined);
    const resyncMs = performance.now() - t0;
    const resync = mode.lastSync()[0]!;

    t.comment(`kube-proxy-style raw iptables-restore: ${(kpMs / 1000).toFixed(2)} s`);
    t.comment(`full sync: ${(fullMs / 1000).toFixed(2)} s = ${(fullMs / kpMs).toFixed(2)} × baseline (${JSON.stringify(full.ms)}, ${full.natLines} nat lines)`);
    t.comment(`one-endpoint partial sync: ${partMs.toFixed(0)} ms (${JSON.stringify(part.ms)}, ${part.natLines} nat lines)`);
    t.comment(`new-service partial sync: ${newMs.toFixed(0)} ms (${JSON.stringify(newRep.ms)}, ${newRep.natLines} nat lines)`);
    t.comment(`periodic full resync: ${(resyncMs / 1000).toFixed(2)} s (${JSON.stringify(resync.ms)})`);
    t.ok(resync.full && resyncMs < 60_000, 'periodic full resync < 60 s');
    t.ok(fullMs < 60_000, `full sync < 60 s (${(fullMs / 1000).toFixed(1)} s)`);
    t.ok(partMs < 3000, `one-endpoint partial < 3 s (${partMs.toFixed(0)} ms)`);
    t.match(part.stats, { chainsWritten: 2, chainsDeleted: 1 }, 'partial: the service chain, one new and one deleted endpoint chain');

    // (Never t.match a 40 MB string: a failure would render it.)
    const saved = await iptablesSave(4, 'nat', { netns: ns });
    t.equal((saved.match(/^:PODNET-SEP-/gm) ?? []).length, S * E + E, 'every endpoint chain is there (and the new service ones)');
    t.ok(saved.includes('-j DNAT --to-destination 10.250.0.1:8080'), 'the new endpoint is programmed');
    t.notOk(saved.includes(`-j DNAT --to-destination ${sp.endpoints[0]!.ip}:8080\n`), `the old one (${sp.endpoints[0]!.ip}) is gone`);
    t.ok(/^-A PODNET-SERVICES-[0-9A-F]{2} -d 10\.111\.0\.1\/32 .*--dport 80 -j PODNET-SVC-/m.test(saved), 'the new service is dispatched from its bucket');
    t0 = performance.now();
    await mode.cleanup();
    t.comment(`cleanup: ${((performance.now() - t0) / 1000).toFixed(2)} s`);
    t.notOk((await iptablesSave(4, 'nat', { netns: ns })).includes('PODNET'), 'cleanup removed everything');
  });
}
