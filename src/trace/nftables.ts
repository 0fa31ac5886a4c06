/**
 * The nftables-mode interpreter: evaluates a packet through podnet's `ip podnet` /
 * `ip6 podnet` table — exactly the statement shapes of src/kernel/nftables/ast.ts that the
 * planner (src/proxy/nftables/plan.ts) and the agent's egress masquerade generate — through
 * an `NftView`. The view is the kernel on a node (nftables-kernel.ts: reads only the chains
 * and elements the packet touches) or the planner's table in the table tests
 * (`tableView`), so the tool and the test oracle are one.
 *
 * Random choices fork the evaluation: `numgen random mod N 0` (affinity cascade) and the
 * endpoint maps (`numgen random mod 65536` intervals) give one outcome per endpoint with
 * its probability. A rule the view could not match to a shape podnet writes stops the
 * path with an Unknown verdict that shows the rule.
 */
import type { NftChain, NftElement, NftExpr, NftFamily, NftRule, NftStmt, NftTable, NftVerdict } from '../kernel/nftables/ast.js';
import { CHAINS, FILTER_PRIORITY, DSTNAT_PRIORITY, SRCNAT_PRIORITY, TABLE_NAME } from '../proxy/nftables/plan.js';
import { nftAddr, renderRule } from '../proxy/nftables/render.js';
import { MASQUERADE_MARK } from '../proxy/types.js';
import { Cidr } from '../util/ipnet.js';
import type { LbContext, LbInterpreter, LbOutcome, SnatContext, SnatOutcome } from './lb.js';
import type { Observation, Origin, Packet, Verdict } from './types.js';

/** A rule as the view found it: recognised (its AST) or not (the kernel's description). */
export type ViewRule = { rule: NftRule } | { foreign: string };

export interface NftView {
  readonly family: NftFamily;
  /** The rules of a chain of podnet's table; undefined when the chain does not exist. */
  chain(name: string): Promise<ViewRule[] | undefined>;
  /** The element holding `key` (nft notation, one value per key part), if any. */
  element(set: string, key: string[]): Promise<NftElement | undefined>;
  /** Every element of a set or map (the endpoint maps). */
  elements(set: string): Promise<NftElement[]>;
}

/** The agent's egress masquerade chain (src/agent/masquerade.ts) in the same table. */
export const EGRESS_CHAIN = 'egress-masquerade';

/** Base chains of podnet's table per hook, in the kernel's order (priority, then creation). */
const HOOK_CHAINS = {
  prerouting: [
    { name: CHAINS.filterPrerouting, priority: FILTER_PRIORITY, nat: false },
    { name: CHAINS.natPrerouting, priority: DSTNAT_PRIORITY, nat: true },
  ],
  output: [
    { name: CHAINS.filterOutput, priority: FILTER_PRIORITY, nat: false },
    { name: CHAINS.natOutput, priority: DSTNAT_PRIORITY, nat: true },
  ],
  postrouting: [
    { name: CHAINS.natPostrouting, priority: SRCNAT_PRIORITY, nat: true },
    { name: EGRESS_CHAIN, priority: SRCNAT_PRIORITY, nat: true },
  ],
} as const;

const PER_SERVICE = /^(service|local|external|endpoint)-[A-Z2-7]{8}-([^/]+)\/([^/]+)\/(tcp|udp|sctp)\/([^_]+)/;
const MAP_OWNER = /^(?:endpoints|local-endpoints|affinity)-[A-Z2-7]{8}-([^/]+)\/([^/]+)\/(tcp|udp|sctp)\/([^_]+)/;

/** The Service (and its EndpointSlices, by the kubernetes.io/service-name label) a podnet object name belongs to. */
export function originOf(name: string): Origin[] | undefined {
  const m = PER_SERVICE.exec(name) ?? MAP_OWNER.exec(name);
  if (!m) return undefined;
  const [ns, svc] = PER_SERVICE.test(name) ? [m[2]!, m[3]!] : [m[1]!, m[2]!];
  return [{ kind: 'Service', namespace: ns, name: svc }];
}

