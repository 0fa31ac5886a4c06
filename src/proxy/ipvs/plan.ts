/**
 * The IPVS mode's planner (pure): from ProxyServicePorts to what the kernel must hold, and
 * from (desired, observed) to the operations that get there. See README.md for the layout.
 *
 *   planPort(sp, node)   -> PortPlan: virtual servers (ClusterIP, externalIPs, LB IPs, NodePort
 *                           on each node IP) with their real servers, the VIPs to bind to
 *                           podnet-ipvs0, and the ipset entries the netfilter rules match
 *   PlanIndex            -> the PortPlans of every service port, merged (shared VIPs and
 *                           entries are counted by owner) into an IpvsState
 *   planRules(family, node) -> the iptables-restore text of podnet's chains (static per node)
 *   diff(desired, observed) -> IpvsOps, ordered so that each step is safe to apply
 */
import { parseIP } from '../../util/ipnet.js';
import type { Family, L4Protocol, ProxyEndpoint, ProxyNodeConfig, ProxyServicePort, ProxySnapshot } from '../types.js';
import { MASQUERADE_MARK } from '../types.js';

/** The dummy device that holds the VIPs, so the kernel treats them as local (kube-ipvs0). */
export const DUMMY_DEVICE = 'podnet-ipvs0';
/** kube-proxy's default IPVS scheduler. */
export const SCHEDULER = 'rr';

export interface RealServer {
  address: string;
  port: number;
  weight: number;
}

/** Real servers in the order a VirtualServer keeps them (and ipvsadm -Ln prints them): by address, then port. */
export const byAddressPort = (a: Pick<RealServer, 'address' | 'port'>, b: Pick<RealServer, 'address' | 'port'>): number => (a.address < b.address ? -1 : a.address > b.address ? 1 : a.port - b.port);

export interface VirtualServer {
  /** `TCP 10.96.0.10:53`, `UDP [fd00:10:96::a]:53`: unique, what ipvsadm prints. */
  id: string;
  family: Family;
  protocol: L4Protocol;
  address: string;
  port: number;
  scheduler: string;
  /** Session affinity ClientIP: IPVS persistence in seconds; undefined = none. */
  persistentTimeout?: number;
  /** Sorted by address, then port. */
  realServers: RealServer[];
}

/** What podnet's sets are for (each exists once per family: PODNET-IPVS-<base>-4 / -6). */
export const SET_BASES = {
  /** hash:ip,port -- ClusterIP,proto:port: masquerade when the source is outside the cluster CIDR. */
  CLUSTER: 'hash:ip,port',
  /** hash:ip,port -- externalIP / LB IP / nodeIP,proto:port with externalTrafficPolicy Cluster: always masquerade. */
  MASQ: 'hash:ip,port',
  /** hash:ip,port -- every VIP,proto:port with a virtual server: not rejected by the filter. */
  SERVED: 'hash:ip,port',
  /** hash:ip -- every VIP (the addresses of podnet-ipvs0): new flows to an unserved port are rejected. */
  VIPS: 'hash:ip',
  /** hash:ip,port -- nodeIP,proto:nodePort of each NodePort virtual server (which virtual servers on node IPs are podnet's). */
  NODEPORTS: 'hash:ip,port',
  /** hash:ip,port,ip -- local endpoint ip,proto:port,ip: hairpin (a pod reaching itself through a VIP) is masqueraded. */
  LOOPBACK: 'hash:ip,port,ip',
  /**
   * hash:ip,port -- VIP / nodeIP,proto:port of a Service port without usable endpoints: new flows
   * are rejected by the filter (TCP with a reset) before IPVS would answer with ICMP -- an ICMPv6
   * error reaching a socket inside connect() is lost (TcpExtLockDroppedIcmps) and IPv6 TCP
   * clients would wait for the SYN retransmit (1 s) to be refused.
   */
  REJECT: 'hash:ip,port',
  /**
   * hash:ip,port -- external VIP / nodeIP,proto:port of an externalTrafficPolicy Local Service port
   * with endpoints, none of them on this node: new flows are dropped (as kube-proxy's iptables and
   * nftables modes do), not refused.
   */
  DROP: 'hash:ip,port',
} as const;
export type SetBase = keyof typeof SET_BASES;
export type SetType = (typeof SET_BASES)[SetBase];

