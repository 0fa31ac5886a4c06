/**
 * The iptables planner (pure): from a ProxySnapshot of one family, the state the previous
 * plan left and the keys of the service ports that may have changed, the input of one
 * `iptables-restore --noflush` (nat and filter parts), the changes of the two ipsets, and
 * the new state. No kernel access: the mode (index.ts) applies what this returns. README.md
 * draws the layout and gives the measurements behind it.
 *
 *   nat PREROUTING, OUTPUT ──> PODNET-SERVICES
 *        -m set ! --match-set PODNET-SERVICE-IPS-<f> dst,dst -j RETURN   (1 match for non-service traffic)
 *        ! -s <clusterCIDR> -m set --match-set PODNET-CLUSTER-IPS-<f> dst,dst -j PODNET-MARK-MASQ
 *        -d 0.0.0.K/0.0.0.M -j PODNET-SERVICES-KK                        (bucket by the VIP's low bits)
 *        -d <nodeIP> -j PODNET-NODEPORTS
 *   PODNET-SERVICES-KK: -d VIP -p P --dport N -j PODNET-SVC-… | PODNET-SVL-… | PODNET-EXT-…
 *   PODNET-EXT-…  (NodePort, externalIPs, LB IPs): masquerade / eTP-Local short-circuits, then SVC or SVL
 *   PODNET-SVC-…  (all usable endpoints), PODNET-SVL-… (local ones): affinity, then the
 *                 `-m statistic --probability 1/N, 1/(N-1) …` cascade to PODNET-SEP-…
 *   PODNET-SEP-…  hairpin masquerade (-s ep) and DNAT
 *   nat POSTROUTING ──> PODNET-POSTROUTING: MASQUERADE --random-fully what is marked 0x4000
 *   filter INPUT, FORWARD, OUTPUT (ct state NEW) ──> PODNET-SERVICES: REJECT (no endpoints),
 *                 DROP (traffic policy Local with no local endpoint)
 *
 * Partial plans: the state records every chain we own with a hash of its content; only the
 * chains of changed service ports whose content differs are declared (`:CHAIN - [0:0]`,
 * which flushes) and rewritten; chains no longer wanted are declared and `-X`ed after every
 * reference to them was rewritten. The dispatch chains (PODNET-SERVICES, its buckets,
 * PODNET-NODEPORTS, filter PODNET-SERVICES) are rebuilt only where a changed port
 * contributes, and written only when their content changed.
 */
import { hash } from 'node:crypto';
import { endpointHash, portHash } from '../names.js';
import { usable } from '../snapshot.js';
import { MASQUERADE_MARK } from '../types.js';
import type { Family, L4Protocol, ProxyEndpoint, ProxyNodeConfig, ProxyServicePort, ProxySnapshot } from '../types.js';

export type Table = 'nat' | 'filter';

/** Every chain podnet creates starts with this; nothing else is ever flushed or deleted. */
export const CHAIN_PREFIX = 'PODNET-';
export const SERVICES_CHAIN = 'PODNET-SERVICES';
export const NODEPORTS_CHAIN = 'PODNET-NODEPORTS';
export const POSTROUTING_CHAIN = 'PODNET-POSTROUTING';
export const MARK_MASQ_CHAIN = 'PODNET-MARK-MASQ';
/** The filter table's chain (same name as in nat, as kube-proxy's KUBE-SERVICES). */
export const FILTER_SERVICES_CHAIN = 'PODNET-SERVICES';

const MARK = `0x${MASQUERADE_MARK.toString(16)}`;

/** Chain of all usable endpoints of a service port (kube-proxy's KUBE-SVC-). */
export function svcChain(sp: Pick<ProxyServicePort, 'key' | 'protocol'>): string {
  return `PODNET-SVC-${portHash(sp.key, sp.protocol)}`;
}
/** Chain of the local usable endpoints (traffic policy Local; kube-proxy's KUBE-SVL-). */
export function svlChain(sp: Pick<ProxyServicePort, 'key' | 'protocol'>): string {
  return `PODNET-SVL-${portHash(sp.key, sp.protocol)}`;
}
/** Entry chain for NodePort, externalIPs and LB IPs (kube-proxy's KUBE-EXT-). */
export function extChain(sp: Pick<ProxyServicePort, 'key' | 'protocol'>): string {
  return `PODNET-EXT-${portHash(sp.key, sp.protocol)}`;
}
/** One endpoint of one service port (kube-proxy's KUBE-SEP-). */
export function sepChain(sp: Pick<ProxyServicePort, 'key' | 'protocol'>, ep: Pick<ProxyEndpoint, 'ip' | 'port'>): string {
  return `PODNET-SEP-${endpointHash(sp.key, sp.protocol, ep.ip, ep.port)}`;
}
/** Bucket `k` of PODNET-SERVICES (VIPs whose low address bits are k). */
export function bucketChain(k: number): string {
  return `${SERVICES_CHAIN}-${k.toString(16).toUpperCase().padStart(2, '0')}`;
}

