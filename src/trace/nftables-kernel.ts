/**
 * The nftables interpreter's view of a node's kernel: reads only what the packet touches —
 * the rules of each chain it enters (a rule dump filtered by chain), the one element of a
 * verdict map or set its key selects (`nft get element`), and the elements of the endpoint
 * bucket map holding its Service's slot — never the whole table (a full listing takes
 * seconds at 10,000 Services).
 *
 * A kernel rule is recognised by comparing its expressions (as `nft --debug=netlink` shows
 * them) with those of the rule podnet plans for that chain from the proxy's current
 * snapshot, encoded by the same encoder the proxy applies with: identical means the AST is
 * exactly what the kernel runs. Anything else is handed to the interpreter as foreign.
 * Which endpoint slot a service chain uses is the proxy's allocation: it is read off the
 * kernel rule itself (its bucket map and numgen offset), so a rule pointing at another
 * slot than the planned one is still podnet's (the elements decide where packets go).
 */
import type { NftChain, NftElement, NftFamily, NftRule, NftSet } from '../kernel/nftables/ast.js';
import { decodeElements, describeRule, joinIntervals } from '../kernel/nftables/decode.js';
import { encodeTransaction } from '../kernel/nftables/encode.js';
import type { SetInfo } from '../kernel/nftables/encode.js';
import type { NftExecutor } from '../kernel/nftables/executor.js';
import { NFT_MSG, nftType, parseMessages } from '../kernel/nftables/nfnl.js';
import { TYPES, pad4, writeValue } from '../kernel/nftables/values.js';
import { BUCKET_SLOTS, SLOT_STRIDE, TABLE_NAME, bucketSet, planBaseObjects, planService } from '../proxy/nftables/plan.js';
import type { ServiceObjects } from '../proxy/nftables/plan.js';
import type { ProxyServicePort, ProxySnapshot } from '../proxy/types.js';
import { EGRESS_CHAIN, egressChain } from './nftables.js';
import type { NftView, ViewRule } from './nftables.js';

type Reader = Pick<NftExecutor, 'chainRules' | 'setElements' | 'getElement'>;

const NAME = /^(?:service|local|external|endpoint|endpoints|local-endpoints|affinity)-[A-Z2-7]{8}-([^/]+)\/([^/]+)\/(tcp|udp|sctp)\/([^_]+)/;

/** The service port a per-service object name belongs to, in this snapshot. */
export function portOf(snapshot: ProxySnapshot, name: string): ProxyServicePort | undefined {
  const m = NAME.exec(name);
  if (!m) return undefined;
  const [, ns, svc, proto, port] = m;
  const byName = snapshot.services.get(`${ns}/${svc}:${port}`);
  if (byName && byName.protocol.toLowerCase() === proto) return byName;
  const p = /^p(\d+)$/.exec(port!);
  if (p) {
    const unnamed = snapshot.services.get(`${ns}/${svc}:`);
    if (unnamed && unnamed.protocol.toLowerCase() === proto && unnamed.port === Number(p[1])) return unnamed;
  }
  return undefined;
}

/** The endpoint slot a kernel rule's `dnat … numgen random mod M offset O map @endpoints-<proto>-<n>` uses (0 without one). */
function slotOfRule(payload: Buffer): number {
  let bucket: number | undefined;
  let offset = 0;
  for (const e of describeRule(payload).exprs) {
    const ng = / random mod \d+ offset (\d+) \]$/.exec(e);
    if (e.startsWith('[ numgen') && ng) offset = Number(ng[1]);
    const lk = /^\[ lookup reg \d+ set endpoints-(?:tcp|udp|sctp)-(\d+) dreg /.exec(e);
    if (lk) bucket = Number(lk[1]);
  }
  return bucket === undefined ? 0 : bucket * BUCKET_SLOTS + Math.floor(offset / SLOT_STRIDE);
}

/** The `nft --debug=netlink` expressions (and comment) of a rule payload: the comparison key. */
function ruleKey(payload: Buffer): string {
  const d = describeRule(payload);
  return JSON.stringify([d.exprs.map(normalizeExpr), d.comment ?? null]);
}

/**
 * Kernel listings differ from the request in two harmless ways. The kernel sets NF_NAT_RANGE_MAP_IPS (0x1) and NF_NAT_RANGE_PROTO_SPECIFIED (0x2) on a nat
 * expression that has address / port registers, whether or not the request had them (it
 * lists `flags 0x3` for a rule sent without flags): compare without these two.
 */
function normalizeExpr(e: string): string {
  // The kernel also lists a 32-bit register that starts a 128-bit one by the 128-bit number
  // (NFT_REG32_04 = 12 comes back as NFT_REG_2 = 2; nft_dump_register).
  e = e.replace(/reg (\d+)/g, (all, n: string) => {
    const k = Number(n) - 8;
    return k >= 0 && k % 4 === 0 ? `reg ${k / 4 + 1}` : all;
  });
  return e.replace(/^(\[ nat .*) flags 0x([0-9a-f]+) \]$/, (_, head: string, f: string) => {
    const v = parseInt(f, 16) & ~3;
    return v ? `${head} flags 0x${v.toString(16)} ]` : `${head} ]`;
  });
}

/** Encodes one planned rule as the proxy would send it and returns its comparison key. */
function plannedKey(family: NftFamily, chain: string, rule: NftRule, sets: ReadonlyMap<string, SetInfo>): string | undefined {
  try {
    const enc = encodeTransaction({ family, table: TABLE_NAME, ops: [{ op: 'add-rule', chain, rule }] }, { sets });
    for (const b of enc.batches) for (const m of parseMessages(b.buf)) if (m.type === nftType(NFT_MSG.NEWRULE)) return ruleKey(m.data);
  } catch {
    /* a rule we cannot encode cannot be the kernel's */
  }
  return undefined;
}

