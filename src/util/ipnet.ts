/**
 * Address math for IPv4 and IPv6: parsing with clear errors, CIDR containment, the n-th
 * address of a prefix, subnet carving. Validation uses Node's strict `net.isIP`; the math
 * is ip6addr's. Addresses are handled as canonical strings ("10.244.1.2", "fd00:10:244::2").
 */
import { isIP } from 'node:net';
import ip6addr from 'ip6addr';
import type { Addr as Ip6Addr, CIDR as Ip6Cidr } from 'ip6addr';
import { ErrorCodes, PodnetError } from './errors.js';

export type Family = 4 | 6;

/** Validates an IP address and returns it in canonical form. */
export function parseIP(text: unknown, field = 'ip'): string {
  if (typeof text !== 'string' || isIP(text) === 0) {
    throw new PodnetError(ErrorCodes.INVALID_IP, `${field} ${JSON.stringify(text)} is not an IPv4 or IPv6 address`, { field });
  }
  return canonical(text);
}

export function familyOf(ip: string): Family {
  const f = isIP(ip);
  if (f === 0) throw new PodnetError(ErrorCodes.INVALID_IP, `${JSON.stringify(ip)} is not an IP address`, {});
  return f as Family;
}

function canonical(ip: string): string {
  const f = isIP(ip);
  if (f === 4) return ip.split('.').map((o) => String(Number(o))).join('.');
  return ip6addr.parse(ip).toString({ format: 'v6', zeroElide: true, zeroPad: false });
}

/** Bytes of an address: 4 for IPv4, 16 for IPv6 (network order). */
export function ipToBytes(ip: string): Buffer {
  const f = isIP(ip);
  if (f === 4) return Buffer.from(ip.split('.').map(Number));
  if (f === 6) return ip6addr.parse(ip).toBuffer();
  throw new PodnetError(ErrorCodes.INVALID_IP, `${JSON.stringify(ip)} is not an IP address`, {});
}

/** The address held in 4 or 16 bytes. */
export function ipFromBytes(buf: Uint8Array): string {
  if (buf.length === 4) return Array.from(buf).join('.');
  if (buf.length === 16) {
    const words: string[] = [];
    for (let i = 0; i < 16; i += 2) words.push(((buf[i]! << 8) | buf[i + 1]!).toString(16));
    return canonical(words.join(':'));
  }
  throw new PodnetError(ErrorCodes.INVALID_IP, `an address must be 4 or 16 bytes, got ${buf.length}`, {});
}

/** A parsed prefix such as 10.244.0.0/16. Immutable. */
export class Cidr {
  readonly family: Family;
  /** Network address (host bits cleared). */
  readonly network: string;
  readonly prefix: number;
  private readonly c: Ip6Cidr;

  private constructor(family: Family, network: string, prefix: number, c: Ip6Cidr) {
    this.family = family;
    this.network = network;
    this.prefix = prefix;
    this.c = c;
  }

  /**
   * Parses "ADDR/LEN". With `strict` (the default) the host bits must be zero, as for a
   * cluster or service CIDR; use parseInterfaceAddress for "10.244.1.2/24".
   */
  static parse(text: unknown, field = 'cidr', opts: { strict?: boolean } = {}): Cidr {
    const bad = (reason: string) =>
      new PodnetError(ErrorCodes.INVALID_CIDR, `${field} ${JSON.stringify(text)} ${reason}`, { field });
    if (typeof text !== 'string') throw bad('must be a string like 10.244.0.0/16');
    const m = /^([^/]+)\/(\d{1,3})$/.exec(text);
    if (!m) throw bad('is not a prefix like 10.244.0.0/16');
    const addr = m[1]!;
    const family = isIP(addr) as 0 | Family;
    if (family === 0) throw bad('does not start with an IPv4 or IPv6 address');
    const prefix = Number(m[2]);
    const max = family === 4 ? 32 : 128;
    if (prefix > max) throw bad(`has a prefix length over ${max}`);
    const c = ip6addr.createCIDR(canonical(addr), prefix);
    const network = canonicalOf(c.address(), family);
    if (opts.strict !== false && network !== canonical(addr)) {
      throw bad(`has host bits set (did you mean ${network}/${prefix}?)`);
    }
    return new Cidr(family, network, prefix, c);
  }

  /** Number of addresses (as a bigint: an IPv6 /64 does not fit a number). */
  get size(): bigint {
    return 1n << BigInt((this.family === 4 ? 32 : 128) - this.prefix);
  }

