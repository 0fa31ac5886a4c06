/**
 * The nftables mode's planner (pure): a ProxySnapshot → the objects podnet wants in table
 * `ip podnet` / `ip6 podnet` (planTable), and the transaction from what was installed to
 * that (planTransaction). The layout and its reasons are in README.md; in short (layout v2):
 *
 *   nat-prerouting / nat-output → services: `ip daddr . meta l4proto . th dport vmap @service-ips`
 *     and `... vmap @service-nodeports` → service-H / local-H / external-H, whose DNAT is
 *     `dnat ip addr . port to numgen random mod 65536 map @endpoints-H` (a data map per service port)
 *   filter-prerouting / filter-output: VIPs and NodePorts in the no-endpoint sets → reject-chain
 *   nat-postrouting → masquerading (hairpin set, packets marked 0x4000 by mark-for-masquerade)
 *
 * Chains, rules and verdict elements depend only on a service port's static shape (VIPs,
 * ports, policies, affinity on/off); its endpoints are data: elements of its endpoint maps,
 * of `hairpin` and of the no-endpoint sets. So an endpoint change is element ops only, which
 * the kernel commits without walking the chain graph (README "Kernel costs"). Services with
 * ClientIP affinity keep v1's endpoint chains and per-endpoint dynamic sets. No anonymous
 * set or map anywhere. A partial plan touches only the changed service ports: O(changed).
 */
import type { NftChain, NftElement, NftExpr, NftFamily, NftRule, NftSet, NftStmt, NftTable, NftType, NftVerdict } from '../../kernel/nftables/ast.js';
import type { NftOp, NftTransaction } from '../../kernel/nftables/ops.js';
import { portHash } from '../names.js';
import { usable } from '../snapshot.js';
import type { Family, ProxyEndpoint, ProxyNodeConfig, ProxyServicePort, ProxySnapshot } from '../types.js';
import { MASQUERADE_MARK } from '../types.js';
import { PMap } from './pmap.js';
import { nftAddr } from './render.js';

export const TABLE_NAME = 'podnet';

/** The fixed chains podnet's proxy owns in the table. */
export const CHAINS = {
  filterPrerouting: 'filter-prerouting',
  filterOutput: 'filter-output',
  natPrerouting: 'nat-prerouting',
  natOutput: 'nat-output',
  natPostrouting: 'nat-postrouting',
  services: 'services',
  masquerading: 'masquerading',
  markForMasquerade: 'mark-for-masquerade',
  reject: 'reject-chain',
} as const;

/** The shared verdict maps (their elements change only when a service port's static shape does). */
export const MAPS = {
  serviceIPs: 'service-ips',
  serviceNodePorts: 'service-nodeports',
} as const;

/** The shared data sets (plain lookups: their elements follow endpoints without validation). */
export const SETS = {
  noEndpointServices: 'no-endpoint-services',
  noEndpointNodePorts: 'no-endpoint-nodeports',
  hairpin: 'hairpin',
} as const;

/** The range `numgen random mod NUMGEN_MOD` gives: a service port's endpoint slot splits it. */
export const NUMGEN_MOD = 65536;

/**
 * Endpoint maps are shared: a service port's endpoints (and its local endpoints) are the
 * elements of one **slot** of an endpoint bucket map `endpoints-<proto>-<n>`, which holds
 * BUCKET_SLOTS slots. Slot s (of its protocol) is bucket ⌊s / BUCKET_SLOTS⌋, numgen values
 * from `(s mod BUCKET_SLOTS) × SLOT_STRIDE`: the rule reads `numgen random mod 65536
 * offset <that>`. The stride leaves a gap after each slot's 65,536 values, so the interval
 * end of one slot never meets the start of the next. (README "Choices": one map per
 * service port made a full load quadratic; one map for all made every bind walk it.)
 */
export const BUCKET_SLOTS = 64;
export const SLOT_STRIDE = 2 * NUMGEN_MOD;
export type SlotProto = 'tcp' | 'udp' | 'sctp';

/** The endpoint bucket map holding slot `slot` of protocol `proto`. */
export function bucketName(proto: SlotProto, slot: number): string {
  return `endpoints-${proto}-${Math.floor(slot / BUCKET_SLOTS)}`;
}

/** The first numgen value of a slot in its bucket. */
export function slotOffset(slot: number): number {
  return (slot % BUCKET_SLOTS) * SLOT_STRIDE;
}

const BUCKET_MAP = /^endpoints-(tcp|udp|sctp)-(\d+)$/;

/** The definition of an endpoint bucket map by name (undefined for other names). */
export function bucketSet(family: Family, name: string): NftSet | undefined {
  const m = BUCKET_MAP.exec(name);
  if (!m) return undefined;
  return {
    name,
    key: ['integer'],
    data: [family === 4 ? 'ipv4_addr' : 'ipv6_addr', 'inet_service'],
    interval: true,
    numgenTypeof: { mod: NUMGEN_MOD, proto: m[1] as SlotProto },
    comment: `${m[1]} service port endpoints, ${BUCKET_SLOTS} slots of ${SLOT_STRIDE} numgen values`,
  };
}

/** The node addresses NodePorts answer on (present when ProxyNodeConfig.nodeIPs is not empty). */
export const NODEPORT_IPS_SET = 'nodeport-ips';

/** Elements an affinity set may hold (nft's default for dynamic sets). */
export const AFFINITY_SET_SIZE = 65535;

/** Filter chains run before DNAT (dstnat = -100). */
export const FILTER_PRIORITY = -110;
export const DSTNAT_PRIORITY = -100;
export const SRCNAT_PRIORITY = 100;

/** Elements per add-elements op (keeps each netlink message moderate). */
const ELEMENT_CHUNK = 1000;

const FIXED_CHAINS: ReadonlySet<string> = new Set(Object.values(CHAINS));
const FIXED_SETS: ReadonlySet<string> = new Set([...Object.values(MAPS), ...Object.values(SETS), NODEPORT_IPS_SET]);
const MAP_NAMES: ReadonlySet<string> = new Set(Object.values(MAPS));
const PER_SERVICE_CHAIN = /^(service|local|external|endpoint)-[A-Z2-7]{8}-/;
// (endpoints-H / local-endpoints-H: per-service endpoint maps of earlier versions, still ours to delete)
const PER_SERVICE_MAP = /^(endpoints|local-endpoints)-[A-Z2-7]{8}-/;
const PER_SERVICE_SET = /^(affinity|endpoints|local-endpoints)-[A-Z2-7]{8}-/;

/** True for a chain name podnet's proxy owns (its fixed chains and per-service prefixes). */
export function isOwnedChain(name: string): boolean {
  return FIXED_CHAINS.has(name) || PER_SERVICE_CHAIN.test(name);
}

/** True for a set or map name podnet's proxy owns. */
export function isOwnedSet(name: string): boolean {
  return FIXED_SETS.has(name) || PER_SERVICE_SET.test(name) || BUCKET_MAP.test(name);
}

/** True for the owned names that are maps (`flush map`, not `flush set`): the verdict maps and the endpoint maps. */
export function isOwnedMap(name: string): boolean {
  return MAP_NAMES.has(name) || PER_SERVICE_MAP.test(name) || BUCKET_MAP.test(name);
}