export function setName(base: SetBase, family: Family): string {
  return `PODNET-IPVS-${base}-${family}`;
}

export interface SetDef {
  name: string;
  type: SetType;
  family: Family;
}

/** Every set podnet creates for a family (creation order; no set references another). */
export function setDefs(family: Family): SetDef[] {
  return (Object.keys(SET_BASES) as SetBase[]).map((b) => ({ name: setName(b, family), type: SET_BASES[b], family }));
}

/** podnet's iptables chains (per family) and the one jump from a built-in chain to each. */
export const CHAINS = {
  nat: ['PODNET-IPVS-SERVICES', 'PODNET-IPVS-POSTROUTING', 'PODNET-IPVS-MARK-MASQ'],
  filter: ['PODNET-IPVS-FILTER'],
} as const;
export interface Jump {
  table: 'nat' | 'filter';
  chain: string;
  target: string;
}
export const JUMPS: readonly Jump[] = [
  { table: 'nat', chain: 'PREROUTING', target: 'PODNET-IPVS-SERVICES' },
  { table: 'nat', chain: 'OUTPUT', target: 'PODNET-IPVS-SERVICES' },
  { table: 'nat', chain: 'POSTROUTING', target: 'PODNET-IPVS-POSTROUTING' },
  { table: 'filter', chain: 'INPUT', target: 'PODNET-IPVS-FILTER' },
  { table: 'filter', chain: 'OUTPUT', target: 'PODNET-IPVS-FILTER' },
];

/** How a jump appears in iptables-save output (and how it is written: `-I` instead of `-A`). */
export function jumpRule(j: Jump): string {
  return `-A ${j.chain} -j ${j.target}`;
}

/** What one service port of one family asks for. */
export interface PortPlan {
  virtualServers: VirtualServer[];
  /** Addresses to bind to podnet-ipvs0. */
  vips: string[];
  /** Set name -> entries. */
  entries: Map<string, string[]>;
}

/** The whole desired (or observed) state: virtual servers, VIPs and set entries. */
export interface IpvsState {
  virtualServers: Map<string, VirtualServer>;
  vips: Set<string>;
  /** Set name -> entries (only podnet's sets). */
  sets: Map<string, Set<string>>;
}

export function emptyState(): IpvsState {
  return { virtualServers: new Map(), vips: new Set(), sets: new Map() };
}

/** `TCP 10.96.0.10:53` / `UDP [fd00::a]:53`. */
export function vsId(protocol: L4Protocol, address: string, port: number): string {
  return `${protocol} ${address.includes(':') ? `[${address}]` : address}:${port}`;
}

const proto = (p: L4Protocol) => p.toLowerCase();
/** An ipset member `ip,proto:port`. */
export const ipPortEntry = (ip: string, protocol: L4Protocol, port: number) => `${ip},${proto(protocol)}:${port}`;

function realServers(eps: readonly ProxyEndpoint[]): RealServer[] {
  const seen = new Map<string, RealServer>();
  for (const e of eps) {
    const address = parseIP(e.ip);
    seen.set(`${address}/${e.port}`, { address, port: e.port, weight: 1 });
  }
  return [...seen.values()].sort(byAddressPort);
}

