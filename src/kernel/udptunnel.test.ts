// Unit tests of the UDP tunnel's TypeScript side: option and peer validation, the peer-table
// wire encoding that crosses into native code (golden bytes, round trip, properties), the
// stats shape against the native counter list. No root: the native loop itself (TUN,
// socket, thread) is exercised by netns-tests/udp-tunnel.test.ts.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Cidr } from '../util/ipnet.js';
import type { PodnetError } from '../util/errors.js';
import { packageRoot } from './native.js';
import type { UdpTunnelCounter } from './native.js';
import {
  UDP_TUNNEL_DEFAULT_PORT,
  UDP_TUNNEL_MAX_PEERS,
  decodePeerTable,
  encodePeerTable,
  normalizePeers,
  shapeStats,
  threadCpuTime,
  totalDrops,
  validateUdpTunnelOptions,
} from './udptunnel.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as PodnetError).code;
  }
  return undefined;
}

const base = { tunName: 'podnet.udp', localAddress: '198.18.0.1' };

describe('validateUdpTunnelOptions', () => {
  it('applies the defaults', () => {
    expect(validateUdpTunnelOptions(base)).toEqual({
      netns: undefined,
      tunName: 'podnet.udp',
      localAddress: '198.18.0.1',
      family: 4,
      port: 8285,
      mtu: undefined,
      offload: true,
      udpOffload: true,
      batch: 32,
    });
    expect(UDP_TUNNEL_DEFAULT_PORT).toBe(8285);
  });

  it('canonicalises an IPv6 local address and takes its family', () => {
    const o = validateUdpTunnelOptions({ ...base, localAddress: '2001:0002:0000::0001', port: 9000, mtu: 1452, offload: false, batch: 1 });
    expect(o).toMatchObject({ localAddress: '2001:2::1', family: 6, port: 9000, mtu: 1452, offload: false, batch: 1 });
  });

  it.each([
    ['not an object', null, 'PODNET_INVALID_ARGUMENT', /options must be an object/],
    ['a number', 5, 'PODNET_INVALID_ARGUMENT', /options must be an object/],
    ['netns not a handle', { ...base, netns: '/run/netns/x' }, 'PODNET_INVALID_ARGUMENT', /netns must be a NetNS handle/],
    ['tun name missing', { localAddress: '198.18.0.1' }, 'PODNET_INVALID_NAME', /tunName/],
    ['tun name too long', { ...base, tunName: 'podnet.udp.toolong' }, 'PODNET_INVALID_NAME', /longer than 15 bytes/],
    ['tun name with a slash', { ...base, tunName: 'a/b' }, 'PODNET_INVALID_NAME', /must not contain/],
    ['tun name with a space', { ...base, tunName: 'pod net' }, 'PODNET_INVALID_NAME', /printable ASCII/],
    ['local address garbage', { ...base, localAddress: '198.18.0' }, 'PODNET_INVALID_IP', /localAddress/],
    ['local address with a prefix', { ...base, localAddress: '198.18.0.1/24' }, 'PODNET_INVALID_IP', /localAddress/],
    ['local address unspecified', { ...base, localAddress: '0.0.0.0' }, 'PODNET_INVALID_IP', /unicast/],
    ['local address ::', { ...base, localAddress: '::' }, 'PODNET_INVALID_IP', /unicast/],
    ['local address multicast', { ...base, localAddress: '224.0.0.1' }, 'PODNET_INVALID_IP', /unicast/],
    ['local address IPv6 multicast', { ...base, localAddress: 'ff02::1' }, 'PODNET_INVALID_IP', /unicast/],
    ['local address broadcast', { ...base, localAddress: '255.255.255.255' }, 'PODNET_INVALID_IP', /unicast/],
    ['port 0', { ...base, port: 0 }, 'PODNET_INVALID_ARGUMENT', /port must be an integer between 1 and 65535/],
    ['port 65536', { ...base, port: 65536 }, 'PODNET_INVALID_ARGUMENT', /port/],
    ['port 80.5', { ...base, port: 80.5 }, 'PODNET_INVALID_ARGUMENT', /port/],
    ['port as a string', { ...base, port: '8285' }, 'PODNET_INVALID_ARGUMENT', /port/],
    ['mtu too small', { ...base, mtu: 67 }, 'PODNET_INVALID_ARGUMENT', /mtu must be an integer between 68 and 65507/],
    ['mtu too large for IPv4', { ...base, mtu: 65508 }, 'PODNET_INVALID_ARGUMENT', /mtu/],
    ['mtu too large for IPv6', { ...base, localAddress: '2001:2::1', mtu: 65488 }, 'PODNET_INVALID_ARGUMENT', /between 68 and 65487/],
    ['batch 0', { ...base, batch: 0 }, 'PODNET_INVALID_ARGUMENT', /batch/],
    ['batch 257', { ...base, batch: 257 }, 'PODNET_INVALID_ARGUMENT', /batch/],
    ['offload not a boolean', { ...base, offload: 'yes' }, 'PODNET_INVALID_ARGUMENT', /offload must be true or false/],
    ['udpOffload not a boolean', { ...base, udpOffload: 1 }, 'PODNET_INVALID_ARGUMENT', /udpOffload/],
  ])('rejects %s', (_name, opts, code, why) => {
    expect(codeOf(() => validateUdpTunnelOptions(opts))).toBe(code);
    expect(() => validateUdpTunnelOptions(opts)).toThrowError(why);
  });
});

