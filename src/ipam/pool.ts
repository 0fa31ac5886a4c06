/**
 * The pod addresses of one node subnet, one family (pure, in memory). Skips the network
 * address (offset 0), the gateway (offset 1: the bridge's address) and, for IPv4, the
 * broadcast address. Hands out addresses round-robin from the last one handed out, as
 * CNI host-local does, so a released address is not reused until the subnet wraps.
 */
import { Cidr } from '../util/ipnet.js';
import type { Family } from '../util/ipnet.js';
import { ErrorCodes, PodnetError } from '../util/errors.js';
import { validatePrefixLength } from './subnets.js';

export class AddressPool {
  readonly subnet: Cidr;
  readonly family: Family;
  /** The gateway (bridge) address: the first usable address, e.g. 10.244.1.1. */
  readonly gateway: string;
  /** How many pod addresses the subnet holds. */
  readonly capacity: bigint;
  private readonly first = 2n;
  private readonly lastUsable: bigint;
  /** Offset from the network address → owner id. */
  private readonly used = new Map<bigint, string>();
  private cursor: bigint | undefined;

  /** `subnet` must be at most /30 (IPv4) or /126 (IPv6); PODNET_INVALID_ARGUMENT otherwise. */
  constructor(subnet: Cidr, field = 'subnet') {
    validatePrefixLength(subnet.family, subnet.prefix, `${field} ${subnet.toString()} prefix length`);
    this.subnet = subnet;
    this.family = subnet.family;
    this.gateway = subnet.nth(1);
    this.lastUsable = subnet.family === 4 ? subnet.size - 2n : subnet.size - 1n;
    this.capacity = this.lastUsable - this.first + 1n;
  }

  get inUse(): number {
    return this.used.size;
  }

  /** The owner of `ip`, if it is held. */
  holder(ip: string): string | undefined {
    const off = this.usableOffset(ip);
    return off === undefined ? undefined : this.used.get(off);
  }

  /**
   * Marks `ip` as held by `ownerId` (rebuilding from a store). Throws PODNET_IPAM_CORRUPT
   * when it is not a pod address of this subnet or is already held by another owner.
   */
  hold(ip: string, ownerId: string): void {
    const off = this.usableOffset(ip);
    if (off === undefined) {
      throw new PodnetError(ErrorCodes.IPAM_CORRUPT, `the IPAM state gives ${ownerId} the address ${ip}, which is not a pod address of ${this.subnet.toString()}`, {
        owner: ownerId,
        ip,
        subnet: this.subnet.toString(),
      });
    }
    const other = this.used.get(off);
    if (other !== undefined && other !== ownerId) {
      throw new PodnetError(ErrorCodes.IPAM_CORRUPT, `the IPAM state gives ${ip} to both ${other} and ${ownerId}`, { owner: ownerId, ip, subnet: this.subnet.toString() });
    }
    this.used.set(off, ownerId);
  }

  /** Moves the round-robin cursor to `ip` (ignored when it is not a pod address here). */
  setCursor(ip: string): void {
    const off = this.usableOffset(ip);
    if (off !== undefined) this.cursor = off;
  }

  /** The cursor, to restore after an aborted multi-family allocation. */
  saveCursor(): bigint | undefined {
    return this.cursor;
  }

  restoreCursor(c: bigint | undefined): void {
    this.cursor = c;
  }

  /**
   * Takes the next free address after the cursor for `ownerId` and returns it.
   * Throws PODNET_IPAM_EXHAUSTED naming the subnet when none is free.
   */
  take(ownerId: string): string {
    if (BigInt(this.used.size) >= this.capacity) {
      throw new PodnetError(
        ErrorCodes.IPAM_EXHAUSTED,
        `no free IPv${this.family} address left in node subnet ${this.subnet.toString()} for ${ownerId}: all ${this.capacity} pod addresses are in use`,
        { subnet: this.subnet.toString(), family: this.family, capacity: Number(this.capacity), owner: ownerId },
      );
    }
    let off = this.cursor === undefined || this.cursor >= this.lastUsable ? this.first : this.cursor + 1n;
    // At most inUse + 1 steps: every step that fails lands on a distinct held offset.
    while (this.used.has(off)) off = off >= this.lastUsable ? this.first : off + 1n;
    this.used.set(off, ownerId);
    this.cursor = off;
    return this.subnet.nth(off);
  }

  /** Frees `ip` if `ownerId` holds it. */
  free(ip: string, ownerId: string): void {
    const off = this.usableOffset(ip);
    if (off !== undefined && this.used.get(off) === ownerId) this.used.delete(off);
  }

  private usableOffset(ip: string): bigint | undefined {
    if (!this.subnet.contains(ip)) return undefined;
    const off = this.subnet.offsetOf(ip);
    return off >= this.first && off <= this.lastUsable ? off : undefined;
  }
}
