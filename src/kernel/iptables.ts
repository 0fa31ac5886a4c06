/**
 * The iptables executor: `iptables-restore --noflush` / `ip6tables-restore --noflush` of a
 * generated input (one call per sync: each table's part between `*table` and `COMMIT` is
 * one transaction), `iptables-save` of one table, and the single jump from a built-in
 * chain (`-C`, then `-I` when missing). It decides nothing: the input comes from a planner
 * (src/proxy/iptables/plan.ts).
 *
 * Tools run in the current network namespace (the agent runs in the node's), or in the one
 * given as `netns` (a NetNS or a path), through `nsenter --net=PATH --`. Arguments are
 * always arrays; inputs go on stdin.
 *
 * A failed restore is a PODNET_EXEC error whose message names the failing line of the
 * input and whose context carries the lines around it, e.g.
 *   `installing proxy rules (IPv4): ip6tables-restore failed at line 5: Chain 'PODNET-X' does not exist`
 */
import { execa } from 'execa';
import { ErrorCodes, PodnetError } from '../util/errors.js';
import type { NetNS } from './netns.js';

export type IptablesFamily = 4 | 6;
export type IptablesTable = 'filter' | 'nat' | 'mangle' | 'raw';

export interface IptablesExecOptions {
  /** Run in this network namespace (a handle or a path such as /run/netns/x); default current. */
  netns?: NetNS | string | undefined;
  /** Kill the tool after this long (default 120 s: a full load of 10,000 services takes ~15 s). */
  timeoutMs?: number;
}

/** One rule of one chain, as iptables arguments after the chain name. */
export interface IptablesRule {
  table: IptablesTable;
  chain: string;
  args: readonly string[];
}

const tool = (family: IptablesFamily, name: 'iptables' | 'iptables-restore' | 'iptables-save') => (family === 6 ? name.replace('iptables', 'ip6tables') : name);

function netnsPath(ns: NetNS | string | undefined): string | undefined {
  if (ns === undefined) return undefined;
  return typeof ns === 'string' ? ns : ns.path;
}

/** `[file, args]` for a tool, wrapped in nsenter when a namespace is given. */
export function command(file: string, args: readonly string[], netns?: NetNS | string): [string, string[]] {
  const path = netnsPath(netns);
  return path ? ['nsenter', [`--net=${path}`, '--', file, ...args]] : [file, [...args]];
}

/** Lines `at-2 … at+2` of `input`, numbered, the failing one marked with `>`. */
export function linesAround(input: string, at: number, radius = 2): string {
  const lines = input.split('\n');
  const from = Math.max(1, at - radius);
  const to = Math.min(lines.length, at + radius);
  const out: string[] = [];
  for (let n = from; n <= to; n++) out.push(`${n === at ? '>' : ' '}${n}: ${lines[n - 1] ?? ''}`);
  return out.join('\n');
}

/**
 * The line an iptables-restore error names. Its forms (iptables 1.8, nf_tables backend):
 * `line 12 failed`, `Error occurred at line: 12`, `line 12: CHAIN_DEL failed (…)`,
 * `COMMIT expected at line 12`.
 */
export function failedLine(stderr: string): number | undefined {
  const m = /\bline:? (\d+)/.exec(stderr);
  return m ? Number(m[1]) : undefined;
}

/** iptables' stderr without its usage hint and blank lines, one line. */
function explain(stderr: string): string {
  return stderr
    .split('\n')
    .map((l) => l.replace(/^ip6?tables-restore( v[\d.]+ \([^)]*\))?:\s*/, '').trim())
    .filter((l) => l && !l.startsWith('Try `') && !/^Error occurred at line: \d+$/.test(l))
    .join('; ');
}

/**
 * Applies a restore input without flushing anything not named in it. Equivalent to
 * `iptables-restore --noflush -w < input` (`ip6tables-restore` for family 6).
 */
export async function iptablesRestore(family: IptablesFamily, input: string, what: string, opts: IptablesExecOptions = {}): Promise<void> {
  const name = tool(family, 'iptables-restore');
  const [file, args] = command(name, ['--noflush', '-w'], opts.netns);
  // stdout is discarded: a large input starts with `-S` (see src/proxy/iptables/plan.ts render()).
  const r = await execa(file, args, { input, reject: false, stdout: 'ignore', timeout: opts.timeoutMs ?? 120_000 });
  if (r.exitCode === 0) return;
  const stderr = String(r.stderr ?? '').trim();
  const at = failedLine(stderr);
  const why = explain(stderr) || (r.timedOut ? 'timed out' : `exit ${r.exitCode ?? r.signal ?? '?'}`);
  const bad = at !== undefined ? input.split('\n', at)[at - 1] : undefined;
  throw new PodnetError(ErrorCodes.EXEC, `${what}: ${name} failed${at !== undefined ? ` at line ${at}` : ''}: ${why}${bad !== undefined ? ` (line ${at}: ${bad})` : ''}`, {
    tool: name,
    family,
    netns: netnsPath(opts.netns),
    ...(at !== undefined ? { line: at, input: linesAround(input, at) } : {}),
    stderr,
  });
}

