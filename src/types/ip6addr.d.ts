// Type declarations for ip6addr 0.2 (the package ships none). Only what podnet uses.
declare module 'ip6addr' {
  export interface Addr {
    kind(): 'ipv4' | 'ipv6';
    toString(opts?: { format?: 'auto' | 'v4' | 'v4-mapped' | 'v6'; zeroElide?: boolean; zeroPad?: boolean }): string;
    toBuffer(buf?: Buffer): Buffer;
    toLong(): number;
    offset(n: number): Addr | null;
    and(other: Addr | string): Addr;
    or(other: Addr | string): Addr;
    not(): Addr;
    compare(other: Addr | string): number;
  }
  export interface CIDR {
    contains(addr: Addr | string): boolean;
    first(): Addr;
    last(): Addr;
    broadcast(): Addr;
    address(): Addr;
    prefixLength(format?: 'auto' | 'v4' | 'v6'): number;
    compare(other: CIDR | string): number;
    toString(opts?: { format?: 'auto' | 'v4' | 'v6' }): string;
  }
  export function parse(input: string | number | Addr): Addr;
  export function compare(a: Addr | string, b: Addr | string): number;
  export function createCIDR(addr: string | Addr, prefixLength?: number): CIDR;
  export function compareCIDR(a: CIDR | string, b: CIDR | string): number;
  const _default: {
    parse: typeof parse;
    compare: typeof compare;
    createCIDR: typeof createCIDR;
    compareCIDR: typeof compareCIDR;
  };
  export default _default;
}