/** The ipset (hash:ip,port) of every (address, protocol:port) a nat dispatch rule matches. */
export function serviceIPSetName(family: Family): string {
  return `PODNET-SERVICE-IPS-${family}`;
}

/** The ipset of the (ClusterIP, protocol:port) pairs among them: masqueraded from outside the cluster CIDR. */
export function clusterIPSetName(family: Family): string {
  return `PODNET-CLUSTER-IPS-${family}`;
}

/** Every ipset of a family (cleanup). */
export function ipsetNames(family: Family): string[] {
  return [serviceIPSetName(family), clusterIPSetName(family)];
}

/**
 * Above this many endpoints in a family, rules of PODNET-SVC/SVL/SEP chains carry no
 * comment (kube-proxy's large-cluster mode, same threshold): a full load of 10,000 × 10
 * spends ~0.7 s of kernel time on them. Entry rules (dispatch, EXT, NodePorts, filter) keep theirs.
 */
export const LARGE_CLUSTER_ENDPOINTS = 1000;

/** Above this many chains in one table section, the restore starts with `-S` (see plan()). */
export const LIST_FIRST_CHAINS = 2000;

/** A rule in a built-in chain that hooks one of our chains (ensured with `-C` then `-I`). */
export interface Jump {
  table: Table;
  chain: string;
  /** The rule after the chain name, as iptables arguments. */
  args: readonly string[];
}

/** The one jump from each built-in chain we use (identical in both families). */
export const JUMPS: readonly Jump[] = [
  { table: 'nat', chain: 'PREROUTING', args: ['-m', 'comment', '--comment', 'podnet service portals', '-j', SERVICES_CHAIN] },
  { table: 'nat', chain: 'OUTPUT', args: ['-m', 'comment', '--comment', 'podnet service portals', '-j', SERVICES_CHAIN] },
  { table: 'nat', chain: 'POSTROUTING', args: ['-m', 'comment', '--comment', 'podnet postrouting rules', '-j', POSTROUTING_CHAIN] },
  ...(['INPUT', 'FORWARD', 'OUTPUT'] as const).map(
    (chain): Jump => ({ table: 'filter', chain, args: ['-m', 'conntrack', '--ctstate', 'NEW', '-m', 'comment', '--comment', 'podnet service portals', '-j', FILTER_SERVICES_CHAIN] }),
  ),
];

/** `-A CHAIN args` as iptables-save prints it (arguments with spaces double-quoted). */
export function jumpLine(j: Jump): string {
  return `-A ${j.chain} ${j.args.map((a) => (/\s/.test(a) ? `"${a}"` : a)).join(' ')}`;
}

// ---------------------------------------------------------------- state

/** What one service port contributed to the last plan. */
export interface PortPlan {
  /** The nat chains this port owns -> hash of their content. */
  readonly chains: ReadonlyMap<string, string>;
  /** Its rules in PODNET-SERVICES (or a bucket), without `-A CHAIN `, with the address's low byte. */
  readonly dispatch: readonly DispatchRule[];
  /** Its rules in PODNET-NODEPORTS, without `-A PODNET-NODEPORTS `. */
  readonly nodePorts: readonly string[];
  /** Its rules in filter PODNET-SERVICES, without the `-A` prefix. */
  readonly filter: readonly string[];
  /** Its members of the VIP ipset (`10.96.0.1,tcp:80`). */
  readonly setEntries: readonly string[];
  /** Its member of the ClusterIP ipset, when the ClusterIP is dispatched. */
  readonly clusterEntry: string | undefined;
}

export interface DispatchRule {
  /** Low byte of the destination address (selects the bucket). */
  readonly low: number;
  readonly rule: string;
}

/** What the kernel holds after a plan applied (the next plan's `previous`). */
export interface IptablesPlanState {
  readonly family: Family;
  /** The node config the plan was made for; another one forces a full plan. */
  readonly nodeKey: string;
  /** log2 of the number of PODNET-SERVICES buckets (0: VIP rules in PODNET-SERVICES itself). */
  readonly bucketBits: number;
  readonly ports: ReadonlyMap<string, PortPlan>;
  /** Chains not owned by a service port, per table -> content hash. */
  readonly nat: ReadonlyMap<string, string>;
  readonly filter: ReadonlyMap<string, string>;
  /** Members of each ipset, by name, with how many service ports contribute each. */
  readonly sets: ReadonlyMap<string, ReadonlyMap<string, number>>;
  /** Large-cluster mode (no comments on SVC/SVL/SEP rules) in force. */
  readonly large: boolean;
}

/** Our chains and the rules jumping to them from chains not ours, as found by iptables-save. */
export interface SavedTable {
  /** `PODNET-*` chains that exist. */
  chains: readonly string[];
  /** `-A <not PODNET> … -j|-g PODNET-…` lines, verbatim. */
  jumps: readonly string[];
}

/** One ipset's change. Apply `add` (or `replace`) before the restore, `del` after it. */
export interface IpsetPlan {
  name: string;
  family: Family;
  /** Sizing for a (re)created set. */
  maxelem: number;
  hashsize: number;
  /** Full sync: the exact members (the set is replaced by swap). */
  replace?: readonly string[];
  add: readonly string[];
  del: readonly string[];
}

