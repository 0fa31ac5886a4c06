/**
 * Links: typed, idempotent operations on network interfaces, as a discriminated union
 * on `kind`. Each method names its iproute2 equivalent.
 */
import { closeSync } from 'node:fs';
import { AttrStream, ifla, rt } from 'netlink';
import { ErrorCodes, PodnetError } from '../util/errors.js';
import { ipFromBytes, ipToBytes, familyOf } from '../util/ipnet.js';
import { validateIfName, validateInt } from '../util/validate.js';
import { linkInfo, macFromBytes, macToBytes, readU32, u16be, u32, vethInfoData, vxlanInfoData } from './attrs.js';
import { nativeCall, native } from './native.js';
import { NLM_F, isErrno } from './netlink.js';
import type { NetlinkHandle } from './netlink.js';
import type { NetNS } from './netns.js';

const RTM_NEWLINK = 16;
const RTM_DELLINK = 17;
const RTM_GETLINK = 18;
const RTM_SETLINK = 19;
const AF_BRIDGE = 7;
const IFLA_PROTINFO = 12;
const NLA_F_NESTED = 0x8000;
const IFLA_BRPORT_MODE = 4;
/** IFLA_EXT_MASK value RTEXT_FILTER_SKIP_STATS: keep dumps small. */
const RTEXT_FILTER_SKIP_STATS = 8;
const IFLA_EXT_MASK = u32(RTEXT_FILTER_SKIP_STATS);

export type OperState = 'unknown' | 'notpresent' | 'down' | 'lowerlayerdown' | 'testing' | 'dormant' | 'up';
const OPER_STATES: OperState[] = ['unknown', 'notpresent', 'down', 'lowerlayerdown', 'testing', 'dormant', 'up'];

interface LinkCommon {
  index: number;
  name: string;
  mtu: number;
  /** IFF_UP: administratively up. */
  up: boolean;
  operState: OperState;
  mac: string | undefined;
  /** ifindex of the bridge (or other master) this link is enslaved to. */
  masterIndex: number | undefined;
}
export interface VethLink extends LinkCommon {
  kind: 'veth';
  /** ifindex of the peer, in the peer's namespace. */
  peerIndex: number | undefined;
  /** netnsid of the peer's namespace as seen from here; undefined when both ends are here. */
  peerNetnsId: number | undefined;
}
export interface BridgeLink extends LinkCommon {
  kind: 'bridge';
}
export interface VxlanLink extends LinkCommon {
  kind: 'vxlan';
  vni: number;
  port: number;
  local: string | undefined;
  learning: boolean;
  /** ifindex of the underlay device (`dev`), if bound to one. */
  devIndex: number | undefined;
}
export interface DummyLink extends LinkCommon {
  kind: 'dummy';
}
export interface TunLink extends LinkCommon {
  kind: 'tun';
}
/** Anything else: loopback, physical NICs, kinds podnet does not create. */
export interface DeviceLink extends LinkCommon {
  kind: 'device';
  /** IFLA_INFO_KIND when the kernel reports one (e.g. "ipvlan"). */
  driver: string | undefined;
}
export type Link = VethLink | BridgeLink | VxlanLink | DummyLink | TunLink | DeviceLink;
export type LinkKind = Link['kind'];

