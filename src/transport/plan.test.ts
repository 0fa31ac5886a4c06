import { describe, expect, it } from 'vitest';
import { Cidr } from '../util/ipnet.js';
import { vtepMac } from './backends.js';
import { UDP_DEV, UDP_PORT, VXLAN_DEV, onLink, planHostGw, planUdp, planVxlan, tunnelAddress } from './plan.js';
import type { LocalNode, Peer } from './types.js';

const c = (s: string) => Cidr.parse(s);

// n1: dual-stack, underlay eth0 198.18.0.0/24 + 2001:2::/64.
const self: LocalNode = {
  name: 'n1',
  ip: '198.18.0.1',
  ipv6: '2001:2::1',
  subnets: [c('10.244.1.0/24'), c('fd00:10:244:1::/64')],
  underlay: { name: 'eth0', mtu: 1500, prefixes: [c('198.18.0.0/24'), c('2001:2::/64')] },
};

const peer = (name: string, over: Partial<Peer> = {}): Peer => ({ name, ip: undefined, ipv6: undefined, subnets: [], backend: undefined, data: {}, ...over });
const macOf = (n: string) => vtepMac(n);
const n2 = (backend: string) => peer('n2', { ip: '198.18.0.2', ipv6: '2001:2::2', subnets: [c('10.244.2.0/24'), c('fd00:10:244:2::/64')], backend, data: { VtepMAC: macOf('n2').toUpperCase(), Port: 8285 } });
const n3 = (backend: string) => peer('n3', { ip: '198.18.0.3', subnets: [c('10.244.3.0/24')], backend, data: { VtepMAC: macOf('n3'), Port: 9000 } });
/** Behind a router: not on n1's underlay. */
const far = (backend: string) => peer('far', { ip: '203.0.113.9', subnets: [c('10.244.9.0/24')], backend, data: { VtepMAC: macOf('far') } });

describe('onLink', () => {
  it('is true only inside a connected prefix of the same family', () => {
    expect(onLink(self, '198.18.0.200')).toBe(true);
    expect(onLink(self, '2001:2::ff')).toBe(true);
    expect(onLink(self, '198.18.1.2')).toBe(false);
    expect(onLink(self, '2001:3::1')).toBe(false);
  });
});

describe('planHostGw', () => {
  it('routes each remote subnet via the peer address of its family, on the underlay', () => {
    const s = planHostGw(self, [n3('host-gw'), n2('host-gw'), peer('n1', { ip: '198.18.0.1', subnets: self.subnets })]);
    expect(s.routes).toEqual([
      { dst: '10.244.2.0/24', via: '198.18.0.2', dev: 'eth0' },
      { dst: 'fd00:10:244:2::/64', via: '2001:2::2', dev: 'eth0' },
      { dst: '10.244.3.0/24', via: '198.18.0.3', dev: 'eth0' },
    ]);
    expect(s.problems).toEqual([]);
    expect(s.neighbours).toEqual([]);
    expect(s.fdb).toEqual([]);
  });

  it('installs no route to a peer that is not on-link and says why (NotOnLink, naming peer, address and underlay)', () => {
    const s = planHostGw(self, [far('host-gw'), n2('host-gw')]);
    expect(s.routes.map((r) => r.dst)).toEqual(['10.244.2.0/24', 'fd00:10:244:2::/64']);
    expect(s.problems).toHaveLength(1);
    expect(s.problems[0]).toMatchObject({ peer: 'far', reason: 'NotOnLink' });
    expect(s.problems[0]!.message).toMatch(/far.*203\.0\.113\.9.*eth0.*198\.18\.0\.0\/24/);
    expect(s.problems[0]!.message).toMatch(/10\.244\.9\.0\/24/);
  });

  it('reports a subnet of a family the peer has no address of (NoAddress)', () => {
    const v4only = peer('n4', { ip: '198.18.0.4', subnets: [c('10.244.4.0/24'), c('fd00:10:244:4::/64')], backend: 'host-gw' });
    const s = planHostGw(self, [v4only]);
    expect(s.routes).toEqual([{ dst: '10.244.4.0/24', via: '198.18.0.4', dev: 'eth0' }]);
    expect(s.problems).toEqual([expect.objectContaining({ peer: 'n4', reason: 'NoAddress' })]);
  });

  it('skips peers without subnets, and peers on another backend are a BackendMismatch', () => {
    const s = planHostGw(self, [peer('empty', { ip: '198.18.0.5', backend: 'host-gw' }), n2('vxlan')]);
    expect(s.routes).toEqual([]);
    expect(s.problems).toEqual([expect.objectContaining({ peer: 'n2', reason: 'BackendMismatch' })]);
    expect(s.problems[0]!.message).toMatch(/vxlan.*host-gw/);
  });

  it('treats a peer that has not published its backend yet as compatible', () => {
    expect(planHostGw(self, [n2(undefined as unknown as string)]).routes).toHaveLength(2);
  });

  it('is deterministic: peers sorted by name whatever the input order', () => {
    expect(planHostGw(self, [n3('host-gw'), n2('host-gw')])).toEqual(planHostGw(self, [n2('host-gw'), n3('host-gw')]));
  });
});