export interface IptablesPlan {
  family: Family;
  full: boolean;
  /** `iptables-restore --noflush` input for the nat table; '' when nothing changes there. */
  nat: string;
  /** Same for the filter table. */
  filter: string;
  /** The VIP set and the ClusterIP set. */
  ipsets: IpsetPlan[];
  state: IptablesPlanState;
  stats: {
    portsWritten: number;
    portsRemoved: number;
    chainsWritten: number;
    chainsDeleted: number;
    jumpsDeleted: number;
  };
}

export interface PlanInput {
  snapshot: ProxySnapshot;
  /** State after the last successful apply; undefined (or another family / node) = full plan. */
  previous?: IptablesPlanState | undefined;
  /** Service port keys that may have changed; undefined = full plan. */
  changed?: ReadonlySet<string> | undefined;
  /**
   * What iptables-save showed at startup (full plans only): PODNET-* chains not wanted are
   * flushed and deleted, jumps to PODNET-* chains that are not ours exactly are deleted.
   */
  existing?: { nat: SavedTable; filter: SavedTable } | undefined;
  /** Force a bucket count (log2); default: chosen from the number of dispatch rules. */
  bucketBits?: number;
  /** Force large-cluster mode on or off; default: more than LARGE_CLUSTER_ENDPOINTS endpoints. */
  large?: boolean;
}

// ---------------------------------------------------------------- formatting

const probabilities = new Map<number, string>();

/**
 * `1/n` formatted as Go's `fmt.Sprintf("%0.10f", 1.0/float64(n))` (kube-proxy's
 * probability): the exact binary value of the double, rounded half to even.
 */
export function probability(n: number): string {
  let s = probabilities.get(n);
  if (s !== undefined) return s;
  const x = 1 / n;
  // x = mant * 2^exp exactly (x in (0, 1]).
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  const e = Number((bits >> 52n) & 0x7ffn);
  const frac = bits & ((1n << 52n) - 1n);
  const mant = e === 0 ? frac : frac | (1n << 52n);
  const shift = BigInt(1075 - (e === 0 ? 1 : e)); // x = mant / 2^shift
  const scaled = mant * 10n ** 10n;
  let q = scaled >> shift;
  const r = scaled - (q << shift);
  const half = 1n << (shift - 1n);
  if (r > half || (r === half && (q & 1n) === 1n)) q += 1n;
  const digits = q.toString().padStart(11, '0');
  s = `${digits.slice(0, -10)}.${digits.slice(-10)}`;
  probabilities.set(n, s);
  return s;
}

/** Comments carry `namespace/name:port` (DNS names); anything else is replaced, never quoted. */
function comment(text: string): string {
  return `-m comment --comment "${text.replace(/[^A-Za-z0-9./:_ >[\]-]/g, '_')}"`;
}

function hostMatch(family: Family, ip: string): string {
  return `${ip}/${family === 4 ? 32 : 128}`;
}

function endpointAddr(family: Family, ip: string, port: number): string {
  return family === 4 ? `${ip}:${port}` : `[${ip}]:${port}`;
}

const protoName = (p: L4Protocol) => p.toLowerCase();

function l4(p: L4Protocol, port: number): string {
  const pr = protoName(p);
  return `-p ${pr} -m ${pr} --dport ${port}`;
}

/** Low byte of an address (IPv4 last octet; IPv6 last group's low byte). */
export function lowByte(family: Family, ip: string): number {
  if (family === 4 || ip.includes('.')) {
    const last = ip.slice(ip.lastIndexOf('.') + 1);
    return Number(last) & 0xff;
  }
  const last = ip.slice(ip.lastIndexOf(':') + 1);
  return last ? parseInt(last, 16) & 0xff : 0;
}

function bucketMatch(family: Family, k: number, bits: number): string {
  const m = (1 << bits) - 1;
  return family === 4 ? `-d 0.0.0.${k}/0.0.0.${m}` : `-d ::${k.toString(16)}/::${m.toString(16)}`;
}

function contentHash(text: string): string {
  return hash('sha1', text, 'base64');
}

/** Bucket count (log2) for n dispatch rules: about sqrt(n) buckets, none for small n. */
export function targetBucketBits(n: number): number {
  if (n <= 64) return 0;
  return Math.min(8, Math.max(3, Math.round(Math.log2(n) / 2)));
}

// ---------------------------------------------------------------- one service port

interface PortRules {
  plan: PortPlan;
  /** chain -> its rules (full `-A CHAIN …` lines, joined by newlines), in declaration order. */
  texts: Map<string, string>;
}

interface Ctx {
  family: Family;
  node: ProxyNodeConfig;
  /** Large-cluster mode: no comments on SVC/SVL/SEP rules. */
  large: boolean;
}

