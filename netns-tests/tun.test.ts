// TUN through the native addon: packets routed to the device are read from the fd, and
// packets written to the fd are delivered (an ICMP echo answered from user space).
import t from 'tap';
import { closeSync, read, write } from 'node:fs';
import { promisify } from 'node:util';
import { execa } from 'execa';
import { native } from '../src/kernel/native.js';
import { Scope, skipReason } from './lib/harness.js';

const skip = skipReason();
const readP = promisify(read);
const writeP = promisify(write);

function checksum(buf: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < buf.length; i += 2) sum += buf.readUInt16BE(i);
  if (buf.length % 2) sum += buf[buf.length - 1]! << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return ~sum & 0xffff;
}

t.test('open a TUN device by name and exchange packets through its fd', { skip }, async (t) => {
  const scope = new Scope('tun');
  t.teardown(() => scope.cleanup());
  const ns = await scope.netns('a');
  const nl = scope.netlink(ns);
  const { fd, name } = ns.run(() => native().openTun('pntun0', false));
  t.teardown(() => closeSync(fd));
  t.equal(name, 'pntun0');
  const link = await nl.links.require('pntun0');
  t.equal(link.kind, 'tun', 'the device exists in the namespace where it was opened');
  await nl.links.setUp('pntun0');
  await nl.addrs.ensure('pntun0', '10.9.0.1/24');

  const ping = execa('nsenter', ['--net=' + ns.path, '--', 'ping', '-c1', '-W5', '10.9.0.2'], { reject: false });
  // Read until the echo request shows up (the kernel may first send IPv6 router solicitations).
  let pkt: Buffer | undefined;
  for (let i = 0; i < 20 && !pkt; i++) {
    const buf = Buffer.alloc(2000);
    const { bytesRead } = await readP(fd, buf, 0, buf.length, null);
    const p = buf.subarray(0, bytesRead);
    if (p[0]! >> 4 === 4 && p[9] === 1 && p[20] === 8) pkt = p;
  }
  t.ok(pkt, 'an ICMP echo request to 10.9.0.2 was read from the TUN fd (no packet-info header)');
  if (!pkt) return;
  t.equal([...pkt.subarray(16, 20)].join('.'), '10.9.0.2', 'destination');
  t.equal([...pkt.subarray(12, 16)].join('.'), '10.9.0.1', 'source');

  // Answer it: swap addresses, echo reply, fix checksums, write it back.
  const reply = Buffer.from(pkt);
  pkt.copy(reply, 12, 16, 20);
  pkt.copy(reply, 16, 12, 16);
  reply.writeUInt16BE(0, 10);
  reply.writeUInt16BE(checksum(reply.subarray(0, 20)), 10);
  reply[20] = 0;
  reply.writeUInt16BE(0, 22);
  reply.writeUInt16BE(checksum(reply.subarray(20)), 22);
  await writeP(fd, reply);
  const r = await ping;
  t.equal(r.exitCode, 0, 'ping got the reply written to the TUN fd');
});

t.test('TUNSETIFF errors are reported with the errno', { skip }, async (t) => {
  const scope = new Scope('tunerr');
  t.teardown(() => scope.cleanup());
  const ns = await scope.netns('a');
  const nl = scope.netlink(ns);
  await nl.links.ensure({ kind: 'bridge', name: 'taken0' });
  t.throws(() => ns.run(() => native().openTun('taken0', false)), { code: 'EINVAL' }, 'a name used by a non-tun link is refused');
  t.throws(() => native().openTun('x'.repeat(16), false), /1-15 characters/);
});
