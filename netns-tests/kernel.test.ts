// The kernel layer against the real kernel: links, addresses, routes, neighbours and FDB
// entries are created through src/kernel only, then checked with iproute2's JSON output.
import t from 'tap';
import { Scope, bridgeJson, ipJson, sh, skipReason } from './lib/harness.js';
import type { Link } from '../src/kernel/index.js';

const skip = skipReason();

type IpLink = { ifindex: number; ifname: string; mtu: number; flags: string[]; master?: string; address?: string; link_netnsid?: number; linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> } };
type IpAddr = { ifname: string; addr_info: { family: string; local: string; prefixlen: number; broadcast?: string }[] };
type IpRoute = { dst: string; gateway?: string; dev?: string; flags?: string[]; protocol?: string; metric?: number };

t.test('veth across two namespaces, bridge, addresses, routes', { skip }, async (t) => {
  const scope = new Scope('k');
  t.teardown(() => scope.cleanup());
  const host = await scope.netns('host');
  const pod = await scope.netns('pod');
  const h = scope.netlink(host);
  const p = scope.netlink(pod);

  const br = await h.links.ensure({ kind: 'bridge', name: 'podnet0', mtu: 1450, up: true });
  t.equal(br.kind, 'bridge');
  const veth = await h.links.ensure({ kind: 'veth', name: 'pn0123abcd', mtu: 1450, master: 'podnet0', up: true, peer: { name: 'eth0', netns: pod } });
  t.equal(veth.kind, 'veth');
  t.equal(veth.masterIndex, br.index, 'the returned link reports its master');
  await p.links.setUp('eth0');
  await h.addrs.ensure('podnet0', '10.244.1.1/24');
  await h.addrs.ensure('podnet0', 'fd00:10:244:1::1/64', { nodad: true });
  await p.addrs.ensure('eth0', '10.244.1.2/24');
  await p.addrs.ensure('eth0', 'fd00:10:244:1::2/64', { nodad: true });
  await p.routes.ensure({ dst: 'default', via: '10.244.1.1' });
  await p.routes.ensure({ dst: 'default', via: 'fd00:10:244:1::1' });
  await h.routes.ensure({ dst: '10.244.2.0/24', via: '10.244.1.254', dev: 'podnet0', onlink: true });
  await h.routes.ensure({ dst: '10.96.0.0/12', dev: 'podnet0', metric: 50 });

  const hostLinks = await ipJson<IpLink[]>(host, ['-d', 'link', 'show']);
  const ipBr = hostLinks.find((l) => l.ifname === 'podnet0');
  const ipVeth = hostLinks.find((l) => l.ifname === 'pn0123abcd');
  t.equal(ipBr?.linkinfo?.info_kind, 'bridge', 'ip sees the bridge');
  t.equal(ipBr?.mtu, 1450);
  t.ok(ipBr?.flags.includes('UP'), 'bridge is up');
  t.equal(ipVeth?.linkinfo?.info_kind, 'veth', 'ip sees the veth');
  t.equal(ipVeth?.master, 'podnet0', 'veth is on the bridge');
  t.ok(ipVeth?.flags.includes('UP'));
  t.type(ipVeth?.link_netnsid, 'number', 'its peer is in another namespace');

  const hairpinOf = async () => (await bridgeJson<{ ifname: string; hairpin?: boolean }[]>(host, ['-d', 'link', 'show', 'dev', 'pn0123abcd']))[0]?.hairpin;
  t.equal(await hairpinOf(), false, 'a new bridge port has hairpin off');
  await h.links.setHairpin('pn0123abcd', true);
  t.equal(await hairpinOf(), true, 'setHairpin(true): `bridge -d link` shows hairpin on');
  await h.links.setHairpin('pn0123abcd', true);
  t.equal(await hairpinOf(), true, 'setHairpin twice is fine');

  const podLinks = await ipJson<IpLink[]>(pod, ['-d', 'link', 'show']);
  const eth0 = podLinks.find((l) => l.ifname === 'eth0');
  t.equal(eth0?.linkinfo?.info_kind, 'veth', 'peer eth0 is in the pod namespace');
  t.equal(eth0?.mtu, 1450, 'peer got the same MTU');
  t.ok(eth0?.flags.includes('UP'));
  t.notOk(hostLinks.some((l) => l.ifname === 'eth0'), 'no eth0 left in the host namespace');

  const podAddrs = (await ipJson<IpAddr[]>(pod, ['addr', 'show', 'dev', 'eth0']))[0]!.addr_info;
  t.ok(podAddrs.some((a) => a.local === '10.244.1.2' && a.prefixlen === 24 && a.broadcast === '10.244.1.255'), 'pod IPv4 with broadcast');
  t.ok(podAddrs.some((a) => a.local === 'fd00:10:244:1::2' && a.prefixlen === 64), 'pod IPv6');

  const podRoutes = await ipJson<IpRoute[]>(pod, ['route', 'show']);
  t.ok(podRoutes.some((r) => r.dst === 'default' && r.gateway === '10.244.1.1'), 'pod default route');
  const podRoutes6 = await ipJson<IpRoute[]>(pod, ['-6', 'route', 'show']);
  t.ok(podRoutes6.some((r) => r.dst === 'default' && r.gateway === 'fd00:10:244:1::1'), 'pod IPv6 default route');
  const hostRoutes = await ipJson<IpRoute[]>(host, ['route', 'show']);
  const onlink = hostRoutes.find((r) => r.dst === '10.244.2.0/24');
  t.equal(onlink?.gateway, '10.244.1.254');
  t.ok(onlink?.flags?.includes('onlink'), 'onlink flag set');
  t.equal(hostRoutes.find((r) => r.dst === '10.96.0.0/12')?.metric, 50, 'metric');

  // our own listing agrees with iproute2
  const listed = await h.routes.list({ family: 4 });
  t.ok(listed.some((r) => r.dst === '10.244.2.0/24' && r.via === '10.244.1.254' && r.onlink), 'routes.list decodes the onlink route');
  const addrs = await p.addrs.list({ dev: 'eth0' });
  t.same(addrs.filter((a) => a.scope === 0).map((a) => `${a.ip}/${a.prefix}`).sort(), ['10.244.1.2/24', 'fd00:10:244:1::2/64']);

  // route lookups, as `ip route get` does them
  const viaOnlink = await h.routes.get('10.244.2.7');
  t.match(viaOnlink, { dst: '10.244.2.7/32', via: '10.244.1.254', devIndex: br.index }, 'route get follows the onlink route');
  t.match(await h.routes.get('10.244.2.7', { fibMatch: true }), { dst: '10.244.2.0/24', via: '10.244.1.254', onlink: true }, 'fibmatch returns the FIB entry');
  t.match(await p.routes.get('203.0.113.9'), { via: '10.244.1.1' }, 'the pod default route answers for anything else');
  t.equal(await h.routes.get('192.0.2.1'), undefined, 'no route: undefined (ip says "Network is unreachable")');

  // real packets: the pod reaches its gateway on both families
  await sh(pod, 'ping', ['-c1', '-W2', '10.244.1.1']);
  await sh(pod, 'ping', ['-6', '-c1', '-W2', 'fd00:10:244:1::1']);
  t.pass('pod pings its gateway over IPv4 and IPv6');

  // set ops
  await h.links.setMtu('pn0123abcd', 1400);
  await h.links.setMac('pn0123abcd', '02:aa:bb:cc:dd:ee');
  await h.links.setMaster('pn0123abcd', null);
  const changed = (await ipJson<IpLink[]>(host, ['link', 'show', 'pn0123abcd']))[0]!;
  t.equal(changed.mtu, 1400, 'setMtu');
  t.equal(changed.address, '02:aa:bb:cc:dd:ee', 'setMac');
  t.equal(changed.master, undefined, 'setMaster(null) detaches');
  await h.links.setUp('pn0123abcd', false);
  await h.links.rename('pn0123abcd', 'pnrenamed');
  t.ok((await h.links.get('pnrenamed'))?.kind === 'veth', 'rename');
  t.notOk((await ipJson<IpLink[]>(host, ['link', 'show', 'pnrenamed']))[0]!.flags.includes('UP'), 'setUp(false)');
});