/** The chains and dispatch contributions of one service port. */
export function portRules(sp: ProxyServicePort, ctx: Ctx): PortRules {
  const { family, node, large } = ctx;
  const lbComment = large ? () => '' : (t: string) => `${comment(t)} `;
  const key = sp.key;
  const texts = new Map<string, string>();
  const dispatch: DispatchRule[] = [];
  const nodePorts: string[] = [];
  const filter: string[] = [];
  const setEntries: string[] = [];
  let clusterEntry: string | undefined;
  const pr = protoName(sp.protocol);
  const hasExternal = sp.nodePort > 0 || sp.externalIPs.length > 0 || sp.loadBalancerIPs.length > 0;

  // clusterEndpoints / externalEndpoints are already these for the policy in force.
  const allEps = () => (!sp.internalPolicyLocal ? sp.clusterEndpoints : !sp.externalPolicyLocal ? sp.externalEndpoints : usable(sp.endpoints, false));
  const localEps = () => (sp.internalPolicyLocal ? sp.clusterEndpoints : sp.externalPolicyLocal ? sp.externalEndpoints : usable(sp.endpoints, true));
  const hasInternal = sp.clusterEndpoints.length > 0;
  const useExt = hasExternal && sp.hasEndpoints;
  const hasExternalEps = sp.externalEndpoints.length > 0;
  const svc = svcChain(sp);
  const svl = svlChain(sp);
  const ext = extChain(sp);
  const internalChain = sp.internalPolicyLocal ? svl : svc;
  const needSvc = (!sp.internalPolicyLocal && hasInternal) || useExt;
  const needSvl = (sp.internalPolicyLocal && hasInternal) || (useExt && sp.externalPolicyLocal && hasExternalEps);

  // Entry points.
  if (hasInternal) {
    dispatch.push({ low: lowByte(family, sp.clusterIP), rule: `${comment(`${key} cluster IP`)} -d ${hostMatch(family, sp.clusterIP)} ${l4(sp.protocol, sp.port)} -j ${internalChain}` });
    clusterEntry = `${sp.clusterIP},${pr}:${sp.port}`;
    setEntries.push(clusterEntry);
  }
  if (useExt) {
    for (const ip of sp.externalIPs) {
      dispatch.push({ low: lowByte(family, ip), rule: `${comment(`${key} external IP`)} -d ${hostMatch(family, ip)} ${l4(sp.protocol, sp.port)} -j ${ext}` });
      setEntries.push(`${ip},${pr}:${sp.port}`);
    }
    for (const ip of sp.loadBalancerIPs) {
      dispatch.push({ low: lowByte(family, ip), rule: `${comment(`${key} loadbalancer IP`)} -d ${hostMatch(family, ip)} ${l4(sp.protocol, sp.port)} -j ${ext}` });
      setEntries.push(`${ip},${pr}:${sp.port}`);
    }
    if (sp.nodePort > 0) {
      nodePorts.push(`${comment(key)} ${l4(sp.protocol, sp.nodePort)} -j ${ext}`);
      for (const ip of node.nodeIPs) setEntries.push(`${ip},${pr}:${sp.nodePort}`);
    }
  }

  // Filter: reject what has no endpoint at all, drop what has none for its traffic policy.
  // TCP gets a reset: an ICMPv6 error for a first SYN is ignored by Linux TCP, so with
  // icmp6-port-unreachable an IPv6 client is refused only at the retransmit, 1 s later (measured).
  const reject = sp.protocol === 'TCP' ? 'REJECT --reject-with tcp-reset' : 'REJECT';
  const internalTarget = !sp.hasEndpoints ? reject : !hasInternal ? 'DROP' : undefined;
  const externalTarget = !sp.hasEndpoints ? reject : !hasExternalEps ? 'DROP' : undefined;
  const why = (t: string) => comment(t.startsWith('REJECT') ? `${key} has no endpoints` : `${key} has no local endpoints`);
  if (internalTarget) filter.push(`${why(internalTarget)} -d ${hostMatch(family, sp.clusterIP)} ${l4(sp.protocol, sp.port)} -j ${internalTarget}`);
  if (externalTarget && hasExternal) {
    for (const ip of [...sp.externalIPs, ...sp.loadBalancerIPs]) filter.push(`${why(externalTarget)} -d ${hostMatch(family, ip)} ${l4(sp.protocol, sp.port)} -j ${externalTarget}`);
    if (sp.nodePort > 0) {
      if (node.nodeIPs.length) for (const ip of node.nodeIPs) filter.push(`${why(externalTarget)} -d ${hostMatch(family, ip)} ${l4(sp.protocol, sp.nodePort)} -j ${externalTarget}`);
      else filter.push(`${why(externalTarget)} -m addrtype --dst-type LOCAL ${l4(sp.protocol, sp.nodePort)} -j ${externalTarget}`);
    }
  }

  // The external entry chain.
  if (useExt) {
    const l: string[] = [];
    const a = `-A ${ext}`;
    if (!sp.externalPolicyLocal) {
      l.push(`${a} ${comment(`masquerade traffic for ${key} external destinations`)} -j ${MARK_MASQ_CHAIN}`);
      l.push(`${a} -j ${svc}`);
    } else {
      // Client source preserved; pods and the node itself still reach every endpoint.
      if (node.clusterCIDR) l.push(`${a} ${comment(`pod traffic for ${key} external destinations`)} -s ${node.clusterCIDR} -j ${svc}`);
      l.push(`${a} ${comment(`masquerade LOCAL traffic for ${key} external destinations`)} -m addrtype --src-type LOCAL -j ${MARK_MASQ_CHAIN}`);
      l.push(`${a} ${comment(`route LOCAL traffic for ${key} external destinations`)} -m addrtype --src-type LOCAL -j ${svc}`);
      if (hasExternalEps) l.push(`${a} -j ${svl}`);
    }
    texts.set(ext, l.join('\n'));
  }

  // Load-balancing chains.
  const sepOf = new Map<string, string>();
  const sep = (ep: ProxyEndpoint) => {
    const k = `${ep.ip}/${ep.port}`;
    let c = sepOf.get(k);
    if (!c) {
      c = sepChain(sp, ep);
      sepOf.set(k, c);
    }
    return c;
  };
  // (The ClusterIP's masquerade from outside the cluster CIDR is one rule in PODNET-SERVICES.)
  const cascade = (chain: string, eps: readonly ProxyEndpoint[]) => {
    const l: string[] = [];
    const a = `-A ${chain}`;
    const to = eps.map((ep) => lbComment(`${key} -> ${endpointAddr(family, ep.ip, ep.port)}`));
    if (sp.affinityTimeoutSeconds !== undefined) {
      eps.forEach((ep, i) => l.push(`${a} ${to[i]}-m recent --name ${sep(ep)} --rcheck --seconds ${sp.affinityTimeoutSeconds} --reap -j ${sep(ep)}`));
    }
    const n = eps.length;
    eps.forEach((ep, i) => l.push(i < n - 1 ? `${a} ${to[i]}-m statistic --mode random --probability ${probability(n - i)} -j ${sep(ep)}` : `${a} ${to[i]}-j ${sep(ep)}`));
    texts.set(chain, l.join('\n'));
  };
  const seps = new Map<string, ProxyEndpoint>();
  if (needSvc) {
    const eps = allEps();
    cascade(svc, eps);
    for (const ep of eps) seps.set(`${ep.ip}/${ep.port}`, ep);
  }
  if (needSvl) {
    const eps = localEps();
    cascade(svl, eps);
    for (const ep of eps) seps.set(`${ep.ip}/${ep.port}`, ep);
  }
  const recent = (c: string) => (sp.affinityTimeoutSeconds !== undefined ? `-m recent --name ${c} --set ` : '');
  for (const ep of [...seps.values()].sort((x, y) => (x.ip < y.ip ? -1 : x.ip > y.ip ? 1 : x.port - y.port))) {
    const c = sep(ep);
    const cm = lbComment(key);
    texts.set(c, `-A ${c} ${cm}-s ${hostMatch(family, ep.ip)} -j ${MARK_MASQ_CHAIN}\n-A ${c} ${cm}${recent(c)}-p ${pr} -m ${pr} -j DNAT --to-destination ${endpointAddr(family, ep.ip, ep.port)}`);
  }

  // An endpoint chain's content follows from its name (key, protocol, address, port are
  // hashed into it) and two flags: no need to hash its text.
  const sepSig = `sep:${large ? 1 : 0}${sp.affinityTimeoutSeconds !== undefined ? 1 : 0}`;
  const chains = new Map<string, string>();
  for (const [c, text] of texts) chains.set(c, c.startsWith('PODNET-SEP-') ? sepSig : contentHash(text));
  return { plan: { chains, dispatch, nodePorts, filter, setEntries, clusterEntry }, texts };
}