describe('normalizePeers', () => {
  it('validates and canonicalises, with the default port', () => {
    const out = normalizePeers(
      [
        { subnet: '10.244.2.0/24', peer: '198.18.0.2' },
        { subnet: 'fd00:10:244:2:0::/64', peer: '198.18.0.2', port: 9000 },
      ],
      4,
    );
    expect(out.map((e) => ({ subnet: e.subnet.toString(), peer: e.peer, port: e.port }))).toEqual([
      { subnet: '10.244.2.0/24', peer: '198.18.0.2', port: 8285 },
      { subnet: 'fd00:10:244:2::/64', peer: '198.18.0.2', port: 9000 },
    ]);
  });

  it('accepts an empty table and overlapping prefixes (longest match wins in the loop)', () => {
    expect(normalizePeers([], 4)).toEqual([]);
    expect(normalizePeers([{ subnet: '10.244.0.0/16', peer: '198.18.0.2' }, { subnet: '10.244.3.0/24', peer: '198.18.0.3' }], 4)).toHaveLength(2);
  });

  it.each([
    ['not an array', { subnet: '10.244.2.0/24', peer: '198.18.0.2' }, 'PODNET_INVALID_ARGUMENT', /peers must be an array/],
    ['an entry that is not an object', ['10.244.2.0/24'], 'PODNET_INVALID_ARGUMENT', /peers\[0\] must be an object/],
    ['host bits set', [{ subnet: '10.244.2.1/24', peer: '198.18.0.2' }], 'PODNET_INVALID_CIDR', /peers\[0\]\.subnet .*host bits set/],
    ['no prefix length', [{ subnet: '10.244.2.0', peer: '198.18.0.2' }], 'PODNET_INVALID_CIDR', /peers\[0\]\.subnet/],
    ['prefix over 32', [{ subnet: '10.244.2.0/33', peer: '198.18.0.2' }], 'PODNET_INVALID_CIDR', /over 32/],
    ['subnet missing', [{ peer: '198.18.0.2' }], 'PODNET_INVALID_CIDR', /peers\[0\]\.subnet/],
    ['peer garbage', [{ subnet: '10.244.2.0/24', peer: 'node-2' }], 'PODNET_INVALID_IP', /peers\[0\]\.peer/],
    ['peer of the other family', [{ subnet: '10.244.2.0/24', peer: '2001:2::2' }], 'PODNET_INVALID_IP', /not an IPv4 address like the tunnel's/],
    ['peer with leading zeros (ambiguous octal)', [{ subnet: '10.244.2.0/24', peer: '198.18.000.2' }], 'PODNET_INVALID_IP', /peers\[0\]\.peer/],
    ['peer unspecified', [{ subnet: '10.244.2.0/24', peer: '0.0.0.0' }], 'PODNET_INVALID_IP', /unicast/],
    ['port 0', [{ subnet: '10.244.2.0/24', peer: '198.18.0.2', port: 0 }], 'PODNET_INVALID_ARGUMENT', /peers\[0\]\.port/],
    [
      'a subnet twice',
      [
        { subnet: '10.244.2.0/24', peer: '198.18.0.2' },
        { subnet: '10.244.2.0/24', peer: '198.18.0.3' },
      ],
      'PODNET_INVALID_ARGUMENT',
      /peers\[1\]\.subnet 10\.244\.2\.0\/24 is already listed as peers\[0\]/,
    ],
    [
      'an IPv6 subnet twice in two spellings',
      [
        { subnet: 'fd00:10:244:2::/64', peer: '198.18.0.2' },
        { subnet: 'fd00:10:244:2:0:0:0:0/64', peer: '198.18.0.2' },
      ],
      'PODNET_INVALID_ARGUMENT',
      /already listed/,
    ],
  ])('rejects %s', (_name, peers, code, why) => {
    expect(codeOf(() => normalizePeers(peers, 4))).toBe(code);
    expect(() => normalizePeers(peers, 4)).toThrowError(why);
  });

  it('rejects an IPv4 peer on an IPv6 underlay', () => {
    expect(() => normalizePeers([{ subnet: '10.244.2.0/24', peer: '198.18.0.2' }], 6)).toThrowError(/not an IPv6 address/);
  });

  it('bounds the table size', () => {
    const many = Array.from({ length: UDP_TUNNEL_MAX_PEERS + 1 }, () => ({ subnet: '10.244.2.0/24', peer: '198.18.0.2' }));
    expect(() => normalizePeers(many, 4)).toThrowError(/at most 65536/);
  });
});

describe('peer table encoding', () => {
  it('matches the golden bytes (layout in native/src/udptun.cc)', () => {
    const entries = normalizePeers(
      [
        { subnet: '10.244.2.0/24', peer: '198.18.0.2' },
        { subnet: 'fd00:10:244:2::/64', peer: '198.18.0.2', port: 0x1234 },
      ],
      4,
    );
    const hex = encodePeerTable(entries, 4).toString('hex');
    expect(hex).toBe(
      [
        '504e5554', '01', '04', '0000', '02000000', '00000000', // "PNUT" v1 IPv4, 2 entries
        '04', '18', '205d', '0af40200' + '00'.repeat(12), 'c6120002' + '00'.repeat(12), '00000000',
        '06', '40', '1234', 'fd000010024400020000000000000000', 'c6120002' + '00'.repeat(12), '00000000',
      ].join(''),
    );
  });

  it('encodes IPv6 peers in full', () => {
    const entries = normalizePeers([{ subnet: '10.244.0.0/16', peer: '2001:2::2' }], 6);
    const buf = encodePeerTable(entries, 6);
    expect(buf.length).toBe(16 + 40);
    expect(buf[5]).toBe(6);
    expect(buf.subarray(16 + 20, 16 + 36).toString('hex')).toBe('20010002000000000000000000000002');
  });

  it('round-trips', () => {
    const entries = normalizePeers(
      [
        { subnet: '0.0.0.0/0', peer: '198.18.0.9', port: 1 },
        { subnet: '10.244.2.0/24', peer: '198.18.0.2' },
        { subnet: '10.244.2.128/25', peer: '198.18.0.3', port: 65535 },
        { subnet: 'fd00:10:244:2::/64', peer: '198.18.0.2' },
        { subnet: '::/0', peer: '198.18.0.2' },
        { subnet: 'fd00::1/128', peer: '198.18.0.2' },
      ],
      4,
    );
    const back = decodePeerTable(encodePeerTable(entries, 4));
    expect(back.underlay).toBe(4);
    expect(back.entries.map((e) => [e.subnet.toString(), e.peer, e.port])).toEqual(entries.map((e) => [e.subnet.toString(), e.peer, e.port]));
  });

  it('round-trips any valid table (property)', () => {
    const v4 = fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 32 })).map(([a, len]) => {
      const masked = len === 0 ? 0 : (a >>> (32 - len)) << (32 - len);
      const ip = [24, 16, 8, 0].map((s) => (masked >>> s) & 255).join('.');
      return `${ip}/${len}`;
    });
    const v6 = fc.tuple(fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 }), fc.integer({ min: 0, max: 128 })).map(([w, len]) => {
      const c = Cidr.parse(`${w.map((x) => x.toString(16)).join(':')}/${len}`, 'cidr', { strict: false });
      return `${c.network}/${len}`;
    });
    const entry = fc.record({
      subnet: fc.oneof(v4, v6),
      peer: fc.tuple(fc.integer({ min: 1, max: 223 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 254 })).map((o) => o.join('.')),
      port: fc.integer({ min: 1, max: 65535 }),
    });
    fc.assert(
      fc.property(fc.uniqueArray(entry, { selector: (e) => Cidr.parse(e.subnet).toString(), maxLength: 30 }), (peers) => {
        const entries = normalizePeers(peers, 4);
        const buf = encodePeerTable(entries, 4);
        expect(buf.length).toBe(16 + 40 * peers.length);
        const back = decodePeerTable(buf);
        expect(back.entries.map((e) => [e.subnet.toString(), e.peer, e.port])).toEqual(entries.map((e) => [e.subnet.toString(), e.peer, e.port]));
      }),
    );
  });

  it.each([
    ['too short', Buffer.from('PNUT')],
    ['bad magic', Buffer.concat([Buffer.from('XNUT'), Buffer.alloc(12)])],
    ['bad version', Buffer.from('504e555402040000000000000000000000', 'hex').subarray(0, 16)],
    ['bad family', Buffer.from('504e5554010500000000000000000000', 'hex')],
    ['count does not match', Buffer.from('504e5554010400000100000000000000', 'hex')],
  ])('decode rejects %s', (_n, buf) => {
    expect(codeOf(() => decodePeerTable(buf))).toBe('PODNET_INVALID_ARGUMENT');
  });

  it.skip('native rejects malformed tables: needs a TUN device and root (covered by netns-tests/udp-tunnel.test.ts)', () => {});
});

