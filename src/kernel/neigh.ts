/**
 * Neighbour entries (ARP / NDP) and bridge / VXLAN forwarding-database entries. Both are
 * RTM_*NEIGH messages; FDB entries use the AF_BRIDGE family. Each method names its
 * iproute2 equivalent.
 */
import { AttrStream, rt } from 'netlink';
import { ipFromBytes, ipToBytes, familyOf, parseIP } from '../util/ipnet.js';
import type { Family } from '../util/ipnet.js';
import { validateInt, validateMac } from '../util/validate.js';
import { AF_BRIDGE, AF_INET, AF_INET6, familyToAf, macFromBytes, macToBytes, readU32, u16be, u32 } from './attrs.js';
import type { LinkOps } from './links.js';
import { NLM_F, isErrno } from './netlink.js';
import type { NetlinkHandle } from './netlink.js';

const RTM_NEWNEIGH = 28;
const RTM_DELNEIGH = 29;
const RTM_GETNEIGH = 30;

export interface Neigh {
  devIndex: number;
  family: Family;
  ip: string;
  mac: string | undefined;
  /** NUD state names that are set: permanent, reachable, stale, failed, noarp... */
  state: string[];
}

export interface NeighSpec {
  dev: string | number;
  ip: string;
  mac: string;
}

export interface FdbEntry {
  devIndex: number;
  mac: string;
  /** Remote VTEP address (vxlan entries). */
  dst: string | undefined;
  vni: number | undefined;
  port: number | undefined;
  /** Master (bridge) ifindex for entries of bridge ports. */
  masterIndex: number | undefined;
  self: boolean;
  permanent: boolean;
}

export interface FdbSpec {
  dev: string | number;
  mac: string;
  /** Remote VTEP address (vxlan). */
  dst?: string;
  vni?: number;
  port?: number;
}

function body(data: rt.Neighbor, attrs: rt.NeighborAttrs): Uint8Array[] {
  const s = new AttrStream();
  rt.formatNeighborMessage({ kind: 'neighbor', data, attrs }, s);
  return s.bufs;
}

function stateNames(state: rt.NeighborState | undefined): string[] {
  return Object.entries(state ?? {})
    .filter(([k, v]) => k !== '__unknown' && v === true)
    .map(([k]) => k);
}

export class NeighOps {
  constructor(
    private readonly h: NetlinkHandle,
    private readonly links: LinkOps,
  ) {}

  /** Equivalent to `ip neigh show [dev D]` (IPv4 and IPv6). */
  async list(filter: { dev?: string | number; family?: Family } = {}): Promise<Neigh[]> {
    const devIndex = filter.dev === undefined ? undefined : await this.links.indexOf(filter.dev);
    const msgs = await this.h.dump(RTM_GETNEIGH, body({ family: filter.family ? familyToAf(filter.family) : 0 }, {}), { what: 'listing neighbours' });
    const out: Neigh[] = [];
    for (const m of msgs) {
      const n = parseNeigh(m.data);
      if (!n) continue;
      if (devIndex !== undefined && n.devIndex !== devIndex) continue;
      if (filter.family && n.family !== filter.family) continue;
      out.push(n);
    }
    return out;
  }

  /**
   * Installs a permanent entry, replacing whatever is there for that address.
   * Equivalent to `ip neigh replace IP lladdr MAC dev DEV nud permanent`.
   */
  async ensure(spec: NeighSpec): Promise<void> {
    const ip = parseIP(spec.ip);
    const ifindex = await this.links.indexOf(spec.dev);
    await this.h.request(
      RTM_NEWNEIGH,
      body({ family: familyToAf(familyOf(ip)), ifindex, state: { permanent: true } }, { dst: ipToBytes(ip), lladdr: macToBytes(spec.mac) }),
      NLM_F.CREATE | NLM_F.REPLACE,
      { what: `installing neighbour ${ip} lladdr ${spec.mac} on ${spec.dev}`, context: { link: String(spec.dev), ip } },
    );
  }

  /** Deletes an entry; false if none. Equivalent to `ip neigh del IP dev DEV`. */
  async delete(spec: { dev: string | number; ip: string }): Promise<boolean> {
    const ip = parseIP(spec.ip);
    const ifindex = await this.links.indexOf(spec.dev);
    try {
      await this.h.request(RTM_DELNEIGH, body({ family: familyToAf(familyOf(ip)), ifindex }, { dst: ipToBytes(ip) }), 0, {
        what: `deleting neighbour ${ip} on ${spec.dev}`,
        context: { link: String(spec.dev), ip },
      });
      return true;
    } catch (e) {
      if (isErrno(e, 'ENOENT', 'ESRCH')) return false;
      throw e;
    }
  }
}

export class FdbOps {
  constructor(
    private readonly h: NetlinkHandle,
    private readonly links: LinkOps,
  ) {}

