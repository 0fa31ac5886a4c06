/**
 * nftrace for the live trace: a small table that sets `meta nftrace 1` on the probe's
 * packets (selected by the marker: DSCP, and the probe's source port / echo id), and
 * `nft monitor trace` parsed into events, in one network namespace (a node's).
 *
 *   table ip podnet-trace-<id> {            (ip6 for IPv6)
 *     chain prerouting { type filter hook prerouting priority -350; policy accept;
 *       ip dscp 10 tcp sport 40000 meta nftrace set 1 }
 *     chain output     { ... hook output ... the same rule }
 *   }
 *
 * Priority -350 is before conntrack (-200) and every NAT and filter chain, so the packet
 * is marked before anything else sees it and every later chain's decision is traced.
 *
 * The table must not outlive the trace: stop() removes it (idempotent, also after a start
 * that failed half way), and so do handlers for SIGINT / SIGTERM / SIGHUP and process exit
 * (including an uncaught error), synchronously. A process killed with SIGKILL cannot clean
 * up: sweepTraceTables() removes every podnet-trace-* table of a namespace.
 *
 * `nft monitor trace` (nftables 1.0.6) loads the ruleset once when it starts and prints
 * rules from that copy: a rule added later is shown as `unknown rule handle N`. The table
 * is therefore installed first and the monitor started after it; start() resolves once the
 * monitor's netlink socket is subscribed to the trace group, so no marked packet sent
 * after start() is missed.
 *
 * Line formats (nft 1.0.6, kernel 6.x; recorded in testdata/nftrace-*.txt):
 *   trace id 6434bf4f ip podnet nat-prerouting packet: iif "eth0" ether saddr .. ip saddr 198.18.0.1 ip dscp af11 .. tcp sport 40000 tcp dport 80 tcp flags == syn ..
 *   trace id 6434bf4f ip podnet nat-prerouting rule jump services (verdict jump services)
 *   trace id 6434bf4f ip podnet services rule ip daddr . meta l4proto . th dport vmap @service-ips (verdict goto service-abc)
 *   trace id 60614e74 inet podnet filter-forward policy accept meta mark 0x00004000
 *   trace id 82097168 ip later out unknown rule handle 2 (verdict continue)
 *   trace id 3b2f6c1a ip podnet services verdict continue            (end of a chain; older kernels)
 * DSCP is printed by name when it has one (af11 = 10, ef = 46, cs0 = 0) and in hex
 * otherwise (0x05): dscpValue() turns either into a number.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { execa } from 'execa';
import type { ResultPromise } from 'execa';
import { ErrorCodes, PodnetError } from '../../util/errors.js';
import { validateInt } from '../../util/validate.js';
import type { Family, Proto } from '../types.js';

export interface TraceEvent {
  /** The kernel's trace id (8 hex digits): one per packet (skb) per namespace. */
  id: string;
  /** The table's family: ip, ip6, inet, bridge, netdev, arp. */
  family: string;
  table: string;
  chain: string;
  /**
   * packet: the packet as it entered the chain (fields); rule: a rule matched (rule,
   * verdict); verdict: the end of a chain was reached (verdict); policy: a base chain's
   * policy applied (verdict).
   */
  kind: 'packet' | 'rule' | 'verdict' | 'policy';
  /** The rule as `nft list` shows it (absent when nft did not know the rule: see handle). */
  rule?: string;
  /** accept, drop, continue, return, jump CHAIN, goto CHAIN, queue... */
  verdict?: string;
  /** `unknown rule handle N`: the rule was added after the monitor started. */
  handle?: number;
  /**
   * packet: the header fields, "iif" → "eth0", "ip saddr" → "10.244.1.5", "ip dscp" →
   * "af11", "tcp dport" → "80", "tcp flags" → "syn", "@th,64,24" → "0x68690a"; policy /
   * verdict: "meta mark" when the packet has one.
   */
  fields?: Record<string, string>;
  raw: string;
}