// ---------------------------------------------------------------- the whole table

/** Parses `iptables-save -t TABLE` output: our chains and the jumps into them from chains not ours. */
export function parseSaved(text: string): SavedTable {
  const chains: string[] = [];
  const jumps: string[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith(`:${CHAIN_PREFIX}`)) {
      const name = line.slice(1).split(' ')[0];
      if (name) chains.push(name);
    } else if (line.startsWith('-A ') && !line.startsWith(`-A ${CHAIN_PREFIX}`) && / -[jg] PODNET-/.test(line)) {
      jumps.push(line);
    }
  }
  return { chains, jumps };
}

/**
 * The restore input that removes everything of ours a table holds (cleanup): every
 * PODNET-* chain flushed, every jump into one from a chain not ours deleted, then the
 * chains deleted. '' when there is nothing.
 */
export function cleanupInput(saved: { nat: SavedTable; filter: SavedTable }): string {
  let out = '';
  for (const table of ['nat', 'filter'] as const) {
    const t = saved[table];
    if (!t.chains.length && !t.jumps.length) continue;
    out += render(table, { decl: t.chains.map((c) => `:${c} - [0:0]`), dels: t.jumps.map((j) => `-D${j.slice(2)}`), rules: [], deletes: t.chains.map((c) => `-X ${c}`) });
  }
  return out;
}