/**
 * The virtual servers, VIPs and set entries of one service port (kube-proxy's IPVS proxier,
 * per Service port):
 *
 * - a virtual server on the ClusterIP with the cluster endpoints (internalTrafficPolicy
 *   Local: only local ones, as the snapshot already chose);
 * - one on each externalIP and LB IP, and one per node IP on the NodePort, with the external
 *   endpoints (externalTrafficPolicy Local: only local ones -- IPVS virtual servers are per
 *   address, so the external ones get their own list);
 * - scheduler rr, weight 1, NAT forwarding; session affinity = persistence with its timeout;
 * - a Service port without usable endpoints keeps its virtual servers with no real server,
 *   and its addresses go into the REJECT set: new flows are refused (TCP reset, ICMP port
 *   unreachable), not black-holed; an eTP Local one with endpoints on other nodes only: its
 *   external addresses go into the DROP set instead (dropped, as kube-proxy does);
 * - masquerade: ClusterIP traffic from outside the cluster CIDR (set CLUSTER), external
 *   traffic with eTP Cluster (set MASQ); eTP Local keeps the client address (not in MASQ).
 */
export function planPort(sp: ProxyServicePort, node: ProxyNodeConfig): PortPlan {
  const family = node.family;
  // Canonical addresses (the kernel reports them so): "FD00::A" and "fd00::a" are one VIP.
  const clusterIP = parseIP(sp.clusterIP);
  const entries = new Map<string, string[]>();
  const add = (base: SetBase, e: string) => {
    const n = setName(base, family);
    const list = entries.get(n);
    if (list) {
      if (!list.includes(e)) list.push(e);
    } else entries.set(n, [e]);
  };
  const vs = (address: string, port: number, eps: readonly ProxyEndpoint[]): VirtualServer => ({
    id: vsId(sp.protocol, address, port),
    family,
    protocol: sp.protocol,
    address,
    port,
    scheduler: SCHEDULER,
    ...(sp.affinityTimeoutSeconds !== undefined ? { persistentTimeout: sp.affinityTimeoutSeconds } : {}),
    realServers: realServers(eps),
  });

  // Without a real server: refused, or dropped (eTP Local, endpoints elsewhere only).
  const usable = sp.clusterEndpoints.length > 0 || sp.endpoints.some((e) => e.ready || e.serving);
  const unserved = (ip: string, port: number, eps: readonly ProxyEndpoint[], external: boolean) => {
    if (eps.length) return;
    add(external && sp.externalPolicyLocal && usable ? 'DROP' : 'REJECT', ipPortEntry(ip, sp.protocol, port));
  };
  const virtualServers: VirtualServer[] = [vs(clusterIP, sp.port, sp.clusterEndpoints)];
  const vips = [clusterIP];
  add('CLUSTER', ipPortEntry(clusterIP, sp.protocol, sp.port));
  add('SERVED', ipPortEntry(clusterIP, sp.protocol, sp.port));
  unserved(clusterIP, sp.port, sp.clusterEndpoints, false);
  for (const ip of [...sp.externalIPs, ...sp.loadBalancerIPs].map((a) => parseIP(a))) {
    if (virtualServers.some((v) => v.address === ip && v.port === sp.port)) continue;
    virtualServers.push(vs(ip, sp.port, sp.externalEndpoints));
    if (!vips.includes(ip)) vips.push(ip);
    add('SERVED', ipPortEntry(ip, sp.protocol, sp.port));
    if (!sp.externalPolicyLocal) add('MASQ', ipPortEntry(ip, sp.protocol, sp.port));
    unserved(ip, sp.port, sp.externalEndpoints, true);
  }
  if (sp.nodePort) {
    for (const ip of node.nodeIPs.map((a) => parseIP(a))) {
      if (virtualServers.some((v) => v.address === ip && v.port === sp.nodePort)) continue;
      virtualServers.push(vs(ip, sp.nodePort, sp.externalEndpoints));
      add('NODEPORTS', ipPortEntry(ip, sp.protocol, sp.nodePort));
      if (!sp.externalPolicyLocal) add('MASQ', ipPortEntry(ip, sp.protocol, sp.nodePort));
      unserved(ip, sp.nodePort, sp.externalEndpoints, true);
    }
  }
  for (const ip of vips) add('VIPS', ip);
  for (const e of [...sp.clusterEndpoints, ...sp.externalEndpoints]) {
    if (!e.isLocal) continue;
    const ip = parseIP(e.ip);
    add('LOOPBACK', `${ip},${proto(sp.protocol)}:${e.port},${ip}`);
  }
  for (const list of entries.values()) list.sort();
  return { virtualServers, vips, entries };
}

