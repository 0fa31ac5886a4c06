// The UDP transport's packet loop (src/kernel/udptunnel.ts + native/src/udptun.cc) between
// two node namespaces on an underlay: a pod on each node, routes for the remote pod subnets
// into podnet.udp, one UdpTunnel per node with its socket opened inside the node namespace.
// ICMP / TCP / UDP over IPv4 and IPv6 pod addresses, the MTU edge (DF), garbage and spoofed
// datagrams from an extra namespace on the underlay, table swaps under traffic, stop and a
// new tunnel, and no leaked threads or fds.
import t from 'tap';
import { randomBytes, createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { execa } from 'execa';
import { UdpTunnel, totalDrops } from '../src/kernel/udptunnel.js';
import type { UdpPeer, UdpTunnelStats } from '../src/kernel/udptunnel.js';
import type { NetNS } from '../src/kernel/index.js';
import { Scope, nodeIn, sh, skipReason, waitFor } from './lib/harness.js';
import { addPod, buildCluster } from './lib/cluster.js';
import type { VNode, VPod } from './lib/cluster.js';

const skip = skipReason();
const TUN = 'podnet.udp';
const MTU = 1472; // underlay 1500 - 28

const v6Subnet = (i: number) => `fd00:10:244:${i}::/64`;
const v6Pod = (i: number) => `fd00:10:244:${i}::2`;
const peersOf = (nodes: VNode[], self: number): UdpPeer[] =>
  nodes.flatMap((n, k) => (k === self ? [] : [{ subnet: `10.244.${k + 1}.0/24`, peer: n.ip }, { subnet: v6Subnet(k + 1), peer: n.ip }]));

function counts(): { tasks: number; fds: number } {
  return { tasks: readdirSync('/proc/self/task').length, fds: readdirSync('/proc/self/fd').length };
}

async function openTunnel(node: VNode, peers: UdpPeer[]): Promise<UdpTunnel> {
  const tun = await UdpTunnel.open({ netns: node.netns, tunName: TUN, localAddress: node.ip });
  tun.setPeers(peers);
  tun.start();
  return tun;
}

function ping(ns: NetNS, to: string, args: string[] = []) {
  return sh(ns, 'ping', [...(to.includes(':') ? ['-6'] : []), '-c1', '-W2', ...args, to], { reject: false }).then((r) => ({
    exitCode: r.exitCode,
    stdout: String(r.stdout),
    stderr: String(r.stderr),
  }));
}

/** Echo over TCP with socat: `bytes` random bytes there and back, compared by hash. */
async function tcpEcho(scope: Scope, server: VPod, client: VPod, to: string, port: number, bytes: number): Promise<boolean> {
  const srv = execa('nsenter', ['--net=' + server.netns.path, '--', 'socat', `TCP6-LISTEN:${port},reuseaddr,ipv6only=0`, 'EXEC:/bin/cat'], { reject: false });
  if (srv.pid) scope.own(srv.pid);
  await waitFor(async () => String((await sh(server.netns, 'ss', ['-Htln', `sport = :${port}`])).stdout).includes(String(port)), 5000, 'socat listening');
  const data = randomBytes(bytes);
  const target = to.includes(':') ? `TCP6:[${to}]:${port}` : `TCP4:${to}:${port}`;
  const r = await execa('nsenter', ['--net=' + client.netns.path, '--', 'socat', '-t', '5', '-', target], { input: data, encoding: 'buffer', reject: false, timeout: 30_000 });
  srv.kill('SIGKILL');
  await srv;
  const got = Buffer.from(r.stdout as Uint8Array);
  return got.length === bytes && createHash('sha256').update(got).digest('hex') === createHash('sha256').update(data).digest('hex');
}

// ---- packets for the garbage tests ----
function csum(b: Buffer): number {
  let s = 0;
  for (let i = 0; i + 1 < b.length; i += 2) s += b.readUInt16BE(i);
  if (b.length % 2) s += b[b.length - 1]! << 8;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return ~s & 0xffff;
}
function ipv4(src: string, dst: string, proto: number, payload: Buffer, opts: { totalLength?: number } = {}): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(opts.totalLength ?? 20 + payload.length, 2);
  h[8] = 64;
  h[9] = proto;
  Buffer.from(src.split('.').map(Number)).copy(h, 12);
  Buffer.from(dst.split('.').map(Number)).copy(h, 16);
  h.writeUInt16BE(csum(h), 10);
  return Buffer.concat([h, payload]);
}
function icmpEcho(id: number): Buffer {
  const b = Buffer.alloc(16);
  b[0] = 8;
  b.writeUInt16BE(id, 4);
  b.writeUInt16BE(csum(b), 2);
  return b;
}