export interface NftTraceOptions {
  /** The trace id: [a-z0-9]{1,16}; the table is podnet-trace-<id>. */
  id: string;
  family: Family;
  /** The marker: 0..63. */
  dscp: number;
  /** The probe's source port (tcp / udp / sctp, 1..65535) or echo id (icmp, 0..65535). */
  sport?: number;
  proto?: Proto;
  /** The network namespace to trace in (nft runs under `nsenter --net=PATH`); the current one when absent. */
  netnsPath?: string;
  /** How long to wait for `nft monitor trace` to subscribe. Default 5000 ms. */
  readyTimeoutMs?: number;
  /**
   * Run `nft monitor trace` (default true). False: only the trace table; the caller reads the
   * trace events itself (nftrace-netlink.ts) — nft's monitor loads the whole ruleset when it
   * starts, which takes seconds with 10,000 Services.
   */
  monitor?: boolean;
}

const TABLE_PREFIX = 'podnet-trace-';
/** NFNLGRP_NFTRACE = 9: bit 8 of a netlink socket's group mask in /proc/net/netlink. */
const NFTRACE_GROUP_BIT = 1 << 8;
const NETLINK_NETFILTER = 12;

// ---- parsing

/** nft's DSCP names (`nft describe ip dscp`, nftables 1.0.6). */
const DSCP_NAMES: Record<string, number> = {
  cs0: 0x00, cs1: 0x08, cs2: 0x10, cs3: 0x18, cs4: 0x20, cs5: 0x28, cs6: 0x30, cs7: 0x38,
  df: 0x00, be: 0x00, lephb: 0x01,
  af11: 0x0a, af12: 0x0c, af13: 0x0e, af21: 0x12, af22: 0x14, af23: 0x16,
  af31: 0x1a, af32: 0x1c, af33: 0x1e, af41: 0x22, af42: 0x24, af43: 0x26,
  va: 0x2c, ef: 0x2e,
};

/** The number of a DSCP as nft prints it ("af11" → 10, "0x05" → 5, "46" → 46); undefined if not one. */
export function dscpValue(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const t = text.trim().toLowerCase();
  if (t in DSCP_NAMES) return DSCP_NAMES[t];
  const v = /^0x[0-9a-f]+$/.test(t) ? parseInt(t, 16) : /^\d+$/.test(t) ? Number(t) : NaN;
  return Number.isInteger(v) && v >= 0 && v <= 63 ? v : undefined;
}

/** Selectors nft prints as two words ("ip saddr", "tcp flags", "meta mark"). */
const TWO_WORD = new Set([
  'ether', 'vlan', 'arp', 'ip', 'ip6', 'tcp', 'udp', 'udplite', 'sctp', 'dccp', 'icmp', 'icmpv6', 'igmp',
  'th', 'meta', 'ct', 'ah', 'esp', 'comp', 'gre', 'geneve', 'vxlan', 'hbh', 'rt', 'rt0', 'rt2', 'srh', 'frag', 'dst', 'mh',
]);
const OPERATORS = new Set(['==', '!=', '<', '>', '<=', '>=']);

/** Splits on spaces; a double-quoted token is one token, quotes removed. */
function tokenize(text: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m = re.exec(text); m; m = re.exec(text)) out.push(m[1] !== undefined ? m[1] : (m[2] as string));
  return out;
}

/** Parses `iif "eth0" ip saddr 10.0.0.1 tcp flags == syn ...` into fields. */
export function parseFields(text: string): Record<string, string> {
  const tokens = tokenize(text);
  const fields: Record<string, string> = {};
  let i = 0;
  while (i < tokens.length) {
    const t = tokens[i] as string;
    let key: string;
    if (TWO_WORD.has(t) && i + 1 < tokens.length) {
      key = `${t} ${tokens[i + 1]}`;
      i += 2;
    } else {
      key = t;
      i += 1;
    }
    if (i < tokens.length && OPERATORS.has(tokens[i] as string)) i += 1;
    if (i >= tokens.length) break;
    let value = tokens[i] as string;
    i += 1;
    while (i + 1 < tokens.length && tokens[i] === '|') {
      value += ` | ${tokens[i + 1]}`;
      i += 2;
    }
    fields[key] = value;
  }
  return fields;
}