interface LinkSpecCommon {
  name: string;
  mtu?: number;
  mac?: string;
  /** true = up, false = down, undefined = leave as is (new links start down). */
  up?: boolean;
  /** Bridge to enslave to; null = detach from any master; undefined = leave. */
  master?: string | null;
}
export interface VethSpec extends LinkSpecCommon {
  kind: 'veth';
  peer: {
    name: string;
    /** Namespace for the peer end; default: the handle's namespace. */
    netns?: NetNS;
    mac?: string;
    /** Default: the same MTU as this end. */
    mtu?: number;
    /**
     * ifindex to give the peer in its namespace (like `ip link add ... index N`); saves a
     * lookup when the caller knows it is free (2 in a fresh namespace, after lo).
     */
    index?: number;
    // No `up`: the kernel cannot open a veth end before the pair exists (ENOTCONN);
    // bring the peer up from a handle in its namespace.
  };
}
export interface BridgeSpec extends LinkSpecCommon {
  kind: 'bridge';
}
export interface VxlanSpec extends LinkSpecCommon {
  kind: 'vxlan';
  vni: number;
  /** UDP destination port. Default 8472 (the Linux and flannel default). */
  port?: number;
  /** Source address of the encapsulated packets (the node IP). */
  local?: string;
  /** Underlay device name. */
  dev?: string;
  /** Learn remote MACs from traffic; podnet programs the FDB instead. Default false. */
  learning?: boolean;
}
export interface DummySpec extends LinkSpecCommon {
  kind: 'dummy';
}
/** A persistent TUN device (IFF_TUN | IFF_NO_PI), created through /dev/net/tun. */
export interface TunSpec extends LinkSpecCommon {
  kind: 'tun';
}
export type LinkSpec = VethSpec | BridgeSpec | VxlanSpec | DummySpec | TunSpec;

export const VXLAN_DEFAULT_PORT = 8472;

export class LinkOps {
  constructor(private readonly h: NetlinkHandle) {}

  /** All links. Equivalent to `ip link show`. */
  async list(): Promise<Link[]> {
    const body = msg({}, { extMask: IFLA_EXT_MASK });
    const msgs = await this.h.dump(RTM_GETLINK, body, { what: 'listing links' });
    return msgs.map((m) => parseLink(m.data));
  }

  /** One link by name or index, or undefined. Equivalent to `ip link show dev NAME`. */
  async get(nameOrIndex: string | number): Promise<Link | undefined> {
    const body =
      typeof nameOrIndex === 'number'
        ? msg({ index: nameOrIndex }, { extMask: IFLA_EXT_MASK })
        : msg({}, { ifname: validateIfName(nameOrIndex), extMask: IFLA_EXT_MASK });
    try {
      const msgs = await this.h.request(RTM_GETLINK, body, 0, { what: `reading link ${nameOrIndex}`, context: { link: String(nameOrIndex) } });
      return msgs[0] ? parseLink(msgs[0].data) : undefined;
    } catch (e) {
      if (isErrno(e, 'ENODEV')) return undefined;
      throw e;
    }
  }

  /** Like get, but a missing link is a PODNET_LINK_NOT_FOUND error. */
  async require(nameOrIndex: string | number): Promise<Link> {
    const link = await this.get(nameOrIndex);
    if (!link) {
      throw new PodnetError(ErrorCodes.LINK_NOT_FOUND, `link ${nameOrIndex} does not exist in netns ${this.h.label}`, { netns: this.h.label, link: String(nameOrIndex) });
    }
    return link;
  }

  /** ifindex of a link given by name (numbers pass through). */
  async indexOf(dev: string | number): Promise<number> {
    return typeof dev === 'number' ? dev : (await this.require(dev)).index;
  }

  /**
   * Creates a link; fails with PODNET_LINK_EXISTS if the name is taken.
   * Equivalent to `ip link add NAME [mtu M] [address MAC] [master BR] type KIND ...`
   * (+ `ip link set NAME up`), in one netlink message. A veth's peer can be created
   * directly in another namespace: `... type veth peer name P netns NS`.
   */
  async add(spec: LinkSpec): Promise<Link> {
    await this.create(spec);
    // Not NLM_F_ECHO: the kernel echoes before it enslaves the link, and node-netlink
    // would resolve on the echo without waiting for the final ACK.
    return this.require(spec.name);
  }

