// The live trace's primitives against a real kernel: podnet-probe (native/src/probe.c via
// src/trace/live/probe.ts) sends marked TCP / UDP / ICMP probes from a client namespace to a
// server namespace over a veth, while NftTrace (src/trace/live/nftrace.ts) traces them in
// the server namespace with nftrace. Unmarked packets are not traced, refusals are told
// apart, the trace table never outlives its trace (stop, SIGINT, SIGTERM, an uncaught
// error, a failed start), and sweepTraceTables removes leftovers.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { NetNS } from '../src/kernel/index.js';
import { NftTrace, dscpValue, groupByTraceId, sweepTraceTables } from '../src/trace/live/nftrace.js';
import type { TraceEvent } from '../src/trace/live/nftrace.js';
import { runProbe } from '../src/trace/live/probe.js';
import type { ProbeOptions } from '../src/trace/live/probe.js';
import { Scope, processesIn, sh, skipReason, waitFor } from './lib/harness.js';

const skip = skipReason();
const nftraceModule = fileURLToPath(new URL('../src/trace/live/nftrace.js', import.meta.url));

const CLIENT4 = '198.18.0.1';
const SERVER4 = '198.18.0.2';
const CLIENT6 = 'fd00:198:18::1';
const SERVER6 = 'fd00:198:18::2';
const TCP_PORT = 8080; // listening (v4 and v6)
const UDP_PORT = 5353; // echoing (v4)
const CLOSED = 9;

interface Env {
  scope: Scope;
  client: NetNS;
  server: NetNS;
}

let envPromise: Promise<Env> | undefined;
const scope = new Scope('trace');
t.teardown(() => scope.cleanup());

/** Two namespaces on a veth, a TCP listener (closes at once) and a UDP echo in the server. */
function env(): Promise<Env> {
  envPromise ??= (async () => {
    const client = await scope.netns('client');
    const server = await scope.netns('server');
    const cnl = scope.netlink(client);
    const snl = scope.netlink(server);
    await cnl.links.ensure({ kind: 'veth', name: 'eth0', up: true, peer: { name: 'eth0', netns: server } });
    await snl.links.setUp('eth0');
    await cnl.addrs.ensure('eth0', `${CLIENT4}/24`);
    await snl.addrs.ensure('eth0', `${SERVER4}/24`);
    await cnl.addrs.ensure('eth0', `${CLIENT6}/64`, { nodad: true });
    await snl.addrs.ensure('eth0', `${SERVER6}/64`, { nodad: true });
    const script = [
      "const net = require('node:net'); const dgram = require('node:dgram');",
      `const tcp = net.createServer((s) => s.destroy()).listen(${TCP_PORT}, '::');`,
      "const udp = dgram.createSocket('udp4'); udp.on('message', (m, r) => udp.send(m, r.port, r.address));",
      `udp.bind(${UDP_PORT}, () => tcp.listening ? console.log('ready') : tcp.once('listening', () => console.log('ready')));`,
    ].join('\n');
    const srv = execa('nsenter', [`--net=${server.path}`, '--', process.execPath, '-e', script], { reject: false, buffer: false, stdin: 'ignore' });
    scope.own(srv.pid as number);
    scope.defer(() => {
      srv.kill('SIGKILL');
      return srv;
    });
    await new Promise<void>((resolve, reject) => {
      srv.stdout?.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
      void srv.then((r) => reject(new Error(`server exited: ${String(r.stderr ?? '')}`)));
    });
    return { scope, client, server };
  })();
  return envPromise;
}

async function traceTables(ns: NetNS): Promise<string[]> {
  const out = String((await sh(ns, 'nft', ['list', 'tables'])).stdout);
  return out.split('\n').filter((l) => l.includes('podnet-trace-'));
}

function probe(e: Env, o: Partial<ProbeOptions> & Pick<ProbeOptions, 'proto' | 'dscp' | 'sport'>) {
  return runProbe({ netnsPath: e.client.path, family: 4, dst: SERVER4, dport: TCP_PORT, timeoutMs: 2000, ...o });
}

const field = (e: TraceEvent, k: string) => e.fields?.[k];
const packetsWith = (events: TraceEvent[], k: string, v: string) => events.filter((e) => e.kind === 'packet' && field(e, k) === v);

let seq = 0;
const traceId = () => `pnt${process.pid}x${++seq}`.slice(0, 16);