// ---------------------------------------------------------------- the planned state

/** One entry a service port wants in a shared map. */
export interface MapElement {
  readonly map: string;
  readonly element: NftElement;
  /** Its claim key (`map|key . parts`), built once: a full sync looks each up several times. */
  readonly claim: string;
}

/** Everything one service port contributes to the table. */
export interface ServiceObjects {
  readonly key: string;
  /** The service port these were planned from (a full re-plan reuses them while it is the same object). */
  readonly port: ProxyServicePort;
  /** Its chains, in table order: service-, local-, external-, then endpoint- chains. */
  readonly chains: readonly NftChain[];
  /** Its own sets: with ClientIP affinity one dynamic set per endpoint (else none). */
  readonly sets: readonly NftSet[];
  /** Its elements in endpoint bucket maps (its slots' ranges), by bucket name. Built when read and held weakly (PlannedPort). */
  readonly setElements: ReadonlyMap<string, readonly NftElement[]>;
  /** The slots it holds (slot ids: `<proto>|<port key>|cluster` / `|local`). */
  readonly slotIds: readonly string[];
  /** What it wants in the shared maps (the first service port by key owns a contested key). Built when read and held weakly, like setElements. */
  readonly elements: readonly MapElement[];
}

/** The objects shared by all Services: a function of the family and the node config. */
export interface BaseObjects {
  readonly chains: readonly NftChain[];
  readonly sets: readonly NftSet[];
  /** Static elements of the base sets (nodeport-ips). */
  readonly elements: ReadonlyMap<string, readonly NftElement[]>;
}

const claimKey = (map: string, key: readonly string[]): string => `${map}|${key.join(' . ')}`;

/** Who claims a shared-map key: one service port key, or several (sorted). */
export type Claim = string | readonly string[];
const claimants = (c: Claim | undefined): readonly string[] => (c === undefined ? [] : typeof c === 'string' ? [c] : c);
const ownerOf = (c: Claim | undefined): string | undefined => (c === undefined || typeof c === 'string' ? c : c[0]);
const asClaim = (list: readonly string[]): Claim | undefined => (list.length === 0 ? undefined : list.length === 1 ? list[0] : list);

/** Which endpoint slots are held, and which bucket maps exist (part of the planned state). */
export interface SlotState {
  /** Slot id (`<proto>|<port key>|cluster|local`) → slot number (per protocol). */
  readonly slots: PMap<number>;
  /** `<proto>:<slot>` → slot id. */
  readonly owners: PMap<string>;
  /** Per protocol: every slot below this is held (where a search for a free one starts). */
  readonly low: Readonly<Record<string, number>>;
  /** Bucket maps that exist (created when first used; removed only by a full sync). */
  readonly buckets: PMap<true>;
}

const EMPTY_SLOTS: SlotState = { slots: PMap.of(), owners: PMap.of(), low: {}, buckets: PMap.of() };
const slotProto = (id: string): SlotProto => id.slice(0, id.indexOf('|')) as SlotProto;

/**
 * Hands out endpoint slots while a plan is made: a slot id keeps the slot it has in
 * `base`; a new one takes its slot of `prefer` (the previous plan's) when free, else the
 * lowest free slot of its protocol. Releases are applied by the caller after planning, so
 * a slot freed in one transaction is reused only by a later one.
 */
class SlotAllocator {
  readonly #slots = new Map<string, number | undefined>();
  readonly #owners = new Map<string, string | undefined>();
  readonly #buckets = new Map<string, true>();
  readonly #low: Record<string, number>;

  constructor(
    private readonly base: SlotState,
    private readonly prefer?: PMap<number>,
  ) {
    this.#low = { ...base.low };
  }

  private slotOf(id: string): number | undefined {
    return this.#slots.has(id) ? this.#slots.get(id) : this.base.slots.get(id);
  }

  private ownerOf(k: string): string | undefined {
    return this.#owners.has(k) ? this.#owners.get(k) : this.base.owners.get(k);
  }

  take(id: string): number {
    const have = this.slotOf(id);
    if (have !== undefined) return have;
    const proto = slotProto(id);
    let s = this.prefer?.get(id);
    if (s === undefined || this.ownerOf(`${proto}:${s}`) !== undefined) {
      s = this.#low[proto] ?? 0;
      while (this.ownerOf(`${proto}:${s}`) !== undefined) s++;
      this.#low[proto] = s + 1;
    }
    this.#slots.set(id, s);
    this.#owners.set(`${proto}:${s}`, id);
    const b = bucketName(proto, s);
    if (!this.base.buckets.has(b)) this.#buckets.set(b, true);
    return s;
  }

  release(id: string): void {
    const s = this.slotOf(id);
    if (s === undefined) return;
    const proto = slotProto(id);
    this.#slots.set(id, undefined);
    this.#owners.set(`${proto}:${s}`, undefined);
    this.#low[proto] = Math.min(this.#low[proto] ?? 0, s);
  }