/** `ns/name port P/proto` for people, from a per-service object name. */
function serviceText(name: string): string | undefined {
  const m = PER_SERVICE.exec(name) ?? MAP_OWNER.exec(name);
  if (!m) return undefined;
  const parts = PER_SERVICE.test(name) ? m.slice(2) : m.slice(1);
  return `Service ${parts[0]}/${parts[1]} port ${parts[3]!.replace(/^p(\d+)$/, '$1')}/${parts[2]}`;
}

// ---------------------------------------------------------------- evaluation state

interface State {
  pkt: Packet;
  mark: number;
  prob: number;
  obs: Observation[];
  service?: Origin[];
  endpoint?: { ip: string; port: number };
  /** The rule that sent the packet to the reject chain. */
  via?: string;
}

type End = { kind: 'continue' } | { kind: 'return' } | { kind: 'accept' } | { kind: 'stop'; verdict: Verdict };

interface Branch {
  st: State;
  end: End;
}

const fork = (st: State, p: number): State => ({ ...st, prob: st.prob * p, obs: [...st.obs] });

const MAX_DEPTH = 16;

class Evaluator {
  private readonly cidrs = new Map<string, Cidr>();

  constructor(
    readonly view: NftView,
    readonly node: string,
    readonly isLocal: (ip: string) => boolean,
    readonly outAddress?: string,
  ) {}

  private where(chain: string): string {
    return `${this.view.family} ${TABLE_NAME} ${chain}`;
  }

  private obs(st: State, chain: string, r: NftRule, action: string, detail: string, extra: Partial<Observation> = {}): void {
    const origin = originOf(chain) ?? st.service;
    st.obs.push({
      node: this.node,
      component: 'Netfilter/LB',
      action,
      detail,
      rule: renderRule(r, true, this.view.family),
      where: this.where(chain),
      ...(origin ? { origin } : {}),
      packet: { ...st.pkt },
      ...extra,
    });
  }

  /** Runs a chain; each branch ends with how the chain ended. */
  async chain(name: string, st: State, depth = 0): Promise<Branch[]> {
    if (depth > MAX_DEPTH) return [{ st, end: { kind: 'stop', verdict: { kind: 'Unknown', node: this.node, reason: `chain nesting deeper than ${MAX_DEPTH} at ${name}` } } }];
    const rules = await this.view.chain(name);
    if (!rules) {
      return [{ st, end: { kind: 'stop', verdict: { kind: 'Unknown', node: this.node, at: this.where(name), reason: `chain ${name} is missing from the table (podnet's rules are not fully installed)` } } }];
    }
    return this.rules(name, rules, 0, st, depth);
  }

  private async rules(chain: string, rules: ViewRule[], from: number, st: State, depth: number): Promise<Branch[]> {
    for (let i = from; i < rules.length; i++) {
      const vr = rules[i]!;
      if ('foreign' in vr) {
        st.obs.push({ node: this.node, component: 'Netfilter/LB', action: 'Unknown', detail: `a rule podnet did not write (or that was changed) is on the path in ${chain}`, rule: vr.foreign, where: this.where(chain), packet: { ...st.pkt }, foreign: true });
        return [{ st, end: { kind: 'stop', verdict: { kind: 'Unknown', node: this.node, at: vr.foreign, reason: `rule in ${this.where(chain)} not written by podnet: not interpreted` } } }];
      }
      const results = await this.rule(chain, vr.rule, st, depth);
      if (results.length === 1 && results[0]!.end.kind === 'continue' && results[0]!.st === st) continue;
      // The rule forked or ended: continue each branch separately.
      const out: Branch[] = [];
      for (const b of results) {
        if (b.end.kind === 'continue') out.push(...(await this.rules(chain, rules, i + 1, b.st, depth)));
        else out.push(b);
      }
      return out;
    }
    return [{ st, end: { kind: 'return' } }];
  }

  /** One rule: statements in order; a failed match ends it (continue with the next rule). */
  private async rule(chain: string, r: NftRule, st0: State, depth: number): Promise<Branch[]> {
    let live: State[] = [st0];
    const done: Branch[] = [];
    for (const s of r.stmts) {
      const next: State[] = [];
      for (const st of live) {
        const res = await this.stmt(chain, r, s, st, depth);
        for (const x of res) {
          if (x.kind === 'go') next.push(x.st);
          else if (x.kind === 'miss') done.push({ st: x.st, end: { kind: 'continue' } });
          else done.push(x.branch);
        }
      }
      live = next;
      if (!live.length) break;
    }
    if (live.length === 1 && live[0] === st0 && !done.length) return [{ st: st0, end: { kind: 'continue' } }];
    return [...done, ...live.map((st) => ({ st, end: { kind: 'continue' } as End }))];
  }