t.test('TCP: the marked probe is traced in the server namespace, an unmarked one is not', { skip }, async (t) => {
  const e = await env();
  const id = traceId();
  const before = process.listenerCount('SIGINT');
  const trace = await NftTrace.start({ id, family: 4, dscp: 10, proto: 'tcp', netnsPath: e.server.path });
  t.teardown(() => trace.stop());
  t.equal(trace.table, `ip podnet-trace-${id}`);
  t.same(await traceTables(e.server), [`table ip podnet-trace-${id}`], 'the trace table is in the server namespace');
  t.same(await traceTables(e.client), [], 'and only there');
  t.equal(process.listenerCount('SIGINT'), before + 1, 'a SIGINT cleanup handler is armed while the trace runs');

  const marked = await probe(e, { proto: 'tcp', dscp: 10, sport: 40001, id });
  t.match(marked, { result: 'connected', sport: 40001, sent: true }, 'marked probe connected');
  t.ok(typeof marked.rttMs === 'number' && marked.rttMs >= 0, `rtt ${marked.rttMs} ms`);
  const syn = await trace.waitForEvent((x) => x.kind === 'packet' && field(x, 'tcp sport') === '40001' && field(x, 'tcp flags') === 'syn', 3000);
  t.ok(syn, 'the SYN was traced');
  if (syn) {
    t.equal(syn.table, `podnet-trace-${id}`);
    t.equal(syn.chain, 'prerouting');
    t.equal(dscpValue(field(syn, 'ip dscp')), 10, `the packet line shows the dscp (${field(syn, 'ip dscp')})`);
    t.equal(field(syn, 'ip saddr'), CLIENT4);
    t.equal(field(syn, 'ip daddr'), SERVER4);
    t.equal(field(syn, 'tcp dport'), String(TCP_PORT));
    t.equal(field(syn, 'iif'), 'eth0');
  }

  const unmarked = await probe(e, { proto: 'tcp', dscp: 0, sport: 40002 });
  t.equal(unmarked.result, 'connected', 'unmarked probe connected too');

  const refused = await probe(e, { proto: 'tcp', dscp: 10, sport: 40003, dport: 8081 });
  t.match(refused, { result: 'refused', errno: 'ECONNREFUSED', sport: 40003 }, 'no listener: refused');
  t.ok(await trace.waitForEvent((x) => x.kind === 'packet' && field(x, 'tcp sport') === '40003' && field(x, 'tcp dport') === '8081', 3000), 'the refused SYN was traced');

  const events = await trace.stop();
  t.same(packetsWith(events, 'tcp sport', '40002'), [], 'no event for the probe without the marker');
  t.ok(packetsWith(events, 'tcp sport', '40001').length >= 2, 'SYN and the rest of the marked connection were traced');
  const group = groupByTraceId(events).find((g) => g.events.some((x) => x === syn));
  t.ok(group, 'the SYN has a trace group');
  t.same(
    group?.events.map((x) => `${x.chain} ${x.kind}`),
    ['prerouting packet', 'prerouting rule', 'prerouting policy'],
    'the SYN: packet, marking rule, policy accept (no other table in the server namespace)',
  );
  t.match(group?.events[1], { kind: 'rule', verdict: 'continue', rule: /meta nftrace set 1$/ });
  t.same(trace.ownEvents().length, events.length, 'every event came through this trace table');
  t.same(await traceTables(e.server), [], 'after stop() no podnet-trace table remains');
  t.equal(process.listenerCount('SIGINT'), before, 'the SIGINT handler is gone again');
  t.same(await trace.stop(), events, 'stop() again is a no-op');
});

t.test('UDP: refused at a closed port, replied by an echo, traced only from the probe port', { skip }, async (t) => {
  const e = await env();
  const id = traceId();
  const trace = await NftTrace.start({ id, family: 4, dscp: 10, proto: 'udp', sport: 40010, netnsPath: e.server.path });
  t.teardown(() => trace.stop());

  const closed = await probe(e, { proto: 'udp', dport: CLOSED, dscp: 10, sport: 40010, id });
  t.match(closed, { result: 'refused', errno: 'ECONNREFUSED', from: SERVER4, icmpType: 3, icmpCode: 3 }, 'ICMP port unreachable: refused');
  const echo = await probe(e, { proto: 'udp', dport: UDP_PORT, dscp: 10, sport: 40010, size: 200, id });
  t.match(echo, { result: 'replied', bytes: 200 - 28 }, 'the echo answered the padded datagram');
  const other = await probe(e, { proto: 'udp', dport: CLOSED, dscp: 10, sport: 40011 });
  t.equal(other.result, 'refused');
  const tooBig = await probe(e, { proto: 'udp', dport: CLOSED, dscp: 10, sport: 40010, size: 1501 });
  t.match(tooBig, { result: 'error', errno: 'EMSGSIZE', mtu: 1500, sent: false }, 'larger than the MTU with DF: an error naming the MTU');

  await trace.waitForEvent((x) => x.kind === 'packet' && field(x, 'udp dport') === String(UDP_PORT), 3000);
  const events = await trace.stop();
  const sent = packetsWith(events, 'udp sport', '40010');
  t.ok(sent.some((x) => field(x, 'udp dport') === String(CLOSED)), 'the probe to the closed port was traced');
  const padded = sent.find((x) => field(x, 'udp dport') === String(UDP_PORT));
  t.equal(padded && field(padded, 'ip length'), '200', 'the traced packet has the requested size');
  t.same(packetsWith(events, 'udp sport', '40011'), [], 'another source port is not traced');
  t.same(await traceTables(e.server), []);
});

