/**
 * Wire encoding of the netlink messages podnet builds, checked without root: golden bytes
 * for a simple message, and round trips through node-netlink's parsers for the nested
 * attributes the library leaves to us (veth peer, vxlan data) and for our decoders.
 */
import { describe, expect, it } from 'vitest';
import { AttrStream, ifla, rt } from 'netlink';
import { encodeHairpin, encodeLinkAdd, msg, parseLink } from './links.js';
import { encodeRoute, parseRoute } from './routes.js';
import { parseFdb, parseNeigh } from './neigh.js';
import { ipv4Broadcast, parseAddr } from './addrs.js';
import { errnoName } from './netlink.js';
import { linkInfo, macToBytes, u16be, u32 } from './attrs.js';
import type { NetNS } from './netns.js';

const flat = (bufs: Uint8Array[]) => Buffer.concat(bufs);
const fakeNs = (fd: number) => ({ fd, label: `fd${fd}` }) as unknown as NetNS;

describe('links', () => {
  it('bridge add: golden bytes', () => {
    const { data, attrs } = encodeLinkAdd({ kind: 'bridge', name: 'br0', up: true });
    const hex = flat(msg(data, attrs)).toString('hex');
    // struct ifinfomsg: family 0, pad, type 0, index 0, flags IFF_UP, change IFF_UP
    const ifinfomsg = '00' + '00' + '0000' + '00000000' + '01000000' + '01000000';
    // IFLA_IFNAME(3) "br0\0"; IFLA_LINKINFO(18) { IFLA_INFO_KIND(1) "bridge\0" + 1 pad }
    const ifname = '0800' + '0300' + Buffer.from('br0\0').toString('hex');
    const linkinfo = '1000' + '1200' + '0b00' + '0100' + Buffer.from('bridge\0').toString('hex') + '00';
    expect(hex).toBe(ifinfomsg + ifname + linkinfo);
  });

  it('veth add: the peer (name, netns fd, mtu) is nested inside IFLA_LINKINFO/INFO_DATA/VETH_INFO_PEER', () => {
    const { data, attrs } = encodeLinkAdd(
      { kind: 'veth', name: 'pn0a1b2c3d', mtu: 1450, up: true, mac: '02:00:00:00:00:01', peer: { name: 'eth0', netns: fakeNs(42), mac: '02:00:00:00:00:02' } },
      { masterIndex: 7 },
    );
    const parsed = rt.parseLinkMessage(flat(msg(data, attrs)));
    expect(parsed.data.flags?.up).toBe(true);
    expect(parsed.attrs.ifname).toBe('pn0a1b2c3d');
    expect(parsed.attrs.mtu).toBe(1450);
    expect(parsed.attrs.master).toBe(7);
    expect(parsed.attrs.address?.toString('hex')).toBe('020000000001');
    const info = ifla.parseInfo(parsed.attrs.linkinfo!);
    expect(info.kind).toBe('veth');
    const peer = ifla.parseVethInfo(info.data!).peer!;
    const peerLink = rt.parseLink(peer.subarray(0, 16));
    expect(peerLink.flags?.up).toBeUndefined(); // a veth end cannot be opened before the pair exists
    const peerAttrs = ifla.parseLinkAttrs(peer.subarray(16));
    expect(peerAttrs.ifname).toBe('eth0');
    expect(peerAttrs.netNsFd).toBe(42);
    expect(peerAttrs.mtu).toBe(1450); // defaults to this end's MTU
    expect(peerAttrs.address?.toString('hex')).toBe('020000000002');
  });

  it('vxlan add round-trips through parseLink', () => {
    const { data, attrs } = encodeLinkAdd({ kind: 'vxlan', name: 'podnet.1', vni: 1, port: 8472, local: '198.18.0.1', mtu: 1450 }, { devIndex: 2 });
    const link = parseLink(flat(msg({ ...data, index: 9 }, attrs)));
    expect(link).toMatchObject({ kind: 'vxlan', name: 'podnet.1', index: 9, vni: 1, port: 8472, local: '198.18.0.1', learning: false, devIndex: 2, mtu: 1450 });
  });

  it('vxlan over an IPv6 underlay uses IFLA_VXLAN_LOCAL6', () => {
    const { attrs } = encodeLinkAdd({ kind: 'vxlan', name: 'vx6', vni: 4096, local: 'fd00::1', learning: true });
    const v = ifla.parseVxlan(ifla.parseInfo(attrs.linkinfo!).data!);
    expect(v.local).toBeUndefined();
    expect(v.local6?.toString('hex')).toBe('fd000000000000000000000000000001');
    expect(v.learning).toBe(1);
    expect(v.port?.readUInt16BE(0)).toBe(8472);
  });

  it('parseLink maps kinds and leaves unknown drivers as devices', () => {
    const link = (kind: string | undefined, extra: ifla.LinkAttrs = {}) =>
      parseLink(flat(msg({ index: 3, flags: { up: true } }, { ifname: 'x', mtu: 1500, operstate: 6, ...(kind ? { linkinfo: linkInfo(kind) } : {}), ...extra })));
    expect(link(undefined).kind).toBe('device');
    expect(link('bridge').kind).toBe('bridge');
    const ipvlan = link('ipvlan');
    expect(ipvlan.kind).toBe('device');
    if (ipvlan.kind === 'device') expect(ipvlan.driver).toBe('ipvlan');
    expect(link('bridge', { master: 0 }).masterIndex).toBeUndefined();
    expect(link('bridge').operState).toBe('up');
    const veth = link('veth', { link: u32(5), linkNetnsid: 3 });
    expect(veth).toMatchObject({ kind: 'veth', peerIndex: 5, peerNetnsId: 3, up: true });
  });
});

