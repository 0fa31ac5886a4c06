import { describe, expect, it } from 'vitest';
import { podMtu, transportOverhead } from './mtu.js';
import type { TransportName } from './mtu.js';

// What each transport puts around a pod packet, by the underlay's family.
const IPV4 = 20;
const IPV6 = 40;
const UDP = 8;
const VXLAN = 8;
const INNER_ETHERNET = 14;

describe('transportOverhead', () => {
  it.each<[TransportName, 4 | 6, number]>([
    ['vxlan', 4, IPV4 + UDP + VXLAN + INNER_ETHERNET],
    ['vxlan', 6, IPV6 + UDP + VXLAN + INNER_ETHERNET],
    ['udp', 4, IPV4 + UDP],
    ['udp', 6, IPV6 + UDP],
    ['host-gw', 4, 0],
    ['host-gw', 6, 0],
  ])('%s over IPv%i adds %i bytes', (backend, family, bytes) => {
    expect(transportOverhead(backend, family)).toBe(bytes);
  });

  it('has the figures flannel uses', () => {
    expect(transportOverhead('vxlan', 4)).toBe(50);
    expect(transportOverhead('vxlan', 6)).toBe(70);
    expect(transportOverhead('udp', 4)).toBe(28);
    expect(transportOverhead('udp', 6)).toBe(48);
  });
});

describe('podMtu', () => {
  it.each<[TransportName, number, 4 | 6, number]>([
    ['vxlan', 1500, 4, 1450],
    ['vxlan', 1500, 6, 1430],
    ['vxlan', 9001, 4, 8951],
    ['udp', 1500, 4, 1472],
    ['udp', 1500, 6, 1452],
    ['host-gw', 1500, 4, 1500],
    ['host-gw', 9000, 6, 9000],
  ])('%s on a %i-byte IPv%i underlay gives pods %i', (backend, underlay, family, mtu) => {
    expect(podMtu(backend, underlay, family)).toBe(mtu);
  });

  it('lets a full-size pod packet fit the underlay once wrapped', () => {
    for (const backend of ['vxlan', 'udp', 'host-gw'] as const) {
      for (const family of [4, 6] as const) {
        expect(podMtu(backend, 1500, family) + transportOverhead(backend, family)).toBe(1500);
      }
    }
  });
});