  /** Equivalent to `bridge fdb show [dev D]`. */
  async list(filter: { dev?: string | number } = {}): Promise<FdbEntry[]> {
    const devIndex = filter.dev === undefined ? undefined : await this.links.indexOf(filter.dev);
    const msgs = await this.h.dump(RTM_GETNEIGH, body({ family: AF_BRIDGE }, {}), { what: 'listing fdb entries' });
    const out: FdbEntry[] = [];
    for (const m of msgs) {
      const e = parseFdb(m.data);
      if (!e) continue;
      if (devIndex !== undefined && e.devIndex !== devIndex) continue;
      out.push(e);
    }
    return out;
  }

  /**
   * Installs a permanent entry on the device itself (`self`), replacing an entry for the
   * same MAC. Equivalent to `bridge fdb replace MAC dev DEV dst IP [vni N] [port P] self permanent`.
   */
  async ensure(spec: FdbSpec): Promise<void> {
    const ifindex = await this.links.indexOf(spec.dev);
    await this.h.request(RTM_NEWNEIGH, body({ family: AF_BRIDGE, ifindex, state: { permanent: true }, flags: { self: true } }, fdbAttrs(spec)), NLM_F.CREATE | NLM_F.REPLACE, {
      what: `installing fdb entry ${spec.mac}${spec.dst ? ` dst ${spec.dst}` : ''} on ${spec.dev}`,
      context: { link: String(spec.dev), mac: spec.mac },
    });
  }

  /**
   * Adds one more destination for a MAC (e.g. several remote VTEPs for 00:00:00:00:00:00).
   * Equivalent to `bridge fdb append MAC dev DEV dst IP self permanent`.
   */
  async append(spec: FdbSpec): Promise<void> {
    const ifindex = await this.links.indexOf(spec.dev);
    await this.h.request(RTM_NEWNEIGH, body({ family: AF_BRIDGE, ifindex, state: { permanent: true }, flags: { self: true } }, fdbAttrs(spec)), NLM_F.CREATE | NLM_F.APPEND, {
      what: `appending fdb entry ${spec.mac} on ${spec.dev}`,
      context: { link: String(spec.dev), mac: spec.mac },
    });
  }

  /** Deletes an entry; false if none. Equivalent to `bridge fdb del MAC dev DEV [dst IP] self`. */
  async delete(spec: FdbSpec): Promise<boolean> {
    const ifindex = await this.links.indexOf(spec.dev);
    try {
      await this.h.request(RTM_DELNEIGH, body({ family: AF_BRIDGE, ifindex, flags: { self: true } }, fdbAttrs(spec)), 0, {
        what: `deleting fdb entry ${spec.mac} on ${spec.dev}`,
        context: { link: String(spec.dev), mac: spec.mac },
      });
      return true;
    } catch (e) {
      if (isErrno(e, 'ENOENT', 'ESRCH')) return false;
      throw e;
    }
  }
}

function fdbAttrs(spec: FdbSpec): rt.NeighborAttrs {
  const attrs: rt.NeighborAttrs = { lladdr: macToBytes(validateMac(spec.mac)) };
  if (spec.dst !== undefined) attrs.dst = ipToBytes(parseIP(spec.dst, 'dst'));
  if (spec.vni !== undefined) attrs.vni = u32(validateInt(spec.vni, 'vni', 0, 0xffffff));
  if (spec.port !== undefined) attrs.port = u16be(validateInt(spec.port, 'port', 1, 65535));
  return attrs;
}

/** Decodes an IPv4/IPv6 RTM_NEWNEIGH payload. Exported for unit tests. */
export function parseNeigh(data: Buffer): Neigh | undefined {
  const m = rt.parseNeighborMessage(data);
  const fam = m.data.family === AF_INET ? 4 : m.data.family === AF_INET6 ? 6 : undefined;
  if (!fam || !m.attrs.dst) return undefined;
  return {
    devIndex: m.data.ifindex ?? 0,
    family: fam,
    ip: ipFromBytes(m.attrs.dst),
    mac: macFromBytes(m.attrs.lladdr),
    state: stateNames(m.data.state),
  };
}

/** Decodes an AF_BRIDGE RTM_NEWNEIGH payload. Exported for unit tests. */
export function parseFdb(data: Buffer): FdbEntry | undefined {
  const m = rt.parseNeighborMessage(data);
  if (m.data.family !== AF_BRIDGE) return undefined;
  const mac = macFromBytes(m.attrs.lladdr);
  if (!mac) return undefined;
  return {
    devIndex: m.data.ifindex ?? 0,
    mac,
    dst: m.attrs.dst ? ipFromBytes(m.attrs.dst) : undefined,
    vni: readU32(m.attrs.vni),
    port: m.attrs.port && m.attrs.port.length >= 2 ? m.attrs.port.readUInt16BE(0) : undefined,
    masterIndex: m.attrs.master || undefined,
    self: !!m.data.flags?.self,
    permanent: !!m.data.state?.permanent,
  };
}