  /** Like add, without reading the new link back (one round trip less). */
  async create(spec: LinkSpec): Promise<void> {
    validateSpec(spec);
    if (spec.kind === 'tun') {
      await this.addTun(spec);
      return;
    }
    const masterIndex = spec.master ? await this.indexOf(spec.master) : undefined;
    const devIndex = spec.kind === 'vxlan' && spec.dev !== undefined ? await this.indexOf(spec.dev) : undefined;
    const { data, attrs } = encodeLinkAdd(spec, { masterIndex, devIndex });
    try {
      await this.h.request(RTM_NEWLINK, msg(data, attrs), NLM_F.CREATE | NLM_F.EXCL, {
        what: `creating ${spec.kind} link ${spec.name}`,
        context: { link: spec.name, ...(spec.kind === 'veth' ? { peer: spec.peer.name, peerNetns: spec.peer.netns?.label } : {}) },
      });
    } catch (e) {
      if (isErrno(e, 'EEXIST')) {
        const where = spec.kind === 'veth' ? ` (or its peer ${spec.peer.name} in netns ${spec.peer.netns?.label ?? this.h.label})` : '';
        throw new PodnetError(ErrorCodes.LINK_EXISTS, `link ${spec.name}${where} already exists`, { netns: this.h.label, link: spec.name }, { cause: e, errno: 'EEXIST' });
      }
      if (isErrno(e, 'ENOTSUP', 'EOPNOTSUPP')) {
        throw new PodnetError(ErrorCodes.UNSUPPORTED, `the running kernel cannot create links of kind ${spec.kind} (module missing?)`, { netns: this.h.label, link: spec.name }, { cause: e, errno: e.errno });
      }
      throw e;
    }
  }

  /**
   * Idempotent create-or-converge: creates the link if missing; if a link of that name
   * exists with the same kind, converges mtu / mac / master / up to the spec. An existing
   * link of another kind, or a vxlan with other VNI / port / local / dev, is a
   * PODNET_LINK_EXISTS error (pass `recreate: true` to delete and create it instead).
   */
  async ensure(spec: LinkSpec, opts: { recreate?: boolean } = {}): Promise<Link> {
    validateSpec(spec);
    const existing = await this.get(spec.name);
    if (!existing) {
      try {
        return await this.add(spec);
      } catch (e) {
        // Lost a race with another creator of the same name: converge on what is there.
        if (!(e instanceof PodnetError && e.code === ErrorCodes.LINK_EXISTS)) throw e;
        const now = await this.get(spec.name);
        if (!now) throw e;
        return this.converge(now, spec, opts);
      }
    }
    return this.converge(existing, spec, opts);
  }

  private async converge(existing: Link, spec: LinkSpec, opts: { recreate?: boolean }): Promise<Link> {
    const conflict = await this.kindConflict(existing, spec);
    if (conflict) {
      if (opts.recreate) {
        await this.delete(existing.index);
        return this.add(spec);
      }
      throw new PodnetError(ErrorCodes.LINK_EXISTS, `link ${spec.name} already exists ${conflict}`, { netns: this.h.label, link: spec.name });
    }
    const change: ifla.LinkAttrs = {};
    if (spec.mtu !== undefined && existing.mtu !== spec.mtu) change.mtu = spec.mtu;
    if (spec.mac !== undefined && existing.mac !== spec.mac.toLowerCase()) change.address = macToBytes(spec.mac);
    if (spec.master !== undefined) {
      const want = spec.master === null ? 0 : await this.indexOf(spec.master);
      if ((existing.masterIndex ?? 0) !== want) change.master = want;
    }
    const upChange = spec.up !== undefined && existing.up !== spec.up;
    if (Object.keys(change).length === 0 && !upChange) return existing;
    await this.setLink(existing.index, change, upChange ? spec.up : undefined, `updating link ${spec.name}`);
    return this.require(existing.index);
  }

