import { describe, expect, it } from 'vitest';
import { Cidr } from '../../util/ipnet.js';
import type { Store } from '../store/types.js';
import { ClusterIPAllocator } from './allocators.js';

/** Exposes the i-th allocatable address. */
class Probe extends ClusterIPAllocator {
  nth(i: bigint): string {
    return this.at(i);
  }
}

describe('ClusterIPAllocator', () => {
  const store = {} as Store; // at() and key() never touch it

  it('IPv4 addresses by number arithmetic are the ones Cidr.nth gives (octet carries, high first octets)', () => {
    for (const c of ['10.96.0.0/12', '192.168.254.0/23', '250.0.0.0/8', '255.255.255.0/24', '10.0.0.0/30']) {
      const cidr = Cidr.parse(c);
      const a = new Probe(store, cidr);
      const size = cidr.size - 2n;
      const picks = [0n, 1n, 254n, 255n, 256n, 65535n, 65536n, size - 1n].filter((i) => i >= 0n && i < size);
      for (const i of picks) expect(a.nth(i), `${c} #${i}`).toBe(cidr.nth(i + 1n));
    }
  });

  it('IPv6 still through Cidr.nth; record keys are canonical and stable', () => {
    const v6 = new Probe(store, Cidr.parse('fd00:10:96::/112'));
    expect(v6.nth(0n)).toBe('fd00:10:96::1');
    expect(v6.key('fd00:10:96:0::a')).toBe(v6.key('fd00:10:96::a'));
    expect(v6.key('fd00:10:96::a')).toBe('/registry/ranges/clusterips/fd00:10:96::a');
    const v4 = new Probe(store, Cidr.parse('10.96.0.0/12'));
    expect(v4.key('10.96.0.10')).toBe('/registry/ranges/clusterips/10.96.0.10');
    expect(v4.key('10.96.0.11')).toBe('/registry/ranges/clusterips/10.96.0.11');
  });
});