/** Touched ids of a PlanIndex update: what a partial sync must look at. */
export interface Touched {
  virtualServers: Set<string>;
  vips: Set<string>;
  /** `set\0entry` */
  entries: Set<string>;
}

const entryKey = (set: string, entry: string) => `${set}\0${entry}`;

/**
 * The PortPlans of every service port (keyed `family/key`), merged. Two service ports may
 * share a VIP (every port of a Service shares its ClusterIP), a hairpin entry, or -- a
 * conflict in the API objects -- a virtual server: each shared object is kept while some
 * owner wants it, and a contested virtual server is defined by its first owner in key order.
 */
export class PlanIndex {
  private readonly ports = new Map<string, PortPlan>();
  private readonly vsOwners = new Map<string, Set<string>>();
  private readonly vipOwners = new Map<string, Set<string>>();
  private readonly entryOwners = new Map<string, Set<string>>();

  static portKey(family: Family, key: string): string {
    return `${family}/${key}`;
  }

  /** Replaces (or with undefined removes) one port's plan; returns what it touched. */
  set(portKey: string, plan: PortPlan | undefined, touched: Touched = { virtualServers: new Set(), vips: new Set(), entries: new Set() }): Touched {
    const old = this.ports.get(portKey);
    if (old) {
      for (const v of old.virtualServers) release(this.vsOwners, v.id, portKey, touched.virtualServers);
      for (const ip of old.vips) release(this.vipOwners, ip, portKey, touched.vips);
      for (const [set, list] of old.entries) for (const e of list) release(this.entryOwners, entryKey(set, e), portKey, touched.entries);
      this.ports.delete(portKey);
    }
    if (plan) {
      this.ports.set(portKey, plan);
      for (const v of plan.virtualServers) claim(this.vsOwners, v.id, portKey, touched.virtualServers);
      for (const ip of plan.vips) claim(this.vipOwners, ip, portKey, touched.vips);
      for (const [set, list] of plan.entries) for (const e of list) claim(this.entryOwners, entryKey(set, e), portKey, touched.entries);
    }
    return touched;
  }

  has(portKey: string): boolean {
    return this.ports.has(portKey);
  }

  get(portKey: string): PortPlan | undefined {
    return this.ports.get(portKey);
  }

  keys(): IterableIterator<string> {
    return this.ports.keys();
  }

  /** The merged state, whole (no argument) or restricted to the touched ids. */
  state(only?: Touched): IpvsState {
    const out = emptyState();
    const vsIds = only ? only.virtualServers : this.vsOwners.keys();
    for (const id of vsIds) {
      const owners = this.vsOwners.get(id);
      if (!owners?.size) continue;
      const first = [...owners].sort()[0]!;
      const v = this.ports.get(first)!.virtualServers.find((x) => x.id === id)!;
      out.virtualServers.set(id, v);
    }
    for (const ip of only ? only.vips : this.vipOwners.keys()) if (this.vipOwners.get(ip)?.size) out.vips.add(ip);
    for (const k of only ? only.entries : this.entryOwners.keys()) {
      if (!this.entryOwners.get(k)?.size) continue;
      const [set, entry] = k.split('\0') as [string, string];
      let s = out.sets.get(set);
      if (!s) out.sets.set(set, (s = new Set()));
      s.add(entry);
    }
    return out;
  }
}

function claim(m: Map<string, Set<string>>, id: string, owner: string, touched: Set<string>): void {
  let s = m.get(id);
  if (!s) m.set(id, (s = new Set()));
  s.add(owner);
  touched.add(id);
}

function release(m: Map<string, Set<string>>, id: string, owner: string, touched: Set<string>): void {
  const s = m.get(id);
  if (!s) return;
  s.delete(owner);
  if (!s.size) m.delete(id);
  touched.add(id);
}