/** A TCP ACK segment whose checksum is wrong. */
function badTcp(): Buffer {
  const b = Buffer.alloc(24);
  b.writeUInt16BE(40000, 0);
  b.writeUInt16BE(80, 2);
  b[12] = 5 << 4;
  b[13] = 0x10;
  b.writeUInt16BE(0xdead, 16);
  return b;
}

function tcpChecksum(src: string, dst: string, seg: Buffer): number {
  const pseudo = Buffer.alloc(12);
  Buffer.from(src.split('.').map(Number)).copy(pseudo, 0);
  Buffer.from(dst.split('.').map(Number)).copy(pseudo, 4);
  pseudo[9] = 6;
  pseudo.writeUInt16BE(seg.length, 10);
  return csum(Buffer.concat([pseudo, seg]));
}

/**
 * Random traffic for the loop's parsers from a known peer: garbage, IPv4/IPv6-looking
 * garbage, and TCP segments with valid checksums but random flags, options, sequence
 * numbers and lengths (they reach the coalescer and the TUN).
 */
function fuzzPackets(n: number, src: () => string, dst: string): Buffer[] {
  const out: Buffer[] = [];
  let seq = 1000;
  for (let i = 0; i < n; i++) {
    const kind = i % 4;
    if (kind === 0) out.push(randomBytes(1 + (i % 1600)));
    else if (kind === 1) {
      const b = randomBytes(20 + (i % 200));
      b[0] = (i & 1 ? 0x40 : 0x60) | (b[0]! & 0x0f);
      out.push(b);
    } else {
      const opts = (i >> 2) % 3 === 0 ? randomBytes(4 * ((i >> 4) % 4)) : Buffer.alloc(0);
      const payload = randomBytes(kind === 2 ? 1400 : i % 300);
      const tcp = Buffer.concat([Buffer.alloc(20), opts, payload]);
      tcp.writeUInt16BE(40000 + (i % 3), 0);
      tcp.writeUInt16BE(7777, 2);
      tcp.writeUInt32BE(seq >>> 0, 4);
      seq += i % 5 === 0 ? 7 : payload.length;
      tcp[12] = (5 + opts.length / 4) << 4;
      tcp[13] = [0x10, 0x18, 0x11, 0x02, 0x10, 0x10, 0x50, 0x14][i % 8]!;
      tcp.writeUInt16BE(65535, 14);
      const s = src();
      tcp.writeUInt16BE(tcpChecksum(s, dst, tcp), 16);
      out.push(ipv4(s, dst, 6, tcp));
    }
  }
  return out;
}

/** Sends datagrams from `ns`, bound to address:port, to dst:dport (packets go in on stdin, hex lines). */
async function sendFrom(ns: NetNS, bind: { address: string; port: number }, dst: { address: string; port: number }, packets: Buffer[]): Promise<void> {
  await nodeIn(
    ns,
    async (a: { bind: { address: string; port: number }; dst: { address: string; port: number } }) => {
      const dgram = await import('node:dgram');
      let text = '';
      for await (const chunk of process.stdin) text += String(chunk);
      const s = dgram.createSocket('udp4');
      await new Promise<void>((r) => s.bind(a.bind.port, a.bind.address, () => r()));
      for (const h of text.split('\n')) {
        if (h === '-' || h.length) await new Promise<void>((r, j) => s.send(Buffer.from(h === '-' ? '' : h, 'hex'), a.dst.port, a.dst.address, (e) => (e ? j(e) : r())));
      }
      s.close();
    },
    { bind, dst },
    { input: packets.map((p) => (p.length ? p.toString('hex') : '-')).join('\n') + '\n' },
  );
}