/** One table as iptables-save prints it. Equivalent to `iptables-save -t TABLE`. */
export async function iptablesSave(family: IptablesFamily, table: IptablesTable, opts: IptablesExecOptions = {}): Promise<string> {
  const name = tool(family, 'iptables-save');
  const [file, args] = command(name, ['-t', table], opts.netns);
  const r = await execa(file, args, { reject: false, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 512 * 1024 * 1024 });
  if (r.exitCode !== 0) {
    throw new PodnetError(ErrorCodes.EXEC, `${name} -t ${table} failed: ${String(r.stderr).trim() || `exit ${r.exitCode}`}`, { tool: name, family, table, netns: netnsPath(opts.netns) });
  }
  return String(r.stdout);
}

async function iptables(family: IptablesFamily, args: readonly string[], opts: IptablesExecOptions) {
  const name = tool(family, 'iptables');
  const [file, full] = command(name, ['-w', ...args], opts.netns);
  return { name, r: await execa(file, full, { reject: false, timeout: opts.timeoutMs ?? 60_000 }) };
}

/** True when the rule exists. Equivalent to `iptables -t T -C CHAIN ARGS`. */
export async function ruleExists(family: IptablesFamily, rule: IptablesRule, opts: IptablesExecOptions = {}): Promise<boolean> {
  const { name, r } = await iptables(family, ['-t', rule.table, '-C', rule.chain, ...rule.args], opts);
  if (r.exitCode === 0) return true;
  // 1: no such rule. Anything else (a missing chain, target or match) is a real error.
  if (r.exitCode === 1) return false;
  throw new PodnetError(ErrorCodes.EXEC, `${name} -t ${rule.table} -C ${rule.chain} failed: ${String(r.stderr).trim() || `exit ${r.exitCode}`}`, { tool: name, family, table: rule.table, chain: rule.chain, rule: rule.args.join(' '), netns: netnsPath(opts.netns) });
}

/**
 * The rules of one chain as `iptables -S` prints them (`-A CHAIN …`); [] when the chain
 * does not exist. Equivalent to `iptables -t T -S CHAIN`. Much cheaper than `-C` with a
 * jump on a large table (16 ms against ~250 ms at 110,000 chains: `-C` resolves the target).
 */
export async function listChain(family: IptablesFamily, table: IptablesTable, chain: string, opts: IptablesExecOptions = {}): Promise<string[]> {
  const { name, r } = await iptables(family, ['-t', table, '-S', chain], opts);
  if (r.exitCode !== 0) {
    if (/No chain|does not exist/i.test(String(r.stderr))) return [];
    throw new PodnetError(ErrorCodes.EXEC, `${name} -t ${table} -S ${chain} failed: ${String(r.stderr).trim() || `exit ${r.exitCode}`}`, { tool: name, family, table, chain, netns: netnsPath(opts.netns) });
  }
  return String(r.stdout)
    .split('\n')
    .filter((l) => l.startsWith('-A '));
}

/** `-A CHAIN args` as iptables prints it (arguments with white space double-quoted), compared without quotes. */
function ruleLine(rule: IptablesRule): string {
  return norm(`-A ${rule.chain} ${rule.args.map((a) => (/\s/.test(a) ? `"${a}"` : a)).join(' ')}`);
}
const norm = (l: string) => l.replace(/"/g, '').replace(/\s+/g, ' ').trim();

/**
 * Makes sure each rule is in its chain, inserting missing ones at the top (idempotent).
 * Equivalent to `iptables -t T -C CHAIN ARGS || iptables -t T -I CHAIN 1 ARGS` per rule,
 * but checks by listing each chain once (`-S CHAIN`, in parallel). Returns how many were inserted.
 */
export async function ensureJumps(family: IptablesFamily, rules: readonly IptablesRule[], opts: IptablesExecOptions = {}): Promise<number> {
  const chains = [...new Map(rules.map((r) => [`${r.table} ${r.chain}`, r] as const)).values()];
  const listed = await Promise.all(chains.map(async (r) => [`${r.table} ${r.chain}`, new Set((await listChain(family, r.table, r.chain, opts)).map(norm))] as const));
  const have = new Map(listed);
  let inserted = 0;
  for (const rule of rules) {
    if (have.get(`${rule.table} ${rule.chain}`)?.has(ruleLine(rule))) continue;
    const { name, r } = await iptables(family, ['-t', rule.table, '-I', rule.chain, '1', ...rule.args], opts);
    if (r.exitCode !== 0) {
      throw new PodnetError(ErrorCodes.EXEC, `${name} -t ${rule.table} -I ${rule.chain} failed: ${String(r.stderr).trim() || `exit ${r.exitCode}`}`, { tool: name, family, table: rule.table, chain: rule.chain, rule: rule.args.join(' '), netns: netnsPath(opts.netns) });
    }
    inserted++;
  }
  return inserted;
}