/** The PlanIndex of whole snapshots (a full sync). */
export function planSnapshots(snapshots: readonly ProxySnapshot[]): PlanIndex {
  const index = new PlanIndex();
  for (const snap of snapshots) {
    for (const sp of snap.services.values()) index.set(PlanIndex.portKey(snap.family, sp.key), planPort(sp, snap.node));
  }
  return index;
}

/** Restricts a state to the touched ids (the observed side of a partial sync). */
export function restrict(s: IpvsState, only: Touched): IpvsState {
  const out = emptyState();
  for (const id of only.virtualServers) {
    const v = s.virtualServers.get(id);
    if (v) out.virtualServers.set(id, v);
  }
  for (const ip of only.vips) if (s.vips.has(ip)) out.vips.add(ip);
  for (const k of only.entries) {
    const [set, entry] = k.split('\0') as [string, string];
    if (!s.sets.get(set)?.has(entry)) continue;
    let t = out.sets.get(set);
    if (!t) out.sets.set(set, (t = new Set()));
    t.add(entry);
  }
  return out;
}

/** Writes the (restricted) `part` into `into`: the model after a successful partial sync. */
export function merge(into: IpvsState, part: IpvsState, only: Touched): void {
  for (const id of only.virtualServers) {
    const v = part.virtualServers.get(id);
    if (v) into.virtualServers.set(id, v);
    else into.virtualServers.delete(id);
  }
  for (const ip of only.vips) {
    if (part.vips.has(ip)) into.vips.add(ip);
    else into.vips.delete(ip);
  }
  for (const k of only.entries) {
    const [set, entry] = k.split('\0') as [string, string];
    let s = into.sets.get(set);
    if (part.sets.get(set)?.has(entry)) {
      if (!s) into.sets.set(set, (s = new Set()));
      s.add(entry);
    } else s?.delete(entry);
  }
}

// ---- operations

export type IpvsOp =
  | { op: 'add-entry'; set: string; entry: string }
  | { op: 'add-vip'; address: string }
  | { op: 'add-service'; vs: VirtualServer }
  | { op: 'update-service'; vs: VirtualServer }
  | { op: 'add-dest'; vs: VirtualServer; rs: RealServer }
  | { op: 'update-dest'; vs: VirtualServer; rs: RealServer }
  | { op: 'del-dest'; vs: VirtualServer; rs: RealServer }
  | { op: 'del-service'; vs: VirtualServer }
  | { op: 'del-vip'; address: string }
  | { op: 'del-entry'; set: string; entry: string };

const sameService = (a: VirtualServer, b: VirtualServer) => a.scheduler === b.scheduler && (a.persistentTimeout ?? 0) === (b.persistentTimeout ?? 0);
const rsKey = (r: Pick<RealServer, 'address' | 'port'>) => `${r.address}/${r.port}`;

/**
 * The operations that turn `observed` into `desired`, in a safe order:
 *   set entries in (VIPS last: a VIP is only filtered once its ports are marked served),
 *   VIPs onto the dummy device, virtual servers added / changed (a new one with its real
 *   servers), real servers removed, virtual servers removed, VIPs off, set entries out
 *   (VIPS first; NODEPORTS after the virtual servers they record are gone).
 * A crash between two steps leaves a state the next full sync recognises as podnet's: every
 * podnet virtual server's address is on the dummy device or recorded in NODEPORTS.
 */