t.test('UDP tunnel between two node namespaces', { skip }, async (t) => {
  const scope = new Scope('udptun');
  const tunnels: UdpTunnel[] = [];
  t.teardown(async () => {
    for (const x of tunnels) x.stop();
    await scope.cleanup();
  });
  const start = counts();
  const cluster = await buildCluster(scope, { nodes: 2 });
  const nodes = cluster.nodes;
  const [n1, n2] = nodes as [VNode, VNode];
  const pods: VPod[] = [];
  for (const [i, n] of nodes.entries()) {
    const k = i + 1;
    const pod = await addPod(scope, n, 'p', { gateway: `10.244.${k}.1`, prefix: 24 }, `10.244.${k}.2`);
    await n.nl.addrs.ensure('cbr0', `fd00:10:244:${k}::1/64`, { nodad: true });
    await pod.nl.addrs.ensure('eth0', `${v6Pod(k)}/64`, { nodad: true });
    await pod.nl.routes.ensure({ dst: 'default', family: 6, via: `fd00:10:244:${k}::1` });
    pods.push(pod);
  }
  // Fixture readiness, not the tunnel: each node reaches its own pod over IPv6 (neighbour
  // discovery on a bridge that has just come up can take a moment).
  for (const [i, n] of nodes.entries()) {
    await waitFor(async () => (await ping(n.netns, v6Pod(i + 1), ['-W', '1'])).exitCode === 0, 10_000, `${n.name} -> its pod over IPv6`);
  }
  const [p1, p2] = pods as [VPod, VPod];
  for (const [i, n] of nodes.entries()) {
    tunnels[i] = await openTunnel(n, peersOf(nodes, i));
    const link = await n.nl.links.require(TUN);
    t.equal(link.kind, 'tun', `${n.name}: ${TUN} is a TUN device`);
    t.equal(link.mtu, MTU, `${n.name}: its MTU is the underlay MTU - 28 (derived from eth0)`);
    t.ok(link.up, `${n.name}: it is up`);
    for (const [k] of nodes.entries()) {
      if (k === i) continue;
      await n.nl.routes.ensure({ dst: `10.244.${k + 1}.0/24`, dev: TUN });
      await n.nl.routes.ensure({ dst: v6Subnet(k + 1), dev: TUN });
    }
  }
  const [t1, t2] = tunnels as [UdpTunnel, UdpTunnel];

  t.test('the loop runs on its own named thread', async (t) => {
    const tid = t1.threadId;
    t.ok(tid > 0 && tid !== process.pid, 'a thread id other than the main thread');
    t.ok(readdirSync('/proc/self/task').includes(String(tid)), 'listed in /proc/self/task');
    const comm = (await import('node:fs')).readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
    t.equal(comm, 'pn-udp:podnet.u', 'named after the device');
    t.equal(t1.state, 'running');
    t.same(t1.info().peers, 1, 'one peer in the table');
    t.same(t1.info().entries, 2, 'two subnets (IPv4 and IPv6)');
    t.ok(t1.info().udpGro && t1.info().udpGso && t1.info().offload, 'TUN and UDP offloads are on');
  });

  t.test('an idle loop sleeps (no busy polling)', async (t) => {
    await new Promise((r) => setTimeout(r, 200));
    const a = t1.cpuTime()!;
    const w0 = t1.stats().loop.wakeups;
    await new Promise((r) => setTimeout(r, 1000));
    const b = t1.cpuTime()!;
    t.ok(b.user + b.system - (a.user + a.system) <= 0.02, `CPU over 1 s idle: ${((b.user + b.system - a.user - a.system) * 1000).toFixed(0)} ms`);
    t.ok(t1.stats().loop.wakeups - w0 < 20, 'a handful of wakeups at most');
  });

  t.test('ICMP pod to pod, both ways, IPv4 and IPv6', async (t) => {
    for (const [a, b] of [
      [p1, p2],
      [p2, p1],
    ] as const) {
      const r = await ping(a.netns, b.ip);
      t.equal(r.exitCode, 0, `${a.ip} -> ${b.ip}: ${r.stdout.split('\n')[1] ?? ''}`);
    }
    t.equal((await ping(p1.netns, v6Pod(2))).exitCode, 0, 'fd00:10:244:1::2 -> fd00:10:244:2::2');
    t.equal((await ping(p2.netns, v6Pod(1))).exitCode, 0, 'fd00:10:244:2::2 -> fd00:10:244:1::2');
    const s1 = t1.stats();
    t.ok(s1.tx.packets >= 2 && s1.rx.packets >= 2, `node 1 sent ${s1.tx.packets} and received ${s1.rx.packets} packets`);
  });

  t.test('TCP across (socat echo, 4 MiB each way, checked by hash), IPv4 and IPv6', async (t) => {
    const before = t1.stats();
    t.ok(await tcpEcho(scope, p2, p1, p2.ip, 7000, 4 << 20), 'IPv4: 4 MiB echoed intact');
    t.ok(await tcpEcho(scope, p1, p2, v6Pod(1), 7001, 1 << 20), 'IPv6: 1 MiB echoed intact');
    const after = t1.stats();
    t.ok(after.tx.tunGso > before.tx.tunGso, `TSO super-packets were segmented (${after.tx.tunGso - before.tx.tunGso})`);
    t.ok(after.tx.gsoSends > before.tx.gsoSends, `UDP GSO sends were used (${after.tx.gsoSends - before.tx.gsoSends})`);
    t.ok(after.rx.coalesced > before.rx.coalesced, `received segments were merged (${after.rx.coalesced - before.rx.coalesced})`);
    t.equal(after.drops.rxBadChecksum, 0, 'no checksum failures');
  });

  t.test('UDP across', async (t) => {
    const srv = execa('nsenter', ['--net=' + p2.netns.path, '--', 'socat', 'UDP4-RECVFROM:7002,fork', 'PIPE'], { reject: false });
    if (srv.pid) scope.own(srv.pid);
    await waitFor(async () => String((await sh(p2.netns, 'ss', ['-Huln', 'sport = :7002'])).stdout).includes('7002'), 5000, 'udp server');
    const r = await execa('nsenter', ['--net=' + p1.netns.path, '--', 'socat', '-t', '2', '-', `UDP4:${p2.ip}:7002`], { input: 'datagram over the tunnel\n', reject: false, timeout: 10_000 });
    srv.kill('SIGKILL');
    await srv;
    t.equal(r.stdout.trim(), 'datagram over the tunnel', 'the UDP echo came back');
    const big = await execa('nsenter', ['--net=' + p1.netns.path, '--', 'socat', '-t', '2', '-', `UDP4:${p2.ip}:7003`], { input: 'x', reject: false, timeout: 10_000 });
    t.ok(big.exitCode !== undefined, 'a datagram to a closed port does not disturb the loop');
    t.equal((await ping(p1.netns, p2.ip)).exitCode, 0, 'still flowing');
  });

  t.test('a full-MTU packet with DF passes, one byte more gets "fragmentation needed"', async (t) => {
    const ok = await ping(p1.netns, p2.ip, ['-M', 'do', '-s', String(MTU - 28)]);
    t.equal(ok.exitCode, 0, `ping -M do -s ${MTU - 28} (a ${MTU}-byte packet) passes`);
    const tooBig = await ping(p1.netns, p2.ip, ['-M', 'do', '-s', String(MTU - 27)]);
    t.not(tooBig.exitCode, 0, 'one byte more does not pass');
    const out = `${tooBig.stdout}\n${tooBig.stderr}`;
    t.match(out, /Frag needed|message too long|mtu = 1472/i, `the sender is told why: ${out.split('\n').find((l) => /frag|too long/i.test(l)) ?? out}`);
    const ok6 = await ping(p1.netns, v6Pod(2), ['-M', 'do', '-s', String(MTU - 48)]);
    t.equal(ok6.exitCode, 0, `IPv6: ping -M do -s ${MTU - 48} passes`);
    const big6 = await ping(p1.netns, v6Pod(2), ['-M', 'do', '-s', String(MTU - 47)]);
    t.not(big6.exitCode, 0, 'IPv6: one byte more does not');
    t.match(`${big6.stdout}\n${big6.stderr}`, /Packet too big|message too long|mtu/i, 'IPv6: "packet too big"');
  });

  t.test('malformed, unknown and spoofed datagrams are dropped and counted; traffic keeps flowing', async (t) => {
    // An extra namespace on the underlay; made a peer of node 1 for 10.244.9.0/24 so it can
    // also send from a known address:port.
    const x = await cluster.attach('x', '198.18.0.99');
    t1.setPeers([...peersOf(nodes, 0), { subnet: '10.244.9.0/24', peer: x.ip }]);
    const dst = { address: n1.ip, port: 8285 };
    const before = t1.stats();
    const valid = (src: string) => ipv4(src, p1.ip, 1, icmpEcho(7));
    await sendFrom(x.netns, { address: x.ip, port: 9999 }, dst, [valid('10.244.9.5'), randomBytes(100), valid('10.244.9.5')]);
    await sendFrom(x.netns, { address: x.ip, port: 8285 }, dst, [
      randomBytes(5), // short
      Buffer.concat([Buffer.from([0x75]), randomBytes(60)]), // IP version 7
      valid('10.244.2.5'), // spoofed: a pod address of node 2
      ipv4('10.244.9.5', p1.ip, 1, icmpEcho(8), { totalLength: 200 }), // IP length > datagram
      ipv4('10.244.9.5', p1.ip, 17, randomBytes(2000)), // larger than the MTU
      Buffer.alloc(0), // empty
      ipv4('10.244.9.5', p1.ip, 6, badTcp()), // TCP with a wrong checksum
      valid('10.244.9.5'), // fine: delivered
    ]);
    const want = { rxUnknownPeer: 3, rxShort: 2, rxMalformed: 1, rxSpoofed: 1, rxTruncated: 1, rxOversized: 1, rxBadChecksum: 1 };
    const after = await waitFor<UdpTunnelStats | false>(() => {
      const s = t1.stats();
      return s.rx.datagrams - before.rx.datagrams >= 11 && s;
    }, 5000, 'the datagrams to arrive');
    if (!after) return;
    for (const [k, v] of Object.entries(want)) {
      const key = k as keyof UdpTunnelStats['drops'];
      t.equal(after.drops[key] - before.drops[key], v, `${k}: ${v}`);
    }
    t.equal(after.rx.packets - before.rx.packets, 1, 'the one valid packet from the known peer was written to the TUN');
    t.equal(t1.state, 'running');
    t.equal((await ping(p1.netns, p2.ip)).exitCode, 0, 'pod to pod still works');
    t.equal((await ping(p2.netns, p1.ip)).exitCode, 0, 'and back');
    t1.setPeers(peersOf(nodes, 0));
  });

  t.test('a fuzz burst from a known peer: every datagram is delivered or dropped and counted', async (t) => {
    const x = await cluster.attach('fz', '198.18.0.98');
    t1.setPeers([...peersOf(nodes, 0), { subnet: '10.244.8.0/24', peer: x.ip }]);
    const before = t1.stats();
    const n = 3000;
    let k = 0;
    await sendFrom(x.netns, { address: x.ip, port: 8285 }, { address: n1.ip, port: 8285 }, fuzzPackets(n, () => (k++ % 10 === 0 ? '10.244.2.9' : '10.244.8.7'), p1.ip));
    const rxDrops = (s: UdpTunnelStats) => Object.entries(s.drops).filter(([k2]) => k2.startsWith('rx')).reduce((a, [, v]) => a + v, 0);
    const after = await waitFor<UdpTunnelStats | false>(() => {
      const s = t1.stats();
      return s.rx.datagrams - before.rx.datagrams >= n && s;
    }, 10_000, 'the burst to arrive');
    if (!after) return;
    const d = (f: (s: UdpTunnelStats) => number) => f(after) - f(before);
    t.equal(d((s) => s.rx.datagrams), n, `${n} datagrams received`);
    t.equal(d((s) => s.rx.packets) + d(rxDrops), n, `all accounted for: ${d((s) => s.rx.packets)} written, ${d(rxDrops)} dropped`);
    t.ok(d((s) => s.drops.rxSpoofed) > 0 && d((s) => s.drops.rxMalformed) > 0, 'spoofed and malformed among them');
    t.ok(d((s) => s.rx.packets) > n / 4, 'the well-formed segments were written to the TUN');
    t.equal(t1.state, 'running');
    t.equal((await ping(p1.netns, p2.ip)).exitCode, 0, 'pod to pod still works');
    t1.setPeers(peersOf(nodes, 0));
  });

  t.test('setPeers replaces the table while traffic flows', async (t) => {
    const before = t1.stats();
    const flood = sh(p1.netns, 'ping', ['-q', '-i', '0.005', '-c', '400', '-W', '1', p2.ip], { reject: false });
    const other: UdpPeer[] = Array.from({ length: 500 }, (_, i) => ({ subnet: `10.${100 + (i >> 8)}.${i & 255}.0/24`, peer: `198.18.1.${(i % 250) + 1}` }));
    let swaps = 0;
    const deadline = Date.now() + 1500;
    while (Date.now() < deadline) {
      // The same routes for node 2 in every table, among many others, in varying order.
      t1.setPeers(swaps % 2 ? [...other, ...peersOf(nodes, 0)] : [...peersOf(nodes, 0), ...other.slice(0, swaps % 500)]);
      swaps++;
      await new Promise((r) => setTimeout(r, 1));
    }
    const out = String((await flood).stdout);
    const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
    t.ok(m, out);
    t.ok(swaps > 100, `${swaps} tables installed during the flood`);
    t.equal(m?.[2], m?.[1], `no ping lost: ${m?.[0]}`);
    const after = t1.stats();
    t.equal(after.loop.tableSwaps - before.loop.tableSwaps, swaps, 'every swap counted');
    t.equal(after.drops.txNoRoute - before.drops.txNoRoute, 0, 'no packet saw a table without its route');

    // Without node 2's subnet, packets to it have no route (counted); back, and they flow.
    t1.setPeers([]);
    t.not((await ping(p1.netns, p2.ip, ['-W', '1'])).exitCode, 0, 'empty table: no path');
    t.ok(t1.stats().drops.txNoRoute > after.drops.txNoRoute, 'counted as txNoRoute');
    t1.setPeers(peersOf(nodes, 0));
    t.equal((await ping(p1.netns, p2.ip)).exitCode, 0, 'table restored: flows again');
  });

  t.test('stop() joins the thread and closes the fds; a new tunnel takes over; nothing leaks', async (t) => {
    const running = counts();
    t1.stop();
    t1.stop();
    t.equal(t1.state, 'stopped', 'stop is idempotent');
    const stopped = counts();
    t.equal(stopped.tasks, running.tasks - 1, 'one thread fewer');
    t.equal(stopped.fds, running.fds - 4, 'tun fd, socket, epoll and eventfd closed');
    t.throws(() => t1.start(), { code: 'PODNET_INVALID_ARGUMENT' }, 'a stopped tunnel cannot start again');
    t.throws(() => t1.setPeers([]), { code: 'PODNET_INVALID_ARGUMENT' });
    t.not((await ping(p1.netns, p2.ip, ['-W', '1'])).exitCode, 0, 'no loop on node 1: no path');
    t.ok((await n1.nl.links.get(TUN)) !== undefined, 'the persistent device stays');
    for (let i = 0; i < 5; i++) {
      const nt = await openTunnel(n1, peersOf(nodes, 0));
      tunnels[0] = nt;
      t.equal((await ping(p1.netns, p2.ip)).exitCode, 0, `new tunnel ${i + 1}: traffic flows`);
      if (i < 4) nt.stop();
    }
    const again = counts();
    t.same(again, running, `threads and fds as before (${again.tasks} tasks, ${again.fds} fds)`);
  });

  t.test('drops never stop the loop: totals are readable', async (t) => {
    const s = t1.stats();
    t.ok(totalDrops(s) >= 0);
    t.equal(tunnels[0]!.state, 'running');
    t.equal(t2.state, 'running');
  });

  t.test('all tunnels stopped: back to the thread and fd count from before', async (t) => {
    for (const x of tunnels) x.stop();
    const end = counts();
    t.equal(end.tasks, start.tasks, `threads: ${end.tasks}`);
    // The scope's netlink handles are still open; compare after they are closed too.
    await scope.cleanup();
    const closed = counts();
    t.ok(closed.fds <= start.fds, `fds: ${closed.fds} (start ${start.fds})`);
  });
});

