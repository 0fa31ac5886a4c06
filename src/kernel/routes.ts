/**
 * Routes (IPv4 and IPv6, any table). Each method names its iproute2 equivalent.
 */
import { AttrStream, rt } from 'netlink';
import { ErrorCodes, PodnetError } from '../util/errors.js';
import { Cidr, familyOf, ipFromBytes, ipToBytes, parseIP } from '../util/ipnet.js';
import type { Family } from '../util/ipnet.js';
import { validateInt } from '../util/validate.js';
import { AF_INET, AF_INET6, familyToAf, u32 } from './attrs.js';
import type { LinkOps } from './links.js';
import { NLM_F, isErrno } from './netlink.js';
import type { NetlinkHandle } from './netlink.js';

const RTM_NEWROUTE = 24;
const RTM_DELROUTE = 25;
const RTM_GETROUTE = 26;
/** RTNH_F_ONLINK in rtm_flags: the gateway is on-link even without a matching prefix. */
const RTNH_F_ONLINK = 4;

export const RT_TABLE_MAIN = 254;
export const RT_TABLE_LOCAL = 255;

export type RouteType = 'unicast' | 'local' | 'broadcast' | 'anycast' | 'multicast' | 'blackhole' | 'unreachable' | 'prohibit' | 'throw';
const ROUTE_TYPES: Record<RouteType, number> = {
  unicast: 1, local: 2, broadcast: 3, anycast: 4, multicast: 5, blackhole: 6, unreachable: 7, prohibit: 8, throw: 9,
};
const ROUTE_TYPE_NAMES = Object.fromEntries(Object.entries(ROUTE_TYPES).map(([k, v]) => [v, k])) as Record<number, RouteType>;

export type RouteScope = 'universe' | 'link' | 'host' | 'nowhere';
const SCOPES: Record<RouteScope, number> = { universe: 0, link: 253, host: 254, nowhere: 255 };

/** Protocol numbers (rtm_protocol): who installed a route. */
export const RTPROT = { kernel: 2, boot: 3, static: 4 } as const;

export interface RouteSpec {
  /** "default" or a prefix ("10.244.2.0/24"; host bits must be zero). */
  dst: string;
  /** Needed when dst is "default" and there is no gateway / device to tell the family. */
  family?: Family;
  via?: string;
  dev?: string | number;
  /** Treat the gateway as directly reachable on `dev` (flannel's vxlan routes). */
  onlink?: boolean;
  /** Default: main (254). */
  table?: number;
  /** Route priority; routes with the same dst but different metrics are different routes. */
  metric?: number;
  /** Preferred source address. */
  src?: string;
  /** Default: boot (3), like `ip route`. Transports mark their routes with their own number. */
  protocol?: number;
  scope?: RouteScope;
  type?: RouteType;
  mtu?: number;
}

export interface Route {
  family: Family;
  /** Prefix, "0.0.0.0/0" or "::/0" for a default route. */
  dst: string;
  via: string | undefined;
  devIndex: number | undefined;
  table: number;
  metric: number | undefined;
  src: string | undefined;
  protocol: number;
  scope: number;
  type: RouteType;
  onlink: boolean;
}

export class RouteOps {
  constructor(
    private readonly h: NetlinkHandle,
    private readonly links: LinkOps,
  ) {}

  /**
   * Routes of one table (default main; `table: 'all'` for every table).
   * Equivalent to `ip route show [table T]` and `ip -6 route show`.
   */
  async list(filter: { family?: Family; table?: number | 'all'; dev?: string | number; protocol?: number } = {}): Promise<Route[]> {
    const table = filter.table ?? RT_TABLE_MAIN;
    const devIndex = filter.dev === undefined ? undefined : await this.links.indexOf(filter.dev);
    const s = new AttrStream();
    rt.formatRouteMessage({ kind: 'route', data: { family: filter.family ? familyToAf(filter.family) : 0 }, attrs: {} }, s);
    const msgs = await this.h.dump(RTM_GETROUTE, s.bufs, { what: 'listing routes' });
    const out: Route[] = [];
    for (const m of msgs) {
      const r = parseRoute(m.data);
      if (!r) continue;
      if (table !== 'all' && r.table !== table) continue;
      if (filter.family && r.family !== filter.family) continue;
      if (devIndex !== undefined && r.devIndex !== devIndex) continue;
      if (filter.protocol !== undefined && r.protocol !== filter.protocol) continue;
      out.push(r);
    }
    return out;
  }