t.test('ICMP: echo replied over a raw socket and a ping socket, request and reply traced', { skip }, async (t) => {
  const e = await env();
  const id = traceId();
  const trace = await NftTrace.start({ id, family: 4, dscp: 10, proto: 'icmp', sport: 4242, netnsPath: e.server.path });
  t.teardown(() => trace.stop());

  const raw = await probe(e, { proto: 'icmp', dport: 0, dscp: 10, sport: 4242, size: 300 });
  t.match(raw, { result: 'replied', sport: 4242, bytes: 300 - 20 }, 'raw socket (ping_group_range excludes root by default): replied');
  await sh(e.client, 'sysctl', ['-qw', 'net.ipv4.ping_group_range=0 2147483647']);
  const dgram = await probe(e, { proto: 'icmp', dport: 0, dscp: 10, sport: 4243 });
  t.match(dgram, { result: 'replied', sport: 4243 }, 'ping socket: replied');
  const lost = await probe(e, { proto: 'icmp', dport: 0, dst: '198.18.0.99', dscp: 10, sport: 4244, timeoutMs: 500 });
  t.ok(['timeout', 'unreachable'].includes(lost.result), `nobody at the address: ${lost.result}`);

  await trace.waitForEvent((x) => x.kind === 'packet' && field(x, 'icmp type') === 'echo-reply', 3000);
  const events = await trace.stop();
  const ours = packetsWith(events, 'icmp id', '4242');
  t.ok(ours.some((x) => x.chain === 'prerouting' && field(x, 'icmp type') === 'echo-request'), 'echo request traced at prerouting');
  t.ok(ours.some((x) => x.chain === 'output' && field(x, 'icmp type') === 'echo-reply' && field(x, 'oif') === 'eth0'), 'echo reply (same TOS and id) traced at output');
  t.same(packetsWith(events, 'icmp id', '4243'), [], 'another echo id is not traced');
  t.same(await traceTables(e.server), []);
});

t.test('IPv6: TCP connected and traced with ip6 dscp, UDP refused, ICMPv6 replied', { skip }, async (t) => {
  const e = await env();
  const id = traceId();
  const trace = await NftTrace.start({ id, family: 6, dscp: 12, netnsPath: e.server.path });
  t.teardown(() => trace.stop());
  t.equal(trace.table, `ip6 podnet-trace-${id}`);
  const v6 = { family: 6 as const, dst: SERVER6 };
  t.match(await probe(e, { ...v6, proto: 'tcp', dscp: 12, sport: 40020 }), { result: 'connected', sport: 40020 });
  t.match(await probe(e, { ...v6, proto: 'tcp', dscp: 12, sport: 40021, dport: 8081 }), { result: 'refused' });
  t.match(await probe(e, { ...v6, proto: 'udp', dscp: 12, sport: 40022, dport: CLOSED }), { result: 'refused', from: SERVER6, icmpType: 1, icmpCode: 4 });
  t.match(await probe(e, { ...v6, proto: 'icmp', dport: 0, dscp: 12, sport: 4250 }), { result: 'replied', sport: 4250 });
  t.match(await probe(e, { ...v6, proto: 'tcp', dscp: 0, sport: 40023 }), { result: 'connected' });

  await trace.waitForEvent((x) => x.kind === 'packet' && field(x, 'icmpv6 type') === 'echo-reply', 3000);
  const events = await trace.stop();
  const syn = packetsWith(events, 'tcp sport', '40020')[0];
  t.ok(syn, 'the IPv6 SYN was traced');
  t.equal(syn && dscpValue(field(syn, 'ip6 dscp')), 12, 'with its dscp');
  t.equal(syn && field(syn, 'ip6 saddr'), CLIENT6);
  t.ok(packetsWith(events, 'udp sport', '40022').length > 0, 'the UDP probe was traced');
  t.same(packetsWith(events, 'tcp sport', '40023'), [], 'the unmarked IPv6 probe was not');
  t.same(await traceTables(e.server), []);
});