  private value(e: NftExpr, st: State): string | undefined {
    const p = st.pkt;
    switch (e.kind) {
      case 'payload':
        if (e.field === 'ip saddr' || e.field === 'ip6 saddr') return p.src;
        if (e.field === 'ip daddr' || e.field === 'ip6 daddr') return p.dst;
        if (p.proto === 'icmp') return undefined;
        return String(e.field === 'th dport' ? p.dport : p.sport);
      case 'meta':
        return e.key === 'l4proto' ? (p.proto === 'icmp' && p.family === 6 ? 'ipv6-icmp' : p.proto) : String(st.mark);
      case 'ct':
        return 'new';
      case 'fib':
        return this.isLocal(e.what === 'daddr type' ? p.dst : p.src) ? 'local' : 'unicast';
      case 'const':
        return e.value;
      case 'numgen':
      case 'concat':
        return undefined;
    }
  }

  private keyOf(e: NftExpr, st: State): string[] | undefined {
    const parts = e.kind === 'concat' ? e.parts : [e];
    const out: string[] = [];
    for (const part of parts) {
      const v = this.value(part, st);
      if (v === undefined) return undefined;
      out.push(part.kind === 'payload' && part.field.includes('addr') ? nftAddr(v) : v);
    }
    return out;
  }

  private matches(value: string, want: string, left: NftExpr): boolean {
    if (left.kind === 'ct') return want.split(',').map((x) => x.trim()).includes(value);
    if (left.kind === 'payload' && left.field.includes('addr')) {
      if (want.includes('/')) {
        let c = this.cidrs.get(want);
        if (!c) this.cidrs.set(want, (c = Cidr.parse(want, 'prefix', { strict: false })));
        try {
          return c.contains(value);
        } catch {
          return false;
        }
      }
      return nftAddr(value) === nftAddr(want);
    }
    if (left.kind === 'meta' && left.key === 'mark') return Number(value) === Number(want);
    return value === want;
  }