  /**
   * The route the kernel would use for `dst` (undefined when the network is unreachable).
   * Equivalent to `ip route get DST [from SRC] [iif DEV]`; with `fibMatch`, the matching
   * FIB entry itself (`ip route get fibmatch DST`).
   */
  async get(dst: string, opts: { src?: string; iif?: string | number; fibMatch?: boolean } = {}): Promise<Route | undefined> {
    const ip = parseIP(dst, 'dst');
    const family = familyOf(ip);
    const attrs: rt.RouteAttrs = { dst: ipToBytes(ip) };
    if (opts.src !== undefined) attrs.src = ipToBytes(parseIP(opts.src, 'src'));
    if (opts.iif !== undefined) attrs.iif = await this.links.indexOf(opts.iif);
    const data: rt.Route = { family: familyToAf(family), dstLen: family === 4 ? 32 : 128, ...(opts.src ? { srcLen: family === 4 ? 32 : 128 } : {}) };
    if (opts.fibMatch) data.flags = { fibMatch: true };
    const s = new AttrStream();
    rt.formatRouteMessage({ kind: 'route', data, attrs }, s);
    try {
      const msgs = await this.h.request(RTM_GETROUTE, s.bufs, 0, { what: `looking up the route to ${ip}`, context: { dst: ip } });
      return msgs[0] ? parseRoute(msgs[0].data) : undefined;
    } catch (e) {
      if (isErrno(e, 'ENETUNREACH', 'EHOSTUNREACH')) return undefined;
      throw e;
    }
  }

  /**
   * Installs the route, replacing one with the same destination / table / metric.
   * Equivalent to `ip route replace DST [via GW] [dev DEV] [onlink] [table T] [metric M]`.
   */
  async ensure(spec: RouteSpec): Promise<void> {
    await this.send(RTM_NEWROUTE, spec, NLM_F.CREATE | NLM_F.REPLACE, `installing route ${describe(spec)}`);
  }

  /** Adds a route; PODNET_ROUTE_EXISTS if one is there. Equivalent to `ip route add ...`. */
  async add(spec: RouteSpec): Promise<void> {
    try {
      await this.send(RTM_NEWROUTE, spec, NLM_F.CREATE | NLM_F.EXCL, `adding route ${describe(spec)}`);
    } catch (e) {
      if (isErrno(e, 'EEXIST')) {
        throw new PodnetError(ErrorCodes.ROUTE_EXISTS, `route ${describe(spec)} already exists`, { netns: this.h.label, route: spec.dst }, { cause: e, errno: 'EEXIST' });
      }
      throw e;
    }
  }

  /** Deletes a route; false if there was none. Equivalent to `ip route del DST [table T] [metric M]`. */
  async delete(spec: RouteSpec): Promise<boolean> {
    try {
      await this.send(RTM_DELROUTE, spec, 0, `deleting route ${describe(spec)}`);
      return true;
    } catch (e) {
      if (isErrno(e, 'ESRCH', 'ENOENT')) return false;
      throw e;
    }
  }

  private async send(type: number, spec: RouteSpec, flags: number, what: string): Promise<void> {
    const { data, attrs } = await this.encode(spec, type === RTM_DELROUTE);
    const s = new AttrStream();
    rt.formatRouteMessage({ kind: 'route', data, attrs }, s);
    try {
      await this.h.request(type, s.bufs, flags, { what, context: { route: spec.dst, ...(spec.via ? { via: spec.via } : {}) } });
    } catch (e) {
      if (isErrno(e, 'ENODEV')) {
        throw new PodnetError(ErrorCodes.LINK_NOT_FOUND, `${what}: device ${spec.dev} does not exist`, { netns: this.h.label, link: String(spec.dev) }, { cause: e, errno: 'ENODEV' });
      }
      throw e;
    }
  }

  private async encode(spec: RouteSpec, forDelete: boolean): Promise<{ data: rt.Route; attrs: rt.RouteAttrs }> {
    const oif = spec.dev === undefined ? undefined : await this.links.indexOf(spec.dev);
    return encodeRoute(spec, oif, forDelete);
  }
}

/**
 * The rtmsg + attributes of a route request (pure; `oif` is the resolved `dev`).
 * For a delete, protocol and scope are wildcards so any matching route goes.
 */