const normJump = (l: string) => l.replace(/"/g, '').replace(/\s+/g, ' ').trim();

function nodeKey(node: ProxyNodeConfig): string {
  return JSON.stringify([node.nodeName, node.family, [...node.nodeIPs].sort(), node.clusterCIDR ?? '']);
}

function nextPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

interface Writer {
  decl: string[];
  rules: string[];
  deletes: string[];
  dels: string[];
}

const newWriter = (): Writer => ({ decl: [], rules: [], deletes: [], dels: [] });

/**
 * One table section. iptables 1.8.9 (nf_tables) with --noflush records every chain a
 * command names in a sorted linked list (nft-cache.c cache_chain_list_insert), which is
 * quadratic: 22,000 chains take 40 s, 110,000 do not finish. A command naming no chain
 * switches that off (the cache then covers all chains), so large sections start with
 * `-S` — it only lists the table as it was, to stdout, which the executor discards.
 */
function render(table: Table, w: Writer): string {
  if (!w.decl.length && !w.rules.length && !w.deletes.length && !w.dels.length) return '';
  let out = `*${table}\n${w.decl.length > LIST_FIRST_CHAINS ? '-S\n' : ''}`;
  for (const part of [w.decl, w.dels, w.rules, w.deletes]) if (part.length) out += `${part.join('\n')}\n`;
  return `${out}COMMIT\n`;
}

/**
 * Plans one family. Full when there is no usable previous state or `changed` is undefined;
 * otherwise only service ports in `changed` (and ports that appeared or vanished) are rebuilt.
 */
export function planIptables(input: PlanInput): IptablesPlan {
  const { snapshot } = input;
  const family = snapshot.family;
  const node = snapshot.node;
  const nk = nodeKey(node);
  const prev = input.previous && input.previous.family === family ? input.previous : undefined;
  // Another node config (addresses, cluster CIDR) changes rules of every port: full, but the
  // previous state still says what to delete.
  const full = !prev || input.changed === undefined || prev.nodeKey !== nk;
  let large: boolean;
  if (input.large !== undefined) large = input.large;
  else if (!full && prev) large = prev.large;
  else {
    let n = 0;
    for (const sp of snapshot.services.values()) n += sp.endpoints.length;
    large = n > LARGE_CLUSTER_ENDPOINTS;
  }
  const ctx: Ctx = { family, node, large };
  const setName = serviceIPSetName(family);
  const clusterSetName = clusterIPSetName(family);

  const nat = newWriter();
  const filter = newWriter();
  let chainsWritten = 0;
  let chainsDeleted = 0;
  let portsWritten = 0;
  let portsRemoved = 0;
  const declare = (w: Writer, c: string) => {
    w.decl.push(`:${c} - [0:0]`);
  };
  const natDeleted = new Set<string>();
  const natDelete = (c: string) => {
    if (natDeleted.has(c)) return;
    natDeleted.add(c);
    declare(nat, c);
    nat.deletes.push(`-X ${c}`);
    chainsDeleted++;
  };

  // Per-port chains. `was` / `now`: the old and new plans of ports rebuilt or removed (what
  // the dispatch chains and sets must be updated for).
  const ports = new Map<string, PortPlan>();
  const was: PortPlan[] = [];
  const now: PortPlan[] = [];
  for (const [key, sp] of snapshot.services) {
    const old = prev?.ports.get(key);
    if (!full && old && !input.changed?.has(key)) {
      ports.set(key, old);
      continue;
    }
    const { plan, texts } = portRules(sp, ctx);
    ports.set(key, plan);
    if (old) was.push(old);
    now.push(plan);
    let wrote = false;
    for (const [c, h] of plan.chains) {
      if (!full && old?.chains.get(c) === h) continue;
      declare(nat, c);
      nat.rules.push(texts.get(c)!);
      chainsWritten++;
      wrote = true;
    }
    if (old) for (const c of old.chains.keys()) if (!plan.chains.has(c)) natDelete(c);
    if (full || wrote || !old || !samePlan(old, plan)) portsWritten++;
  }
  if (prev) {
    for (const [key, old] of prev.ports) {
      if (snapshot.services.has(key)) continue;
      portsRemoved++;
      was.push(old);
      for (const c of old.chains.keys()) natDelete(c);
    }
  }

  // Dispatch chains, rebuilt from every port's contribution.
  let nDispatch = 0;
  for (const p of ports.values()) nDispatch += p.dispatch.length;
  const target = input.bucketBits ?? targetBucketBits(nDispatch);
  // Partial syncs keep the bucket count while it is roughly right (a change rewrites all dispatch chains).
  const keep = !full && prev && input.bucketBits === undefined && (prev.bucketBits === 0 ? nDispatch <= 128 : nDispatch > 32 && Math.abs(prev.bucketBits - target) <= 1);
  const bits = keep ? prev.bucketBits : target;

  // What needs rebuilding: everything on a full plan or a new bucket count, else only the
  // buckets, NodePorts and filter rules the rebuilt ports contribute to (old or new).
  const all = full || !prev || prev.bucketBits !== bits;
  const mask = (1 << bits) - 1;
  const touched = [...was, ...now];
  const dirtyBuckets = new Set<number>();
  for (const p of touched) for (const d of p.dispatch) dirtyBuckets.add(d.low & mask);
  const nodePortsDirty = all || touched.some((p) => p.nodePorts.length > 0);
  const filterDirty = all || touched.some((p) => p.filter.length > 0);

  /** chain -> its lines, or undefined: unchanged since the previous plan. */
  const globalsNat = new Map<string, string[] | undefined>();
  const services: string[] = [];
  globalsNat.set(SERVICES_CHAIN, services);
  let hasNodePorts = false;
  for (const p of ports.values()) if (p.nodePorts.length) hasNodePorts = true;
  const sa = `-A ${SERVICES_CHAIN}`;
  if (hasNodePorts && !node.nodeIPs.length) {
    services.push(`${sa} ${comment('not a service IP: only NodePorts on local addresses')} -m set ! --match-set ${setName} dst,dst -g ${NODEPORTS_CHAIN}`);
  } else {
    services.push(`${sa} ${comment('not a service destination')} -m set ! --match-set ${setName} dst,dst -j RETURN`);
  }
  if (node.clusterCIDR) {
    services.push(`${sa} ${comment('cluster IP from outside the cluster CIDR')} ! -s ${node.clusterCIDR} -m set --match-set ${clusterSetName} dst,dst -j ${MARK_MASQ_CHAIN}`);
  }
  if (bits === 0) {
    for (const p of ports.values()) for (const d of p.dispatch) services.push(`${sa} ${d.rule}`);
  } else {
    const byK = new Map<number, string[] | undefined>();
    for (const p of ports.values()) {
      for (const d of p.dispatch) {
        const k = d.low & mask;
        const dirty = all || dirtyBuckets.has(k);
        let b = byK.get(k);
        if (!byK.has(k)) byK.set(k, (b = dirty ? [] : undefined));
        if (b) b.push(`-A ${bucketChain(k)} ${d.rule}`);
      }
    }
    const ks = [...byK.keys()].sort((x, y) => x - y);
    for (const k of ks) services.push(`${sa} ${bucketMatch(family, k, bits)} -j ${bucketChain(k)}`);
    for (const k of ks) globalsNat.set(bucketChain(k), byK.get(k));
  }
  if (hasNodePorts) {
    if (node.nodeIPs.length) for (const ip of node.nodeIPs) services.push(`${sa} ${comment('podnet service nodeports')} -d ${hostMatch(family, ip)} -j ${NODEPORTS_CHAIN}`);
    else services.push(`${sa} ${comment('podnet service nodeports')} -m addrtype --dst-type LOCAL -j ${NODEPORTS_CHAIN}`);
  }
  if (nodePortsDirty) {
    const nodePortLines: string[] = [];
    if (hasNodePorts && !node.nodeIPs.length) nodePortLines.push(`-A ${NODEPORTS_CHAIN} -m addrtype ! --dst-type LOCAL -j RETURN`);
    for (const p of ports.values()) for (const r of p.nodePorts) nodePortLines.push(`-A ${NODEPORTS_CHAIN} ${r}`);
    globalsNat.set(NODEPORTS_CHAIN, nodePortLines);
  } else globalsNat.set(NODEPORTS_CHAIN, undefined);
  globalsNat.set(MARK_MASQ_CHAIN, [`-A ${MARK_MASQ_CHAIN} -j MARK --or-mark ${MARK}`]);
  globalsNat.set(POSTROUTING_CHAIN, [
    `-A ${POSTROUTING_CHAIN} -m mark ! --mark ${MARK}/${MARK} -j RETURN`,
    `-A ${POSTROUTING_CHAIN} -j MARK --xor-mark ${MARK}`,
    `-A ${POSTROUTING_CHAIN} ${comment('podnet service traffic requiring SNAT')} -j MASQUERADE --random-fully`,
  ]);
  const globalsFilter = new Map<string, string[] | undefined>();
  if (filterDirty) {
    const filterLines: string[] = [];
    for (const p of ports.values()) for (const r of p.filter) filterLines.push(`-A ${FILTER_SERVICES_CHAIN} ${r}`);
    globalsFilter.set(FILTER_SERVICES_CHAIN, filterLines);
  } else globalsFilter.set(FILTER_SERVICES_CHAIN, undefined);

  const natState = new Map<string, string>();
  const natGlobalDecl: string[] = [];
  const natGlobalRules: string[] = [];
  for (const [c, l] of globalsNat) {
    const text = l?.join('\n');
    const h = text !== undefined ? contentHash(text) : prev!.nat.get(c)!;
    natState.set(c, h);
    if (text === undefined) continue;
    if (!full && prev!.nat.get(c) === h) continue;
    natGlobalDecl.push(`:${c} - [0:0]`);
    if (text) natGlobalRules.push(text);
    chainsWritten++;
  }
  if (prev) for (const c of prev.nat.keys()) if (!natState.has(c)) natDelete(c);
  nat.decl = natGlobalDecl.concat(nat.decl);
  nat.rules = natGlobalRules.concat(nat.rules);

  const filterState = new Map<string, string>();
  for (const [c, l] of globalsFilter) {
    const text = l?.join('\n');
    const h = text !== undefined ? contentHash(text) : prev!.filter.get(c)!;
    filterState.set(c, h);
    if (text === undefined) continue;
    if (!full && prev!.filter.get(c) === h) continue;
    declare(filter, c);
    if (text) filter.rules.push(text);
    chainsWritten++;
  }
  const filterDeclared = new Set(globalsFilter.keys());
  const filterDelete = (c: string) => {
    if (filterDeclared.has(c)) return;
    filterDeclared.add(c);
    declare(filter, c);
    filter.deletes.push(`-X ${c}`);
    chainsDeleted++;
  };
  if (prev) for (const c of prev.filter.keys()) if (!filterState.has(c)) filterDelete(c);

  // Full plans also repair what an earlier run (or version) left behind.
  let jumpsDeleted = 0;
  if (full && input.existing) {
    const wantedNat = new Set(natState.keys());
    for (const p of ports.values()) for (const c of p.chains.keys()) wantedNat.add(c);
    for (const c of [...input.existing.nat.chains].sort()) if (!wantedNat.has(c)) natDelete(c);
    for (const c of [...input.existing.filter.chains].sort()) if (!filterState.has(c)) filterDelete(c);
    const ours = new Set(JUMPS.map((j) => normJump(jumpLine(j))));
    for (const [t, w] of [
      [input.existing.nat, nat],
      [input.existing.filter, filter],
    ] as const) {
      const seen = new Set<string>();
      for (const j of t.jumps) {
        const n = normJump(j);
        // Keep one copy of each of our jumps; delete duplicates and anything else.
        if (ours.has(n) && !seen.has(n)) {
          seen.add(n);
          continue;
        }
        w.dels.push(`-D${j.slice(2)}`);
        jumpsDeleted++;
      }
    }
  }

  // The sets: member -> how many ports contribute it (two ports may share an external IP:port).
  const entriesOf = (p: PortPlan, name: string): readonly string[] => (name === setName ? p.setEntries : p.clusterEntry ? [p.clusterEntry] : []);
  const sets = new Map<string, ReadonlyMap<string, number>>();
  const ipsets: IpsetPlan[] = [];
  for (const name of [setName, clusterSetName]) {
    const before = prev?.sets.get(name);
    let counts: Map<string, number> | ReadonlyMap<string, number>;
    const add: string[] = [];
    const del: string[] = [];
    if (full || !before) {
      const m = new Map<string, number>();
      for (const p of ports.values()) for (const e of entriesOf(p, name)) m.set(e, (m.get(e) ?? 0) + 1);
      counts = m;
    } else {
      const delta = new Map<string, number>();
      for (const p of was) for (const e of entriesOf(p, name)) delta.set(e, (delta.get(e) ?? 0) - 1);
      for (const p of now) for (const e of entriesOf(p, name)) delta.set(e, (delta.get(e) ?? 0) + 1);
      let m: Map<string, number> | undefined;
      for (const [e, d] of delta) {
        if (d === 0) continue;
        m ??= new Map(before);
        const was0 = m.get(e) ?? 0;
        const n = was0 + d;
        if (n > 0) m.set(e, n);
        else m.delete(e);
        if (was0 === 0 && n > 0) add.push(e);
        if (was0 > 0 && n <= 0) del.push(e);
      }
      counts = m ?? before;
    }
    sets.set(name, counts);
    const maxelem = Math.max(65536, nextPow2(counts.size * 2));
    const hashsize = Math.max(1024, nextPow2(Math.ceil(counts.size / 4)));
    ipsets.push(full || !before ? { name, family, maxelem, hashsize, replace: [...counts.keys()], add: [], del: [] } : { name, family, maxelem, hashsize, add, del });
  }

  const state: IptablesPlanState = { family, nodeKey: nk, bucketBits: bits, ports, nat: natState, filter: filterState, sets, large };
  return {
    family,
    full,
    nat: render('nat', nat),
    filter: render('filter', filter),
    ipsets,
    state,
    stats: { portsWritten, portsRemoved, chainsWritten, chainsDeleted, jumpsDeleted },
  };
}

function samePlan(a: PortPlan, b: PortPlan): boolean {
  if (a.chains.size !== b.chains.size) return false;
  for (const [c, h] of a.chains) if (b.chains.get(c) !== h) return false;
  const eq = (x: readonly string[], y: readonly string[]) => x.length === y.length && x.every((v, i) => v === y[i]);
  return eq(a.nodePorts, b.nodePorts) && eq(a.filter, b.filter) && eq(a.setEntries, b.setEntries) && eq(a.dispatch.map((d) => d.rule), b.dispatch.map((d) => d.rule));
}