  private async stmt(chain: string, r: NftRule, s: NftStmt, st: State, depth: number): Promise<({ kind: 'go'; st: State } | { kind: 'miss'; st: State } | { kind: 'end'; branch: Branch })[]> {
    const go = (x: State) => ({ kind: 'go' as const, st: x });
    const miss = (x: State) => ({ kind: 'miss' as const, st: x });
    const end = (x: State, e: End) => ({ kind: 'end' as const, branch: { st: x, end: e } });
    switch (s.kind) {
      case 'counter':
        return [go(st)];
      case 'match': {
        if (s.left.kind === 'numgen') {
          // `numgen random mod N 0`: true with probability 1/N.
          const n = s.left.mod;
          const hit = fork(st, 1 / n);
          const rest = fork(st, (n - 1) / n);
          return n === 1 ? [go(st)] : [go(hit), miss(rest)];
        }
        const v = this.value(s.left, st);
        if (v === undefined) return [miss(st)];
        const ok = this.matches(v, s.value, s.left) === (s.op === '==');
        return [ok ? go(st) : miss(st)];
      }
      case 'mark-test':
        return [((st.mark & s.mask) === s.value) === (s.op === '==') ? go(st) : miss(st)];
      case 'lookup': {
        const key = this.keyOf(s.left, st);
        const found = key ? await this.view.element(s.set, key) : undefined;
        const ok = (found !== undefined) === ((s.op ?? '==') === '==');
        if (!ok) return [miss(st)];
        if (found && s.set.startsWith('affinity-')) this.obs(st, chain, r, 'Matched', `ClientIP affinity: ${st.pkt.src} has a recent connection to this endpoint (element of @${s.set})`);
        if (found && s.set === 'hairpin') this.obs(st, chain, r, 'Matched', `hairpin: pod ${st.pkt.src} reaches itself through a Service; masquerade so the reply comes back through the node`);
        if (found && s.set.startsWith('no-endpoint')) this.obs(st, chain, r, 'Matched', `${key!.join(' . ')} is in @${s.set}: the Service has no endpoints`);
        return [go(st)];
      }
      case 'vmap': {
        const key = this.keyOf(s.key, st);
        const el = key ? await this.view.element(s.map, key) : undefined;
        if (!el?.verdict) return [miss(st)];
        const v = el.verdict;
        if (v.kind === 'jump' || v.kind === 'goto') {
          const svc = serviceText(v.chain);
          const origin = originOf(v.chain);
          if (origin) st = { ...st, service: origin, obs: [...st.obs] };
          this.obs(st, chain, r, 'Matched', `${key!.join(' . ')} is in @${s.map}${svc ? `: ${svc}` : ''} → ${v.kind} ${v.chain}`, { where: `${this.where(chain)} (element ${key!.join(' . ')} : ${v.kind} ${v.chain} of map ${s.map})` });
        }
        return this.verdict(chain, r, v, st, depth);
      }
      case 'mark-or':
        return [go({ ...st, mark: st.mark | s.value })];
      case 'mark-xor':
        return [go({ ...st, mark: st.mark ^ s.value })];
      case 'set-update':
        this.obs(st, chain, r, 'Matched', `ClientIP affinity: remembers ${st.pkt.src} in @${s.set} for this endpoint`);
        return [go(st)];
      case 'dnat': {
        const next = { ...st, obs: [...st.obs], pkt: { ...st.pkt, dst: s.addr, dport: s.port }, endpoint: { ip: s.addr, port: s.port } };
        this.obs(next, chain, r, 'DNAT', `DNAT to endpoint ${s.addr}:${s.port}${serviceText(chain) ? ` of ${serviceText(chain)}` : ''}`);
        // A nat statement is terminal: the rule ends the chain with accept.
        return [end(next, { kind: 'accept' })];
      }
      case 'dnat-map': {
        if (s.key.kind !== 'numgen') return [miss(st)];
        // numgen gives offset..offset+mod-1: only elements in that slot of the map count.
        const mod = s.key.mod;
        const lo = s.key.offset ?? 0;
        const hi = lo + mod - 1;
        const els = await this.view.elements(s.map);
        const out: ({ kind: 'go'; st: State } | { kind: 'miss'; st: State } | { kind: 'end'; branch: Branch })[] = [];
        let covered = 0;
        for (const el of els) {
          const [a, b] = el.key[0]!.includes('-') ? el.key[0]!.split('-').map(Number) : [Number(el.key[0]), Number(el.key[0])];
          const width = Math.min(b!, hi) - Math.max(a!, lo) + 1;
          if (width <= 0) continue;
          covered += width;
          const parts = Array.isArray(el.data) ? el.data : String(el.data ?? '').split(' . ');
          const ip = parts[0]!;
          const port = Number(parts[1]);
          const x = fork(st, width / mod);
          x.pkt = { ...x.pkt, dst: ip, dport: port };
          x.endpoint = { ip, port };
          const values = lo ? `numgen values ${a}-${b} of ${lo}-${hi}` : `numgen values ${a}-${b} of ${mod}`;
          this.obs(x, chain, r, 'DNAT', `DNAT to endpoint ${ip}:${port} (${values}: probability ${((width / mod) * 100).toFixed(1)}%)${serviceText(chain) ? ` of ${serviceText(chain)}` : ''}`, { where: `${this.where(chain)} (element ${el.key[0]} : ${parts.join(' . ')} of map ${s.map})` });
          out.push(end(x, { kind: 'accept' }));
        }
        if (covered < mod) out.push(miss(fork(st, (mod - covered) / mod)));
        return out;
      }
      case 'masquerade': {
        const src = this.outAddress ?? st.pkt.src;
        const next = { ...st, obs: [...st.obs], pkt: { ...st.pkt, src } };
        this.obs(next, chain, r, 'Masqueraded', `source NAT to the outgoing interface's address ${src}${s.fullyRandom ? ' (random source port)' : ''}`);
        return [end(next, { kind: 'accept' })];
      }
      case 'reject': {
        const what = s.with === 'tcp-reset' ? 'TCP reset' : `ICMP${st.pkt.family === 6 ? 'v6' : ''} port unreachable`;
        this.obs(st, chain, r, 'Rejected', `rejected with ${what}`);
        const at = `${st.via ? `${st.via} → ` : ''}${renderRule(r, true, this.view.family)} (${this.where(chain)})`;
        return [end(st, { kind: 'stop', verdict: { kind: 'Rejected', node: this.node, at, reason: `${what}: the Service has no endpoints` } })];
      }
      case 'verdict':
        return this.verdict(chain, r, s.verdict, st, depth);
    }
  }

