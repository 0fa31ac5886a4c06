/**
 * Ops in nft syntax, for error messages and logs: `add rule ip podnet svc-x ip daddr
 * 10.96.0.10 th dport 80 goto ep-y`. (The planner's render.ts prints whole tables the way
 * `nft list` does; this prints single commands the way one would type them.)
 */
import type { NftElement, NftExpr, NftStmt, NftVerdict } from './ast.js';
import type { NftOp, NftTransaction } from './ops.js';

export function formatExpr(e: NftExpr): string {
  switch (e?.kind) {
    case 'payload':
      return e.field;
    case 'meta':
      return `meta ${e.key}`;
    case 'ct':
      return `ct ${e.key}`;
    case 'fib':
      return `fib ${e.what}`;
    case 'numgen':
      return `numgen random mod ${e.mod}${e.offset ? ` offset ${e.offset}` : ''}`;
    case 'const':
      return e.value;
    case 'concat':
      return e.parts.map(formatExpr).join(' . ');
    default:
      return JSON.stringify(e);
  }
}

export function formatVerdict(v: NftVerdict): string {
  if (v?.kind === 'jump' || v?.kind === 'goto') return `${v.kind} ${v.chain}`;
  return v?.kind ?? JSON.stringify(v);
}

const hex = (n: number) => `0x${(n >>> 0).toString(16).padStart(8, '0')}`;

export function formatStmt(s: NftStmt, family: 'ip' | 'ip6' = 'ip'): string {
  switch (s?.kind) {
    case 'match':
      // nft writes "none of these states" as `ct state ! a,b` (and lists it so).
      if (s.op === '!=' && s.left?.kind === 'ct' && s.value.includes(',')) return `ct state ! ${s.value}`;
      return `${formatExpr(s.left)} ${s.op === '!=' ? '!= ' : ''}${s.value}`;
    case 'lookup':
      return `${formatExpr(s.left)} ${s.op === '!=' ? '!= ' : ''}@${s.set}`;
    case 'vmap':
      return `${formatExpr(s.key)} vmap @${s.map}`;
    case 'counter':
      return 'counter';
    case 'mark-or':
      return `meta mark set meta mark | ${hex(s.value)}`;
    case 'mark-xor':
      return `meta mark set meta mark ^ ${hex(s.value)}`;
    case 'mark-test':
      return `meta mark & ${hex(s.mask)} ${s.op} ${hex(s.value)}`;
    case 'set-update':
      return `update @${s.set} { ${formatExpr(s.key)} }`;
    case 'dnat':
      return family === 'ip6' ? `dnat to [${s.addr}]:${s.port}` : `dnat to ${s.addr}:${s.port}`;
    case 'masquerade':
      return s.fullyRandom ? 'masquerade fully-random' : 'masquerade';
    case 'reject':
      return s.with === 'tcp-reset' ? 'reject with tcp reset' : 'reject';
    case 'dnat-map':
      return `dnat ${family} addr . port to ${formatExpr(s.key)} map @${s.map}`;
    case 'verdict':
      return formatVerdict(s.verdict);
    default:
      return JSON.stringify(s);
  }
}

const quote = (s: string) => `"${s}"`;

function formatElement(e: NftElement): string {
  let out = Array.isArray(e?.key) ? e.key.join(' . ') : JSON.stringify(e);
  if (e?.comment !== undefined) out += ` comment ${quote(e.comment)}`;
  if (e?.verdict) out += ` : ${formatVerdict(e.verdict)}`;
  else if (e?.data !== undefined) out += ` : ${Array.isArray(e.data) ? e.data.join(' . ') : e.data}`;
  return out;
}

function list<T>(items: T[], fmt: (x: T) => string, max: number): string {
  const shown = items.slice(0, max).map(fmt).join(', ');
  return items.length > max ? `${shown}, … (${items.length - max} more)` : shown;
}