describe('routes', () => {
  const roundTrip = (data: rt.Route, attrs: rt.RouteAttrs) => {
    const s = new AttrStream();
    rt.formatRouteMessage({ kind: 'route', data, attrs }, s);
    return parseRoute(flat(s.bufs));
  };

  it('flannel vxlan route: via + onlink + dev', () => {
    const { data, attrs } = encodeRoute({ dst: '10.244.2.0/24', via: '10.244.2.0', dev: 'podnet.1', onlink: true, protocol: 250 }, 5);
    expect(data.flags?.__unknown).toBe(4);
    expect(roundTrip(data, attrs)).toMatchObject({ family: 4, dst: '10.244.2.0/24', via: '10.244.2.0', devIndex: 5, onlink: true, protocol: 250, table: 254, type: 'unicast' });
  });

  it('default IPv6 route via a gateway; table and metric', () => {
    const { data, attrs } = encodeRoute({ dst: 'default', via: 'fd00:10:244:1::1', table: 1000, metric: 100 }, undefined);
    expect(data.table).toBe(252); // RT_TABLE_COMPAT; the real id is in RTA_TABLE
    expect(roundTrip(data, attrs)).toMatchObject({ family: 6, dst: '::/0', via: 'fd00:10:244:1::1', table: 1000, metric: 100, onlink: false });
  });

  it('a device route gets link scope; blackhole routes keep their type', () => {
    expect(encodeRoute({ dst: '10.244.1.0/24', dev: 'podnet0' }, 3).data.scope).toBe(253);
    expect(roundTrip(...Object.values(encodeRoute({ dst: '10.244.9.0/24', type: 'blackhole' }, undefined)) as [rt.Route, rt.RouteAttrs])?.type).toBe('blackhole');
  });

  it('deletes match any protocol and scope', () => {
    const { data } = encodeRoute({ dst: '10.244.2.0/24' }, undefined, true);
    expect(data.protocol).toBe(0);
    expect(data.scope).toBe(255);
  });

  it.each([
    [{ dst: 'default' }, /needs a gateway/],
    [{ dst: '10.244.2.0/24', via: 'fd00::1' }, /not an IPv4 address/],
    [{ dst: '10.244.2.1/24' }, /host bits set/],
    [{ dst: '10.244.2.0/24', via: 'nope' }, /via "nope" is not an IPv4 or IPv6 address/],
    [{ dst: '10.244.2.0/24', metric: -1 }, /metric must be an integer/],
  ])('rejects %j', (spec, why) => expect(() => encodeRoute(spec, undefined)).toThrowError(why));
});