  private async verdict(chain: string, r: NftRule, v: NftVerdict, st: State, depth: number): Promise<({ kind: 'go'; st: State } | { kind: 'end'; branch: Branch })[]> {
    const end = (x: State, e: End) => ({ kind: 'end' as const, branch: { st: x, end: e } });
    switch (v.kind) {
      case 'accept':
        return [end(st, { kind: 'accept' })];
      case 'drop': {
        const text = `${renderRule(r, true, this.view.family)} (${this.where(chain)})`;
        const detail = r.comment ? `dropped: ${r.comment}` : 'dropped';
        this.obs(st, chain, r, 'Dropped', detail);
        return [end(st, { kind: 'stop', verdict: { kind: 'Dropped', node: this.node, at: text, reason: r.comment ?? 'dropped by a podnet rule' } })];
      }
      case 'return':
        return [end(st, { kind: 'return' })];
      case 'continue':
        return [{ kind: 'go', st }];
      case 'jump':
      case 'goto': {
        if (v.chain === CHAINS.markForMasquerade) this.obs(st, chain, r, 'Marked', `marked for masquerade (0x${MASQUERADE_MARK.toString(16)}): ${masqReason(chain, r)}`);
        if (v.chain === CHAINS.reject) st = { ...st, via: `${renderRule(r, true, this.view.family)} (${this.where(chain)})` };
        const sub = await this.chain(v.chain, st, depth + 1);
        const out: ({ kind: 'go'; st: State } | { kind: 'end'; branch: Branch })[] = [];
        for (const b of sub) {
          if (b.end.kind === 'return') {
            // A jump returns to the rule after this one; a goto returns to our caller.
            out.push(v.kind === 'jump' ? end(b.st, { kind: 'continue' }) : end(b.st, { kind: 'return' }));
          } else out.push(end(b.st, b.end));
        }
        return out;
      }
    }
  }
}

function masqReason(chain: string, r: NftRule): string {
  if (chain === 'masquerading') return 'hairpin';
  if (chain.startsWith('external-')) return r.stmts.some((s) => s.kind === 'match' && s.left.kind === 'fib') ? 'host-originated traffic to an external address (eTP Local keeps only pod sources)' : 'traffic to an external address / NodePort (externalTrafficPolicy Cluster)';
  if (r.stmts.some((s) => s.kind === 'match' && s.op === '!=' && s.left.kind === 'payload')) return 'the source is outside the cluster CIDR';
  return 'the Service asks for it';
}

/** Runs the base chains of one hook in order; folds the branches into outcomes. */
async function runHook(ev: Evaluator, hook: keyof typeof HOOK_CHAINS, pkt: Packet, mark: number): Promise<Branch[]> {
  let branches: Branch[] = [{ st: { pkt, mark, prob: 1, obs: [] }, end: { kind: 'return' } }];
  for (const base of HOOK_CHAINS[hook]) {
    const next: Branch[] = [];
    for (const b of branches) {
      if (b.end.kind === 'stop') {
        next.push(b);
        continue;
      }
      // A nat chain runs only until NAT is set up for the connection (first masquerade wins).
      if (hook === 'postrouting' && b.end.kind === 'accept') {
        next.push(b);
        continue;
      }
      const rules = await ev.view.chain(base.name);
      if (!rules) {
        next.push({ st: b.st, end: { kind: 'return' } });
        continue;
      }
      const res = await ev.chain(base.name, b.st);
      // A base chain's accept / falling off its end (policy accept) both pass to the next one.
      for (const r of res) next.push(r.end.kind === 'stop' ? r : { st: r.st, end: hook === 'postrouting' && r.end.kind === 'accept' ? r.end : { kind: 'return' } });
    }
    branches = next;
  }
  return branches;
}