t.test('IPv6 underlay: sockets bound to 2001:2::/64 node addresses, IPv4 pods', { skip }, async (t) => {
  const scope = new Scope('udptun6');
  const tunnels: UdpTunnel[] = [];
  t.teardown(async () => {
    for (const x of tunnels) x.stop();
    await scope.cleanup();
  });
  const cluster = await buildCluster(scope, { nodes: 2 });
  const nodes = cluster.nodes;
  const v6 = (i: number) => `2001:2::${i + 1}`;
  const pods: VPod[] = [];
  for (const [i, n] of nodes.entries()) {
    await n.nl.addrs.ensure('eth0', `${v6(i)}/64`, { nodad: true });
    pods.push(await addPod(scope, n, 'p', { gateway: `10.244.${i + 1}.1`, prefix: 24 }, `10.244.${i + 1}.2`));
  }
  for (const [i, n] of nodes.entries()) {
    const tun = await UdpTunnel.open({ netns: n.netns, tunName: TUN, localAddress: v6(i) });
    tunnels.push(tun);
    t.equal(tun.mtu, 1452, `${n.name}: MTU 1500 - 48`);
    t.throws(() => tun.setPeers([{ subnet: '10.244.9.0/24', peer: '198.18.0.9' }]), { code: 'PODNET_INVALID_IP' }, 'an IPv4 peer is refused');
    tun.setPeers([{ subnet: `10.244.${2 - i}.0/24`, peer: v6(1 - i) }]);
    tun.start();
    await n.nl.routes.ensure({ dst: `10.244.${2 - i}.0/24`, dev: TUN });
  }
  const [p1, p2] = pods as [VPod, VPod];
  t.equal((await ping(p1.netns, p2.ip)).exitCode, 0, 'pod 1 -> pod 2');
  t.equal((await ping(p2.netns, p1.ip)).exitCode, 0, 'pod 2 -> pod 1');
  t.equal((await ping(p1.netns, p2.ip, ['-M', 'do', '-s', '1424'])).exitCode, 0, 'a 1452-byte packet with DF passes');
  t.not((await ping(p1.netns, p2.ip, ['-M', 'do', '-s', '1425'])).exitCode, 0, 'one byte more does not');
  t.ok(await tcpEcho(scope, p2, p1, p2.ip, 7010, 2 << 20), 'TCP: 2 MiB echoed intact');
  const s = tunnels[0]!.stats();
  t.ok(s.tx.gsoSends > 0, `UDP GSO over IPv6 (${s.tx.gsoSends} sends)`);
  t.equal(s.drops.rxUnknownPeer + s.drops.rxSpoofed + s.drops.rxBadChecksum, 0, 'nothing refused');
});