  /** Why an existing link cannot stand for `spec` (undefined = it can). */
  private async kindConflict(existing: Link, spec: LinkSpec): Promise<string | undefined> {
    if (existing.kind !== spec.kind) return `as a ${existing.kind === 'device' ? existing.driver ?? 'device' : existing.kind}, not a ${spec.kind}`;
    if (existing.kind === 'vxlan' && spec.kind === 'vxlan') {
      const diffs: string[] = [];
      if (existing.vni !== spec.vni) diffs.push(`vni ${existing.vni} (wanted ${spec.vni})`);
      const port = spec.port ?? VXLAN_DEFAULT_PORT;
      if (existing.port !== port) diffs.push(`port ${existing.port} (wanted ${port})`);
      if (spec.local !== undefined && existing.local !== spec.local) diffs.push(`local ${existing.local ?? 'none'} (wanted ${spec.local})`);
      if (spec.dev !== undefined && existing.devIndex !== (await this.indexOf(spec.dev))) diffs.push(`a different dev (wanted ${spec.dev})`);
      if (existing.learning !== (spec.learning ?? false)) diffs.push(`learning ${existing.learning ? 'on' : 'off'}`);
      if (diffs.length) return `with ${diffs.join(', ')}`;
    }
    return undefined;
  }

  /**
   * Deletes a link; returns false if it did not exist. Deleting one end of a veth
   * deletes both. Equivalent to `ip link del dev NAME`.
   */
  async delete(nameOrIndex: string | number): Promise<boolean> {
    const body = typeof nameOrIndex === 'number' ? msg({ index: nameOrIndex }, {}) : msg({}, { ifname: validateIfName(nameOrIndex) });
    try {
      await this.h.request(RTM_DELLINK, body, 0, { what: `deleting link ${nameOrIndex}`, context: { link: String(nameOrIndex) } });
      return true;
    } catch (e) {
      if (isErrno(e, 'ENODEV')) return false;
      throw e;
    }
  }

  /** Equivalent to `ip link set dev NAME up` (or `down`). */
  async setUp(dev: string | number, up = true): Promise<void> {
    await this.setLink(dev, {}, up, `setting link ${dev} ${up ? 'up' : 'down'}`);
  }

  /** Equivalent to `ip link set dev NAME mtu MTU`. */
  async setMtu(dev: string | number, mtu: number): Promise<void> {
    validateInt(mtu, 'mtu', 68, 65535);
    await this.setLink(dev, { mtu }, undefined, `setting the MTU of ${dev} to ${mtu}`);
  }

  /** Equivalent to `ip link set dev NAME address MAC`. */
  async setMac(dev: string | number, mac: string): Promise<void> {
    await this.setLink(dev, { address: macToBytes(mac) }, undefined, `setting the MAC of ${dev} to ${mac}`);
  }

  /** Equivalent to `ip link set dev NAME master BRIDGE` (`nomaster` when null). */
  async setMaster(dev: string | number, master: string | number | null): Promise<void> {
    const index = master === null ? 0 : await this.indexOf(master);
    await this.setLink(dev, { master: index }, undefined, `setting the master of ${dev} to ${master ?? 'none'}`);
  }

  /**
   * Hairpin mode of a bridge port: frames may leave through the port they came in by, so a
   * pod reaches itself through a Service VIP (kubelet's hairpin-veth). Equivalent to
   * `bridge link set dev NAME hairpin on` (or `off`).
   */
  async setHairpin(dev: string | number, on: boolean): Promise<void> {
    const index = await this.indexOf(dev);
    await this.h.request(RTM_SETLINK, [encodeHairpin(index, on)], 0, { what: `setting hairpin ${on ? 'on' : 'off'} on bridge port ${dev}`, context: { link: String(dev) } });
  }

  /** Equivalent to `ip link set dev OLD name NEW` (the link must be down). */
  async rename(dev: string | number, newName: string): Promise<void> {
    validateIfName(newName, 'new interface name');
    const index = await this.indexOf(dev);
    await this.setLink(index, { ifname: newName }, undefined, `renaming link ${dev} to ${newName}`);
  }

  /** Moves a link into another namespace. Equivalent to `ip link set dev NAME netns NS`. */
  async setNetns(dev: string | number, netns: NetNS): Promise<void> {
    await this.setLink(dev, { netNsFd: netns.fd }, undefined, `moving link ${dev} to netns ${netns.label}`);
  }

