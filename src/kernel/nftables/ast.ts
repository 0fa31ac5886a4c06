/**
 * The nftables objects podnet programs, as data: tables, chains, rules made of statements,
 * named sets / maps and their elements. This is the contract between the proxy's planner
 * (src/proxy/nftables/, pure: builds these) and the executor (src/kernel/nftables/, encodes
 * them as nf_tables netlink messages in one batch). `render.ts` prints them in `nft` syntax
 * — the same text `nft list table ip podnet` shows — for golden tests, logs and humans.
 *
 * Only the shapes podnet needs exist; each statement's comment gives its nft syntax.
 * Values are strings in nft's notation ("10.96.0.10", "fd00:10:96::a", "10.244.0.0/16",
 * "tcp", "80", "0x4000"); their type follows from the expression they are compared with
 * or the set's key type.
 */

export type NftFamily = 'ip' | 'ip6';

/**
 * Set / map key and data types (nft's type names). `integer`: a 32-bit unsigned number held
 * in network byte order — the key of a map looked up with `numgen random mod N` (the encoder
 * converts the numgen result with `byteorder hton`, as nft does); values "0".."4294967295",
 * interval elements "0-6553".
 */
export type NftType = 'ipv4_addr' | 'ipv6_addr' | 'inet_proto' | 'inet_service' | 'mark' | 'integer';

export type NftHook = 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting';

export type NftVerdict =
  | { kind: 'accept' }
  | { kind: 'drop' }
  | { kind: 'return' }
  | { kind: 'continue' }
  /** `jump <chain>` */
  | { kind: 'jump'; chain: string }
  /** `goto <chain>` */
  | { kind: 'goto'; chain: string };

/** What a statement loads (the left side of a match, the key of a lookup). */
export type NftExpr =
  /** `ip saddr`, `ip daddr`, `ip6 saddr`, `ip6 daddr` (network header). */
  | { kind: 'payload'; field: 'ip saddr' | 'ip daddr' | 'ip6 saddr' | 'ip6 daddr' }
  /** `th dport`, `th sport`: the transport header's ports (TCP, UDP, SCTP alike). */
  | { kind: 'payload'; field: 'th dport' | 'th sport' }
  /** `meta l4proto`, `meta mark`. */
  | { kind: 'meta'; key: 'l4proto' | 'mark' }
  /** `ct state` (compared with a list of states: "new", "established", "related", "invalid"). */
  | { kind: 'ct'; key: 'state' }
  /**
   * `fib daddr type` / `fib saddr type` (compared with "local"): the address type of the
   * destination / source address (NFTA_FIB_F_DADDR / NFTA_FIB_F_SADDR, result ADDRTYPE).
   */
  | { kind: 'fib'; what: 'daddr type' | 'saddr type' }
  /** `numgen random mod <mod> [offset <offset>]` (values offset..offset+mod-1; offset default 0). */
  | { kind: 'numgen'; mod: number; offset?: number }
  /**
   * A constant, inside a concatenation (`ip saddr . 10.244.1.5 . 8080`); `type` says how to encode it.
   * Only in `update @set { ... }` keys: nft 1.0.6 cannot parse constants in a lookup's key and
   * lists a kernel-made one as `ip saddr . 0xaf40105 [invalid type] . ...` (measured), so the
   * planner never puts one in a `lookup`.
   */
  | { kind: 'const'; type: NftType; value: string }
  /** `a . b . c` */
  | { kind: 'concat'; parts: NftExpr[] };

