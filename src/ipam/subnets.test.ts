import { describe, expect, it } from 'vitest';
import { Cidr } from '../util/ipnet.js';
import { isPodnetError } from '../util/errors.js';
import type { PodnetError } from '../util/errors.js';
import { seeded } from './testdata/helpers.js';
import { chooseFree, contains, freeCount, nodeSubnetAt, nodeSubnetIndex, overlaps, planNodeSubnets, randomBelow } from './subnets.js';

function thrown(f: () => unknown): PodnetError {
  try {
    f();
  } catch (e) {
    if (isPodnetError(e)) return e;
    throw e;
  }
  throw new Error('expected a PodnetError');
}

describe('planNodeSubnets', () => {
  it('carves IPv4 and IPv6 cluster CIDRs', () => {
    const v4 = planNodeSubnets('10.244.0.0/16', 24);
    expect(v4.count).toBe(256n);
    expect(nodeSubnetAt(v4, 0).toString()).toBe('10.244.0.0/24');
    expect(nodeSubnetAt(v4, 5).toString()).toBe('10.244.5.0/24');
    expect(nodeSubnetAt(v4, 255).toString()).toBe('10.244.255.0/24');
    const v6 = planNodeSubnets('fd00:10:244::/56', 64);
    expect(v6.count).toBe(256n);
    expect(nodeSubnetAt(v6, 1).toString()).toBe('fd00:10:244:1::/64');
    expect(nodeSubnetAt(v6, 255).toString()).toBe('fd00:10:244:ff::/64');
    expect(planNodeSubnets('10.0.0.0/8', 24).count).toBe(65536n);
    expect(planNodeSubnets('10.244.0.0/16', 16).count).toBe(1n);
  });

  it.each([
    ['10.244.0.0/16', 15, /nodeSubnetSize 15 must be at least 16 .*cannot be larger than the cluster CIDR/],
    ['10.244.0.0/16', 31, /nodeSubnetSize 31 must be at most 30 for IPv4/],
    ['fd00:10:244::/56', 127, /nodeSubnetSize 127 must be at most 126 for IPv6/],
    ['fd00:10:244::/56', 48, /must be at least 56/],
    ['10.244.0.0/16', 24.5, /must be an integer/],
    ['10.244.0.0/16', Number.NaN, /must be an integer/],
  ])('rejects %s carved into /%s naming the field', (cluster, size, msg) => {
    const e = thrown(() => planNodeSubnets(cluster, size));
    expect(e.code).toBe('PODNET_INVALID_ARGUMENT');
    expect(e.context.field).toBe('nodeSubnetSize');
    expect(e.message).toMatch(msg);
  });

  it('rejects a bad cluster CIDR with the field name', () => {
    const e = thrown(() => planNodeSubnets('10.244.1.0/16', 24, { clusterField: '--cluster-cidr' }));
    expect(e.code).toBe('PODNET_INVALID_CIDR');
    expect(e.context.field).toBe('--cluster-cidr');
    expect(e.message).toMatch(/host bits set/);
  });

  it('nodeSubnetIndex accepts only the plan’s own subnets', () => {
    const plan = planNodeSubnets('10.244.0.0/16', 24);
    expect(nodeSubnetIndex(plan, '10.244.7.0/24')).toBe(7n);
    expect(nodeSubnetIndex(plan, '10.244.7.0/25')).toBeUndefined();
    expect(nodeSubnetIndex(plan, '10.245.7.0/24')).toBeUndefined();
    expect(nodeSubnetIndex(plan, '10.244.7.1/24')).toBeUndefined();
    expect(nodeSubnetIndex(plan, 'fd00::/64')).toBeUndefined();
    expect(nodeSubnetIndex(plan, 'garbage')).toBeUndefined();
  });
});

describe('contains / overlaps', () => {
  it('works on strings and Cidrs', () => {
    expect(contains('10.244.0.0/16', '10.244.3.0/24')).toBe(true);
    expect(contains('10.244.3.0/24', '10.244.0.0/16')).toBe(false);
    expect(contains(Cidr.parse('fd00:10:244::/56'), 'fd00:10:244:12::/64')).toBe(true);
    expect(overlaps('10.244.0.0/16', '10.0.0.0/8')).toBe(true);
    expect(overlaps('10.244.0.0/24', '10.244.1.0/24')).toBe(false);
    expect(overlaps('10.244.0.0/16', 'fd00::/8')).toBe(false);
  });
});