t.test('the native side checks every table it is given', { skip }, async (t) => {
  const { native } = await import('../src/kernel/native.js');
  const { encodePeerTable, normalizePeers } = await import('../src/kernel/udptunnel.js');
  const scope = new Scope('udptunraw');
  t.teardown(() => scope.cleanup());
  const ns = await scope.netns('a');
  const opts = { tunName: 'pnt.udp', local: Buffer.from([127, 0, 0, 1]), port: 8285, mtu: 1472, offload: true, udpOffload: true, batch: 4 };
  t.throws(() => ns.run(() => native().udpTunnelOpen({ ...opts, tunName: 'x'.repeat(16) })), /1-15 characters/);
  t.throws(() => ns.run(() => native().udpTunnelOpen({ ...opts, local: Buffer.alloc(5) })), /4 or 16 bytes/);
  t.throws(() => ns.run(() => native().udpTunnelOpen({ ...opts, port: 0 })), /port/);
  const h = ns.run(() => native().udpTunnelOpen(opts));
  t.teardown(() => h.stop());
  const good = encodePeerTable(
    normalizePeers(
      [
        { subnet: '10.244.2.0/24', peer: '198.18.0.2' },
        { subnet: 'fd00:10:244:2::/64', peer: '198.18.0.2' },
      ],
      4,
    ),
    4,
  );
  h.setPeers(good);
  t.equal(h.info().entries, 2, 'a valid table is installed');
  const E = 16; // first entry
  const bad: [string, (b: Buffer) => Buffer, RegExp][] = [
    ['bad magic', (b) => (b.write('XNUT', 0), b), /bad magic/],
    ['version 2', (b) => ((b[4] = 2), b), /unsupported version/],
    ['IPv6 underlay on an IPv4 socket', (b) => ((b[5] = 6), b), /does not match/],
    ['count larger than the data', (b) => (b.writeUInt32LE(3, 8), b), /length does not match/],
    ['trailing bytes', (b) => Buffer.concat([b, Buffer.alloc(1)]), /length does not match/],
    ['family 5', (b) => ((b[E] = 5), b), /entry 0: family/],
    ['prefix 33', (b) => ((b[E + 1] = 33), b), /prefix length too long/],
    ['host bits', (b) => ((b[E + 7] = 1), b), /host bits set/],
    ['port 0', (b) => (b.writeUInt16BE(0, E + 2), b), /port 0/],
    ['IPv4 peer with bytes beyond 4', (b) => ((b[E + 30] = 1), b), /not an IPv4 address/],
    ['reserved bytes', (b) => ((b[E + 39] = 1), b), /reserved/],
    ['duplicate subnet', (b) => (b.copy(b, E + 40, E, E + 40), b), /duplicate subnet/],
  ];
  for (const [name, mutate, why] of bad) {
    t.throws(() => h.setPeers(mutate(Buffer.from(good))), why, `refused: ${name}`);
  }
  t.equal(h.info().entries, 2, 'the installed table is untouched by refused ones');
  h.start();
  h.start();
  t.ok(h.info().running, 'start twice: still one running loop');
  h.stop();
  h.stop();
  t.throws(() => h.start(), /stopped/, 'no restart after stop');

  // Errors of UdpTunnel.open, with their codes.
  await t.rejects(UdpTunnel.open({ netns: ns, tunName: 'pnt.udp', localAddress: '198.18.0.77' }), { code: 'PODNET_INVALID_ARGUMENT', message: /not an address of any link/ });
  const nl = scope.netlink(ns);
  await nl.links.ensure({ kind: 'bridge', name: 'pnt.br' });
  await t.rejects(UdpTunnel.open({ netns: ns, tunName: 'pnt.br', localAddress: '127.0.0.1' }), { code: 'PODNET_LINK_EXISTS' }, 'a non-TUN link of that name');
  const a = await UdpTunnel.open({ netns: ns, tunName: 'pnt.udp', localAddress: '127.0.0.1', port: 8300 });
  t.teardown(() => a.stop());
  t.equal(a.mtu, 65507, "loopback's MTU, capped to what a datagram can carry");
  await t.rejects(UdpTunnel.open({ netns: ns, tunName: 'pnt.udp2', localAddress: '127.0.0.1', port: 8300 }), { code: 'PODNET_NATIVE', errno: 'EADDRINUSE' }, 'the port is taken');
  a.stop();
});