describe('planVxlan (flannel L3 model)', () => {
  it('per peer subnet: onlink route via its network address, a permanent neighbour to the VTEP MAC; per peer: one FDB entry to its underlay address', () => {
    const s = planVxlan(self, [n2('vxlan'), n3('vxlan')]);
    const m2 = macOf('n2');
    expect(s.routes).toEqual([
      { dst: '10.244.2.0/24', via: '10.244.2.0', dev: VXLAN_DEV, onlink: true },
      { dst: 'fd00:10:244:2::/64', via: 'fd00:10:244:2::', dev: VXLAN_DEV, onlink: true },
      { dst: '10.244.3.0/24', via: '10.244.3.0', dev: VXLAN_DEV, onlink: true },
    ]);
    expect(s.neighbours).toEqual([
      { dev: VXLAN_DEV, ip: '10.244.2.0', mac: m2 },
      { dev: VXLAN_DEV, ip: 'fd00:10:244:2::', mac: m2 },
      { dev: VXLAN_DEV, ip: '10.244.3.0', mac: macOf('n3') },
    ]);
    // IPv6 pod traffic rides the IPv4 underlay: the FDB entry is the peer's IPv4 address.
    expect(s.fdb).toEqual([
      { dev: VXLAN_DEV, mac: m2, dst: '198.18.0.2' },
      { dev: VXLAN_DEV, mac: macOf('n3'), dst: '198.18.0.3' },
    ]);
    expect(s.problems).toEqual([]);
  });

  it('reaches a peer behind a router through the tunnel (no on-link requirement)', () => {
    const s = planVxlan(self, [far('vxlan')]);
    expect(s.fdb).toEqual([{ dev: VXLAN_DEV, mac: macOf('far'), dst: '203.0.113.9' }]);
    expect(s.problems).toEqual([]);
  });

  it('DirectRouting: on-link peers get plain routes, the others the tunnel', () => {
    const s = planVxlan(self, [n2('vxlan'), far('vxlan')], { directRouting: true });
    expect(s.routes).toEqual([
      { dst: '10.244.9.0/24', via: '10.244.9.0', dev: VXLAN_DEV, onlink: true },
      { dst: '10.244.2.0/24', via: '198.18.0.2', dev: 'eth0' },
      { dst: 'fd00:10:244:2::/64', via: '2001:2::2', dev: 'eth0' },
    ]);
    expect(s.fdb.map((f) => f.dst)).toEqual(['203.0.113.9']);
  });

  it('waits for a peer that has not published its VTEP MAC (NoBackendData), without a half-built entry', () => {
    const s = planVxlan(self, [peer('n2', { ip: '198.18.0.2', subnets: [c('10.244.2.0/24')], backend: 'vxlan' })]);
    expect(s.routes).toEqual([]);
    expect(s.neighbours).toEqual([]);
    expect(s.fdb).toEqual([]);
    expect(s.problems).toEqual([expect.objectContaining({ peer: 'n2', reason: 'NoBackendData' })]);
  });

  it('an IPv6 underlay node uses the peers\' IPv6 addresses for the FDB, and reports an IPv4-only peer', () => {
    const v6self: LocalNode = { ...self, ip: '2001:2::1', ipv6: undefined };
    const s = planVxlan(v6self, [n2('vxlan'), n3('vxlan')]);
    expect(s.fdb).toEqual([{ dev: VXLAN_DEV, mac: macOf('n2'), dst: '2001:2::2' }]);
    expect(s.problems).toEqual([expect.objectContaining({ peer: 'n3', reason: 'NoAddress' })]);
  });

  it('the gateway of a subnet is its network address', () => {
    expect(tunnelAddress(c('10.244.7.0/24'))).toBe('10.244.7.0');
    expect(tunnelAddress(c('fd00:10:244:7::/64'))).toBe('fd00:10:244:7::');
  });
});

describe('planUdp', () => {
  it('routes peer subnets into the TUN and maps each to the peer address and its published port', () => {
    const s = planUdp(self, [n3('udp'), n2('udp')]);
    expect(s.routes).toEqual([
      { dst: '10.244.2.0/24', dev: UDP_DEV },
      { dst: 'fd00:10:244:2::/64', dev: UDP_DEV },
      { dst: '10.244.3.0/24', dev: UDP_DEV },
    ]);
    expect(s.udpPeers).toEqual([
      { subnet: '10.244.2.0/24', peer: '198.18.0.2', port: 8285 },
      { subnet: 'fd00:10:244:2::/64', peer: '198.18.0.2', port: 8285 },
      { subnet: '10.244.3.0/24', peer: '198.18.0.3', port: 9000 },
    ]);
  });

  it('falls back to the configured port when a peer published none, and refuses other backends', () => {
    const s = planUdp(self, [peer('n5', { ip: '198.18.0.5', subnets: [c('10.244.5.0/24')], backend: 'udp' }), n2('host-gw')], 7777);
    expect(s.udpPeers).toEqual([{ subnet: '10.244.5.0/24', peer: '198.18.0.5', port: 7777 }]);
    expect(s.problems).toEqual([expect.objectContaining({ peer: 'n2', reason: 'BackendMismatch' })]);
    expect(UDP_PORT).toBe(8285);
  });
});

describe('vtepMac', () => {
  it('is stable per node, unicast and locally administered, and differs between nodes', () => {
    expect(vtepMac('n1')).toBe(vtepMac('n1'));
    expect(vtepMac('n1')).not.toBe(vtepMac('n2'));
    const first = parseInt(vtepMac('n1').slice(0, 2), 16);
    expect(first & 1).toBe(0);
    expect(first & 2).toBe(2);
    expect(vtepMac('n1')).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
  });
});