const HEADER = /^trace id ([0-9a-f]+) (\S+) (\S+) (\S+) (.*)$/;

/** Parses one line of `nft monitor trace`; undefined for anything else. */
export function parseTraceLine(line: string): TraceEvent | undefined {
  const raw = line.replace(/\s+$/, '');
  const m = HEADER.exec(raw);
  if (!m) return undefined;
  const [, id, family, table, chain, rest] = m as unknown as [string, string, string, string, string, string];
  const base = { id, family, table, chain, raw };
  if (rest.startsWith('packet:')) return { ...base, kind: 'packet', fields: parseFields(rest.slice('packet:'.length)) };
  const unknown = /^unknown rule handle (\d+) \(verdict (.+)\)$/.exec(rest);
  if (unknown) return { ...base, kind: 'rule', handle: Number(unknown[1]), verdict: unknown[2] as string };
  if (rest.startsWith('rule ')) {
    const at = rest.lastIndexOf(' (verdict ');
    if (at < 0 || !rest.endsWith(')')) return { ...base, kind: 'rule', rule: rest.slice(5) };
    return { ...base, kind: 'rule', rule: rest.slice(5, at), verdict: rest.slice(at + ' (verdict '.length, -1) };
  }
  if (rest.startsWith('policy ') || rest.startsWith('verdict ')) {
    const kind = rest.startsWith('policy ') ? 'policy' : 'verdict';
    const tokens = rest.split(/\s+/).slice(1);
    const n = tokens[0] === 'jump' || tokens[0] === 'goto' ? 2 : 1;
    const verdict = tokens.slice(0, n).join(' ');
    const tail = tokens.slice(n).join(' ');
    return { ...base, kind, verdict, ...(tail ? { fields: parseFields(tail) } : {}) };
  }
  return undefined;
}

/** One traced packet: its kernel trace id and its events in order. */
export interface TraceGroup {
  id: string;
  events: TraceEvent[];
}

/**
 * Events grouped by packet, in the order the packets first appear. Events of one packet
 * share a trace id, but the kernel derives the id from the skb, so a later packet can get
 * the id of an earlier one (seen in testdata/nftrace-dnat.txt): a `packet` event for a
 * chain the current group has already entered starts a new group for that id.
 */
export function groupByTraceId(events: readonly TraceEvent[]): TraceGroup[] {
  const groups: TraceGroup[] = [];
  const current = new Map<string, { group: TraceGroup; entered: Set<string> }>();
  for (const e of events) {
    let c = current.get(e.id);
    const where = `${e.family} ${e.table} ${e.chain}`;
    if (!c || (e.kind === 'packet' && c.entered.has(where))) {
      c = { group: { id: e.id, events: [] }, entered: new Set() };
      current.set(e.id, c);
      groups.push(c.group);
    }
    if (e.kind === 'packet') c.entered.add(where);
    c.group.events.push(e);
  }
  return groups;
}

// ---- the table

interface Spec {
  id: string;
  family: Family;
  dscp: number;
  sport: number | undefined;
  proto: Proto | undefined;
  netnsPath: string | undefined;
  readyTimeoutMs: number;
}

function invalid(message: string, field: string): PodnetError {
  return new PodnetError(ErrorCodes.INVALID_ARGUMENT, message, { field });
}