describe('chooseFree', () => {
  const all = (n: number, f: (i: number) => string) => Array.from({ length: n }, (_, i) => f(i));

  it('returns undefined when every subnet is taken, the last free one otherwise', () => {
    const taken = all(256, (i) => `10.244.${i}.0/24`);
    expect(chooseFree('10.244.0.0/16', 24, taken)).toBeUndefined();
    expect(freeCount('10.244.0.0/16', 24, taken)).toBe(0n);
    const one = taken.filter((t) => t !== '10.244.77.0/24');
    for (let i = 0; i < 20; i++) expect(chooseFree('10.244.0.0/16', 24, one)?.toString()).toBe('10.244.77.0/24');
  });

  it('prefers the given subnet when it is free', () => {
    expect(chooseFree('10.244.0.0/16', 24, ['10.244.1.0/24'], { prefer: '10.244.9.0/24' })?.toString()).toBe('10.244.9.0/24');
    // Taken: another one.
    const r = chooseFree('10.244.0.0/16', 24, ['10.244.9.0/24'], { prefer: '10.244.9.0/24', random: seeded(1) });
    expect(r?.toString()).not.toBe('10.244.9.0/24');
    // Not one of the plan's subnets (another length, another cluster): ignored.
    expect(chooseFree('10.244.0.0/16', 24, [], { prefer: '10.244.9.0/25', random: () => 0 })?.toString()).toBe('10.244.0.0/24');
    expect(chooseFree('10.244.0.0/16', 24, [], { prefer: '10.9.9.0/24', random: () => 0 })?.toString()).toBe('10.244.0.0/24');
    // Unparseable: an error naming the field.
    expect(thrown(() => chooseFree('10.244.0.0/16', 24, [], { prefer: 'nope' })).context.field).toBe('prefer');
  });

  it('picks uniformly among the free subnets, not the lowest', () => {
    const random = seeded(42);
    const counts = new Map<string, number>();
    const taken = all(128, (i) => `10.244.${i * 2}.0/24`); // every even one
    for (let i = 0; i < 6_400; i++) {
      const s = chooseFree('10.244.0.0/16', 24, taken, { random })!.toString();
      counts.set(s, (counts.get(s) ?? 0) + 1);
    }
    expect(counts.size).toBe(128); // every odd subnet was picked
    for (const [s, n] of counts) {
      expect(Number(s.split('.')[2]) % 2).toBe(1);
      expect(n).toBeGreaterThan(25); // expected 50 each
      expect(n).toBeLessThan(80);
    }
  });

  it('20 agents racing for a subnet rarely collide', () => {
    const random = seeded(7);
    let collisions = 0;
    for (let round = 0; round < 100; round++) {
      const picks = all(20, () => chooseFree('10.244.0.0/16', 24, [], { random })!.toString());
      collisions += 20 - new Set(picks).size;
    }
    // Birthday bound: about 20*19/2/256 = 0.74 colliding pairs per round.
    expect(collisions / 100).toBeLessThan(1.5);
  });

  it('treats a taken prefix of another length as covering every subnet it overlaps', () => {
    const taken = ['10.244.0.0/17', '10.244.128.0/18', '10.244.192.5/32', '10.0.0.0/24', 'fd00::/64'];
    expect(freeCount('10.244.0.0/16', 24, taken)).toBe(256n - 128n - 64n - 1n);
    const random = seeded(3);
    for (let i = 0; i < 200; i++) {
      const s = chooseFree('10.244.0.0/16', 24, taken, { random })!;
      expect(Number(s.network.split('.')[2])).toBeGreaterThan(192);
    }
    expect(chooseFree('10.244.0.0/16', 24, ['10.0.0.0/8'])).toBeUndefined();
  });

  it('reads taken entries in any spelling, host bits set or not', () => {
    const taken = [
      'FD00:0010:0244:0001:0000:0000:0000:0000/64',
      'fd00:10:244:2::1/64',
      'fd00:10:244:3:0:0:0:0/64',
      '::ffff:10.244.1.0/120', // embedded IPv4: another prefix entirely, outside the cluster
      '10.244.4.7/24',
    ];
    expect(freeCount('fd00:10:244::/56', 64, taken)).toBe(253n);
    expect(freeCount('10.244.0.0/16', 24, taken)).toBe(255n);
    const random = seeded(4);
    for (let i = 0; i < 300; i++) {
      const s = chooseFree('fd00:10:244::/56', 64, taken, { random })!.toString();
      expect(['fd00:10:244:1::/64', 'fd00:10:244:2::/64', 'fd00:10:244:3::/64']).not.toContain(s);
    }
  });

  it('reserveFirst never hands out the first subnet', () => {
    const taken = all(255, (i) => `10.244.${i + 1}.0/24`);
    expect(chooseFree('10.244.0.0/16', 24, taken)?.toString()).toBe('10.244.0.0/24');
    expect(chooseFree('10.244.0.0/16', 24, taken, { reserveFirst: true })).toBeUndefined();
    expect(freeCount('10.244.0.0/16', 24, [], { reserveFirst: true })).toBe(255n);
  });

  it('rejects unparseable taken entries with their index', () => {
    const e = thrown(() => chooseFree('10.244.0.0/16', 24, ['10.244.1.0/24', 'bogus']));
    expect(e.code).toBe('PODNET_INVALID_CIDR');
    expect(e.context.field).toBe('taken[1]');
  });

  it('IPv6: a /56 into /64s, prefer, exhaustion', () => {
    const random = seeded(5);
    const taken = new Set<string>();
    for (let i = 0; i < 256; i++) {
      const s = chooseFree('fd00:10:244::/56', 64, taken, { random })!.toString();
      expect(taken.has(s)).toBe(false);
      expect(s).toMatch(/^fd00:10:244:([0-9a-f]{1,2}:)?:\/64$/);
      taken.add(s);
    }
    expect(chooseFree('fd00:10:244::/56', 64, taken)).toBeUndefined();
    expect(chooseFree('fd00:10:244::/56', 64, [], { prefer: 'fd00:10:244:ab::/64' })?.toString()).toBe('fd00:10:244:ab::/64');
  });

  it('is cheap for huge spaces: IPv6 /32 into /64 (2^32 subnets), /8 into /126', () => {
    const random = seeded(9);
    const t0 = performance.now();
    const taken: string[] = [];
    for (let i = 0; i < 200; i++) taken.push(chooseFree('fd00:10::/32', 64, taken, { random })!.toString());
    expect(new Set(taken).size).toBe(200);
    expect(freeCount('fd00:10::/32', 64, taken)).toBe((1n << 32n) - 200n);
    const huge = chooseFree('fd00::/8', 126, [], { random })!;
    expect(huge.prefix).toBe(126);
    expect(contains('fd00::/8', huge)).toBe(true);
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('is fast for a /8 into /24s with almost every subnet taken', () => {
    const taken = all(65535, (i) => `10.${i >> 8}.${i & 255}.0/24`);
    const t0 = performance.now();
    expect(chooseFree('10.0.0.0/8', 24, taken)?.toString()).toBe('10.255.255.0/24');
    expect(performance.now() - t0).toBeLessThan(3000);
  });
});

describe('randomBelow', () => {
  it('stays in range for small and huge bounds', () => {
    expect(randomBelow(1n, Math.random)).toBe(0n);
    expect(randomBelow(10n, () => 0.999999999999)).toBe(9n);
    expect(randomBelow(10n, () => 1)).toBe(9n); // a broken random() cannot escape the range
    const random = seeded(11);
    const n = 1n << 100n;
    const seen = new Set<bigint>();
    for (let i = 0; i < 100; i++) {
      const v = randomBelow(n, random);
      expect(v >= 0n && v < n).toBe(true);
      seen.add(v >> 96n);
    }
    expect(seen.size).toBeGreaterThan(10); // the high bits vary too
  });
});
