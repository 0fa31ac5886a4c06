// Every ensure is safe to repeat: the second call changes nothing (same ifindex, same
// iproute2 view), and deleting what is already gone succeeds.
import t from 'tap';
import { Scope, bridgeJson, ipJson, skipReason } from './lib/harness.js';
import { NetNS } from '../src/kernel/index.js';
import type { Netlink } from '../src/kernel/index.js';

const skip = skipReason();

async function snapshot(ns: NetNS) {
  // Volatile fields (counters, timers) are not state we set.
  const strip = (x: unknown) => JSON.stringify(x, (k, v) => (/^(stats|stats64|operstate|carrier_changes|carrier_up_count|carrier_down_count|.*_timer)$/.test(k) ? undefined : v));
  return {
    links: strip(await ipJson(ns, ['-d', 'link', 'show'])),
    addrs: strip(((await ipJson(ns, ['addr', 'show'])) as { addr_info: { valid_life_time?: number; preferred_life_time?: number }[] }[]).map((l) => ({ ...l, addr_info: l.addr_info.map(({ valid_life_time: _v, preferred_life_time: _p, ...a }) => a) }))),
    routes: strip(await ipJson(ns, ['route', 'show', 'table', 'all'])),
    neigh: strip(((await ipJson(ns, ['neigh', 'show'])) as { state: string[] }[]).filter((n) => n.state.includes('PERMANENT'))),
    fdb: strip(((await bridgeJson(ns, ['fdb', 'show'])) as { state?: string }[]).filter((f) => f.state === 'permanent')),
  };
}

async function converge(nl: Netlink, pod: NetNS) {
  await nl.links.ensure({ kind: 'bridge', name: 'podnet0', mtu: 1450, up: true });
  await nl.links.ensure({ kind: 'veth', name: 'pnidem0', mtu: 1450, master: 'podnet0', up: true, peer: { name: 'eth0', netns: pod } });
  await nl.links.ensure({ kind: 'vxlan', name: 'podnet.1', vni: 1, local: '198.18.0.1', mtu: 1450, mac: '02:00:00:00:00:01', up: true });
  await nl.links.ensure({ kind: 'tun', name: 'podnet.udp', mtu: 1472, up: true });
  await nl.addrs.ensure('podnet0', '10.244.1.1/24');
  await nl.addrs.ensure('podnet0', 'fd00:10:244:1::1/64', { nodad: true });
  await nl.routes.ensure({ dst: '10.244.2.0/24', via: '10.244.2.0', dev: 'podnet.1', onlink: true });
  await nl.routes.ensure({ dst: '10.244.3.0/24', via: '10.244.1.3', dev: 'podnet0', table: 100 });
  await nl.neigh.ensure({ dev: 'podnet.1', ip: '10.244.2.0', mac: '02:00:00:00:00:02' });
  await nl.fdb.ensure({ dev: 'podnet.1', mac: '02:00:00:00:00:02', dst: '198.18.0.2' });
}

t.test('every ensure twice is a no-op', { skip }, async (t) => {
  const scope = new Scope('idem');
  t.teardown(() => scope.cleanup());
  const node = await scope.netns('node');
  const pod = await scope.netns('pod');
  const nl = scope.netlink(node);
  await converge(nl, pod);
  const before = await snapshot(node);
  const podBefore = await snapshot(pod);
  const idx = Object.fromEntries((await nl.links.list()).map((l) => [l.name, l.index]));
  await converge(nl, pod);
  await converge(nl, pod);
  t.same(await snapshot(node), before, 'node namespace unchanged by repeated ensures');
  t.same(await snapshot(pod), podBefore, 'pod namespace unchanged');
  t.same(Object.fromEntries((await nl.links.list()).map((l) => [l.name, l.index])), idx, 'no link was recreated (same ifindexes)');
  t.equal(NetNS.ensure(node.name!).ino, node.ino, 'NetNS.ensure twice gives the same namespace');
});

t.test('ensure converges drifted attributes in place', { skip }, async (t) => {
  const scope = new Scope('drift');
  t.teardown(() => scope.cleanup());
  const node = await scope.netns('node');
  const pod = await scope.netns('pod');
  const nl = scope.netlink(node);
  await converge(nl, pod);
  const index = (await nl.links.require('pnidem0')).index;
  await nl.links.setMtu('pnidem0', 1300);
  await nl.links.setMaster('pnidem0', null);
  await nl.links.setUp('pnidem0', false);
  await nl.routes.ensure({ dst: '10.244.2.0/24', via: '10.244.1.77', dev: 'podnet0' });
  await converge(nl, pod);
  const l = await nl.links.require('pnidem0');
  t.match(l, { index, mtu: 1450, up: true, masterIndex: (await nl.links.require('podnet0')).index }, 'mtu, master and up restored on the same link');
  const r = (await nl.routes.list()).filter((x) => x.dst === '10.244.2.0/24');
  t.equal(r.length, 1, 'one route for the prefix');
  t.match(r[0], { via: '10.244.2.0', onlink: true }, 'the route was replaced, not duplicated');
});

t.test('deleting what is already gone succeeds', { skip }, async (t) => {
  const scope = new Scope('del');
  t.teardown(() => scope.cleanup());
  const node = await scope.netns('node');
  const nl = scope.netlink(node);
  await nl.links.ensure({ kind: 'bridge', name: 'br0', up: true });
  await nl.links.ensure({ kind: 'vxlan', name: 'vx0', vni: 7, up: true });
  t.equal(await nl.links.delete('nolink0'), false, 'link');
  t.equal(await nl.addrs.delete('br0', '10.1.1.1/24'), false, 'address');
  t.equal(await nl.routes.delete({ dst: '10.77.0.0/16' }), false, 'route');
  t.equal(await nl.routes.delete({ dst: 'default', family: 6 }), false, 'IPv6 default route');
  t.equal(await nl.neigh.delete({ dev: 'br0', ip: '10.1.1.9' }), false, 'neighbour');
  t.equal(await nl.fdb.delete({ dev: 'vx0', mac: '02:00:00:00:00:09', dst: '198.18.0.9' }), false, 'fdb entry');
  t.equal(NetNS.delete(scope.name('never-created')), false, 'namespace');
  // and a second delete of something that existed
  await nl.addrs.ensure('br0', '10.1.1.1/24');
  t.equal(await nl.addrs.delete('br0', '10.1.1.1/24'), true);
  t.equal(await nl.addrs.delete('br0', '10.1.1.1/24'), false);
  t.equal(await nl.links.delete('vx0'), true);
  t.equal(await nl.links.delete('vx0'), false);
});