  state(): SlotState {
    return { slots: this.base.slots.with(this.#slots), owners: this.base.owners.with(this.#owners), low: this.#low, buckets: this.base.buckets.with(this.#buckets) };
  }
}

/**
 * A value built on demand and held only by a WeakRef: repeated reads within one synchronous
 * job (a sync's planning) build it once, and the next collection frees it.
 */
class WeakMemo<T extends object> {
  #ref: WeakRef<T> | undefined;

  get(build: () => T): T {
    const have = this.#ref?.deref();
    if (have) return have;
    const built = build();
    this.#ref = new WeakRef(built);
    return built;
  }
}

/** What podnet wants in one family's table: the result of planTable. */
export class PlannedState {
  readonly family: Family;
  readonly nftFamily: NftFamily;
  readonly tableName: string;
  readonly node: ProxyNodeConfig;
  readonly base: BaseObjects;
  /** By service port key. */
  readonly perService: ReadonlyMap<string, ServiceObjects>;
  /**
   * Claims on shared-map keys: claimKey → the service port key wanting it, or the keys
   * (sorted) when several do — a lone claimant is kept as the string itself (most keys: one
   * per VIP port and per endpoint, so no array each).
   */
  readonly claims: ReadonlyMap<string, Claim>;
  /** Endpoint slots and bucket maps. */
  readonly slots: SlotState;
  /** @internal Compared to decide whether a partial sync is possible. */
  readonly nodeSignature: string;
  /** The whole table, held weakly (a full sync reads it a few times; kept, it would hold every element). */
  readonly #table = new WeakMemo<NftTable>();

  /** @internal Use planTable. */
  constructor(o: { family: Family; node: ProxyNodeConfig; base: BaseObjects; perService: PMap<ServiceObjects>; claims: PMap<Claim>; slots: SlotState; nodeSignature: string }) {
    this.family = o.family;
    this.nftFamily = o.family === 4 ? 'ip' : 'ip6';
    this.tableName = TABLE_NAME;
    this.node = o.node;
    this.base = o.base;
    this.perService = o.perService;
    this.claims = o.claims;
    this.slots = o.slots;
    this.nodeSignature = o.nodeSignature;
  }

  /** @internal */
  get pServices(): PMap<ServiceObjects> {
    return this.perService as PMap<ServiceObjects>;
  }

  /** @internal */
  get pClaims(): PMap<Claim> {
    return this.claims as PMap<Claim>;
  }

  /**
   * The map element installed for a claim key (its first claimant's), if any. `index` gives a
   * port's elements by claim key (the caller, asking for many keys, builds each once).
   */
  installed(ck: string, index: (o: ServiceObjects) => ReadonlyMap<string, MapElement>): MapElement | undefined {
    const owner = ownerOf(this.claims.get(ck));
    const o = owner === undefined ? undefined : this.perService.get(owner);
    return o && index(o).get(ck);
  }

  /**
   * The whole table (built on first use: O(all), so a partial sync never asks for it).
   * Order: base sets, bucket maps (by protocol and number), affinity sets by service key;
   * base chains, then each service port's chains by key — the order a full sync creates
   * them in, i.e. how the kernel lists them.
   */
  get table(): NftTable {
    return this.#table.get(() => this.buildTable());
  }

  private buildTable(): NftTable {
    const sets: NftSet[] = [...this.base.sets];
    const chains: NftChain[] = [...this.base.chains];
    const elements = new Map<string, NftElement[]>();
    for (const s of this.base.sets) if (!s.dynamic) elements.set(s.name, [...(this.base.elements.get(s.name) ?? [])]);
    for (const b of sortedBuckets(this.slots.buckets.keys())) {
      sets.push(bucketSet(this.family, b)!);
      elements.set(b, []);
    }
    const keys = [...this.perService.keys()].sort();
    for (const k of keys) {
      const o = this.perService.get(k)!;
      for (const s of o.sets) sets.push(s);
      for (const [b, els] of o.setElements) elements.get(b)?.push(...els);
      for (const c of o.chains) chains.push(c);
      for (const me of o.elements) {
        if (ownerOf(this.claims.get(me.claim)) !== k) continue;
        elements.get(me.map)?.push(me.element);
      }
    }
    // By range start, parsed once per element (not twice per comparison).
    for (const b of this.slots.buckets.keys()) {
      const list = elements.get(b)!;
      const keyed = list.map((e) => ({ at: rangeStart(e), e }));
      keyed.sort((x, y) => x.at - y.at);
      for (let i = 0; i < keyed.length; i++) list[i] = keyed[i]!.e;
    }
    return { family: this.nftFamily, name: this.tableName, sets, elements, chains };
  }
}

const rangeStart = (e: NftElement): number => parseInt(e.key[0]!, 10);

/** Bucket names in table order: by protocol, then by number. */
function sortedBuckets(names: Iterable<string>): string[] {
  const num = (n: string): number => Number(BUCKET_MAP.exec(n)![2]);
  const proto = (n: string): string => BUCKET_MAP.exec(n)![1]!;
  return [...names].sort((a, b) => (proto(a) < proto(b) ? -1 : proto(a) > proto(b) ? 1 : num(a) - num(b)));
}

// ---------------------------------------------------------------- per-family context

interface Ctx {
  family: Family;
  saddr: 'ip saddr' | 'ip6 saddr';
  daddr: 'ip daddr' | 'ip6 daddr';
  /** Shared expression objects (the planned objects are immutable, so they can be). */
  saddrExpr: NftExpr;
  daddrExpr: NftExpr;
  /** `meta l4proto <p>` per protocol, `numgen random mod <n> 0` per n. */
  l4proto: Map<string, NftStmt>;
  numgen: NftStmt[];
  addrType: NftType;
  loopback: string;
  clusterCIDR: string | undefined;
  nodeIPs: string[];
}

function context(node: ProxyNodeConfig): Ctx {
  const v4 = node.family === 4;
  const saddr = v4 ? 'ip saddr' : 'ip6 saddr';
  const daddr = v4 ? 'ip daddr' : 'ip6 daddr';
  return {
    family: node.family,
    saddr,
    daddr,
    saddrExpr: { kind: 'payload', field: saddr },
    daddrExpr: { kind: 'payload', field: daddr },
    l4proto: new Map(['tcp', 'udp', 'sctp'].map((p) => [p, match(L4PROTO, p)])),
    numgen: [],
    addrType: v4 ? 'ipv4_addr' : 'ipv6_addr',
    loopback: v4 ? '127.0.0.0/8' : '::1',
    clusterCIDR: node.clusterCIDR ? nftAddr(node.clusterCIDR) : undefined,
    nodeIPs: [...new Set(node.nodeIPs.map(nftAddr))].sort(),
  };
}

function nodeSignature(node: ProxyNodeConfig): string {
  const c = context(node);
  return JSON.stringify([node.family, node.nodeName, c.clusterCIDR ?? '', c.nodeIPs]);
}

// ---------------------------------------------------------------- statement builders

const verdict = (v: NftVerdict): NftStmt => ({ kind: 'verdict', verdict: v });
const gotoChain = (chain: string): NftStmt => verdict({ kind: 'goto', chain });
const jumpChain = (chain: string): NftStmt => verdict({ kind: 'jump', chain });
const JUMP_MASQ: NftStmt = jumpChain(CHAINS.markForMasquerade);
const DROP: NftStmt = verdict({ kind: 'drop' });
const L4PROTO: NftExpr = { kind: 'meta', key: 'l4proto' };
const TH_DPORT: NftExpr = { kind: 'payload', field: 'th dport' };
const CT_NEW: NftStmt = { kind: 'match', left: { kind: 'ct', key: 'state' }, op: '==', value: 'new' };
const FIB_DADDR_LOCAL: NftStmt = { kind: 'match', left: { kind: 'fib', what: 'daddr type' }, op: '==', value: 'local' };
const FIB_SADDR_LOCAL: NftStmt = { kind: 'match', left: { kind: 'fib', what: 'saddr type' }, op: '==', value: 'local' };
const rule = (stmts: NftStmt[], comment?: string): NftRule => (comment === undefined ? { stmts } : { stmts, comment });
const match = (left: NftExpr, value: string, op: '==' | '!=' = '=='): NftStmt => ({ kind: 'match', left, op, value });

/** `ip daddr @nodeport-ips`, or `fib daddr type local ip daddr != 127.0.0.0/8` without node IPs. */
function nodePortDest(ctx: Ctx): NftStmt[] {
  if (ctx.nodeIPs.length) return [{ kind: 'lookup', left: { kind: 'payload', field: ctx.daddr }, set: NODEPORT_IPS_SET }];
  return [FIB_DADDR_LOCAL, match({ kind: 'payload', field: ctx.daddr }, ctx.loopback, '!=')];
}

function planBase(ctx: Ctx): BaseObjects {
  const daddr: NftExpr = { kind: 'payload', field: ctx.daddr };
  const vipKey: NftExpr = { kind: 'concat', parts: [daddr, L4PROTO, TH_DPORT] };
  const portKey: NftExpr = { kind: 'concat', parts: [L4PROTO, TH_DPORT] };
  const vipType: NftType[] = [ctx.addrType, 'inet_proto', 'inet_service'];
  const portType: NftType[] = ['inet_proto', 'inet_service'];
  const sets: NftSet[] = [
    { name: MAPS.serviceIPs, key: vipType, data: 'verdict', comment: 'ClusterIP, externalIP and LoadBalancer IP traffic' },
    { name: MAPS.serviceNodePorts, key: portType, data: 'verdict', comment: 'NodePort traffic' },
    { name: SETS.noEndpointServices, key: vipType, comment: 'VIP traffic to services with no endpoints' },
    { name: SETS.noEndpointNodePorts, key: portType, comment: 'NodePort traffic to services with no endpoints' },
    { name: SETS.hairpin, key: [ctx.addrType, 'inet_service', ctx.addrType], comment: 'endpoint . port . endpoint: a pod reaching itself through a service' },
  ];
  const elements = new Map<string, NftElement[]>();
  if (ctx.nodeIPs.length) {
    sets.push({ name: NODEPORT_IPS_SET, key: [ctx.addrType], comment: 'addresses NodePorts answer on' });
    elements.set(NODEPORT_IPS_SET, ctx.nodeIPs.map((ip) => ({ key: [ip] })));
  }
  const toReject = gotoChain(CHAINS.reject);
  const noEndpointRules = [
    rule([CT_NEW, { kind: 'lookup', left: vipKey, set: SETS.noEndpointServices }, toReject]),
    rule([CT_NEW, ...nodePortDest(ctx), { kind: 'lookup', left: portKey, set: SETS.noEndpointNodePorts }, toReject]),
  ];
  const hairpinKey: NftExpr = { kind: 'concat', parts: [daddr, TH_DPORT, ctx.saddrExpr] };
  const chains: NftChain[] = [
    { name: CHAINS.filterPrerouting, base: { type: 'filter', hook: 'prerouting', priority: FILTER_PRIORITY, policy: 'accept' }, rules: noEndpointRules },
    { name: CHAINS.filterOutput, base: { type: 'filter', hook: 'output', priority: FILTER_PRIORITY, policy: 'accept' }, rules: noEndpointRules },
    { name: CHAINS.natPrerouting, base: { type: 'nat', hook: 'prerouting', priority: DSTNAT_PRIORITY, policy: 'accept' }, rules: [rule([jumpChain(CHAINS.services)])] },
    { name: CHAINS.natOutput, base: { type: 'nat', hook: 'output', priority: DSTNAT_PRIORITY, policy: 'accept' }, rules: [rule([jumpChain(CHAINS.services)])] },
    { name: CHAINS.natPostrouting, base: { type: 'nat', hook: 'postrouting', priority: SRCNAT_PRIORITY, policy: 'accept' }, rules: [rule([jumpChain(CHAINS.masquerading)])] },
    {
      name: CHAINS.services,
      rules: [
        rule([{ kind: 'vmap', key: vipKey, map: MAPS.serviceIPs }]),
        rule([...nodePortDest(ctx), { kind: 'vmap', key: portKey, map: MAPS.serviceNodePorts }]),
      ],
    },
    {
      name: CHAINS.masquerading,
      rules: [
        rule([{ kind: 'lookup', left: hairpinKey, set: SETS.hairpin }, JUMP_MASQ]),
        rule([{ kind: 'mark-test', mask: MASQUERADE_MARK, op: '==', value: 0 }, verdict({ kind: 'return' })]),
        rule([{ kind: 'mark-xor', value: MASQUERADE_MARK }]),
        rule([{ kind: 'masquerade', fullyRandom: true }]),
      ],
    },
    { name: CHAINS.markForMasquerade, rules: [rule([{ kind: 'mark-or', value: MASQUERADE_MARK }])] },
    {
      name: CHAINS.reject,
      rules: [rule([match(L4PROTO, 'tcp'), { kind: 'reject', with: 'tcp-reset' }]), rule([{ kind: 'reject', with: 'icmp-port-unreachable' }])],
    },
  ];
  return { chains, sets, elements };
}

// ---------------------------------------------------------------- one service port

/** At most 127 bytes (nft's comment limit is 128 with the NUL). */
function commentOf(text: string): string {
  return Buffer.byteLength(text) <= 127 ? text : Buffer.from(text).subarray(0, 127).toString('utf8').replace(/\uFFFD+$/, '');
}

const epId = (e: ProxyEndpoint): string => `${e.ip}/${e.port}`;

/**
 * The dispatch rules over `eps` (≥ 1): affinity checks, then the numgen cascade. Rule i
 * of N is `numgen random mod (N-i) 0 goto endpoint-i`, the last a plain goto: each
 * endpoint gets 1/N.
 */
function dispatchRules(ctx: Ctx, eps: readonly ProxyEndpoint[], names: ReadonlyMap<string, EndpointNames>): NftRule[] {
  const out: NftRule[] = [];
  for (const e of eps) {
    const n = names.get(epId(e))!;
    if (n.set) out.push(rule([{ kind: 'lookup', left: ctx.saddrExpr, set: n.set }, n.goto]));
  }
  const count = eps.length;
  for (let i = 0; i < count; i++) {
    const n = names.get(epId(eps[i]!))!;
    out.push(i < count - 1 ? { stmts: [numgenZero(ctx, count - i), n.goto] } : { stmts: [n.goto] });
  }
  return out;
}

interface EndpointNames {
  chain: string;
  goto: NftStmt;
  set?: string;
}

function numgenZero(ctx: Ctx, mod: number): NftStmt {
  return (ctx.numgen[mod] ??= match({ kind: 'numgen', mod }, '0'));
}

/** The objects shared by all Services on a node (base chains, shared maps and sets). */
export function planBaseObjects(node: ProxyNodeConfig): BaseObjects {
  return planBase(context(node));
}

/**
 * The chains, sets and map elements of one service port; `slotOf` gives the endpoint slot
 * of each of its slot ids (the planner's allocation; the trace reads it off the kernel's rule).
 */
export function planService(sp: ProxyServicePort, node: ProxyNodeConfig, slotOf: (id: string) => number): ServiceObjects {
  return planServiceIn(sp, context(node), slotOf);
}

/**
 * `numgen random mod NUMGEN_MOD` split into n near-equal ranges, in order: range i is
 * [floor(i·M/n), floor((i+1)·M/n) - 1], so sizes differ by at most one value (an imbalance
 * of at most 1/M). At most M ranges (n is capped at M).
 */
export function numgenSplit(n: number, mod = NUMGEN_MOD): [number, number][] {
  const count = Math.min(n, mod);
  const out: [number, number][] = [];
  for (let i = 0; i < count; i++) out.push([Math.floor((i * mod) / count), Math.floor(((i + 1) * mod) / count) - 1]);
  return out;
}

/** The elements of an endpoint slot at `offset`: range i of the split → endpoint i's address . port. */
function endpointMapElements(eps: readonly ProxyEndpoint[], offset: number): NftElement[] {
  const ranges = numgenSplit(eps.length);
  return ranges.map(([lo, hi], i) => ({ key: [`${lo + offset}-${hi + offset}`], data: [nftAddr(eps[i]!.ip), String(eps[i]!.port)] }));
}

/** Endpoints once each (by ip/port), in order. */
function uniqueEndpoints(eps: readonly ProxyEndpoint[]): ProxyEndpoint[] {
  const seen = new Set<string>();
  const out: ProxyEndpoint[] = [];
  for (const e of eps) {
    const id = epId(e);
    if (seen.has(id)) continue;
    seen.add(id);
    out.push(e);
  }
  return out;
}

function planServiceIn(sp: ProxyServicePort, ctx: Ctx, slotOf: (id: string) => number): ServiceObjects {
  const proto = sp.protocol.toLowerCase();
  const suffix = `${sp.namespace}/${sp.name}/${proto}/${sp.portName || `p${sp.port}`}`;
  const h = portHash(sp.key, sp.protocol, 8);
  const clusterIP = nftAddr(sp.clusterIP);
  const port = String(sp.port);
  const externalIPs = [...new Set([...sp.externalIPs, ...sp.loadBalancerIPs].map(nftAddr))];
  const hasExternal = sp.nodePort > 0 || externalIPs.length > 0;
  const eTPLocal = sp.externalPolicyLocal && hasExternal;
  const iTPLocal = sp.internalPolicyLocal;
  // Cluster-policy endpoints (all usable ones) and local-policy endpoints.
  const all = uniqueEndpoints(!iTPLocal ? sp.clusterEndpoints : !eTPLocal ? sp.externalEndpoints : usable(sp.endpoints, false));
  const local = uniqueEndpoints(iTPLocal ? sp.clusterEndpoints : eTPLocal ? sp.externalEndpoints : []);
  const hasEndpoints = sp.hasEndpoints && all.length > 0;

  // The static shape: which chains exist depends on the Service, not on its endpoints.
  const serviceChain = `service-${h}-${suffix}`;
  const localChain = `local-${h}-${suffix}`;
  const externalChain = `external-${h}-${suffix}`;
  const usesService = !iTPLocal || hasExternal;
  const usesLocal = iTPLocal || eTPLocal;
  const internalChain = iTPLocal ? localChain : serviceChain;
  const affinity = sp.affinityTimeoutSeconds !== undefined;
  const saddr = ctx.saddrExpr;
  const l4 = ctx.l4proto.get(proto) ?? match(L4PROTO, proto);

  const sets: NftSet[] = [];
  const slotSpecs: SlotSpec[] = [];
  const slotIds: string[] = [];
  const epChains: NftChain[] = [];
  const masqOffCluster = (): NftRule[] => (ctx.clusterCIDR ? [rule([match(ctx.daddrExpr, clusterIP), match(saddr, ctx.clusterCIDR, '!='), JUMP_MASQ])] : []);
  const head = (chain: string): NftRule[] => (internalChain === chain ? masqOffCluster() : []);
  const noLocal = rule([DROP], 'no local endpoints');
  const chains: NftChain[] = [];

  if (!affinity) {
    // Endpoint choice is data: `dnat ... to numgen random mod 65536 offset O map
    // @endpoints-<proto>-<n>`, whose elements in the slot at O split the numgen range over
    // the endpoints. An endpoint change rewrites only those elements (no rule, no verdict,
    // so no chain-graph validation at commit).
    const slotProtoOf = proto as SlotProto;
    const mapOf = (which: 'cluster' | 'local', eps: readonly ProxyEndpoint[]): NftStmt => {
      const id = `${slotProtoOf}|${sp.key}|${which}`;
      const slot = slotOf(id);
      const map = bucketName(slotProtoOf, slot);
      const offset = slotOffset(slot);
      slotIds.push(id);
      slotSpecs.push({ map, offset, eps });
      return { kind: 'dnat-map', key: { kind: 'numgen', mod: NUMGEN_MOD, ...(offset ? { offset } : {}) }, map };
    };
    if (usesService) chains.push({ name: serviceChain, rules: [...head(serviceChain), rule([l4, mapOf('cluster', all)])] });
    // A lookup miss (no local endpoint) falls through to the drop.
    if (usesLocal) chains.push({ name: localChain, rules: [...head(localChain), rule([l4, mapOf('local', local)]), noLocal] });
  } else {
    // ClientIP affinity: a dynamic set per endpoint remembers clients, so endpoints are chains
    // (their changes are rule changes: validated at commit, like the v1 layout).
    const used = new Map<string, ProxyEndpoint>();
    if (usesService) for (const e of all) used.set(epId(e), e);
    if (usesLocal) for (const e of local) used.set(epId(e), e);
    const names = new Map<string, EndpointNames>();
    for (const e of sp.endpoints) {
      const id = epId(e);
      if (!used.has(id) || names.has(id)) continue;
      const ip = nftAddr(e.ip);
      const tail = `${suffix}__${ip.replace(/:/g, '.')}/${e.port}`;
      // The service port's hash: every object of one service port shares it (grep-able),
      // and the readable tail (ip/port) keeps endpoint names unique.
      const chain = `endpoint-${h}-${tail}`;
      const set = `affinity-${h}-${tail}`;
      names.set(id, { chain, goto: gotoChain(chain), set });
      sets.push({ name: set, key: [ctx.addrType], dynamic: true, timeoutSeconds: sp.affinityTimeoutSeconds!, size: AFFINITY_SET_SIZE });
      epChains.push({ name: chain, rules: [rule([{ kind: 'set-update', set, key: saddr }]), { stmts: [l4, { kind: 'dnat', addr: ip, port: e.port }] }] });
    }
    if (usesService) chains.push({ name: serviceChain, rules: [...head(serviceChain), ...(all.length ? dispatchRules(ctx, all, names) : [])] });
    if (usesLocal) chains.push({ name: localChain, rules: [...head(localChain), ...(local.length ? dispatchRules(ctx, local, names) : [noLocal])] });
  }
  if (hasExternal) {
    const rules: NftRule[] = [];
    if (!eTPLocal) {
      rules.push(rule([JUMP_MASQ]), rule([gotoChain(serviceChain)]));
    } else {
      if (ctx.clusterCIDR) rules.push(rule([match(saddr, ctx.clusterCIDR), gotoChain(serviceChain)], 'short-circuit pod traffic'));
      rules.push(rule([FIB_SADDR_LOCAL, JUMP_MASQ], 'masquerade local traffic'));
      rules.push(rule([FIB_SADDR_LOCAL, gotoChain(serviceChain)], 'short-circuit local traffic'));
      rules.push(rule([gotoChain(localChain)]));
    }
    chains.push({ name: externalChain, rules });
  }
  chains.push(...epChains);

  const shared: SharedSpec = {
    clusterIP,
    proto,
    port,
    externalIPs,
    nodePort: sp.nodePort,
    internalChain,
    externalChain,
    comment: hasEndpoints ? undefined : commentOf(sp.key),
    hairpin: [...(usesService ? all : []), ...(usesLocal ? local : [])],
  };
  return new PlannedPort(sp, chains, sets, slotIds, slotSpecs, shared);
}

/** One endpoint slot of a service port: its bucket map, offset and endpoints. */
interface SlotSpec {
  readonly map: string;
  readonly offset: number;
  readonly eps: readonly ProxyEndpoint[];
}

/** What a service port's shared-map elements follow from. */
interface SharedSpec {
  readonly clusterIP: string;
  readonly proto: string;
  readonly port: string;
  readonly externalIPs: readonly string[];
  readonly nodePort: number;
  readonly internalChain: string;
  readonly externalChain: string;
  /** Set when the port has no endpoints (its keys go into the no-endpoint sets). */
  readonly comment: string | undefined;
  /** The endpoints it dispatches to (hairpin elements). */
  readonly hairpin: readonly ProxyEndpoint[];
}

/**
 * A service port's planned objects. Its per-endpoint parts — the elements of its slots and
 * its shared-map elements (hairpin: one per endpoint) — are built when read from the
 * endpoints the port holds anyway, and held only weakly: at 10,000 × 10 they were half of a
 * plan's memory (~45 of ~85 MB), and only changed ports and full syncs read them.
 */
class PlannedPort implements ServiceObjects {
  readonly key: string;
  /** The last built elements, held weakly: reads within one sync build them once, and a collection frees them. */
  readonly #setElements = new WeakMemo<ReadonlyMap<string, readonly NftElement[]>>();
  readonly #elements = new WeakMemo<readonly MapElement[]>();

  constructor(
    readonly port: ProxyServicePort,
    readonly chains: readonly NftChain[],
    readonly sets: readonly NftSet[],
    readonly slotIds: readonly string[],
    private readonly slotSpecs: readonly SlotSpec[],
    private readonly shared: SharedSpec,
  ) {
    this.key = port.key;
  }

  get setElements(): ReadonlyMap<string, readonly NftElement[]> {
    return this.#setElements.get(() => this.buildSetElements());
  }

  get elements(): readonly MapElement[] {
    return this.#elements.get(() => this.buildElements());
  }

  private buildSetElements(): ReadonlyMap<string, readonly NftElement[]> {
    const out = new Map<string, NftElement[]>();
    for (const { map, offset, eps } of this.slotSpecs) {
      const els = endpointMapElements(eps, offset);
      const have = out.get(map);
      out.set(map, have ? [...have, ...els] : els);
    }
    return out;
  }

  /** Shared map and set elements (a key at most once per map). */
  private buildElements(): readonly MapElement[] {
    const o = this.shared;
    const elements: MapElement[] = [];
    const taken = new Set<string>();
    const add = (map: string, element: NftElement): void => {
      const ck = claimKey(map, element.key);
      if (taken.has(ck)) return;
      taken.add(ck);
      elements.push({ map, element, claim: ck });
    };
    // The dispatch elements do not depend on endpoints: an endpoint change never touches them.
    add(MAPS.serviceIPs, { key: [o.clusterIP, o.proto, o.port], verdict: { kind: 'goto', chain: o.internalChain } });
    for (const ip of o.externalIPs) add(MAPS.serviceIPs, { key: [ip, o.proto, o.port], verdict: { kind: 'goto', chain: o.externalChain } });
    if (o.nodePort > 0) add(MAPS.serviceNodePorts, { key: [o.proto, String(o.nodePort)], verdict: { kind: 'goto', chain: o.externalChain } });
    if (o.comment !== undefined) {
      const comment = o.comment;
      add(SETS.noEndpointServices, { key: [o.clusterIP, o.proto, o.port], comment });
      for (const ip of o.externalIPs) add(SETS.noEndpointServices, { key: [ip, o.proto, o.port], comment });
      if (o.nodePort > 0) add(SETS.noEndpointNodePorts, { key: [o.proto, String(o.nodePort)], comment });
    }
    // Hairpin: every endpoint the port dispatches to (endpoint . port . endpoint).
    for (const e of o.hairpin) {
      const ip = nftAddr(e.ip);
      add(SETS.hairpin, { key: [ip, String(e.port), ip] });
    }
    return elements;
  }
}

// ---------------------------------------------------------------- planTable

/** The same object, or equal content (planned objects are plain data). */
const sameJson = (a: unknown, b: unknown): boolean => a === b || JSON.stringify(a) === JSON.stringify(b);

/** Equal content (compared part by part, the part an endpoint change alters first: most calls stop there). */
function sameObjects(a: ServiceObjects, b: ServiceObjects): boolean {
  return sameJson([...a.setElements], [...b.setElements]) && sameJson(a.elements, b.elements) && sameJson(a.sets, b.sets) && sameJson(a.chains, b.chains);
}

function insertSorted(list: readonly string[], k: string): readonly string[] {
  if (list.includes(k)) return list;
  let i = list.length;
  while (i > 0 && list[i - 1]! > k) i--;
  return [...list.slice(0, i), k, ...list.slice(i)];
}

/**
 * The state podnet wants for this snapshot. With `prev` and `changed` (and the same node
 * config), only the changed service ports are planned again and everything else is
 * shared with `prev` (which stays valid): O(changed). Otherwise every service port is
 * planned, except that objects of `prev` are reused for ports that are the very same
 * ProxyServicePort object (the proxier keeps unchanged ones), so a periodic full resync
 * plans cheaply — its transaction still rewrites everything.
 */
export function planTable(snapshot: ProxySnapshot, prev?: PlannedState, changed?: ReadonlySet<string>): PlannedState {
  const ctx = context(snapshot.node);
  const sig = nodeSignature(snapshot.node);
  if (prev && changed && prev.family === snapshot.family && prev.nodeSignature === sig) {
    const svc = new Map<string, ServiceObjects | undefined>();
    const claims = new Map<string, Claim | undefined>();
    const claimOf = (ck: string): readonly string[] => claimants(claims.has(ck) ? claims.get(ck) : prev.claims.get(ck));
    const slots = new SlotAllocator(prev.slots);
    const take = (id: string): number => slots.take(id);
    const released: string[] = [];
    for (const k of changed) {
      const old = prev.perService.get(k);
      const sp = snapshot.services.get(k);
      if (old && old.port === sp) continue; // the same port object: nothing to plan
      let now = sp ? planServiceIn(sp, ctx, take) : undefined;
      if (!old && !now) continue;
      if (old && now && sameObjects(old, now)) now = old; // e.g. a change in the other family only
      svc.set(k, now);
      for (const id of old?.slotIds ?? []) if (!now?.slotIds.includes(id)) released.push(id);
      // Only the keys it stops or starts wanting change hands (an endpoint change: its two
      // hairpin keys, not the service's other ten): the claims map's next version stays small.
      const had = new Set((old?.elements ?? []).map((me) => me.claim));
      const wants = new Set((now?.elements ?? []).map((me) => me.claim));
      for (const ck of had) {
        if (wants.has(ck)) continue;
        claims.set(ck, asClaim(claimOf(ck).filter((x) => x !== k)));
      }
      for (const ck of wants) {
        if (had.has(ck)) continue;
        claims.set(ck, asClaim(insertSorted(claimOf(ck), k)));
      }
    }
    for (const id of released) slots.release(id);
    return new PlannedState({ family: snapshot.family, node: snapshot.node, base: prev.base, perService: prev.pServices.with(svc), claims: prev.pClaims.with(claims), slots: slots.state(), nodeSignature: sig });
  }
  const perService = new Map<string, ServiceObjects>();
  const claims = new Map<string, Claim>();
  const reuse = prev && prev.family === snapshot.family && prev.nodeSignature === sig ? prev : undefined;
  // Slots start over, keeping the previous plan's where they are free: reused objects keep
  // theirs (taken first, so a re-planned port cannot take one of them).
  const slots = new SlotAllocator(EMPTY_SLOTS, prev && prev.family === snapshot.family ? prev.slots.slots : undefined);
  const take = (id: string): number => slots.take(id);
  const reused = new Set<string>();
  if (reuse) {
    for (const [k, sp] of snapshot.services) {
      const old = reuse.perService.get(k);
      if (!old || old.port !== sp) continue;
      reused.add(k);
      for (const id of old.slotIds) take(id);
    }
  }
  for (const [k, sp] of snapshot.services) {
    const o = reused.has(k) ? reuse!.perService.get(k)! : planServiceIn(sp, ctx, take);
    perService.set(k, o);
    for (const me of o.elements) {
      const ck = me.claim;
      const have = claims.get(ck);
      claims.set(ck, have === undefined ? k : asClaim(insertSorted(claimants(have), k))!);
    }
  }
  return new PlannedState({ family: snapshot.family, node: snapshot.node, base: planBase(ctx), perService: PMap.of(perService), claims: PMap.of(claims), slots: slots.state(), nodeSignature: sig });
}

// ---------------------------------------------------------------- planTransaction

/** What the kernel holds already (executor.listTable at startup): stale objects of ours are deleted. */
export interface ExistingObjects {
  readonly chains: readonly { readonly name: string }[];
  /** Full definitions where known (a changed definition makes a set be re-created). */
  readonly sets: readonly (NftSet | { readonly name: string })[];
}

export interface PlanTransactionOptions {
  existing?: ExistingObjects;
}

/** True when an `add set` of `b` over an existing `a` would leave the set as `b` says. */
export function sameSetDef(a: NftSet, b: NftSet): boolean {
  return (
    a.key.join('.') === b.key.join('.') &&
    String(a.data ?? '') === String(b.data ?? '') &&
    !!a.interval === !!b.interval &&
    !!a.dynamic === !!b.dynamic &&
    (a.timeoutSeconds ?? 0) === (b.timeoutSeconds ?? 0) &&
    (a.size === undefined || b.size === undefined || a.size === b.size)
  );
}

const chainHead = (c: NftChain): Omit<NftChain, 'rules'> => ({ name: c.name, ...(c.base ? { base: c.base } : {}), ...(c.comment !== undefined ? { comment: c.comment } : {}) });
const MAP_ORDER = [MAPS.serviceIPs, MAPS.serviceNodePorts, SETS.noEndpointServices, SETS.noEndpointNodePorts, SETS.hairpin] as string[];

function pushElements(ops: NftOp[], set: string, elements: readonly NftElement[]): void {
  for (let i = 0; i < elements.length; i += ELEMENT_CHUNK) ops.push({ op: 'add-elements', set, elements: elements.slice(i, i + ELEMENT_CHUNK) });
}

/** True when planTransaction(prev, next, changed) would be a partial transaction. */
export function isPartial(prev: PlannedState | undefined, next: PlannedState, changed: ReadonlySet<string> | undefined): boolean {
  return !!prev && !!changed && prev.family === next.family && prev.nodeSignature === next.nodeSignature;
}

/**
 * The transaction from `prev` (what the kernel holds; undefined: unknown) to `next`.
 * Full when there is no prev, `changed` is undefined or the node config changed;
 * partial otherwise (only the changed service ports' objects). See README.md "Syncs".
 */
export function planTransaction(prev: PlannedState | undefined, next: PlannedState, changed: ReadonlySet<string> | undefined, opts: PlanTransactionOptions = {}): NftTransaction {
  const ops = prev && isPartial(prev, next, changed) ? partialOps(prev, next, changed!) : fullOps(prev, next, opts.existing);
  return { family: next.nftFamily, table: next.tableName, ops };
}

function fullOps(prev: PlannedState | undefined, next: PlannedState, existing: ExistingObjects | undefined): NftOp[] {
  const t = next.table;
  const ops: NftOp[] = [{ op: 'add-table' }];
  const wantChains = new Set(t.chains.map((c) => c.name));
  const wantSets = new Map(t.sets.map((s) => [s.name, s]));
  // What exists already: the kernel's listing when given (the truth), else our last state,
  // else unknown (then every chain and static set is flushed, which is always valid after
  // the add ops). Set definitions: the listing's where it has them, else ours.
  const samePrev = prev && prev.family === next.family ? prev : undefined;
  const defs = new Map<string, NftSet>();
  for (const s of samePrev?.table.sets ?? []) defs.set(s.name, s);
  const knownChains = new Set<string>();
  const knownSets = new Set<string>();
  if (existing) {
    for (const c of existing.chains) if (isOwnedChain(c.name)) knownChains.add(c.name);
    for (const s of existing.sets) {
      if (!isOwnedSet(s.name)) continue;
      knownSets.add(s.name);
      // (a listing gives key [] for types it does not know: no definition to compare)
      if ('key' in s && s.key.length) defs.set(s.name, s);
    }
  } else if (samePrev) {
    for (const c of samePrev.table.chains) knownChains.add(c.name);
    for (const s of samePrev.table.sets) knownSets.add(s.name);
  }
  // With a listing or a previous state we know what exists: only that needs flushing
  // (a fresh install then costs no flush at all).
  const known = !!existing || !!samePrev;
  const exists = (name: string): boolean => !known || knownChains.has(name) || knownSets.has(name);
  const recreate = new Set<string>();
  for (const s of t.sets) {
    const d = defs.get(s.name);
    if (d && exists(s.name) && !sameSetDef(d, s)) recreate.add(s.name);
  }
  const staleChains = [...knownChains].filter((n) => !wantChains.has(n));
  const staleSets = [...knownSets].filter((n) => !wantSets.has(n));

  for (const s of t.sets) if (!recreate.has(s.name)) ops.push({ op: 'add-set', set: s });
  for (const c of t.chains) ops.push({ op: 'add-chain', chain: chainHead(c) });
  for (const c of t.chains) if (exists(c.name)) ops.push({ op: 'flush-chain', chain: c.name });
  for (const n of staleChains) ops.push({ op: 'flush-chain', chain: n });
  // Static sets and maps start over; dynamic (affinity) sets keep their clients.
  for (const s of t.sets) if (!s.dynamic && !recreate.has(s.name) && exists(s.name)) ops.push({ op: 'flush-set', set: s.name });
  for (const n of staleSets) if (isOwnedMap(n) || defs.get(n)?.data) ops.push({ op: 'flush-set', set: n });
  for (const n of staleChains) ops.push({ op: 'delete-chain', chain: n });
  for (const n of [...staleSets, ...recreate]) ops.push({ op: 'delete-set', set: n });
  for (const n of recreate) ops.push({ op: 'add-set', set: wantSets.get(n)! });
  for (const c of t.chains) for (const r of c.rules) ops.push({ op: 'add-rule', chain: c.name, rule: r });
  for (const s of t.sets) {
    const els = t.elements.get(s.name);
    if (els?.length && !s.dynamic) pushElements(ops, s.name, els);
  }
  return ops;
}

function partialOps(prev: PlannedState, next: PlannedState, changed: ReadonlySet<string>): NftOp[] {
  const delElements = new Map<string, string[][]>();
  const addElements = new Map<string, NftElement[]>();
  const flush: string[] = [];
  const delChains: string[] = [];
  const delSets: string[] = [];
  const addSets: NftSet[] = [];
  const addChains: NftChain[] = [];
  const ruleChains: NftChain[] = [];
  /** Own static sets whose elements are rewritten: flushed (when they existed) and refilled. */
  const flushSets: string[] = [];
  const fillSets: [string, readonly NftElement[]][] = [];
  /** Endpoint slots rewritten: their old elements deleted, then the new ones added, per bucket. */
  const slotDeletes = new Map<string, string[][]>();
  const slotAdds = new Map<string, NftElement[]>();
  const affected = new Set<string>();
  // Bucket maps only come in a partial sync (a full one removes them): none new, none to look at.
  if (next.slots.buckets.size !== prev.slots.buckets.size) for (const b of sortedBuckets(next.slots.buckets.keys())) if (!prev.slots.buckets.has(b)) addSets.push(bucketSet(next.family, b)!);
  for (const k of [...changed].sort()) {
    const p = prev.perService.get(k);
    const n = next.perService.get(k);
    if (p === n) continue;
    const pSlots = p?.setElements ?? new Map<string, readonly NftElement[]>();
    const nSlots = n?.setElements ?? new Map<string, readonly NftElement[]>();
    const pShared = p?.elements ?? [];
    const nShared = n?.elements ?? [];
    const pSets = new Map((p?.sets ?? []).map((s) => [s.name, s]));
    const nSets = new Map((n?.sets ?? []).map((s) => [s.name, s]));
    let setRecreated = false;
    const fill = (s: NftSet): void => {
      const els = nSlots.get(s.name);
      if (!s.dynamic && els?.length) fillSets.push([s.name, els]);
    };
    for (const s of p?.sets ?? []) {
      const ns = nSets.get(s.name);
      if (!ns) delSets.push(s.name);
      else if (!sameSetDef(s, ns)) {
        delSets.push(s.name);
        addSets.push(ns);
        fill(ns);
        setRecreated = true;
      } else if (!ns.dynamic && !sameJson(pSlots.get(s.name) ?? [], nSlots.get(s.name) ?? [])) {
        // Element-only: no rule refers to an element, so this needs no validation at commit.
        if (pSlots.get(s.name)?.length) flushSets.push(s.name);
        fill(ns);
      }
    }
    for (const s of n?.sets ?? []) {
      if (pSets.has(s.name)) continue;
      addSets.push(s);
      fill(s);
    }
    const pChains = new Map((p?.chains ?? []).map((c) => [c.name, c]));
    const nChains = new Map((n?.chains ?? []).map((c) => [c.name, c]));
    for (const c of p?.chains ?? []) {
      const nc = nChains.get(c.name);
      if (!nc) {
        flush.push(c.name);
        delChains.push(c.name);
      } else if (setRecreated || !sameJson(c.rules, nc.rules)) {
        flush.push(c.name);
        ruleChains.push(nc);
      }
    }
    for (const c of n?.chains ?? []) {
      if (pChains.has(c.name)) continue;
      addChains.push(c);
      ruleChains.push(c);
    }
    for (const b of new Set([...pSlots.keys(), ...nSlots.keys()])) {
      const pe = pSlots.get(b) ?? [];
      const ne = nSlots.get(b) ?? [];
      if (sameJson(pe, ne)) continue;
      // Element-only: no rule refers to an element, so this needs no validation at commit.
      if (pe.length) slotDeletes.set(b, [...(slotDeletes.get(b) ?? []), ...pe.map((e) => [...e.key])]);
      if (ne.length) slotAdds.set(b, [...(slotAdds.get(b) ?? []), ...ne]);
    }
    for (const me of pShared) affected.add(me.claim);
    for (const me of nShared) affected.add(me.claim);
  }
  const byClaim = new Map<ServiceObjects, Map<string, MapElement>>();
  const index = (o: ServiceObjects): ReadonlyMap<string, MapElement> => {
    let m = byClaim.get(o);
    if (!m) byClaim.set(o, (m = new Map(o.elements.map((me) => [me.claim, me]))));
    return m;
  };
  for (const ck of [...affected].sort()) {
    const pe = prev.installed(ck, index);
    const ne = next.installed(ck, index);
    const same = !!pe && !!ne && sameJson(pe.element, ne.element);
    if (pe && !same) {
      const l = delElements.get(pe.map) ?? [];
      l.push([...pe.element.key]);
      delElements.set(pe.map, l);
    }
    if (ne && !same) {
      const l = addElements.get(ne.map) ?? [];
      l.push(ne.element);
      addElements.set(ne.map, l);
    }
  }
  const ops: NftOp[] = [];
  for (const m of MAP_ORDER) {
    const keys = delElements.get(m);
    if (keys?.length) ops.push({ op: 'delete-elements', set: m, keys });
  }
  for (const c of flush) ops.push({ op: 'flush-chain', chain: c });
  for (const c of delChains) ops.push({ op: 'delete-chain', chain: c });
  for (const s of delSets) ops.push({ op: 'delete-set', set: s });
  for (const s of addSets) ops.push({ op: 'add-set', set: s });
  for (const c of addChains) ops.push({ op: 'add-chain', chain: chainHead(c) });
  for (const c of ruleChains) for (const r of c.rules) ops.push({ op: 'add-rule', chain: c.name, rule: r });
  for (const s of flushSets) ops.push({ op: 'flush-set', set: s });
  for (const [s, els] of fillSets) pushElements(ops, s, els);
  for (const [b, keys] of slotDeletes) for (let i = 0; i < keys.length; i += ELEMENT_CHUNK) ops.push({ op: 'delete-elements', set: b, keys: keys.slice(i, i + ELEMENT_CHUNK) });
  for (const [b, els] of slotAdds) pushElements(ops, b, els);
  for (const m of MAP_ORDER) {
    const els = addElements.get(m);
    if (els?.length) pushElements(ops, m, els);
  }
  return ops;
}

// ---------------------------------------------------------------- cleanup

/**
 * What removes podnet's proxy objects from a table as listed (`existing`): 'delete-table'
 * when nothing else is in it, else a transaction deleting exactly our chains and sets
 * (flushed first, so no reference is left), or undefined when there is nothing of ours.
 */
export function planCleanup(family: NftFamily, existing: ExistingObjects): NftTransaction | 'delete-table' | undefined {
  const ourChains = existing.chains.map((c) => c.name).filter(isOwnedChain);
  const ourSets = existing.sets.map((s) => s.name).filter(isOwnedSet);
  const others = existing.chains.length - ourChains.length + existing.sets.length - ourSets.length;
  if (others === 0) return 'delete-table';
  if (!ourChains.length && !ourSets.length) return undefined;
  const ops: NftOp[] = [];
  for (const c of ourChains) ops.push({ op: 'flush-chain', chain: c });
  for (const s of ourSets) if (isOwnedMap(s)) ops.push({ op: 'flush-set', set: s });
  for (const c of ourChains) ops.push({ op: 'delete-chain', chain: c });
  for (const s of ourSets) ops.push({ op: 'delete-set', set: s });
  return { family, table: TABLE_NAME, ops };
}
