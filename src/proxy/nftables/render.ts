/**
 * nft syntax for the AST (pure). Two outputs:
 *
 * - `renderTable(t)`: exactly what `nft list table ip podnet` prints (nftables 1.0.6) for
 *   that table — tabs, sets before chains, set elements sorted and wrapped as nft does,
 *   symbolic priorities (`dstnat`, `dstnat - 10`), implicit `==`, dependencies nft hides
 *   (`meta l4proto tcp` before `reject with tcp reset`). Golden tests and the executor's
 *   netns test compare against it; chains and sets appear in the order given (the kernel
 *   lists them in creation order, so a fresh full sync lists like this).
 * - `renderOp(op)` / `renderTransaction(tx)`: the same change as an `nft -f` script, for
 *   logs and error context (`nft -f` accepts it: checked in a scratch namespace).
 *
 * Formats measured with nft 1.0.6 on kernel 6.18 (see README.md):
 *   elements of concatenated keys sort by their raw bytes read as a little-endian number
 *   (last component first: `10.96.0.2 . udp . 53` before `10.96.0.10 . tcp . 80`), one per
 *   line; single-type sets sort numerically, IPv4 two per line, ports/protocols five, IPv6 one.
 */
import { isIP } from 'node:net';
import type { NftChain, NftElement, NftExpr, NftFamily, NftRule, NftSet, NftStmt, NftTable, NftType, NftVerdict } from '../../kernel/nftables/ast.js';
import type { NftOp, NftTransaction } from '../../kernel/nftables/ops.js';

const hex32 = (v: number): string => `0x${(v >>> 0).toString(16).padStart(8, '0')}`;

// ---------------------------------------------------------------- addresses

/**
 * An address as nft prints it (inet_ntop): IPv4 dotted quad; IPv6 lower case with the
 * longest run (≥ 2) of zero groups elided, the first one on a tie, `::ffff:a.b.c.d` for
 * IPv4-mapped. A prefix keeps its length: "10.244.0.0/16".
 */
export function nftAddr(text: string): string {
  const slash = text.indexOf('/');
  if (slash >= 0) return `${nftAddr(text.slice(0, slash))}/${Number(text.slice(slash + 1))}`;
  const fam = isIP(text);
  if (fam === 4) return /^(?:0|[1-9]\d*)(?:\.(?:0|[1-9]\d*)){3}$/.test(text) ? text : text.split('.').map((o) => String(Number(o))).join('.');
  if (fam !== 6) return text;
  return formatIPv6(ipv6Bytes(text));
}

function ipv6Bytes(text: string): Uint8Array {
  let s = text.toLowerCase();
  const pct = s.indexOf('%');
  if (pct >= 0) s = s.slice(0, pct);
  const out = new Uint8Array(16);
  // An embedded IPv4 at the end.
  const lastColon = s.lastIndexOf(':');
  const last = s.slice(lastColon + 1);
  if (last.includes('.')) {
    const q = last.split('.').map(Number);
    s = `${s.slice(0, lastColon + 1)}${(((q[0] ?? 0) << 8) | (q[1] ?? 0)).toString(16)}:${(((q[2] ?? 0) << 8) | (q[3] ?? 0)).toString(16)}`;
  }
  const dbl = s.indexOf('::');
  const head = (dbl >= 0 ? s.slice(0, dbl) : s).split(':').filter((x) => x !== '');
  const tail = dbl >= 0 ? s.slice(dbl + 2).split(':').filter((x) => x !== '').map((x) => parseInt(x, 16)) : [];
  const words = head.map((x) => parseInt(x, 16));
  const fill = 8 - words.length - tail.length;
  const all = [...words, ...new Array<number>(Math.max(0, fill)).fill(0), ...tail];
  for (let i = 0; i < 8; i++) {
    out[i * 2] = ((all[i] ?? 0) >> 8) & 0xff;
    out[i * 2 + 1] = (all[i] ?? 0) & 0xff;
  }
  return out;
}