/** Validates the options (everything that reaches nft); exported for tests. */
export function validateTraceOptions(o: NftTraceOptions): Spec {
  if (typeof o?.id !== 'string' || !/^[a-z0-9]{1,16}$/.test(o.id)) throw invalid(`trace id must be 1 to 16 characters of [a-z0-9], got ${JSON.stringify(o?.id)}`, 'id');
  if (o.family !== 4 && o.family !== 6) throw invalid(`family must be 4 or 6, got ${JSON.stringify(o.family)}`, 'family');
  validateInt(o.dscp, 'dscp', 0, 63);
  if (o.proto !== undefined && !['tcp', 'udp', 'sctp', 'icmp'].includes(o.proto)) throw invalid(`proto must be tcp, udp, sctp or icmp, got ${JSON.stringify(o.proto)}`, 'proto');
  if (o.sport !== undefined) validateInt(o.sport, 'sport', o.proto === 'icmp' ? 0 : 1, 65535);
  if (o.netnsPath !== undefined && (typeof o.netnsPath !== 'string' || !o.netnsPath.startsWith('/') || /[\0\n]/.test(o.netnsPath))) {
    throw invalid(`netnsPath must be an absolute path, got ${JSON.stringify(o.netnsPath)}`, 'netnsPath');
  }
  const readyTimeoutMs = o.readyTimeoutMs === undefined ? 5000 : validateInt(o.readyTimeoutMs, 'readyTimeoutMs', 1, 120_000);
  return { id: o.id, family: o.family, dscp: o.dscp, sport: o.sport, proto: o.proto, netnsPath: o.netnsPath, readyTimeoutMs };
}

/** The rule's match: `ip dscp 10 tcp sport 40000` (exported for tests). */
export function traceMatch(s: { family: Family; dscp: number; sport?: number | undefined; proto?: Proto | undefined }): string {
  const parts = [`${s.family === 4 ? 'ip' : 'ip6'} dscp ${s.dscp}`];
  if (s.proto === 'icmp') {
    const icmp = s.family === 4 ? 'icmp' : 'icmpv6';
    parts.push(s.sport !== undefined ? `${icmp} id ${s.sport}` : `meta l4proto ${s.family === 4 ? 'icmp' : 'ipv6-icmp'}`);
  } else if (s.proto) {
    parts.push(s.sport !== undefined ? `${s.proto} sport ${s.sport}` : `meta l4proto ${s.proto}`);
  } else if (s.sport !== undefined) {
    parts.push(`th sport ${s.sport}`);
  }
  return parts.join(' ');
}

function nftFamily(family: Family): 'ip' | 'ip6' {
  return family === 4 ? 'ip' : 'ip6';
}

/** The `nft -f` script that creates the trace table (fails if it exists). Exported for tests. */
export function traceRuleset(s: { id: string; family: Family; dscp: number; sport?: number | undefined; proto?: Proto | undefined }): string {
  const fam = nftFamily(s.family);
  const table = `${TABLE_PREFIX}${s.id}`;
  const rule = `${traceMatch(s)} meta nftrace set 1`;
  const chain = (name: string, hook: string) =>
    [`\tchain ${name} {`, `\t\ttype filter hook ${hook} priority -350; policy accept;`, `\t\t${rule}`, '\t}'].join('\n');
  return [`create table ${fam} ${table}`, `table ${fam} ${table} {`, chain('prerouting', 'prerouting'), chain('output', 'output'), '}', ''].join('\n');
}

/** `nft ARGS` in the namespace (nsenter when a path is given). */
function nftCommand(netnsPath: string | undefined, args: string[]): [string, string[]] {
  return netnsPath ? ['nsenter', [`--net=${netnsPath}`, '--', 'nft', ...args]] : ['nft', args];
}

/** "add" first so that "delete" always finds it: deleting is idempotent, one transaction. */
function deleteScript(tables: string[]): string {
  return tables.map((t) => `add table ${t}\ndelete table ${t}\n`).join('');
}

interface NftRun {
  exitCode: number | undefined;
  stdout: string;
  stderr: string;
  /** It ran to the end (exited by itself): a non-zero exit means nft applied nothing. */
  completed: boolean;
  failure: string;
}

async function runNft(netnsPath: string | undefined, args: string[], input: string | undefined): Promise<NftRun> {
  const [file, argv] = nftCommand(netnsPath, args);
  const r = await execa(file, argv, { reject: false, timeout: 30_000, ...(input !== undefined ? { input } : { stdin: 'ignore' as const }) });
  const stderr = String(r.stderr ?? '').trim();
  const completed = !r.timedOut && !r.isTerminated && r.exitCode !== undefined;
  const failure = stderr.split('\n')[0] || (r.timedOut ? 'timed out' : r.exitCode === undefined ? (r.message ?? 'did not run') : `exit ${r.exitCode}`);
  return { exitCode: r.exitCode, stdout: String(r.stdout ?? ''), stderr, completed, failure };
}

