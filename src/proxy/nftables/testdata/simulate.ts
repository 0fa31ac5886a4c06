/**
 * A strict in-memory nf_tables for tests: applies a transaction to a table the way the
 * kernel would judge it, and throws where the kernel would refuse (ENOENT for a missing
 * chain/set/element, EBUSY for deleting a chain or set something still refers to, EEXIST
 * for a map key added again with another verdict or data, an interval overlapping another,
 * a rule referring to a missing object).
 * Lets the tests check that a partial transaction takes the installed table exactly to
 * the planned one, with every op valid at its point in the batch.
 */
import type { NftChain, NftElement, NftExpr, NftRule, NftSet, NftTable } from '../../../kernel/nftables/ast.js';
import type { NftTransaction } from '../../../kernel/nftables/ops.js';

export interface SimTable {
  chains: Map<string, NftChain>;
  sets: Map<string, NftSet>;
  elements: Map<string, Map<string, NftElement>>;
  /** Objects of others (e.g. egress-masquerade): must survive. */
  foreign: Set<string>;
}

const ek = (key: readonly string[]): string => key.join(' . ');

export function simFrom(t: NftTable | undefined, foreignChains: string[] = []): SimTable {
  const s: SimTable = { chains: new Map(), sets: new Map(), elements: new Map(), foreign: new Set(foreignChains) };
  for (const c of foreignChains) s.chains.set(c, { name: c, rules: [] });
  if (!t) return s;
  for (const set of t.sets) {
    s.sets.set(set.name, set);
    s.elements.set(set.name, new Map((t.elements.get(set.name) ?? []).map((e) => [ek(e.key), e])));
  }
  for (const c of t.chains) s.chains.set(c.name, { ...c, rules: [...c.rules] });
  return s;
}

function exprSets(e: NftExpr): string[] {
  return e.kind === 'concat' ? e.parts.flatMap(exprSets) : [];
}

/** Chains and sets a rule refers to. */
function refsOf(r: NftRule): { chains: string[]; sets: string[] } {
  const chains: string[] = [];
  const sets: string[] = [];
  for (const st of r.stmts) {
    if (st.kind === 'verdict' && (st.verdict.kind === 'jump' || st.verdict.kind === 'goto')) chains.push(st.verdict.chain);
    if (st.kind === 'lookup') sets.push(st.set, ...exprSets(st.left));
    if (st.kind === 'vmap' || st.kind === 'dnat-map') sets.push(st.map);
    if (st.kind === 'set-update') sets.push(st.set);
  }
  return { chains, sets };
}

function referenced(s: SimTable): { chains: Set<string>; sets: Set<string> } {
  const chains = new Set<string>();
  const sets = new Set<string>();
  for (const c of s.chains.values())
    for (const r of c.rules) {
      const x = refsOf(r);
      x.chains.forEach((n) => chains.add(n));
      x.sets.forEach((n) => sets.add(n));
    }
  for (const els of s.elements.values()) for (const e of els.values()) if (e.verdict && (e.verdict.kind === 'jump' || e.verdict.kind === 'goto')) chains.add(e.verdict.chain);
  return { chains, sets };
}