describe('neighbours, fdb, addresses', () => {
  const neighMsg = (data: rt.Neighbor, attrs: rt.NeighborAttrs) => {
    const s = new AttrStream();
    rt.formatNeighborMessage({ kind: 'neighbor', data, attrs }, s);
    return flat(s.bufs);
  };
  it('parses a permanent ARP entry', () => {
    const n = parseNeigh(neighMsg({ family: 2, ifindex: 4, state: { permanent: true } }, { dst: Buffer.from([10, 244, 2, 0]), lladdr: macToBytes('02:00:00:00:00:02') }));
    expect(n).toEqual({ devIndex: 4, family: 4, ip: '10.244.2.0', mac: '02:00:00:00:00:02', state: ['permanent'] });
  });
  it('parses a vxlan FDB entry and ignores non-bridge families', () => {
    const e = parseFdb(neighMsg({ family: 7, ifindex: 4, state: { permanent: true }, flags: { self: true } }, { lladdr: macToBytes('02:00:00:00:00:02'), dst: Buffer.from([198, 18, 0, 2]), vni: u32(1), port: u16be(8472) }));
    expect(e).toEqual({ devIndex: 4, mac: '02:00:00:00:00:02', dst: '198.18.0.2', vni: 1, port: 8472, masterIndex: undefined, self: true, permanent: true });
    expect(parseFdb(neighMsg({ family: 2 }, { lladdr: macToBytes('02:00:00:00:00:02') }))).toBeUndefined();
  });
  it('parses an IPv6 address with flags', () => {
    const s = new AttrStream();
    const ip = Buffer.from('fd000010024400010000000000000002', 'hex');
    rt.formatAddressMessage({ kind: 'address', data: { family: 10, prefixlen: 64, index: 2 }, attrs: { address: ip, flags: { nodad: true, permanent: true } } }, s);
    expect(parseAddr(flat(s.bufs))).toEqual({ devIndex: 2, ip: 'fd00:10:244:1::2', prefix: 64, family: 6, scope: 0, label: undefined, flags: ['nodad', 'permanent'] });
  });
});

describe('errno names', () => {
  it('maps kernel errnos (negative in NLMSG_ERROR) to names', () => {
    expect(errnoName(-17)).toBe('EEXIST');
    expect(errnoName(19)).toBe('ENODEV');
    expect(errnoName(-3)).toBe('ESRCH');
  });
});

describe('ipv4Broadcast', () => {
  it.each([
    ['10.244.1.2', 24, '10.244.1.255'],
    ['10.244.1.2', 16, '10.244.255.255'],
    ['10.0.0.1', 8, '10.255.255.255'],
    ['192.168.5.130', 25, '192.168.5.255'],
    ['192.168.5.10', 25, '192.168.5.127'],
    ['1.2.3.4', 0, '255.255.255.255'],
    ['1.2.3.4', 30, '1.2.3.7'],
  ])('%s/%i -> %s', (ip, prefix, brd) => {
    expect([...ipv4Broadcast(Buffer.from(ip.split('.').map(Number)), prefix)].join('.')).toBe(brd);
  });
});

describe('bridge port hairpin', () => {
  it('is RTM_SETLINK AF_BRIDGE with IFLA_PROTINFO { IFLA_BRPORT_MODE } (as `bridge link set hairpin on`)', () => {
    expect(encodeHairpin(7, true).toString('hex')).toBe(
      // ifinfomsg: family 7, pad, type 0, index 7, flags 0, change 0
      '07000000' + '07000000' + '00000000' + '00000000' +
        // nla len 12, IFLA_PROTINFO|NLA_F_NESTED; nla len 5, IFLA_BRPORT_MODE, 1, pad
        '0c000c80' + '05000400' + '01000000',
    );
    expect(encodeHairpin(7, false).readUInt8(24)).toBe(0);
  });
});