  /** One RTM_NEWLINK (set) on an existing link: attributes plus optionally IFF_UP. */
  private async setLink(dev: string | number, attrs: ifla.LinkAttrs, up: boolean | undefined, what: string): Promise<void> {
    const data: rt.Link = {};
    if (typeof dev === 'number') data.index = dev;
    else attrs = { ...attrs, ifname: validateIfName(dev) };
    if (up !== undefined) {
      data.flags = up ? { up: true } : {};
      data.change = { up: true };
    }
    try {
      await this.h.request(RTM_NEWLINK, msg(data, attrs), 0, { what, context: { link: String(dev) } });
    } catch (e) {
      if (isErrno(e, 'ENODEV')) {
        throw new PodnetError(ErrorCodes.LINK_NOT_FOUND, `${what}: link ${dev} does not exist in netns ${this.h.label}`, { netns: this.h.label, link: String(dev) }, { cause: e, errno: 'ENODEV' });
      }
      throw e;
    }
  }

  /** Equivalent to `ip tuntap add dev NAME mode tun` (+ mtu / up through netlink). */
  private async addTun(spec: TunSpec): Promise<Link> {
    if (await this.get(spec.name)) {
      throw new PodnetError(ErrorCodes.LINK_EXISTS, `link ${spec.name} already exists`, { netns: this.h.label, link: spec.name });
    }
    const open = () => native().openTun(spec.name, true);
    const ns = this.h.netns;
    const { fd } = nativeCall('creating tun device', { link: spec.name, netns: this.h.label }, () => (ns ? ns.run(open) : open()));
    closeSync(fd);
    const link = await this.require(spec.name);
    const { kind: _k, name: _n, ...rest } = spec;
    return this.converge(link, { ...rest, kind: 'tun', name: spec.name }, {});
  }
}

/**
 * The ifinfomsg + attributes that create `spec` in one RTM_NEWLINK (pure; indexes of the
 * master bridge and of a vxlan's underlay device are resolved by the caller).
 */
export function encodeLinkAdd(
  spec: Exclude<LinkSpec, TunSpec>,
  resolved: { masterIndex?: number | undefined; devIndex?: number | undefined } = {},
): { data: rt.Link; attrs: ifla.LinkAttrs } {
  const data: rt.Link = {};
  if (spec.up !== undefined) {
    data.flags = spec.up ? { up: true } : {};
    data.change = { up: true };
  }
  const attrs: ifla.LinkAttrs = { ifname: spec.name };
  if (spec.mtu !== undefined) attrs.mtu = spec.mtu;
  if (spec.mac !== undefined) attrs.address = macToBytes(spec.mac);
  if (resolved.masterIndex !== undefined) attrs.master = resolved.masterIndex;
  attrs.linkinfo = linkInfoFor(spec, resolved.devIndex);
  return { data, attrs };
}

function linkInfoFor(spec: Exclude<LinkSpec, TunSpec>, devIndex: number | undefined): Buffer {
  switch (spec.kind) {
    case 'veth': {
      const p = spec.peer;
      const peerAttrs: ifla.LinkAttrs = { ifname: p.name };
      if (p.netns) peerAttrs.netNsFd = p.netns.fd;
      if (p.mac !== undefined) peerAttrs.address = macToBytes(p.mac, 'peer mac');
      const mtu = p.mtu ?? spec.mtu;
      if (mtu !== undefined) peerAttrs.mtu = mtu;
      return linkInfo('veth', vethInfoData({}, peerAttrs));
    }
    case 'vxlan': {
      const v: ifla.Vxlan = {
        id: spec.vni,
        port: u16be(spec.port ?? VXLAN_DEFAULT_PORT),
        learning: spec.learning ? 1 : 0,
      };
      if (spec.local !== undefined) {
        if (familyOf(spec.local) === 4) v.local = ipToBytes(spec.local);
        else v.local6 = ipToBytes(spec.local);
      }
      if (devIndex !== undefined) v.link = devIndex;
      return linkInfo('vxlan', vxlanInfoData(v));
    }
    case 'bridge':
    case 'dummy':
      return linkInfo(spec.kind);
  }
}