export type NftStmt =
  /**
   * `<left> <value>` / `<left> != <value>`; value is one value, a prefix ("10.244.0.0/16",
   * for addresses), or for `ct state` a comma list ("established,related").
   */
  | { kind: 'match'; left: NftExpr; op: '==' | '!='; value: string }
  /** `<left> @<set>` / `<left> != @<set>`: membership in a named set. */
  | { kind: 'lookup'; left: NftExpr; set: string; op?: '==' | '!=' }
  /** `<key> vmap @<map>`: jump/goto to the verdict the named verdict map has for the key. */
  | { kind: 'vmap'; key: NftExpr; map: string }
  /** `counter` */
  | { kind: 'counter' }
  /** `meta mark set meta mark | <value>` */
  | { kind: 'mark-or'; value: number }
  /** `meta mark set meta mark ^ <value>` */
  | { kind: 'mark-xor'; value: number }
  /**
   * `meta mark & <mask> == <value>` / `!=` (nft prints both as 0x%08x): a test of mark bits
   * (meta load, bitwise and with mask, cmp). E.g. masquerading's
   * `meta mark & 0x00004000 == 0x00000000 return`.
   */
  | { kind: 'mark-test'; mask: number; op: '==' | '!='; value: number }
  /** `update @<set> { <key> }` (the set has flags dynamic,timeout; its timeout applies). */
  | { kind: 'set-update'; set: string; key: NftExpr }
  /** `dnat to <addr>:<port>` (`dnat to [<v6>]:<port>` in ip6); needs a prior l4proto match. */
  | { kind: 'dnat'; addr: string; port: number }
  /**
   * `dnat ip addr . port to <key> map @<map>` (ip6: `dnat ip6 addr . port to ...`; nft 1.0.6
   * lists it as `dnat ip to <key> map @<map>`): DNAT to the address and port the data map
   * gives for the key (lookup into registers, then nat with REG_ADDR_MIN and REG_PROTO_MIN
   * the next register). The map's data is `<addr type> . inet_service`. Needs a prior l4proto
   * match, like dnat. Changing the map's elements needs no rule change (and no validation).
   */
  | { kind: 'dnat-map'; key: NftExpr; map: string }
  /** `masquerade fully-random` */
  | { kind: 'masquerade'; fullyRandom: boolean }
  /** `reject` (ICMP port unreachable / ICMPv6 port unreachable) or `reject with tcp reset`. */
  | { kind: 'reject'; with: 'icmp-port-unreachable' | 'tcp-reset' }
  /** A verdict ends the rule. */
  | { kind: 'verdict'; verdict: NftVerdict };

export interface NftRule {
  stmts: NftStmt[];
  /** Shown as `comment "..."` (NFTA_RULE_USERDATA, as nft stores it); at most 128 bytes. */
  comment?: string;
}

export interface NftBaseChain {
  type: 'filter' | 'nat';
  hook: NftHook;
  /** Numeric priority (dstnat = -100, srcnat = 100, filter = 0; e.g. -110 before DNAT). */
  priority: number;
  policy?: 'accept' | 'drop';
}

export interface NftChain {
  name: string;
  /** Present for base chains (hooked into the stack). */
  base?: NftBaseChain;
  rules: NftRule[];
  comment?: string;
}

export interface NftSet {
  name: string;
  /** One type, or several for a concatenation key (`ipv4_addr . inet_proto . inet_service`). */
  key: NftType[];
  /** Maps only: `verdict` for verdict maps, or a data type, or several for concatenated data (`ipv4_addr . inet_service`). */
  data?: 'verdict' | NftType | NftType[];
  /** Prefix / range elements (NFT_SET_INTERVAL). Not with concatenated keys. */
  interval?: boolean;
  /**
   * A map keyed by `numgen random mod <mod>` (key ['integer'], interval) with data
   * `<addr> . inet_service`: written with nft's typeof user data, so `nft list` shows
   * `typeof numgen random mod 65536 : ip daddr . tcp dport` (proto: the dport's protocol).
   * Only for listing; the kernel sees key integer, data addr . inet_service.
   */
  numgenTypeof?: { mod: number; proto: 'tcp' | 'udp' | 'sctp' };
  /** Elements added from the packet path (`update @set`), each expiring after timeoutSeconds. */
  dynamic?: boolean;
  timeoutSeconds?: number;
  /**
   * Maximum number of elements (NFTA_SET_DESC_SIZE; nft prints `size N`). Dynamic sets need
   * one: the kernel adds no element from the packet path beyond it (nft gives 65535).
   */
  size?: number;
  comment?: string;
}

export interface NftElement {
  /** One value per key part. */
  key: string[];
  /** Verdict maps: the verdict; data maps: the value (one value per part for concatenated data). */
  verdict?: NftVerdict;
  data?: string | string[];
  comment?: string;
}

/** A whole table as podnet wants it: what a full sync converges to. */
export interface NftTable {
  family: NftFamily;
  name: string;
  sets: NftSet[];
  /** Elements of each set (static sets and maps; not the dynamic ones). */
  elements: Map<string, NftElement[]>;
  chains: NftChain[];
}