function nftError(r: NftRun, netnsPath: string | undefined, args: string[], what: string): PodnetError {
  return new PodnetError(ErrorCodes.NFT, `${what}: nft ${args.join(' ')} failed: ${r.failure}`, {
    tool: 'nft',
    ...(netnsPath ? { netns: netnsPath } : {}),
  }, { errno: /File exists/.test(r.stderr) ? 'EEXIST' : /No such file/.test(r.stderr) ? 'ENOENT' : undefined });
}

async function nft(netnsPath: string | undefined, args: string[], input: string | undefined, what: string): Promise<string> {
  const r = await runNft(netnsPath, args, input);
  if (r.exitCode === 0) return r.stdout;
  throw nftError(r, netnsPath, args, what);
}

function deleteTablesSync(netnsPath: string | undefined, tables: string[]): boolean {
  const [file, argv] = nftCommand(netnsPath, ['-f', '-']);
  const r = spawnSync(file, argv, { input: deleteScript(tables), timeout: 10_000, stdio: ['pipe', 'ignore', 'ignore'] });
  return r.status === 0;
}

// ---- cleanup on signals and exit

const active = new Set<NftTrace>();
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
let hooked = false;

function onSignal(sig: NodeJS.Signals): void {
  unhook();
  for (const t of [...active]) t.cleanupSync();
  // Nobody else handles it: die of it as if we had never been there.
  if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
}
const signalHandlers = new Map<NodeJS.Signals, () => void>(SIGNALS.map((s) => [s, () => onSignal(s)]));

function onExit(): void {
  for (const t of [...active]) t.cleanupSync();
}

function hook(): void {
  if (hooked) return;
  hooked = true;
  // First in line, so that a handler that exits (or signal-exit re-raising) runs after the cleanup.
  for (const [sig, fn] of signalHandlers) process.prependListener(sig, fn);
  process.on('exit', onExit);
}

function unhook(): void {
  if (!hooked) return;
  hooked = false;
  for (const [sig, fn] of signalHandlers) process.removeListener(sig, fn);
  process.removeListener('exit', onExit);
}

function track(t: NftTrace): void {
  active.add(t);
  hook();
}

function untrack(t: NftTrace): void {
  active.delete(t);
  if (active.size === 0) unhook();
}