function validateSpec(spec: LinkSpec): void {
  validateIfName(spec.name);
  if (spec.mtu !== undefined) validateInt(spec.mtu, 'mtu', 68, 65535);
  if (spec.master) validateIfName(spec.master, 'master');
  if (spec.kind === 'veth') {
    validateIfName(spec.peer.name, 'peer name');
    if (spec.peer.mtu !== undefined) validateInt(spec.peer.mtu, 'peer mtu', 68, 65535);
    if (spec.peer.index !== undefined) validateInt(spec.peer.index, 'peer index', 1, 0x7fffffff);
  }
  if (spec.kind === 'vxlan') {
    validateInt(spec.vni, 'vni', 0, 0xffffff);
    if (spec.port !== undefined) validateInt(spec.port, 'port', 1, 65535);
    if (spec.dev !== undefined) validateIfName(spec.dev, 'dev');
  }
}

/** Builds the body (ifinfomsg + attributes) of a link message. */
export function msg(data: rt.Link, attrs: ifla.LinkAttrs): Uint8Array[] {
  const s = new AttrStream();
  rt.formatLinkMessage({ kind: 'link', data, attrs }, s);
  return s.bufs;
}

/** The RTM_SETLINK payload of `bridge link set dev INDEX hairpin on|off` (pure; exported for unit tests). */
export function encodeHairpin(index: number, on: boolean): Buffer {
  const b = Buffer.alloc(16 + 12);
  b.writeUInt8(AF_BRIDGE, 0);
  b.writeInt32LE(index, 4);
  // IFLA_PROTINFO (nested) { IFLA_BRPORT_MODE: u8 }
  b.writeUInt16LE(12, 16);
  b.writeUInt16LE(IFLA_PROTINFO | NLA_F_NESTED, 18);
  b.writeUInt16LE(5, 20);
  b.writeUInt16LE(IFLA_BRPORT_MODE, 22);
  b.writeUInt8(on ? 1 : 0, 24);
  return b;
}

/** Decodes an RTM_NEWLINK payload into a Link. Exported for unit tests. */
export function parseLink(data: Buffer): Link {
  const m = rt.parseLinkMessage(data);
  const a = m.attrs;
  const info = a.linkinfo ? ifla.parseInfo(a.linkinfo) : undefined;
  const common: LinkCommon = {
    index: m.data.index ?? 0,
    name: a.ifname ?? '',
    mtu: a.mtu ?? 0,
    up: !!m.data.flags?.up,
    operState: OPER_STATES[a.operstate ?? 0] ?? 'unknown',
    mac: macFromBytes(a.address),
    masterIndex: a.master || undefined,
  };
  switch (info?.kind) {
    case 'veth':
      return { ...common, kind: 'veth', peerIndex: readU32(a.link), peerNetnsId: a.linkNetnsid };
    case 'bridge':
      return { ...common, kind: 'bridge' };
    case 'dummy':
      return { ...common, kind: 'dummy' };
    case 'tun':
      return { ...common, kind: 'tun' };
    case 'vxlan': {
      const v = info.data ? ifla.parseVxlan(info.data) : {};
      const local = v.local ? ipFromBytes(v.local) : v.local6 ? ipFromBytes(v.local6) : undefined;
      return {
        ...common,
        kind: 'vxlan',
        vni: v.id ?? 0,
        port: v.port && v.port.length >= 2 ? v.port.readUInt16BE(0) : VXLAN_DEFAULT_PORT,
        local,
        learning: !!v.learning,
        devIndex: v.link || undefined,
      };
    }
    default:
      return { ...common, kind: 'device', driver: info?.kind };
  }
}