describe('stats', () => {
  // The counter list of the native loop, read from its source: the TS type and shapeStats
  // must name each one exactly once.
  const source = readFileSync(join(packageRoot, 'native', 'src', 'udptun.cc'), 'utf8');
  const block = /#define PN_COUNTERS\(X\)([\s\S]*?)\n\n/.exec(source)?.[1] ?? '';
  const names = [...block.matchAll(/X\((\w+)\)/g)].map((m) => m[1]!);

  it('covers every native counter exactly once', () => {
    expect(names.length).toBeGreaterThan(20);
    const raw = Object.fromEntries(names.map((n, i) => [n, i + 1])) as Record<UdpTunnelCounter, number>;
    const shaped = shapeStats(raw);
    const values = Object.values(shaped).flatMap((g) => Object.values(g as Record<string, number>));
    expect(values.sort((a, b) => a - b)).toEqual(names.map((_, i) => i + 1));
  });

  it('totals the drops', () => {
    const raw = Object.fromEntries(names.map((n) => [n, n.startsWith('drop') ? 2 : 100])) as Record<UdpTunnelCounter, number>;
    expect(totalDrops(shapeStats(raw))).toBe(2 * names.filter((n) => n.startsWith('drop')).length);
  });

  it('reads the CPU time of a thread of this process', () => {
    const cpu = threadCpuTime(process.pid);
    expect(cpu).toBeDefined();
    expect(cpu!.user).toBeGreaterThanOrEqual(0);
    expect(cpu!.system).toBeGreaterThanOrEqual(0);
    expect(threadCpuTime(0x7ffffff0)).toBeUndefined();
  });
});