export function encodeRoute(spec: RouteSpec, oif: number | undefined, forDelete = false): { data: rt.Route; attrs: rt.RouteAttrs } {
  const via = spec.via === undefined ? undefined : parseIP(spec.via, 'via');
  let family: Family | undefined = spec.family;
  let dst: Cidr | undefined;
  if (spec.dst !== 'default') {
    dst = Cidr.parse(spec.dst, 'dst');
    family = dst.family;
  }
  family ??= via ? familyOf(via) : undefined;
  if (!family) {
    throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, 'route to "default" needs a gateway (via) or an explicit family', { field: 'family' });
  }
  if (via && familyOf(via) !== family) {
    throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `gateway ${via} is not an IPv${family} address like the destination ${spec.dst}`, { field: 'via' });
  }
  const table = spec.table ?? RT_TABLE_MAIN;
  validateInt(table, 'table', 1, 0xffffffff);
  const type = spec.type ?? 'unicast';
  const scope = spec.scope ?? (type === 'unicast' && !via && spec.dev !== undefined ? 'link' : type === 'local' ? 'host' : 'universe');
  const data: rt.Route = {
    family: familyToAf(family),
    dstLen: dst ? dst.prefix : 0,
    table: table < 256 ? table : 252,
    protocol: forDelete ? 0 : (spec.protocol ?? RTPROT.boot),
    scope: forDelete ? SCOPES.nowhere : SCOPES[scope],
    type: ROUTE_TYPES[type],
  };
  if (spec.onlink) data.flags = { __unknown: RTNH_F_ONLINK };
  const attrs: rt.RouteAttrs = { table };
  if (dst) attrs.dst = ipToBytes(dst.network);
  if (via) attrs.gateway = ipToBytes(via);
  if (oif !== undefined) attrs.oif = oif;
  if (spec.metric !== undefined) attrs.priority = validateInt(spec.metric, 'metric', 0, 0xffffffff);
  if (spec.src !== undefined) attrs.prefsrc = ipToBytes(parseIP(spec.src, 'src'));
  if (spec.mtu !== undefined) attrs.metrics = { mtu: u32(validateInt(spec.mtu, 'mtu', 68, 65535)) };
  return { data, attrs };
}

function describe(spec: RouteSpec): string {
  const parts = [spec.dst];
  if (spec.via) parts.push(`via ${spec.via}`);
  if (spec.dev !== undefined) parts.push(`dev ${spec.dev}`);
  if (spec.onlink) parts.push('onlink');
  if (spec.table !== undefined && spec.table !== RT_TABLE_MAIN) parts.push(`table ${spec.table}`);
  if (spec.metric !== undefined) parts.push(`metric ${spec.metric}`);
  return parts.join(' ');
}

/** Decodes an RTM_NEWROUTE payload (undefined for non-IP families). Exported for unit tests. */
export function parseRoute(data: Buffer): Route | undefined {
  const m = rt.parseRouteMessage(data);
  const fam = m.data.family === AF_INET ? 4 : m.data.family === AF_INET6 ? 6 : undefined;
  if (!fam) return undefined;
  const a = m.attrs;
  const dstLen = m.data.dstLen ?? 0;
  const dstIp = a.dst ? ipFromBytes(a.dst) : fam === 4 ? '0.0.0.0' : '::';
  const typeNum = enumNumber(m.data.type, rt.RouteType, 1);
  const protoNum = enumNumber(m.data.protocol, rt.RouteProtocol, 0);
  const scopeNum = enumNumber(m.data.scope, rt.RouteScope, 0);
  return {
    family: fam,
    dst: `${dstIp}/${dstLen}`,
    via: a.gateway ? ipFromBytes(a.gateway) : undefined,
    devIndex: a.oif,
    table: a.table ?? m.data.table ?? RT_TABLE_MAIN,
    metric: a.priority,
    src: a.prefsrc ? ipFromBytes(a.prefsrc) : undefined,
    protocol: protoNum,
    scope: scopeNum,
    type: ROUTE_TYPE_NAMES[typeNum] ?? 'unicast',
    onlink: ((m.data.flags?.__unknown ?? 0) & RTNH_F_ONLINK) !== 0,
  };
}

/** node-netlink decodes known enum values to their names: map back to numbers. */
function enumNumber(v: unknown, table: Record<string, string | number>, fallback: number): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string') {
    const n = table[v];
    if (typeof n === 'number') return n;
  }
  return fallback;
}
