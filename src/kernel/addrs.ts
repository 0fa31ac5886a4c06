/**
 * Interface addresses (IPv4 and IPv6). Each method names its iproute2 equivalent.
 */
import { AttrStream, rt } from 'netlink';
import { ErrorCodes, PodnetError } from '../util/errors.js';
import { ipFromBytes, ipToBytes, parseInterfaceAddress } from '../util/ipnet.js';
import type { Family } from '../util/ipnet.js';
import { AF_INET, AF_INET6, familyToAf } from './attrs.js';
import type { LinkOps } from './links.js';
import { NLM_F, isErrno } from './netlink.js';
import type { NetlinkHandle } from './netlink.js';

const RTM_NEWADDR = 20;
const RTM_DELADDR = 21;
const RTM_GETADDR = 22;

export interface Addr {
  devIndex: number;
  ip: string;
  prefix: number;
  family: Family;
  /** 0 = global, 253 = link, 254 = host. */
  scope: number;
  label: string | undefined;
  /** IFA_F_* names that are set: permanent, nodad, tentative, dadfailed... */
  flags: string[];
}

export interface AddrOptions {
  /** IPv6: skip duplicate address detection (the address is usable at once). */
  nodad?: boolean;
  /** Do not create the prefix route for the address's subnet. */
  noprefixroute?: boolean;
}

export class AddrOps {
  constructor(
    private readonly h: NetlinkHandle,
    private readonly links: LinkOps,
  ) {}

  /** Addresses, optionally of one device / family. Equivalent to `ip addr show [dev D]`. */
  async list(filter: { dev?: string | number; family?: Family } = {}): Promise<Addr[]> {
    const devIndex = filter.dev === undefined ? undefined : await this.links.indexOf(filter.dev);
    const s = new AttrStream();
    rt.formatAddressMessage({ kind: 'address', data: { family: filter.family ? familyToAf(filter.family) : 0 }, attrs: {} }, s);
    const msgs = await this.h.dump(RTM_GETADDR, s.bufs, { what: 'listing addresses' });
    const out: Addr[] = [];
    for (const m of msgs) {
      const a = parseAddr(m.data);
      if (!a) continue;
      if (devIndex !== undefined && a.devIndex !== devIndex) continue;
      if (filter.family && a.family !== filter.family) continue;
      out.push(a);
    }
    return out;
  }

  /**
   * Adds `address` ("10.244.1.2/24") to `dev`; an existing identical address is kept.
   * Equivalent to `ip addr replace ADDR dev DEV [nodad] [noprefixroute]` (with `brd +` for IPv4).
   */
  async ensure(dev: string | number, address: string, opts: AddrOptions = {}): Promise<void> {
    await this.send(dev, address, opts, NLM_F.CREATE | NLM_F.REPLACE);
  }

  /**
   * Adds an address; PODNET_ADDR_EXISTS if `dev` already has it.
   * Equivalent to `ip addr add ADDR dev DEV`.
   */
  async add(dev: string | number, address: string, opts: AddrOptions = {}): Promise<void> {
    try {
      await this.send(dev, address, opts, NLM_F.CREATE | NLM_F.EXCL);
    } catch (e) {
      if (isErrno(e, 'EEXIST')) {
        throw new PodnetError(ErrorCodes.ADDR_EXISTS, `address ${address} already exists on ${dev}`, { netns: this.h.label, link: String(dev), address }, { cause: e, errno: 'EEXIST' });
      }
      throw e;
    }
  }

  /** Removes an address; false if it was not there. Equivalent to `ip addr del ADDR dev DEV`. */
  async delete(dev: string | number, address: string): Promise<boolean> {
    const a = parseInterfaceAddress(address);
    const index = await this.links.indexOf(dev);
    const s = new AttrStream();
    rt.formatAddressMessage(
      { kind: 'address', data: { family: familyToAf(a.family), prefixlen: a.prefix, index }, attrs: { local: ipToBytes(a.ip), address: ipToBytes(a.ip) } },
      s,
    );
    try {
      await this.h.request(RTM_DELADDR, s.bufs, 0, { what: `deleting address ${address} from ${dev}`, context: { link: String(dev), address } });
      return true;
    } catch (e) {
      if (isErrno(e, 'EADDRNOTAVAIL', 'ENOENT', 'ESRCH')) return false;
      throw e;
    }
  }

  private async send(dev: string | number, address: string, opts: AddrOptions, flags: number): Promise<void> {
    const a = parseInterfaceAddress(address);
    const index = await this.links.indexOf(dev);
    const bytes = ipToBytes(a.ip);
    const attrs: rt.AddressAttrs = { local: bytes, address: bytes };
    if (a.family === 4 && a.prefix < 31) attrs.broadcast = ipv4Broadcast(bytes, a.prefix);
    const fl: rt.AddressFlags = {};
    if (opts.nodad) fl.nodad = true;
    if (opts.noprefixroute) fl.noprefixroute = true;
    if (Object.keys(fl).length) attrs.flags = fl;
    const s = new AttrStream();
    rt.formatAddressMessage({ kind: 'address', data: { family: familyToAf(a.family), prefixlen: a.prefix, index }, attrs }, s);
    await this.h.request(RTM_NEWADDR, s.bufs, flags, { what: `adding address ${address} to ${dev}`, context: { link: String(dev), address } });
  }
}

/** Decodes an RTM_NEWADDR payload (undefined for families other than IPv4/IPv6). */
export function parseAddr(data: Buffer): Addr | undefined {
  const m = rt.parseAddressMessage(data);
  const fam = m.data.family === AF_INET ? 4 : m.data.family === AF_INET6 ? 6 : undefined;
  if (!fam) return undefined;
  const raw = m.attrs.local ?? m.attrs.address;
  if (!raw) return undefined;
  const flags = m.attrs.flags ?? m.data.flags ?? {};
  return {
    devIndex: m.data.index ?? 0,
    ip: ipFromBytes(raw),
    prefix: m.data.prefixlen ?? 0,
    family: fam,
    scope: m.data.scope ?? 0,
    label: m.attrs.label,
    flags: Object.entries(flags)
      .filter(([k, v]) => k !== '__unknown' && v === true)
      .map(([k]) => k),
  };
}

/** The all-ones host part of an IPv4 address (what `ip addr add ... brd +` sets). */
export function ipv4Broadcast(addr: Buffer, prefix: number): Buffer {
  const host = prefix === 0 ? 0xffffffff : (0xffffffff >>> prefix) >>> 0;
  const out = Buffer.alloc(4);
  out.writeUInt32BE((addr.readUInt32BE(0) | host) >>> 0);
  return out;
}