/** The interpreter over a view; `isLocal` comes from the LbContext of each call. */
export function createNftablesInterpreter(view: NftView): LbInterpreter {
  return {
    mode: 'nftables',
    async dnat(pkt: Packet, ctx: LbContext): Promise<LbOutcome[]> {
      const ev = new Evaluator(view, ctx.node, ctx.isLocal);
      const branches = await runHook(ev, ctx.hook, pkt, 0);
      return merge(
        branches.map((b) => ({
          probability: b.st.prob,
          observations: b.st.obs,
          packet: b.st.pkt,
          masqueradeMark: (b.st.mark & MASQUERADE_MARK) !== 0,
          ...(b.end.kind === 'stop' ? { verdict: b.end.verdict } : {}),
          ...(b.st.service ? { service: b.st.service } : {}),
          ...(b.st.endpoint ? { endpoint: b.st.endpoint } : {}),
        })),
      );
    },
    async snat(pkt: Packet, masqueradeMark: boolean, ctx: SnatContext): Promise<SnatOutcome> {
      const ev = new Evaluator(view, ctx.node, () => false, ctx.outAddress);
      const branches = await runHook(ev, 'postrouting', pkt, masqueradeMark ? MASQUERADE_MARK : 0);
      const b = branches[0]!;
      return { observations: b.st.obs, packet: b.st.pkt, masqueraded: b.st.obs.some((x) => x.action === 'Masqueraded') };
    },
  };
}

/** Outcomes that ended the same way (same endpoint, verdict and mark) are one, their probabilities added. */
function merge(outs: LbOutcome[]): LbOutcome[] {
  const by = new Map<string, LbOutcome>();
  for (const o of outs) {
    if (o.probability <= 0) continue;
    const k = JSON.stringify([o.endpoint, o.verdict?.kind, o.verdict?.at, o.masqueradeMark, o.packet]);
    const had = by.get(k);
    if (had) had.probability += o.probability;
    else by.set(k, { ...o });
  }
  return [...by.values()];
}

// ---------------------------------------------------------------- a view over a planned table

/** Keys compare in nft notation (addresses canonical). */
const keyText = (key: readonly string[]): string => key.map((k) => nftAddr(k)).join(' . ');

/**
 * A view over a whole table as podnet plans it (PlannedState.table), plus the agent's egress
 * masquerade chain when a cluster CIDR is given: the planner's output interpreted as if it
 * were installed. Dynamic sets (affinity) start empty, as in a fresh kernel.
 */
export function tableView(table: NftTable, o: { egressClusterCIDR?: string } = {}): NftView {
  const chains = new Map<string, NftChain>(table.chains.map((c) => [c.name, c]));
  if (o.egressClusterCIDR) chains.set(EGRESS_CHAIN, egressChain(table.family, o.egressClusterCIDR));
  const elements = new Map<string, Map<string, NftElement>>();
  for (const [set, els] of table.elements) elements.set(set, new Map(els.map((e) => [keyText(e.key), e])));
  return {
    family: table.family,
    async chain(name) {
      const c = chains.get(name);
      return c ? c.rules.map((rule) => ({ rule })) : undefined;
    },
    async element(set, key) {
      return elements.get(set)?.get(keyText(key));
    },
    async elements(set) {
      return [...(table.elements.get(set) ?? [])];
    },
  };
}

/** The egress masquerade chain as src/agent/masquerade.ts writes it. */
export function egressChain(family: NftFamily, clusterCIDR: string): NftChain {
  const saddr = family === 'ip' ? 'ip saddr' : 'ip6 saddr';
  const daddr = family === 'ip' ? 'ip daddr' : 'ip6 daddr';
  const mcast = family === 'ip' ? '224.0.0.0/4' : 'ff00::/8';
  const cidr = nftAddr(clusterCIDR);
  return {
    name: EGRESS_CHAIN,
    base: { type: 'nat', hook: 'postrouting', priority: SRCNAT_PRIORITY, policy: 'accept' },
    rules: [
      {
        stmts: [
          { kind: 'match', left: { kind: 'payload', field: saddr }, op: '==', value: cidr },
          { kind: 'match', left: { kind: 'payload', field: daddr }, op: '!=', value: cidr },
          { kind: 'match', left: { kind: 'payload', field: daddr }, op: '!=', value: mcast },
          { kind: 'masquerade', fullyRandom: false },
        ],
        comment: 'podnet: pod egress leaves with the node address',
      },
    ],
  };
}