t.test('vxlan device, permanent neighbour, fdb entry', { skip }, async (t) => {
  const scope = new Scope('vx');
  t.teardown(() => scope.cleanup());
  const node = await scope.netns('node');
  const nl = scope.netlink(node);
  await nl.links.ensure({ kind: 'bridge', name: 'under0', up: true });
  await nl.addrs.ensure('under0', '198.18.0.1/24');
  const vx = await nl.links.ensure({ kind: 'vxlan', name: 'podnet.1', vni: 1, port: 8472, local: '198.18.0.1', dev: 'under0', mtu: 1450, mac: '02:00:c6:12:00:01', up: true });
  t.match(vx, { kind: 'vxlan', vni: 1, port: 8472, local: '198.18.0.1', learning: false, mtu: 1450, mac: '02:00:c6:12:00:01' });
  await nl.addrs.ensure('podnet.1', '10.244.1.0/32');
  await nl.neigh.ensure({ dev: 'podnet.1', ip: '10.244.2.0', mac: '02:00:c6:12:00:02' });
  await nl.fdb.ensure({ dev: 'podnet.1', mac: '02:00:c6:12:00:02', dst: '198.18.0.2' });
  await nl.routes.ensure({ dst: '10.244.2.0/24', via: '10.244.2.0', dev: 'podnet.1', onlink: true });

  const ipVx = (await ipJson<IpLink[]>(node, ['-d', 'link', 'show', 'podnet.1']))[0]!;
  t.equal(ipVx.linkinfo?.info_kind, 'vxlan');
  t.match(ipVx.linkinfo?.info_data, { id: 1, local: '198.18.0.1', port: 8472, link: 'under0', learning: false }, 'vxlan parameters as ip sees them');
  const neighs = await ipJson<{ dst: string; lladdr: string; state: string[] }[]>(node, ['neigh', 'show', 'dev', 'podnet.1']);
  t.ok(neighs.some((n) => n.dst === '10.244.2.0' && n.lladdr === '02:00:c6:12:00:02' && n.state.includes('PERMANENT')), 'permanent neighbour');
  const fdb = await bridgeJson<{ mac: string; dst?: string; flags?: string[]; state?: string }[]>(node, ['fdb', 'show', 'dev', 'podnet.1']);
  t.ok(fdb.some((f) => f.mac === '02:00:c6:12:00:02' && f.dst === '198.18.0.2' && f.state === 'permanent'), 'fdb entry to the remote VTEP');

  // our decoders agree
  t.ok((await nl.neigh.list({ dev: 'podnet.1' })).some((n) => n.ip === '10.244.2.0' && n.state.includes('permanent')));
  t.ok((await nl.fdb.list({ dev: 'podnet.1' })).some((f) => f.mac === '02:00:c6:12:00:02' && f.dst === '198.18.0.2' && f.self));

  // replace semantics: the fdb entry moves to another VTEP, the neighbour to another MAC
  await nl.fdb.ensure({ dev: 'podnet.1', mac: '02:00:c6:12:00:02', dst: '198.18.0.3' });
  await nl.neigh.ensure({ dev: 'podnet.1', ip: '10.244.2.0', mac: '02:00:c6:12:00:03' });
  const fdb2 = (await nl.fdb.list({ dev: 'podnet.1' })).filter((f) => f.mac === '02:00:c6:12:00:02');
  t.same(fdb2.map((f) => f.dst), ['198.18.0.3'], 'fdb replace moved the entry');
  t.equal((await nl.neigh.list({ dev: 'podnet.1' })).find((n) => n.ip === '10.244.2.0')?.mac, '02:00:c6:12:00:03', 'neigh replace changed the MAC');

  // deletes
  t.equal(await nl.fdb.delete({ dev: 'podnet.1', mac: '02:00:c6:12:00:02', dst: '198.18.0.3' }), true);
  t.equal(await nl.neigh.delete({ dev: 'podnet.1', ip: '10.244.2.0' }), true);
  t.equal(await nl.routes.delete({ dst: '10.244.2.0/24' }), true);
  t.same(await bridgeJson<unknown[]>(node, ['fdb', 'show', 'dev', 'podnet.1']).then((l) => (l as { mac: string }[]).filter((f) => f.mac === '02:00:c6:12:00:02')), [], 'fdb entry gone');
});