export function diff(desired: IpvsState, observed: IpvsState): IpvsOp[] {
  const addEntries: IpvsOp[] = [];
  const addVipEntries: IpvsOp[] = [];
  const delEntries: IpvsOp[] = [];
  const delVipEntries: IpvsOp[] = [];
  const isVips = (set: string) => /^PODNET-IPVS-VIPS-/.test(set);
  for (const [set, want] of sorted(desired.sets)) {
    const have = observed.sets.get(set);
    for (const e of [...want].sort()) if (!have?.has(e)) (isVips(set) ? addVipEntries : addEntries).push({ op: 'add-entry', set, entry: e });
  }
  for (const [set, have] of sorted(observed.sets)) {
    const want = desired.sets.get(set);
    for (const e of [...have].sort()) if (!want?.has(e)) (isVips(set) ? delVipEntries : delEntries).push({ op: 'del-entry', set, entry: e });
  }
  const addVips: IpvsOp[] = [...desired.vips].filter((ip) => !observed.vips.has(ip)).sort().map((address) => ({ op: 'add-vip', address }));
  const delVips: IpvsOp[] = [...observed.vips].filter((ip) => !desired.vips.has(ip)).sort().map((address) => ({ op: 'del-vip', address }));

  const upserts: IpvsOp[] = [];
  const delDests: IpvsOp[] = [];
  const delServices: IpvsOp[] = [];
  for (const [id, vs] of sorted(desired.virtualServers)) {
    const have = observed.virtualServers.get(id);
    if (!have) {
      upserts.push({ op: 'add-service', vs });
      for (const rs of vs.realServers) upserts.push({ op: 'add-dest', vs, rs });
      continue;
    }
    if (!sameService(vs, have)) upserts.push({ op: 'update-service', vs });
    const haveRs = new Map(have.realServers.map((r) => [rsKey(r), r]));
    const wantRs = new Set(vs.realServers.map(rsKey));
    for (const rs of vs.realServers) {
      const h = haveRs.get(rsKey(rs));
      if (!h) upserts.push({ op: 'add-dest', vs, rs });
      else if (h.weight !== rs.weight) upserts.push({ op: 'update-dest', vs, rs });
    }
    for (const rs of have.realServers) if (!wantRs.has(rsKey(rs))) delDests.push({ op: 'del-dest', vs, rs });
  }
  for (const [id, vs] of sorted(observed.virtualServers)) if (!desired.virtualServers.has(id)) delServices.push({ op: 'del-service', vs });
  return [...addEntries, ...addVipEntries, ...addVips, ...upserts, ...delDests, ...delServices, ...delVips, ...delVipEntries, ...delEntries];
}

// ---- graceful termination

/**
 * Protocols whose removed real servers drain (kube-proxy's graceful termination): TCP. A UDP
 * or SCTP real server is deleted at once; its stale UDP conntrack entries are cleared.
 */
const DRAINS: ReadonlySet<string> = new Set(['TCP']);
export const drains = (protocol: L4Protocol): boolean => DRAINS.has(protocol);

/** A real server of a virtual server: `TCP 10.96.0.10:80|10.244.1.5/8080`. */
export const destKey = (vsId: string, rs: Pick<RealServer, 'address' | 'port'>): string => `${vsId}|${rsKey(rs)}`;
/** The virtual server id of a destKey. */
export const destVs = (key: string): string => key.slice(0, key.indexOf('|'));

/**
 * Graceful termination, as kube-proxy's IPVS mode does it: a TCP real server leaving a
 * virtual server that stays is set to weight 0 (no new connections) and kept while it has
 * connections, instead of deleted. With expire_nodest_conn=1, deleting it drops the next
 * packet of each of its connections and expires them: a reply already in flight (the FIN
 * after the data) never arrives. `ops` is diff(desired, observed); `connections` gives a
 * real server's active + inactive connections (undefined: unknown, counted as some).
 * Returns the ops with those del-dest turned into update-dest (weight 0, when not already),
 * and `desired` with the kept real servers at weight 0 (the model of what the kernel holds).
 */