/** The command without its body: `add rule ip podnet svc-x`, `add element ip podnet svcs`. */
export function formatOpHead(tx: Pick<NftTransaction, 'family' | 'table'>, op: NftOp): string {
  const t = `${tx.family} ${tx.table}`;
  switch (op?.op) {
    case 'add-table':
      return `add table ${t}`;
    case 'delete-table':
      return `delete table ${t}`;
    case 'add-chain':
      return `add chain ${t} ${op.chain?.name}`;
    case 'flush-chain':
      return `flush chain ${t} ${op.chain}`;
    case 'delete-chain':
      return `delete chain ${t} ${op.chain}`;
    case 'add-rule':
      return `add rule ${t} ${op.chain}`;
    case 'add-set':
      return `add ${op.set?.data !== undefined ? 'map' : 'set'} ${t} ${op.set?.name}`;
    case 'flush-set':
      return `flush set ${t} ${op.set}`;
    case 'delete-set':
      return `delete set ${t} ${op.set}`;
    case 'add-elements':
      return `add element ${t} ${op.set}`;
    case 'delete-elements':
      return `delete element ${t} ${op.set}`;
    default:
      return JSON.stringify(op);
  }
}

/**
 * One op as an nft command. Element lists show the first `maxElements` (and how many more);
 * `elements` narrows them to the ones one message carried.
 */
export function formatOp(tx: Pick<NftTransaction, 'family' | 'table'>, op: NftOp, opts: { maxElements?: number; elements?: [number, number] } = {}): string {
  const head = formatOpHead(tx, op);
  const max = opts.maxElements ?? 3;
  const slice = <T>(xs: T[]): T[] => (opts.elements ? xs.slice(opts.elements[0], opts.elements[0] + opts.elements[1]) : xs);
  switch (op?.op) {
    case 'add-chain': {
      const parts: string[] = [];
      const b = op.chain.base;
      if (b) parts.push(`type ${b.type} hook ${b.hook} priority ${b.priority};`, ...(b.policy ? [`policy ${b.policy};`] : []));
      if (op.chain.comment !== undefined) parts.push(`comment ${quote(op.chain.comment)};`);
      return parts.length ? `${head} { ${parts.join(' ')} }` : head;
    }
    case 'add-rule': {
      const stmts = Array.isArray(op.rule?.stmts) ? op.rule.stmts.map((s) => formatStmt(s, tx.family)) : [];
      if (op.rule?.comment !== undefined) stmts.push(`comment ${quote(op.rule.comment)}`);
      return `${head} ${stmts.join(' ')}`;
    }
    case 'add-set': {
      const s = op.set;
      const ngt = s.numgenTypeof;
      const parts = ngt
        ? [`typeof numgen random mod ${ngt.mod} : ${tx.family} daddr . ${ngt.proto} dport;`]
        : [`type ${Array.isArray(s.key) ? s.key.join(' . ') : s.key}${s.data !== undefined ? ` : ${Array.isArray(s.data) ? s.data.join(' . ') : s.data}` : ''};`];
      const flags = [...(s.interval ? ['interval'] : []), ...(s.dynamic ? ['dynamic'] : []), ...(s.timeoutSeconds !== undefined ? ['timeout'] : [])];
      if (flags.length) parts.push(`flags ${flags.join(',')};`);
      if (s.size !== undefined) parts.push(`size ${s.size};`);
      if (s.timeoutSeconds !== undefined) parts.push(`timeout ${s.timeoutSeconds}s;`);
      if (s.comment !== undefined) parts.push(`comment ${quote(s.comment)};`);
      return `${head} { ${parts.join(' ')} }`;
    }
    case 'add-elements':
      return `${head} { ${list(slice(op.elements ?? []), formatElement, max)} }`;
    case 'delete-elements':
      return `${head} { ${list(slice(op.keys ?? []), (k) => (Array.isArray(k) ? k.join(' . ') : JSON.stringify(k)), max)} }`;
    default:
      return head;
  }
}