t.test('a failed start leaves nothing behind, and does not delete a table it did not make', { skip }, async (t) => {
  const e = await env();
  const before = process.listenerCount('SIGINT');
  const id = traceId();
  const first = await NftTrace.start({ id, family: 4, dscp: 10, netnsPath: e.server.path });
  t.teardown(() => first.stop());
  await t.rejects(NftTrace.start({ id, family: 4, dscp: 10, netnsPath: e.server.path }), { code: 'PODNET_NFT', errno: 'EEXIST', message: /already exists/ }, 'same id twice: EEXIST');
  t.same(await traceTables(e.server), [`table ip podnet-trace-${id}`], "the first trace's table is still there");
  await first.stop();
  await t.rejects(NftTrace.start({ id: traceId(), family: 4, dscp: 10, netnsPath: '/proc/self/ns/none' }), { code: 'PODNET_NFT' }, 'a namespace that cannot be entered: rejected');
  t.equal(process.listenerCount('SIGINT'), before, 'no handler left armed');
  t.same(await traceTables(e.server), []);
});

/** Starts NftTrace in a child Node process; resolves once it reports the trace running. */
async function childTrace(e: Env, id: string, then: string) {
  const script = [
    `const { NftTrace } = await import(${JSON.stringify(nftraceModule)});`,
    `const trace = await NftTrace.start({ id: ${JSON.stringify(id)}, family: 4, dscp: 10, netnsPath: ${JSON.stringify(e.server.path)} });`,
    "console.log('started');",
    then,
    'setInterval(() => {}, 1000);',
  ].join('\n');
  const child = execa(process.execPath, ['--input-type=module', '-e', script], { reject: false, buffer: false, stdin: 'ignore', stderr: 'pipe' });
  e.scope.own(child.pid as number);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (d: Buffer) => d.toString().includes('started') && resolve());
    void child.then(() => reject(new Error(`child exited before the trace started: ${stderr}`)));
  });
  return { child, stderr: () => stderr };
}

function monitorsIn(ns: NetNS): number[] {
  return processesIn(ns).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').includes('nft monitor trace');
    } catch {
      return false;
    }
  });
}

for (const [name, then, expected] of [
  ['SIGINT', '', { signal: 'SIGINT' }],
  ['SIGTERM', '', { signal: 'SIGTERM' }],
  ['SIGINT with its own handler that exits 3', "process.once('SIGINT', () => process.exit(3));", { exitCode: 3 }],
  ['an uncaught error', "setTimeout(() => { throw new Error('boom'); }, 1500);", { exitCode: 1 }],
] as const) {
  t.test(`the trace table is removed when the tracing process ends by ${name}`, { skip }, async (t) => {
    const e = await env();
    const id = traceId();
    const { child } = await childTrace(e, id, then);
    t.same(await traceTables(e.server), [`table ip podnet-trace-${id}`], 'the child installed its trace table');
    t.equal(monitorsIn(e.server).length, 1, 'and runs nft monitor trace in the server namespace');
    if (name.startsWith('SIGINT')) child.kill('SIGINT');
    else if (name === 'SIGTERM') child.kill('SIGTERM');
    const r = await child;
    if ('signal' in expected) t.equal(r.signal, expected.signal, `the child died of ${expected.signal} (re-raised after cleanup)`);
    else t.equal(r.exitCode, expected.exitCode, `the child exited ${expected.exitCode}`);
    t.same(await traceTables(e.server), [], 'no podnet-trace table remains in the namespace');
    await waitFor(() => monitorsIn(e.server).length === 0, 3000, 'the monitor to be gone');
    t.pass('the monitor is gone');
  });
}

t.test('sweepTraceTables removes every podnet-trace-* table of the namespace, nothing else', { skip }, async (t) => {
  const e = await env();
  const live = await NftTrace.start({ id: traceId(), family: 4, dscp: 10, netnsPath: e.server.path });
  t.teardown(() => live.stop());
  await sh(e.server, 'nft', ['-f', '-'], { input: 'table ip podnet-trace-crashed {}\ntable ip6 podnet-trace-old {}\ntable ip keepme {}\n' });
  const removed = await sweepTraceTables({ netnsPath: e.server.path });
  t.same(removed.sort(), ['ip podnet-trace-crashed', 'ip6 podnet-trace-old'], 'the leftovers were removed');
  t.same(await traceTables(e.server), [`table ip podnet-trace-${live.id}`], "the running trace's own table is kept");
  t.match(String((await sh(e.server, 'nft', ['list', 'tables'])).stdout), /table ip keepme/, 'other tables are untouched');
  t.same(await sweepTraceTables({ netnsPath: e.server.path }), [], 'nothing left the second time');
  await live.stop();
  await sh(e.server, 'nft', ['delete', 'table', 'ip', 'keepme']);
  t.same(await traceTables(e.server), []);
});