t.test('typed errors carry the namespace and object', { skip }, async (t) => {
  const scope = new Scope('err');
  t.teardown(() => scope.cleanup());
  const ns = await scope.netns('a');
  const nl = scope.netlink(ns);
  await nl.links.ensure({ kind: 'bridge', name: 'br0', up: true });
  await t.rejects(nl.links.ensure({ kind: 'vxlan', name: 'br0', vni: 1 }), { code: 'PODNET_LINK_EXISTS', message: /as a bridge, not a vxlan/, context: { netns: ns.name, link: 'br0' } });
  await t.rejects(nl.links.add({ kind: 'bridge', name: 'br0' }), { code: 'PODNET_LINK_EXISTS' });
  await t.rejects(nl.links.setUp('nope0'), { code: 'PODNET_LINK_NOT_FOUND', context: { netns: ns.name } });
  await t.rejects(nl.addrs.ensure('nope0', '10.0.0.1/24'), { code: 'PODNET_LINK_NOT_FOUND' });
  await t.rejects(nl.links.ensure({ kind: 'bridge', name: 'this-name-is-too-long' }), { code: 'PODNET_INVALID_NAME' });
  await t.rejects(nl.routes.ensure({ dst: '10.1.0.0/16', via: '10.9.9.9' }), { code: 'PODNET_NETLINK', errno: 'ENETUNREACH' }, 'unreachable gateway is the kernel errno, with context');
  await nl.addrs.add('br0', '10.0.0.1/24');
  await t.rejects(nl.addrs.add('br0', '10.0.0.1/24'), { code: 'PODNET_ADDR_EXISTS' });
  await nl.routes.add({ dst: '10.5.0.0/16', dev: 'br0' });
  await t.rejects(nl.routes.add({ dst: '10.5.0.0/16', dev: 'br0' }), { code: 'PODNET_ROUTE_EXISTS' });
  const vx = await nl.links.ensure({ kind: 'vxlan', name: 'vx0', vni: 1 });
  await t.rejects(nl.links.ensure({ kind: 'vxlan', name: 'vx0', vni: 2 }), { code: 'PODNET_LINK_EXISTS', message: /vni 1 \(wanted 2\)/ });
  const re = (await nl.links.ensure({ kind: 'vxlan', name: 'vx0', vni: 2 }, { recreate: true })) as Link;
  t.ok(re.kind === 'vxlan' && re.vni === 2 && re.index !== vx.index, 'recreate replaces a vxlan with other settings');
});

t.test('tun devices', { skip }, async (t) => {
  const scope = new Scope('tun');
  t.teardown(() => scope.cleanup());
  const ns = await scope.netns('a');
  const nl = scope.netlink(ns);
  const tun = await nl.links.ensure({ kind: 'tun', name: 'podnet.udp', mtu: 1472, up: true });
  t.match(tun, { kind: 'tun', mtu: 1472, up: true });
  const ipTun = (await ipJson<IpLink[]>(ns, ['-d', 'link', 'show', 'podnet.udp']))[0]!;
  t.equal(ipTun.linkinfo?.info_kind, 'tun', 'ip sees a tun device');
  t.match(ipTun.linkinfo?.info_data, { type: 'tun', pi: false }, 'IFF_TUN without packet info');
  const again = await nl.links.ensure({ kind: 'tun', name: 'podnet.udp', mtu: 1472, up: true });
  t.equal(again.index, tun.index, 'ensure twice keeps the device');
  t.equal(await nl.links.delete('podnet.udp'), true, 'a persistent tun can be deleted');
});