  contains(ip: string): boolean {
    if (isIP(ip) !== this.family) return false;
    return this.c.contains(canonical(ip));
  }

  /** True when `other` lies entirely inside this prefix. */
  covers(other: Cidr): boolean {
    return other.family === this.family && other.prefix >= this.prefix && this.contains(other.network);
  }

  overlaps(other: Cidr): boolean {
    return this.covers(other) || other.covers(this);
  }

  /** The n-th address from the network address (0 = network address). */
  nth(n: number | bigint): string {
    const big = BigInt(n);
    if (big < 0n || big >= this.size) {
      throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `offset ${big} is outside ${this.toString()}`, { cidr: this.toString() });
    }
    return bigToIp(ipToBig(this.network) + big, this.family);
  }

  /** Offset of `ip` from the network address. */
  offsetOf(ip: string): bigint {
    if (!this.contains(ip)) {
      throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `${ip} is not inside ${this.toString()}`, { cidr: this.toString() });
    }
    return ipToBig(ip) - ipToBig(this.network);
  }

  /** Last address of the prefix (the broadcast address for IPv4). */
  get last(): string {
    return this.nth(this.size - 1n);
  }

  /**
   * The i-th subnet of length `prefix` inside this prefix (i = 0 is the first).
   * Carving a /16 into /24s: cidr.subnet(24, 5) = 10.244.5.0/24.
   */
  subnet(prefix: number, index: number | bigint): Cidr {
    const max = this.family === 4 ? 32 : 128;
    if (!Number.isInteger(prefix) || prefix < this.prefix || prefix > max) {
      throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `subnet length /${prefix} does not fit inside ${this.toString()}`, { cidr: this.toString() });
    }
    const count = this.subnetCount(prefix);
    const i = BigInt(index);
    if (i < 0n || i >= count) {
      throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `subnet index ${i} is outside 0..${count - 1n} for /${prefix} in ${this.toString()}`, { cidr: this.toString() });
    }
    const base = ipToBig(this.network) + (i << BigInt(max - prefix));
    return Cidr.parse(`${bigToIp(base, this.family)}/${prefix}`);
  }

  /** How many subnets of length `prefix` fit inside this prefix. */
  subnetCount(prefix: number): bigint {
    return 1n << BigInt(prefix - this.prefix);
  }

  equals(other: Cidr): boolean {
    return this.family === other.family && this.prefix === other.prefix && this.network === other.network;
  }

  toString(): string {
    return `${this.network}/${this.prefix}`;
  }

  toJSON(): string {
    return this.toString();
  }
}

/** An interface address: an IP plus the prefix length of its subnet, e.g. 10.244.1.2/24. */
export interface InterfaceAddress {
  ip: string;
  prefix: number;
  family: Family;
}

export function parseInterfaceAddress(text: unknown, field = 'address'): InterfaceAddress {
  const bad = (reason: string) =>
    new PodnetError(ErrorCodes.INVALID_CIDR, `${field} ${JSON.stringify(text)} ${reason}`, { field });
  if (typeof text !== 'string') throw bad('must be a string like 10.244.1.2/24');
  const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(text);
  if (!m) throw bad('is not an address like 10.244.1.2/24');
  const family = isIP(m[1]!) as 0 | Family;
  if (family === 0) throw bad('does not start with an IPv4 or IPv6 address');
  const max = family === 4 ? 32 : 128;
  const prefix = m[2] === undefined ? max : Number(m[2]);
  if (prefix > max) throw bad(`has a prefix length over ${max}`);
  return { ip: canonical(m[1]!), prefix, family };
}

export function formatInterfaceAddress(a: InterfaceAddress): string {
  return `${a.ip}/${a.prefix}`;
}

function canonicalOf(addr: Ip6Addr, family: Family): string {
  return family === 4 ? addr.toString({ format: 'v4' }) : addr.toString({ format: 'v6', zeroElide: true, zeroPad: false });
}

export function ipToBig(ip: string): bigint {
  const bytes = ipToBytes(ip);
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

export function bigToIp(v: bigint, family: Family): string {
  const len = family === 4 ? 4 : 16;
  const out = Buffer.alloc(len);
  for (let i = len - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return ipFromBytes(out);
}

/** Compares two addresses numerically (IPv4 sorts before IPv6). */
export function compareIP(a: string, b: string): number {
  const fa = familyOf(a);
  const fb = familyOf(b);
  if (fa !== fb) return fa - fb;
  const x = ipToBig(a);
  const y = ipToBig(b);
  return x < y ? -1 : x > y ? 1 : 0;
}