function formatIPv6(b: Uint8Array): string {
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push(((b[i * 2] ?? 0) << 8) | (b[i * 2 + 1] ?? 0));
  let bestBase = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) {
      bestBase = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestLen < 2) bestBase = -1;
  // glibc's inet_ntop6: ::a.b.c.d (compatible) and ::ffff:a.b.c.d (mapped).
  if (bestBase === 0 && (bestLen === 6 || (bestLen === 5 && w[5] === 0xffff))) {
    const v4 = `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
    return bestLen === 5 ? `::ffff:${v4}` : `::${v4}`;
  }
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestBase) {
      out += i === 0 ? '::' : ':';
      i += bestLen - 1;
      continue;
    }
    out += w[i]!.toString(16);
    if (i < 7) out += ':';
  }
  return out;
}

// ---------------------------------------------------------------- expressions and statements

function renderExpr(e: NftExpr): string {
  switch (e.kind) {
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
      return renderValue(e.type, e.value);
    case 'concat':
      return e.parts.map(renderExpr).join(' . ');
  }
}

function renderValue(type: NftType, value: string): string {
  switch (type) {
    case 'ipv4_addr':
    case 'ipv6_addr':
      return nftAddr(value);
    case 'inet_proto':
      return value.toLowerCase();
    case 'inet_service':
      return String(Number(value));
    case 'mark':
      return hex32(Number(value));
    case 'integer':
      return String(Number(value));
  }
}

/** The value of a match as nft prints it, typed by what it is compared with. */
function renderMatchValue(left: NftExpr, value: string): string {
  if (left.kind === 'payload' && left.field !== 'th dport' && left.field !== 'th sport') return nftAddr(value);
  if (left.kind === 'meta' && left.key === 'l4proto') return value.toLowerCase();
  if (left.kind === 'meta' && left.key === 'mark') return hex32(Number(value));
  return value;
}

export function renderVerdict(v: NftVerdict): string {
  switch (v.kind) {
    case 'jump':
      return `jump ${v.chain}`;
    case 'goto':
      return `goto ${v.chain}`;
    default:
      return v.kind;
  }
}

function renderStmt(s: NftStmt, listing: boolean, family: NftFamily): string {
  switch (s.kind) {
    case 'match':
      return `${renderExpr(s.left)} ${s.op === '!=' ? '!= ' : ''}${renderMatchValue(s.left, s.value)}`;
    case 'lookup':
      return `${renderExpr(s.left)} ${s.op === '!=' ? '!= ' : ''}@${s.set}`;
    case 'vmap':
      return `${renderExpr(s.key)} vmap @${s.map}`;
    case 'counter':
      return listing ? 'counter packets 0 bytes 0' : 'counter';
    case 'mark-or':
      return `meta mark set meta mark | ${hex32(s.value)}`;
    case 'mark-xor':
      return `meta mark set meta mark ^ ${hex32(s.value)}`;
    case 'mark-test':
      return `meta mark & ${hex32(s.mask)} ${s.op} ${hex32(s.value)}`;
    case 'set-update':
      return `update @${s.set} { ${renderExpr(s.key)} }`;
    case 'dnat': {
      const a = nftAddr(s.addr);
      return `dnat to ${a.includes(':') ? `[${a}]` : a}:${s.port}`;
    }
    case 'dnat-map':
      // nft 1.0.6 lists it without `addr . port` (and reads that back the same).
      return `dnat ${family}${listing ? '' : ' addr . port'} to ${renderExpr(s.key)} map @${s.map}`;
    case 'masquerade':
      return s.fullyRandom ? 'masquerade fully-random' : 'masquerade';
    case 'reject':
      return s.with === 'tcp-reset' ? 'reject with tcp reset' : 'reject';
    case 'verdict':
      return renderVerdict(s.verdict);
  }
}

const isL4ProtoTcp = (s: NftStmt | undefined): boolean =>
  s?.kind === 'match' && s.op === '==' && s.left.kind === 'meta' && s.left.key === 'l4proto' && s.value.toLowerCase() === 'tcp';

/**
 * A rule's statements. `listing`: as nft lists them, which drops the `meta l4proto tcp`
 * that `reject with tcp reset` depends on; otherwise as `nft -f` input.
 */
export function renderRule(r: NftRule, listing = true, family: NftFamily = 'ip'): string {
  const parts: string[] = [];
  r.stmts.forEach((s, i) => {
    if (listing && isL4ProtoTcp(s) && r.stmts[i + 1]?.kind === 'reject' && (r.stmts[i + 1] as { with: string }).with === 'tcp-reset') return;
    parts.push(renderStmt(s, listing, family));
  });
  if (r.comment !== undefined) parts.push(`comment ${quote(r.comment)}`);
  return parts.join(' ');
}

const quote = (s: string): string => `"${s}"`;

// ---------------------------------------------------------------- priorities, timeouts

const STD_PRIOS: readonly { name: string; value: number; hooks?: readonly string[] }[] = [
  { name: 'raw', value: -300 },
  { name: 'mangle', value: -150 },
  { name: 'dstnat', value: -100, hooks: ['prerouting'] },
  { name: 'filter', value: 0 },
  { name: 'security', value: 50 },
  { name: 'srcnat', value: 100, hooks: ['postrouting'] },
];

/** A base chain priority as nft prints it for ip/ip6: `dstnat`, `dstnat - 10`, `filter + 5`, `-110`. */
export function renderPriority(hook: string, prio: number): string {
  for (const p of STD_PRIOS) {
    if (p.hooks && !p.hooks.includes(hook)) continue;
    const off = prio - p.value;
    if (off === 0) return p.name;
    if (Math.abs(off) <= 10) return `${p.name} ${off < 0 ? '-' : '+'} ${Math.abs(off)}`;
  }
  return String(prio);
}

/** A duration as nft prints it: 10800 -> "3h", 90 -> "1m30s", 86400 -> "1d". */
export function renderDuration(seconds: number): string {
  let s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  s %= 86400;
  const h = Math.floor(s / 3600);
  s %= 3600;
  const m = Math.floor(s / 60);
  s %= 60;
  return `${d ? `${d}d` : ''}${h ? `${h}h` : ''}${m ? `${m}m` : ''}${s ? `${s}s` : ''}` || '0s';
}

// ---------------------------------------------------------------- sets and elements

const PROTO_NUMBERS: Record<string, number> = { tcp: 6, udp: 17, sctp: 132, icmp: 1, 'ipv6-icmp': 58 };

/** The bytes of one key part as the kernel holds it (registers are 4-byte units). */
function keyBytes(type: NftType, value: string): number[] {
  switch (type) {
    case 'ipv4_addr':
      return value.split('.').map(Number);
    case 'ipv6_addr':
      return [...ipv6Bytes(value)];
    case 'inet_proto':
      return [PROTO_NUMBERS[value.toLowerCase()] ?? Number(value), 0, 0, 0];
    case 'inet_service': {
      const p = Number(value);
      return [(p >> 8) & 0xff, p & 0xff, 0, 0];
    }
    case 'integer': {
      const v = Number(value.split('-')[0]) >>> 0;
      return [v >>> 24, (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff];
    }
    case 'mark': {
      // Host order (x86: little endian) in the register.
      const v = Number(value) >>> 0;
      return [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >>> 24) & 0xff];
    }
  }
}

/** The numeric value of a single-type key (nft sorts those by value). */
function keyNumber(type: NftType, value: string): bigint {
  switch (type) {
    case 'ipv4_addr':
    case 'ipv6_addr': {
      // (an interval's start: "10.96.0.0/12", "10.0.0.1-10.0.0.9")
      const start = value.split('/')[0]!.split('-')[0]!;
      const b = type === 'ipv4_addr' ? start.split('.').map(Number) : [...ipv6Bytes(start)];
      return b.reduce((acc, x) => (acc << 8n) | BigInt(x), 0n);
    }
    case 'inet_proto':
      return BigInt(PROTO_NUMBERS[value.toLowerCase()] ?? Number(value));
    default:
      // (an interval's start: "0-6553")
      return BigInt(Number(value.split('-')[0]) >>> 0);
  }
}

/** Elements in the order nft lists them. */
export function sortElements(set: NftSet, elements: readonly NftElement[]): NftElement[] {
  if (set.key.length === 1) {
    const t = set.key[0]!;
    const withKey = elements.map((e) => ({ e, k: keyNumber(t, e.key[0] ?? '') }));
    withKey.sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0));
    return withKey.map((x) => x.e);
  }
  const withKey = elements.map((e) => ({ e, b: e.key.flatMap((v, i) => keyBytes(set.key[i] ?? 'ipv4_addr', v)) }));
  withKey.sort((x, y) => {
    const n = Math.max(x.b.length, y.b.length);
    for (let i = n - 1; i >= 0; i--) {
      const d = (x.b[i] ?? 0) - (y.b[i] ?? 0);
      if (d) return d;
    }
    return 0;
  });
  return withKey.map((x) => x.e);
}

/** A set's data types as a list (empty for sets and verdict maps). */
const dataTypes = (d: NftSet['data']): NftType[] => (d === undefined || d === 'verdict' ? [] : Array.isArray(d) ? d : [d]);

/** Concatenated data as its parts ("10.244.1.5 . 8080" or ["10.244.1.5", "8080"]). */
export const dataParts = (d: string | string[]): string[] => (Array.isArray(d) ? d : d.split(' . '));

function renderKeyPart(set: NftSet, type: NftType, v: string): string {
  const dash = set.interval && !v.includes('/') ? v.indexOf('-', 1) : -1;
  return dash > 0 ? `${renderValue(type, v.slice(0, dash))}-${renderValue(type, v.slice(dash + 1))}` : renderValue(type, v);
}

function renderElement(set: NftSet, e: NftElement): string {
  let s = e.key.map((v, i) => renderKeyPart(set, set.key[i] ?? 'ipv4_addr', v)).join(' . ');
  if (e.comment !== undefined) s += ` comment ${quote(e.comment)}`;
  if (e.verdict) s += ` : ${renderVerdict(e.verdict)}`;
  else if (e.data !== undefined && set.data && set.data !== 'verdict') {
    const types = dataTypes(set.data);
    const parts = types.length > 1 ? dataParts(e.data) : [Array.isArray(e.data) ? e.data.join(' . ') : e.data];
    s += ` : ${parts.map((v, i) => renderValue(types[i] ?? types[0]!, v)).join(' . ')}`;
  }
  return s;
}

/** How many elements nft puts on one line (expression.c calculate_delim). */
function perLine(set: NftSet): number {
  if (set.key.length > 1) return 1;
  switch (set.key[0]) {
    case 'ipv4_addr':
      return 2;
    case 'inet_proto':
    case 'inet_service':
    case 'mark':
    case 'integer':
      return 5;
    default:
      return 1;
  }
}

function renderElementList(set: NftSet, elements: readonly NftElement[]): string {
  const sorted = sortElements(set, elements);
  const n = perLine(set);
  let out = '{ ';
  sorted.forEach((e, i) => {
    if (i > 0) out += i % n === 0 ? ',\n\t\t\t     ' : ', ';
    out += renderElement(set, e);
  });
  return `${out} }`;
}

function setType(s: NftSet): string {
  return `${s.key.join(' . ')}${s.data ? ` : ${dataTypes(s.data).join(' . ') || s.data}` : ''}`;
}

/** `type ...`, or for a numgen-keyed map the `typeof ...` nft shows. */
function setTypeLine(s: NftSet, family: NftFamily): string {
  const t = s.numgenTypeof;
  if (!t) return `type ${setType(s)}`;
  return `typeof numgen random mod ${t.mod} : ${family} daddr . ${t.proto} dport`;
}

function setFlags(s: NftSet): string[] {
  const f: string[] = [];
  if (s.dynamic) f.push('dynamic');
  if (s.interval) f.push('interval');
  if (s.timeoutSeconds !== undefined || s.dynamic) f.push('timeout');
  return f;
}

function renderSetBlock(s: NftSet, elements: readonly NftElement[] | undefined, family: NftFamily): string {
  const lines = [`\t${s.data ? 'map' : 'set'} ${s.name} {`, `\t\t${setTypeLine(s, family)}`];
  if (s.size !== undefined) lines.push(`\t\tsize ${s.size}`);
  const flags = setFlags(s);
  if (flags.length) lines.push(`\t\tflags ${flags.join(',')}`);
  if (s.timeoutSeconds !== undefined) lines.push(`\t\ttimeout ${renderDuration(s.timeoutSeconds)}`);
  if (s.comment !== undefined) lines.push(`\t\tcomment ${quote(s.comment)}`);
  if (elements?.length && !s.dynamic) lines.push(`\t\telements = ${renderElementList(s, elements)}`);
  lines.push('\t}');
  return lines.join('\n');
}

function renderChainBlock(c: NftChain, family: NftFamily): string {
  const lines = [`\tchain ${c.name} {`];
  if (c.comment !== undefined) lines.push(`\t\tcomment ${quote(c.comment)}`);
  if (c.base) lines.push(`\t\ttype ${c.base.type} hook ${c.base.hook} priority ${renderPriority(c.base.hook, c.base.priority)}; policy ${c.base.policy ?? 'accept'};`);
  for (const r of c.rules) lines.push(`\t\t${renderRule(r, true, family)}`);
  lines.push('\t}');
  return lines.join('\n');
}

/** The table exactly as `nft list table <family> <name>` prints it (sets, then chains). */
export function renderTable(t: NftTable): string {
  const blocks = [...t.sets.map((s) => renderSetBlock(s, t.elements.get(s.name), t.family)), ...t.chains.map((c) => renderChainBlock(c, t.family))];
  return `table ${t.family} ${t.name} {\n${blocks.join('\n\n')}${blocks.length ? '\n' : ''}}\n`;
}

// ---------------------------------------------------------------- ops as an nft -f script

export interface RenderOpContext {
  family: NftFamily;
  table: string;
  /** Names that are maps (`flush map` / `delete map`; `flush set` on a map fails). */
  isMap?: (name: string) => boolean;
}

function setSpec(s: NftSet, family: NftFamily): string {
  const parts = [`${setTypeLine(s, family)};`];
  if (s.size !== undefined) parts.push(`size ${s.size};`);
  const flags = setFlags(s);
  if (flags.length) parts.push(`flags ${flags.join(',')};`);
  if (s.timeoutSeconds !== undefined) parts.push(`timeout ${s.timeoutSeconds}s;`);
  if (s.comment !== undefined) parts.push(`comment ${quote(s.comment)};`);
  return `{ ${parts.join(' ')} }`;
}

function chainSpec(c: Omit<NftChain, 'rules'>): string {
  const parts: string[] = [];
  if (c.base) parts.push(`type ${c.base.type} hook ${c.base.hook} priority ${c.base.priority}; policy ${c.base.policy ?? 'accept'};`);
  if (c.comment !== undefined) parts.push(`comment ${quote(c.comment)};`);
  return parts.length ? ` { ${parts.join(' ')} }` : '';
}

function elementInput(e: NftElement): string {
  // Input form: typed by the set, so values print as given (addresses canonicalised).
  let s = e.key.map((v) => (isIP(v) ? nftAddr(v) : v)).join(' . ');
  if (e.comment !== undefined) s += ` comment ${quote(e.comment)}`;
  if (e.verdict) s += ` : ${renderVerdict(e.verdict)}`;
  else if (e.data !== undefined) s += ` : ${dataParts(e.data).map((v) => (isIP(v) ? nftAddr(v) : v)).join(' . ')}`;
  return s;
}

/** One op as an `nft -f` line. */
export function renderOp(op: NftOp, ctx: RenderOpContext): string {
  const t = `${ctx.family} ${ctx.table}`;
  const kindOf = (name: string): string => (ctx.isMap?.(name) ? 'map' : 'set');
  switch (op.op) {
    case 'add-table':
      return `add table ${t}`;
    case 'delete-table':
      return `delete table ${t}`;
    case 'add-chain':
      return `add chain ${t} ${op.chain.name}${chainSpec(op.chain)}`;
    case 'flush-chain':
      return `flush chain ${t} ${op.chain}`;
    case 'delete-chain':
      return `delete chain ${t} ${op.chain}`;
    case 'add-rule':
      return `add rule ${t} ${op.chain} ${renderRule(op.rule, false, ctx.family)}`;
    case 'add-set':
      return `add ${op.set.data ? 'map' : 'set'} ${t} ${op.set.name} ${setSpec(op.set, ctx.family)}`;
    case 'flush-set':
      return `flush ${kindOf(op.set)} ${t} ${op.set}`;
    case 'delete-set':
      return `delete ${kindOf(op.set)} ${t} ${op.set}`;
    case 'add-elements':
      return `add element ${t} ${op.set} { ${op.elements.map(elementInput).join(', ')} }`;
    case 'delete-elements':
      return `delete element ${t} ${op.set} { ${op.keys.map((k) => k.map((v) => (isIP(v) ? nftAddr(v) : v)).join(' . ')).join(', ')} }`;
  }
}

/**
 * A transaction as an `nft -f` script, one op per line. Maps are recognised by the
 * transaction's own add-set ops and by `maps` (names known to be maps).
 */
export function renderTransaction(tx: NftTransaction, opts: { maps?: Iterable<string> } = {}): string {
  const maps = new Set(opts.maps ?? []);
  for (const op of tx.ops) if (op.op === 'add-set' && op.set.data) maps.add(op.set.name);
  const ctx: RenderOpContext = { family: tx.family, table: tx.table, isMap: (n) => maps.has(n) };
  return tx.ops.map((op) => `${renderOp(op, ctx)}\n`).join('');
}