/** Applies tx to s (mutates it); throws like the kernel would. */
export function simApply(s: SimTable, tx: NftTransaction): void {
  tx.ops.forEach((op, i) => {
    const fail = (why: string): never => {
      throw new Error(`op ${i} ${op.op}: ${why}`);
    };
    switch (op.op) {
      case 'add-table':
        return;
      case 'delete-table':
        s.chains.clear();
        s.sets.clear();
        s.elements.clear();
        return;
      case 'add-chain':
        if (!s.chains.has(op.chain.name)) s.chains.set(op.chain.name, { ...op.chain, rules: [] });
        return;
      case 'flush-chain': {
        const c = s.chains.get(op.chain) ?? fail(`no chain ${op.chain}`);
        if (s.foreign.has(op.chain)) fail(`flushes foreign chain ${op.chain}`);
        c.rules = [];
        return;
      }
      case 'delete-chain': {
        const c = s.chains.get(op.chain) ?? fail(`no chain ${op.chain}`);
        if (s.foreign.has(op.chain)) fail(`deletes foreign chain ${op.chain}`);
        if (referenced(s).chains.has(op.chain)) fail(`chain ${op.chain} is still referenced (EBUSY)`);
        void c;
        s.chains.delete(op.chain);
        return;
      }
      case 'add-rule': {
        const c = s.chains.get(op.chain) ?? fail(`no chain ${op.chain}`);
        const x = refsOf(op.rule);
        for (const n of x.chains) if (!s.chains.has(n)) fail(`rule refers to missing chain ${n}`);
        for (const n of x.sets) if (!s.sets.has(n)) fail(`rule refers to missing set ${n}`);
        c.rules.push(op.rule);
        return;
      }
      case 'add-set': {
        const have = s.sets.get(op.set.name);
        if (!have) {
          s.sets.set(op.set.name, op.set);
          s.elements.set(op.set.name, new Map());
        }
        return;
      }
      case 'flush-set':
        if (!s.sets.has(op.set)) fail(`no set ${op.set}`);
        s.elements.set(op.set, new Map());
        return;
      case 'delete-set':
        if (!s.sets.has(op.set)) fail(`no set ${op.set}`);
        if (referenced(s).sets.has(op.set)) fail(`set ${op.set} is still referenced (EBUSY)`);
        s.sets.delete(op.set);
        s.elements.delete(op.set);
        return;
      case 'add-elements': {
        const els = s.elements.get(op.set) ?? fail(`no set ${op.set}`);
        const range = (k: string): [number, number] => {
          const [a, b] = k.split('-');
          return [Number(a), Number(b ?? a)];
        };
        for (const e of op.elements) {
          if (s.sets.get(op.set)?.interval && !els.has(ek(e.key))) {
            const [lo, hi] = range(e.key[0]!);
            for (const k of els.keys()) {
              const [a, b] = range(k);
              if (lo <= b && a <= hi) fail(`interval ${ek(e.key)} overlaps ${k} in ${op.set} (EEXIST)`);
            }
          }
          if (e.verdict && (e.verdict.kind === 'jump' || e.verdict.kind === 'goto') && !s.chains.has(e.verdict.chain)) fail(`element refers to missing chain ${e.verdict.chain}`);
          const have = els.get(ek(e.key));
          if (have && JSON.stringify(have.verdict) !== JSON.stringify(e.verdict)) fail(`element ${ek(e.key)} exists with another verdict (EEXIST)`);
          if (have && JSON.stringify(have.data) !== JSON.stringify(e.data)) fail(`element ${ek(e.key)} exists with other data (EEXIST)`);
          els.set(ek(e.key), e);
        }
        return;
      }
      case 'delete-elements': {
        const els = s.elements.get(op.set) ?? fail(`no set ${op.set}`);
        for (const k of op.keys) if (!els.delete(ek(k))) fail(`no element ${ek(k)} in ${op.set} (ENOENT)`);
        return;
      }
    }
  });
}

/** A canonical, order-independent text of a table's content, for equality checks. */
export function simCanon(s: SimTable): string {
  const out: string[] = [];
  for (const n of [...s.sets.keys()].sort()) {
    out.push(`set ${JSON.stringify(s.sets.get(n))}`);
    for (const k of [...(s.elements.get(n)?.keys() ?? [])].sort()) out.push(`  el ${n} ${JSON.stringify(s.elements.get(n)!.get(k))}`);
  }
  for (const n of [...s.chains.keys()].sort()) {
    const c = s.chains.get(n)!;
    out.push(`chain ${n} ${JSON.stringify(c.base ?? null)}`);
    for (const r of c.rules) out.push(`  ${JSON.stringify(r)}`);
  }
  return out.join('\n');
}