export function drainRemovals(desired: IpvsState, ops: readonly IpvsOp[], connections: (key: string) => number | undefined): { ops: IpvsOp[]; desired: IpvsState; draining: string[] } {
  const out: IpvsOp[] = [];
  const kept = new Map<string, RealServer[]>();
  const draining: string[] = [];
  for (const x of ops) {
    if (x.op !== 'del-dest' || !drains(x.vs.protocol) || !desired.virtualServers.has(x.vs.id)) {
      out.push(x);
      continue;
    }
    const key = destKey(x.vs.id, x.rs);
    if ((connections(key) ?? 1) === 0) {
      out.push(x);
      continue;
    }
    const rs = { address: x.rs.address, port: x.rs.port, weight: 0 };
    if (x.rs.weight !== 0) out.push({ op: 'update-dest', vs: desired.virtualServers.get(x.vs.id)!, rs });
    kept.set(x.vs.id, [...(kept.get(x.vs.id) ?? []), rs]);
    draining.push(key);
  }
  if (!kept.size) return { ops: out, desired, draining };
  // The planned virtual servers are shared with the plan index: copies get the kept ones.
  const virtualServers = new Map(desired.virtualServers);
  for (const [id, extra] of kept) {
    const vs = virtualServers.get(id)!;
    const realServers = [...vs.realServers, ...extra].sort(byAddressPort);
    virtualServers.set(id, { ...vs, realServers });
  }
  return { ops: out, desired: { ...desired, virtualServers }, draining };
}