/** True when a netlink socket of `pid` is subscribed to the nftrace group. */
function monitorSubscribed(pid: number): boolean {
  const inodes = new Set<string>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) inodes.add(m[1] as string);
      } catch {
        /* closed meanwhile */
      }
    }
    if (inodes.size === 0) return false;
    const lines = readFileSync(`/proc/${pid}/net/netlink`, 'utf8').split('\n').slice(1);
    for (const l of lines) {
      const c = l.trim().split(/\s+/);
      // sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
      if (c.length < 10 || Number(c[1]) !== NETLINK_NETFILTER || !inodes.has(c[9] as string)) continue;
      if (parseInt(c[3] as string, 16) & NFTRACE_GROUP_BIT) return true;
    }
  } catch {
    return false;
  }
  return false;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class NftTrace {
  /** "ip podnet-trace-<id>" / "ip6 podnet-trace-<id>". */
  readonly table: string;
  readonly id: string;
  readonly netnsPath: string | undefined;
  private readonly spec: Spec;
  /** installing: `nft -f` ran (or runs) and may have created the table: cleanup deletes it. */
  private state: 'new' | 'installing' | 'installed' | 'removed' = 'new';
  private monitor: ResultPromise | undefined;
  private monitorPid: number | undefined;
  private monitorExited = false;
  private monitorStderr = '';
  private readonly list: TraceEvent[] = [];
  private readonly waiters = new Set<() => void>();
  private stopping: Promise<TraceEvent[]> | undefined;

  private constructor(spec: Spec) {
    this.spec = spec;
    this.id = spec.id;
    this.netnsPath = spec.netnsPath;
    this.table = `${nftFamily(spec.family)} ${TABLE_PREFIX}${spec.id}`;
  }

  /** Installs the trace table and starts the monitor; resolves once the monitor is subscribed (every marked packet from then on is seen). */
  static async start(o: NftTraceOptions): Promise<NftTrace> {
    const t = new NftTrace(validateTraceOptions(o));
    track(t);
    try {
      await t.install();
      if (o.monitor !== false) await t.startMonitor();
    } catch (e) {
      await t.stop({ settleMs: 0 }).catch(() => undefined);
      throw e;
    }
    return t;
  }

  private async install(): Promise<void> {
    this.state = 'installing';
    const args = ['-f', '-'];
    const r = await runNft(this.netnsPath, args, traceRuleset(this.spec));
    if (r.exitCode === 0) {
      this.state = 'installed';
      return;
    }
    // nft -f is one transaction: when it ran to the end and failed, nothing was applied.
    // When it was killed or timed out, the table may exist: stay 'installing' so it is deleted.
    if (r.completed) this.state = 'new';
    const e = nftError(r, this.netnsPath, args, `installing trace table ${this.table}`);
    if (e.errno === 'EEXIST') {
      throw new PodnetError(ErrorCodes.NFT, `trace table ${this.table} already exists: another trace with id ${this.id} is running, or a crashed one left it (sweepTraceTables removes it)`, {
        table: this.table,
        ...(this.netnsPath ? { netns: this.netnsPath } : {}),
      }, { cause: e, errno: 'EEXIST' });
    }
    throw e;
  }

  private async startMonitor(): Promise<void> {
    const [file, argv] = nftCommand(this.netnsPath, ['monitor', 'trace']);
    const sub = execa(file, argv, { buffer: false, reject: false, cleanup: false, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' });
    this.monitor = sub;
    this.monitorPid = sub.pid;
    void sub.then(
      () => (this.monitorExited = true),
      () => (this.monitorExited = true),
    );
    sub.stderr?.on('data', (d: Buffer) => {
      if (this.monitorStderr.length < 4096) this.monitorStderr += d.toString();
    });
    if (sub.stdout) {
      createInterface({ input: sub.stdout }).on('line', (line) => {
        const e = parseTraceLine(line);
        if (!e) return;
        this.list.push(e);
        for (const w of [...this.waiters]) w();
      });
    }
    const deadline = Date.now() + this.spec.readyTimeoutMs;
    for (;;) {
      if (this.monitorExited || this.monitorPid === undefined) {
        throw new PodnetError(ErrorCodes.EXEC, `nft monitor trace exited at once: ${this.monitorStderr.trim().split('\n')[0] || 'no message'}`, {
          tool: 'nft',
          ...(this.netnsPath ? { netns: this.netnsPath } : {}),
        });
      }
      if (monitorSubscribed(this.monitorPid)) return;
      if (Date.now() > deadline) {
        throw new PodnetError(ErrorCodes.EXEC, `nft monitor trace did not subscribe to trace events within ${this.spec.readyTimeoutMs} ms`, { tool: 'nft' });
      }
      await sleep(5);
    }
  }

  /** Every event the monitor printed so far (all traced packets of the namespace). */
  events(): TraceEvent[] {
    return [...this.list];
  }

  /** The events of packets that went through this trace's own table (marked by it, or seen by it). */
  ownEvents(): TraceEvent[] {
    const name = `${TABLE_PREFIX}${this.id}`;
    const fam = nftFamily(this.spec.family);
    const ids = new Set(this.list.filter((e) => e.table === name && e.family === fam).map((e) => e.id));
    return this.list.filter((e) => ids.has(e.id));
  }

  /** Resolves with the first event (so far or to come) matching `pred`, or undefined after `timeoutMs`. */
  async waitForEvent(pred: (e: TraceEvent) => boolean, timeoutMs: number): Promise<TraceEvent | undefined> {
    const found = this.list.find(pred);
    if (found) return found;
    return new Promise((resolve) => {
      let checked = this.list.length;
      const finish = (e: TraceEvent | undefined) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(e);
      };
      const check = () => {
        for (; checked < this.list.length; checked++) {
          const e = this.list[checked] as TraceEvent;
          if (pred(e)) return finish(e);
        }
      };
      const timer = setTimeout(() => finish(undefined), timeoutMs);
      this.waiters.add(check);
    });
  }

  /**
   * Waits `settleMs` (default 100) for events still on their way, deletes the table, stops
   * the monitor and returns every event. Idempotent; safe after a failed start.
   */
  async stop(o: { settleMs?: number } = {}): Promise<TraceEvent[]> {
    this.stopping ??= this.doStop(o.settleMs ?? 100).catch((e: unknown) => {
      this.stopping = undefined; // let a later stop() try again
      throw e;
    });
    return this.stopping;
  }

  private async doStop(settleMs: number): Promise<TraceEvent[]> {
    let failure: unknown;
    try {
      if (settleMs > 0 && this.monitor && !this.monitorExited) await sleep(settleMs);
      if (this.state === 'installing' || this.state === 'installed') {
        await nft(this.netnsPath, ['-f', '-'], deleteScript([this.table]), `deleting trace table ${this.table}`);
        this.state = 'removed';
      }
    } catch (e) {
      failure = e;
    }
    await this.stopMonitor();
    if (failure) {
      // Not removed: leave the sync cleanup armed for process exit.
      throw failure;
    }
    untrack(this);
    return this.events();
  }

  private async stopMonitor(): Promise<void> {
    const sub = this.monitor;
    if (!sub || this.monitorExited) return;
    sub.kill('SIGTERM');
    const gone = await Promise.race([sub.then(() => true, () => true), sleep(2000).then(() => false)]);
    if (!gone) {
      sub.kill('SIGKILL');
      await Promise.race([sub.then(() => true, () => true), sleep(2000)]);
    }
  }

  /** Synchronous cleanup (signal and exit handlers): kills the monitor, deletes the table. */
  cleanupSync(): void {
    if (this.monitorPid !== undefined && !this.monitorExited) {
      try {
        process.kill(this.monitorPid, 'SIGTERM');
      } catch {
        /* gone */
      }
    }
    if (this.state === 'installing' || this.state === 'installed') {
      if (deleteTablesSync(this.netnsPath, [this.table])) this.state = 'removed';
    }
    untrack(this);
  }
}

/**
 * Deletes every podnet-trace-* table of the namespace (the current one, or `netnsPath`)
 * except those of traces this process is running: what crashed runs left. Returns them as
 * "FAMILY NAME".
 */
export async function sweepTraceTables(o: { netnsPath?: string } = {}): Promise<string[]> {
  if (o.netnsPath !== undefined && (!o.netnsPath.startsWith('/') || /[\0\n]/.test(o.netnsPath))) {
    throw invalid(`netnsPath must be an absolute path, got ${JSON.stringify(o.netnsPath)}`, 'netnsPath');
  }
  const out = await nft(o.netnsPath, ['-j', 'list', 'tables'], undefined, 'listing nft tables');
  let parsed: { nftables?: { table?: { family?: unknown; name?: unknown } }[] };
  try {
    parsed = JSON.parse(out || '{}') as typeof parsed;
  } catch (e) {
    throw new PodnetError(ErrorCodes.NFT, 'listing nft tables: nft -j printed something that is not JSON', { tool: 'nft' }, { cause: e });
  }
  const mine = new Set([...active].filter((t) => t.netnsPath === o.netnsPath).map((t) => t.table));
  const tables = (parsed.nftables ?? [])
    .map((x) => x.table)
    .filter((t): t is { family: string; name: string } => typeof t?.family === 'string' && typeof t.name === 'string')
    .filter((t) => t.name.startsWith(TABLE_PREFIX) && /^[a-z0-9]+$/.test(t.family) && /^[A-Za-z0-9_.-]+$/.test(t.name))
    .map((t) => `${t.family} ${t.name}`)
    .filter((t) => !mine.has(t));
  if (tables.length) await nft(o.netnsPath, ['-f', '-'], deleteScript(tables), 'deleting leftover trace tables');
  return tables;
}