export interface KernelViewOptions {
  reader: Reader;
  /** The proxy's current snapshot of this family (what the rules were planned from). */
  snapshot: ProxySnapshot;
  /** The agent's egress masquerade is on (its chain is part of the table). */
  egress: boolean;
}

/**
 * A kernel rule of podnet's table in nft syntax when it is exactly one podnet plans for that
 * chain (the live trace names the rules its events point at), else undefined.
 */
export function recogniseRule(o: KernelViewOptions, chain: string, payload: Buffer): NftRule | undefined {
  const view = kernelNftView(o);
  return view.recognise(chain, payload);
}

/** An NftView over the node's kernel table, recognising rules against the current plan. */
export function kernelNftView(o: KernelViewOptions): NftView & { recognise(chain: string, payload: Buffer): NftRule | undefined } {
  const family: NftFamily = o.snapshot.family === 4 ? 'ip' : 'ip6';
  const node = o.snapshot.node;
  const base = planBaseObjects(node);
  const perService = new Map<string, ServiceObjects>();
  /** The service port's objects as planned with endpoint slot `slot` (see slotOfRule). */
  const serviceOf = (name: string, slot = 0): ServiceObjects | undefined => {
    const sp = portOf(o.snapshot, name);
    if (!sp) return undefined;
    const k = `${sp.key}@${slot}`;
    let so = perService.get(k);
    if (!so) perService.set(k, (so = planService(sp, node, () => slot)));
    return so;
  };
  const setInfo = (name: string): NftSet | undefined => base.sets.find((s) => s.name === name) ?? bucketSet(o.snapshot.family, name) ?? serviceOf(name)?.sets.find((s) => s.name === name);
  const sets = (): Map<string, SetInfo> => {
    const m = new Map<string, SetInfo>();
    for (const s of base.sets) m.set(s.name, s);
    for (const so of perService.values()) {
      for (const s of so.sets) m.set(s.name, s);
      for (const b of so.setElements.keys()) m.set(b, bucketSet(o.snapshot.family, b)!);
    }
    return m;
  };
  const plannedChain = (name: string, slot = 0): NftChain | undefined => {
    if (name === EGRESS_CHAIN) return o.egress && node.clusterCIDR ? egressChain(family, node.clusterCIDR) : undefined;
    return base.chains.find((c) => c.name === name) ?? serviceOf(name, slot)?.chains.find((c) => c.name === name);
  };
  const chains = new Map<string, Promise<ViewRule[] | undefined>>();
  const knownRules = (name: string, slot: number): Map<string, NftRule> => {
    const planned = plannedChain(name, slot);
    const known = new Map<string, NftRule>();
    const setMap = sets();
    for (const r of planned?.rules ?? []) {
      const k = plannedKey(family, name, r, setMap);
      if (k) known.set(k, r);
    }
    return known;
  };
  const readChain = async (name: string): Promise<ViewRule[] | undefined> => {
    const planned = plannedChain(name);
    const payloads = await o.reader.chainRules(family, TABLE_NAME, name);
    if (!payloads.length) return planned && planned.rules.length === 0 ? [] : undefined;
    const slot = payloads.reduce((s, p) => s || slotOfRule(p), 0);
    const known = knownRules(name, slot);
    return payloads.map((p) => {
      const rule = known.get(ruleKey(p));
      if (rule) return { rule };
      const d = describeRule(p);
      return { foreign: `${d.exprs.join(' ')}${d.comment ? ` comment "${d.comment}"` : ''}` };
    });
  };
  return {
    family,
    recognise(name, payload) {
      return knownRules(name, slotOfRule(payload)).get(ruleKey(payload));
    },
    chain(name) {
      let p = chains.get(name);
      if (!p) chains.set(name, (p = readChain(name)));
      return p;
    },
    async element(set, key) {
      const info = setInfo(set);
      if (!info) return undefined;
      const buf = encodeKey(info, key);
      if (!buf) return undefined;
      const payload = await o.reader.getElement(family, TABLE_NAME, set, buf);
      if (!payload) return undefined;
      const el = decodeElements([payload], info.key, info.data)[0];
      if (!el) return undefined;
      return { key: el.key, ...(el.verdict ? { verdict: el.verdict } : {}), ...(el.data ? { data: el.data } : {}) };
    },
    async elements(set) {
      const info = setInfo(set);
      if (!info) return [];
      const els = decodeElements(await o.reader.setElements(family, TABLE_NAME, set), info.key, info.data);
      if (!info.interval) return els.map((e) => ({ key: e.key, ...(e.verdict ? { verdict: e.verdict } : {}), ...(e.data ? { data: e.data } : {}) }));
      return joinIntervals(els, info.key[0]!).map((r): NftElement => ({ key: [`${r.from}-${r.to}`], ...(r.element.data ? { data: r.element.data } : {}) }));
    },
  };
}

/** A key in nft notation → the bytes the kernel compares (concatenations: each part padded to 4). */
function encodeKey(set: Pick<NftSet, 'key'>, key: readonly string[]): Buffer | undefined {
  if (key.length !== set.key.length) return undefined;
  const lens = set.key.map((t) => TYPES[t].len);
  const padded = set.key.length === 1 ? lens : lens.map(pad4);
  const out = Buffer.alloc(padded.reduce((a, b) => a + b, 0));
  let off = 0;
  for (let i = 0; i < key.length; i++) {
    const tmp = new Uint8Array(16);
    if (!writeValue(set.key[i]!, key[i]!, tmp, 0)) return undefined;
    out.set(tmp.subarray(0, lens[i]), off);
    off += padded[i]!;
  }
  return out;
}