function sorted<V>(m: Map<string, V>): [string, V][] {
  return [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

// ---- netfilter rules

/**
 * podnet's chains for one family, as iptables-restore --noflush input (declaring a chain
 * flushes it, so the text replaces the chains whole). The jumps from the built-in chains are
 * inserted only where missing (`missingJumps`, from iptables-save), so each exists once.
 *
 *   nat PREROUTING, OUTPUT -> PODNET-IPVS-SERVICES   mark what must be masqueraded
 *   nat POSTROUTING        -> PODNET-IPVS-POSTROUTING hairpin and marked traffic: MASQUERADE
 *   filter INPUT, OUTPUT   -> PODNET-IPVS-FILTER     new flows to a port without endpoints: DROP (eTP Local,
 *                                                    endpoints elsewhere) / REJECT; to a VIP port without a
 *                                                    virtual server: REJECT
 */
export function planRules(family: Family, node: Pick<ProxyNodeConfig, 'clusterCIDR'>, missingJumps: readonly Jump[] = []): string {
  const s = (b: SetBase) => setName(b, family);
  const mark = `0x${MASQUERADE_MARK.toString(16)}`;
  const jumps = (table: string) => missingJumps.filter((j) => j.table === table).map((j) => `-I ${j.chain} -j ${j.target}`);
  const lines = [
    '*nat',
    ...CHAINS.nat.map((c) => `:${c} - [0:0]`),
    ...(node.clusterCIDR ? [`-A PODNET-IPVS-SERVICES -m set --match-set ${s('CLUSTER')} dst,dst ! -s ${node.clusterCIDR} -j PODNET-IPVS-MARK-MASQ`] : []),
    `-A PODNET-IPVS-SERVICES -m set --match-set ${s('MASQ')} dst,dst -j PODNET-IPVS-MARK-MASQ`,
    `-A PODNET-IPVS-MARK-MASQ -j MARK --or-mark ${mark}`,
    `-A PODNET-IPVS-POSTROUTING -m set --match-set ${s('LOOPBACK')} dst,dst,src -j MASQUERADE`,
    `-A PODNET-IPVS-POSTROUTING -m mark ! --mark ${mark}/${mark} -j RETURN`,
    `-A PODNET-IPVS-POSTROUTING -j MARK --xor-mark ${mark}`,
    `-A PODNET-IPVS-POSTROUTING -j MASQUERADE`,
    ...jumps('nat'),
    'COMMIT',
    '*filter',
    ...CHAINS.filter.map((c) => `:${c} - [0:0]`),
    `-A PODNET-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set ${s('DROP')} dst,dst -j DROP`,
    `-A PODNET-IPVS-FILTER -p tcp -m conntrack --ctstate NEW -m set --match-set ${s('REJECT')} dst,dst -j REJECT --reject-with tcp-reset`,
    `-A PODNET-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set ${s('REJECT')} dst,dst -j REJECT`,
    `-A PODNET-IPVS-FILTER -m set --match-set ${s('SERVED')} dst,dst -j RETURN`,
    `-A PODNET-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set ${s('VIPS')} dst -j REJECT`,
    ...jumps('filter'),
    'COMMIT',
    '',
  ];
  return lines.join('\n');
}

/** The jumps absent from iptables-save output of the nat and filter tables. */
export function missingJumps(saved: string): Jump[] {
  const byTable = new Map<string, Set<string>>();
  let table = '';
  for (const line of saved.split('\n')) {
    if (line.startsWith('*')) table = line.slice(1).trim();
    else if (line.startsWith('-A ')) {
      let s = byTable.get(table);
      if (!s) byTable.set(table, (s = new Set()));
      s.add(line.trim());
    }
  }
  return JUMPS.filter((j) => !byTable.get(j.table)?.has(jumpRule(j)));
}

/**
 * iptables-restore --noflush input that removes podnet's chains: the jumps present in
 * `saved` are deleted, then the chains flushed and deleted (chains absent from `saved` are
 * skipped, so it applies on a clean host too). Empty when nothing is left.
 */
export function cleanupRules(saved: string): string {
  const present = new Map<string, Set<string>>();
  const rules = new Map<string, string[]>();
  let table = '';
  for (const line of saved.split('\n')) {
    if (line.startsWith('*')) table = line.slice(1).trim();
    else if (line.startsWith(':')) {
      let s = present.get(table);
      if (!s) present.set(table, (s = new Set()));
      s.add(line.slice(1).split(' ')[0]!);
    } else if (line.startsWith('-A ')) {
      let l = rules.get(table);
      if (!l) rules.set(table, (l = []));
      l.push(line.trim());
    }
  }
  const out: string[] = [];
  for (const table of ['nat', 'filter'] as const) {
    const chains = CHAINS[table].filter((c) => present.get(table)?.has(c));
    // Every rule anywhere that jumps to one of our chains (normally just the JUMPS).
    const refs = (rules.get(table) ?? []).filter((r) => chains.some((c) => r.endsWith(` -j ${c}`) || r.includes(` -j ${c} `)) && !chains.some((c) => r.startsWith(`-A ${c} `)));
    if (!chains.length && !refs.length) continue;
    out.push(`*${table}`, ...refs.map((r) => `-D${r.slice(2)}`), ...chains.map((c) => `-F ${c}`), ...chains.map((c) => `-X ${c}`), 'COMMIT');
  }
  return out.length ? `${out.join('\n')}\n` : '';
}

// ---- rendering (golden tests, logs)

/** The state as text: VIPs, virtual servers with real servers (like `ipvsadm -Ln`), set entries. */
export function renderState(s: IpvsState): string {
  const out: string[] = [];
  out.push(`vips ${[...s.vips].sort().join(' ') || '-'}`);
  for (const [, vs] of sorted(s.virtualServers)) {
    out.push(`${vs.id} ${vs.scheduler}${vs.persistentTimeout !== undefined ? ` persistent ${vs.persistentTimeout}` : ''}`);
    for (const r of vs.realServers) out.push(`  -> ${r.address.includes(':') ? `[${r.address}]` : r.address}:${r.port} masq ${r.weight}`);
  }
  for (const [set, entries] of sorted(s.sets)) if (entries.size) out.push(`set ${set} ${[...entries].sort().join(' ')}`);
  return out.join('\n');
}

export function renderOps(ops: readonly IpvsOp[]): string {
  return ops
    .map((o) => {
      switch (o.op) {
        case 'add-entry':
        case 'del-entry':
          return `${o.op} ${o.set} ${o.entry}`;
        case 'add-vip':
        case 'del-vip':
          return `${o.op} ${o.address}`;
        case 'add-service':
        case 'update-service':
          return `${o.op} ${o.vs.id} ${o.vs.scheduler}${o.vs.persistentTimeout !== undefined ? ` persistent ${o.vs.persistentTimeout}` : ''}`;
        case 'del-service':
          return `${o.op} ${o.vs.id}`;
        case 'add-dest':
        case 'update-dest':
        case 'del-dest':
          return `${o.op} ${o.vs.id} -> ${o.rs.address}:${o.rs.port}${o.op === 'del-dest' ? '' : ` w${o.rs.weight}`}`;
      }
    })
    .join('\n');
}
