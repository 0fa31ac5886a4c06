/**
 * The iptables-mode interpreter: evaluates a packet through the netfilter chains podnet's
 * iptables planner (src/proxy/iptables/plan.ts, layout in its README.md) writes, through an
 * `IptablesView`: the kernel on a node (`kernelIptablesView`: `iptables -S CHAIN` of only the
 * chains the packet walks, `ipset test` of only the entries it needs) or the planner's
 * restore text in the table tests, so the tool and the planner's test oracle are one.
 *
 * Kernel order, as the packet meets it:
 *   prerouting (pods, other nodes, outside): nat PREROUTING, routing, then filter INPUT (the
 *              destination after DNAT is local) or FORWARD
 *   output (a host process):                 nat OUTPUT, then filter OUTPUT
 *   postrouting (`snat`):                    nat POSTROUTING
 * The filter rules (REJECT for no endpoints, DROP for no local endpoints) therefore see the
 * packet after nat: they only catch what was not DNATed, as the planner intends (eTP Local's
 * pod / node short-circuits still work for a Service whose external rules DROP).
 *
 * What is interpreted: every rule shape the planner emits, in the spelling of the planner's
 * restore input and in the one `iptables -S` prints back (options reordered, `--or-mark`
 * printed as `--set-xmark V/V`, `--probability` with 11 digits, `-m recent` and REJECT
 * defaults spelled out): -s/-d (with `!`, prefix or mask such as `0.0.0.5/0.0.0.7`), -p,
 * tcp/udp/sctp --dport/--sport, set --match-set, addrtype LOCAL, statistic random,
 * recent --rcheck/--set, mark, conntrack/state, comment; targets PODNET-* jumps and gotos,
 * RETURN, DNAT, MARK, REJECT, DROP, ACCEPT, MASQUERADE.
 *
 * - `-m statistic --mode random --probability P` forks the evaluation: P (as the kernel
 *   rounds it, lround(P * 2^31) / 2^31) on match, 1 - P continuing; the outcomes of one call
 *   carry the product along their path and sum to 1.
 * - ClientIP affinity (`-m recent --rcheck`): the trace is of a new connection from a client
 *   with no entry in the recent lists yet, so the check does not match; an observation says
 *   so. The endpoint's `-m recent --set` is reported with its DNAT.
 * - `-m conntrack --ctstate NEW` holds: the packet is the first of its connection.
 * - In our chains (PODNET-*), a rule with an option this interpreter does not understand,
 *   a match it cannot evaluate (-i / -o) or a jump to a chain not ours stops that path:
 *   a foreign observation and an Unknown verdict naming the rule. In a built-in chain,
 *   a rule before our jump that is not our jump is foreign unless one of its matches is
 *   provably false for the packet. Rules after our jump (reached only by what our chains
 *   RETURN) are not ours to interpret and are not read.
 *
 * Cost on a node, measured in a scratch netns holding the planner's full output for 10,000
 * Services x 10 endpoints (110,132 nat chains of ours, 310,137 nat rules; iptables v1.8.9
 * (nf_tables), ipset v7.17, 2 shared cores, load average ~3 from other jobs):
 * `iptables -w -t nat -S ONECHAIN` takes 1.3 ms for an SVC / SEP chain or PREROUTING and
 * 1.8 ms for PODNET-SERVICES or a bucket (mean of 50, run inside the netns): iptables-nft
 * fetches only that chain, whereas `iptables-save -t nat` of the table takes 1.9 s. From
 * Node (execa + nsenter) a listing costs 3.9–4.6 ms median, 6.7–8.5 ms p90, `ipset test`
 * 3.7 ms. A trace of a ClusterIP with 10 endpoints reads ~17 chains and tests one set
 * entry: 52–90 ms median (the chains every path needs and a Service's endpoint chains are
 * read concurrently); non-service traffic 19 ms. Reads are cached per view (one trace)
 * and per call.
 */
import { execa } from 'execa';
import { command } from '../kernel/iptables.js';
import { CHAIN_PREFIX, FILTER_SERVICES_CHAIN, JUMPS, MARK_MASQ_CHAIN, SERVICES_CHAIN, jumpLine } from '../proxy/iptables/plan.js';
import { MASQUERADE_MARK } from '../proxy/types.js';
import { ErrorCodes, PodnetError } from '../util/errors.js';
import { ipToBytes } from '../util/ipnet.js';
import type { LbContext, LbInterpreter, LbOutcome, SnatContext, SnatOutcome } from './lb.js';
import type { Family, Observation, Origin, Packet, Verdict } from './types.js';

export type IptablesViewTable = 'nat' | 'filter';

/** The rules and ipsets of one node (one IP family), as the interpreter reads them. */
export interface IptablesView {
  /**
   * The lines of one chain exactly as `iptables -t TABLE -S CHAIN` prints them (`-A CHAIN …`;
   * `-N CHAIN` / `-P CHAIN POLICY` lines may be included and are skipped); undefined when
   * the chain does not exist.
   */
  rules(table: IptablesViewTable, chain: string): Promise<string[] | undefined>;
  /** Whether `entry` (as ipset writes it: `10.96.0.10,tcp:80`) is a member of `set`. */
  ipsetTest(set: string, entry: string): Promise<boolean>;
}

export interface IptablesInterpreterOptions {
  family: Family;
  /** The node's cluster (pod) CIDR of this family, as the planner was given it (for the sentences). */
  clusterCIDR?: string;
  /** The node's addresses NodePorts answer on (for the sentences). */
  nodeIPs: string[];
}

// ---------------------------------------------------------------- rules

type Dir = 'src' | 'dst';

type Match =
  | { kind: 'addr'; dir: Dir; neg: boolean; net: Uint8Array; mask: Uint8Array; text: string }
  | { kind: 'proto'; neg: boolean; proto: string; text: string }
  | { kind: 'port'; proto: string; dir: Dir; neg: boolean; lo: number; hi: number; text: string }
  | { kind: 'set'; neg: boolean; name: string; dirs: Dir[]; text: string }
  | { kind: 'addrtype'; dir: Dir; neg: boolean; type: string; text: string }
  | { kind: 'statistic'; neg: boolean; p: number; text: string }
  | { kind: 'recent'; op: 'rcheck' | 'set'; name: string; seconds?: number; text: string }
  | { kind: 'mark'; neg: boolean; value: number; mask: number; text: string }
  | { kind: 'ctstate'; neg: boolean; states: string[]; text: string }
  | { kind: 'comment'; comment: string; text: string }
  /** A match on something the trace does not know (the input / output interface). */
  | { kind: 'opaque'; text: string };

type Target =
  | { kind: 'jump' | 'goto'; chain: string }
  | { kind: 'return' | 'accept' | 'drop' }
  | { kind: 'reject'; with: string }
  | { kind: 'dnat'; ip: string; port?: number; text: string }
  | { kind: 'mark'; op: 'xset' | 'set' | 'or' | 'and' | 'xor'; value: number; mask: number }
  | { kind: 'masquerade' }
  /** Any other target: a chain not ours or a target podnet never writes. */
  | { kind: 'other'; name: string; goto: boolean };

interface Rule {
  line: string;
  chain: string;
  matches: Match[];
  target?: Target;
  /** What this interpreter does not understand in the line (empty for podnet's shapes). */
  unknown: string[];
  comment?: string;
}

/** Splits an iptables line into arguments: white space separates, double quotes group (`\"`, `\\` escaped). */
function tokenize(line: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < line.length) {
    while (line[i] === ' ' || line[i] === '\t') i++;
    if (i >= line.length) break;
    let tok = '';
    while (i < line.length && line[i] !== ' ' && line[i] !== '\t') {
      if (line[i] === '"') {
        i++;
        while (i < line.length && line[i] !== '"') {
          if (line[i] === '\\' && i + 1 < line.length) i++;
          tok += line[i++];
        }
        i++;
      } else tok += line[i++];
    }
    out.push(tok);
  }
  return out;
}

const MODULES = new Set(['tcp', 'udp', 'sctp', 'comment', 'set', 'addrtype', 'statistic', 'recent', 'mark', 'conntrack', 'state']);
const PROTO_NUMBERS: Record<string, string> = { '6': 'tcp', '17': 'udp', '132': 'sctp', '1': 'icmp', '58': 'icmp', 'ipv6-icmp': 'icmp', icmpv6: 'icmp', '0': 'all' };
const protoName = (p: string) => PROTO_NUMBERS[p.toLowerCase()] ?? p.toLowerCase();

interface AddrSpec {
  net: Uint8Array;
  mask: Uint8Array;
}

/** `10.0.0.0/8`, `10.96.0.10`, `0.0.0.5/0.0.0.7`, `fd00::/56`, `::3/::f`. */
function parseAddr(text: string): AddrSpec | undefined {
  const slash = text.indexOf('/');
  const ip = slash < 0 ? text : text.slice(0, slash);
  let net: Uint8Array;
  try {
    net = ipToBytes(ip);
  } catch {
    return undefined;
  }
  const mask = new Uint8Array(net.length);
  const m = slash < 0 ? String(net.length * 8) : text.slice(slash + 1);
  if (/^\d+$/.test(m)) {
    const bits = Number(m);
    if (bits > net.length * 8) return undefined;
    for (let b = 0; b < bits; b++) mask[b >> 3]! |= 0x80 >> (b & 7);
  } else {
    let mb: Uint8Array;
    try {
      mb = ipToBytes(m);
    } catch {
      return undefined;
    }
    if (mb.length !== net.length) return undefined;
    mask.set(mb);
  }
  return { net, mask };
}

function addrMatches(ip: string, a: AddrSpec): boolean {
  let b: Uint8Array;
  try {
    b = ipToBytes(ip);
  } catch {
    return false;
  }
  if (b.length !== a.net.length) return false;
  for (let i = 0; i < b.length; i++) if ((b[i]! & a.mask[i]!) !== (a.net[i]! & a.mask[i]!)) return false;
  return true;
}

function parsePorts(text: string): [number, number] | undefined {
  const m = /^(\d+)(?::(\d+))?$/.exec(text);
  if (!m) return undefined;
  const lo = Number(m[1]);
  const hi = m[2] !== undefined ? Number(m[2]) : lo;
  return lo <= hi && hi <= 65535 ? [lo, hi] : undefined;
}

function parseNum(text: string | undefined): number | undefined {
  if (text === undefined || !/^(0x[0-9a-f]+|\d+)$/i.test(text)) return undefined;
  return Number(text) >>> 0;
}

/** `V[/M]` (mark values). */
function parseMarkMask(text: string | undefined, defaultMask: number): [number, number] | undefined {
  if (text === undefined) return undefined;
  const [v, m] = text.split('/');
  const value = parseNum(v);
  const mask = m === undefined ? defaultMask : parseNum(m);
  return value === undefined || mask === undefined ? undefined : [value, mask];
}

/** `10.244.1.5:8080`, `10.244.1.5`, `[fd00::5]:8080`, `fd00::5`; undefined for ranges. */
function parseDnat(text: string): { ip: string; port?: number } | undefined {
  let ip: string;
  let port: string | undefined;
  if (text.startsWith('[')) {
    const end = text.indexOf(']');
    if (end < 0) return undefined;
    ip = text.slice(1, end);
    const rest = text.slice(end + 1);
    if (rest && !rest.startsWith(':')) return undefined;
    port = rest ? rest.slice(1) : undefined;
  } else if (text.split(':').length === 2) {
    [ip, port] = text.split(':') as [string, string];
  } else ip = text;
  try {
    ipToBytes(ip);
  } catch {
    return undefined;
  }
  if (port === undefined) return { ip };
  if (!/^\d+$/.test(port) || Number(port) > 65535) return undefined;
  return { ip, port: Number(port) };
}

/** Parses one `-A CHAIN …` line; undefined for any other line (`-N`, `-P`, blank). */
function parseRule(line: string): Rule | undefined {
  const t = tokenize(line);
  if (t[0] !== '-A' || t[1] === undefined) return undefined;
  const rule: Rule = { line, chain: t[1], matches: [], unknown: [] };
  const { matches, unknown } = rule;
  let i = 2;
  let neg = false;
  let mod: string | undefined;
  let proto: string | undefined;
  /** The match being built by the current `-m` module's options (recent, statistic). */
  let recent: { op?: 'rcheck' | 'set'; name?: string; seconds?: number } | undefined;
  let stat: { random?: boolean; p?: number; neg: boolean } | undefined;
  const next = () => t[i++];
  /** An option not understood: it and its arguments (the tokens up to the next option). */
  const skip = (opt: string) => {
    const args: string[] = [];
    while (i < t.length && !t[i]!.startsWith('-') && t[i] !== '!') args.push(t[i++]!);
    unknown.push(`${neg ? '! ' : ''}${[opt, ...args].join(' ')}`);
  };
  const finishModule = () => {
    if (recent) {
      if (recent.op && recent.name) matches.push({ kind: 'recent', op: recent.op, name: recent.name, ...(recent.seconds !== undefined ? { seconds: recent.seconds } : {}), text: `-m recent --${recent.op} --name ${recent.name}` });
      else unknown.push('-m recent (without --name and --rcheck / --set)');
      recent = undefined;
    }
    if (stat) {
      if (stat.random && stat.p !== undefined) matches.push({ kind: 'statistic', neg: stat.neg, p: stat.p, text: `-m statistic --mode random ${stat.neg ? '! ' : ''}--probability ${stat.p}` });
      else unknown.push('-m statistic (not --mode random --probability P)');
      stat = undefined;
    }
  };
  while (i < t.length) {
    const tok = next()!;
    if (tok === '!') {
      neg = true;
      continue;
    }
    switch (tok) {
      case '-s':
      case '--source':
      case '-d':
      case '--destination': {
        const v = next() ?? '';
        const a = parseAddr(v);
        const dir: Dir = tok === '-s' || tok === '--source' ? 'src' : 'dst';
        if (a) matches.push({ kind: 'addr', dir, neg, ...a, text: `${neg ? '! ' : ''}${tok} ${v}` });
        else unknown.push(`${tok} ${v}`);
        break;
      }
      case '-p':
      case '--protocol': {
        const v = next() ?? '';
        proto = protoName(v);
        if (['tcp', 'udp', 'sctp', 'icmp', 'all'].includes(proto)) matches.push({ kind: 'proto', neg, proto, text: `${neg ? '! ' : ''}-p ${v}` });
        else unknown.push(`-p ${v}`);
        break;
      }
      case '-i':
      case '--in-interface':
      case '-o':
      case '--out-interface':
        matches.push({ kind: 'opaque', text: `${neg ? '! ' : ''}${tok} ${next() ?? ''}` });
        break;
      case '-m':
      case '--match': {
        finishModule();
        mod = next() ?? '';
        if (!MODULES.has(mod)) unknown.push(`-m ${mod}`);
        if (mod === 'recent') recent = {};
        if (mod === 'statistic') stat = { neg: false };
        break;
      }
      case '-j':
      case '-g':
      case '--jump':
      case '--goto': {
        finishModule();
        parseTarget(rule, tok === '-g' || tok === '--goto', t.slice(i));
        i = t.length;
        break;
      }
      default: {
        if (!tok.startsWith('-')) {
          unknown.push(tok);
          break;
        }
        // Options of the current module (tcp/udp/sctp options also without `-m`, after `-p`).
        const m = mod ?? proto;
        if ((m === 'tcp' || m === 'udp' || m === 'sctp') && /^--(dport|sport|destination-port|source-port)$/.test(tok)) {
          const v = next() ?? '';
          const r = parsePorts(v);
          if (r) matches.push({ kind: 'port', proto: m, dir: tok === '--dport' || tok === '--destination-port' ? 'dst' : 'src', neg, lo: r[0], hi: r[1], text: `${neg ? '! ' : ''}${tok} ${v}` });
          else unknown.push(`${tok} ${v}`);
        } else if (m === 'comment' && tok === '--comment') {
          const c = next() ?? '';
          rule.comment = c;
          matches.push({ kind: 'comment', comment: c, text: `--comment "${c}"` });
        } else if (m === 'set' && tok === '--match-set') {
          const name = next() ?? '';
          const flags = (next() ?? '').split(',');
          if (flags.length >= 1 && flags.length <= 2 && flags.every((f) => f === 'src' || f === 'dst')) {
            matches.push({ kind: 'set', neg, name, dirs: flags as Dir[], text: `-m set ${neg ? '! ' : ''}--match-set ${name} ${flags.join(',')}` });
          } else unknown.push(`--match-set ${name} ${flags.join(',')}`);
        } else if (m === 'addrtype' && (tok === '--dst-type' || tok === '--src-type')) {
          const type = next() ?? '';
          matches.push({ kind: 'addrtype', dir: tok === '--dst-type' ? 'dst' : 'src', neg, type, text: `-m addrtype ${neg ? '! ' : ''}${tok} ${type}` });
        } else if (m === 'statistic' && stat && tok === '--mode') {
          const v = next();
          if (v === 'random') stat.random = true;
          else unknown.push(`--mode ${v ?? ''}`);
        } else if (m === 'statistic' && stat && tok === '--probability') {
          const v = Number(next());
          if (Number.isFinite(v) && v >= 0 && v <= 1) {
            stat.p = v;
            stat.neg = neg;
          } else unknown.push('--probability');
        } else if (m === 'recent' && recent && (tok === '--rcheck' || tok === '--set')) {
          if (recent.op) unknown.push(tok);
          recent.op = tok === '--rcheck' ? 'rcheck' : 'set';
          if (neg) unknown.push(`! ${tok}`);
        } else if (m === 'recent' && recent && tok === '--name') {
          recent.name = next() ?? '';
        } else if (m === 'recent' && recent && tok === '--seconds') {
          const s = parseNum(next());
          if (s === undefined) unknown.push('--seconds');
          else recent.seconds = s;
        } else if (m === 'recent' && recent && (tok === '--reap' || tok === '--rsource' || tok === '--rdest' || tok === '--rttl')) {
          // Bookkeeping of the recent list; no effect on a new client's first packet.
        } else if (m === 'recent' && recent && (tok === '--mask' || tok === '--hitcount')) {
          next();
        } else if (m === 'mark' && tok === '--mark') {
          const vm = parseMarkMask(next(), 0xffffffff);
          if (vm) matches.push({ kind: 'mark', neg, value: vm[0], mask: vm[1], text: `-m mark ${neg ? '! ' : ''}--mark 0x${vm[0].toString(16)}/0x${vm[1].toString(16)}` });
          else unknown.push('--mark');
        } else if ((m === 'conntrack' && tok === '--ctstate') || (m === 'state' && tok === '--state')) {
          const v = next() ?? '';
          matches.push({ kind: 'ctstate', neg, states: v.toUpperCase().split(','), text: `-m ${m} ${neg ? '! ' : ''}${tok} ${v}` });
        } else skip(tok);
      }
    }
    neg = false;
  }
  finishModule();
  return rule;
}

function parseTarget(rule: Rule, isGoto: boolean, t: string[]): void {
  const name = t[0] ?? '';
  const opts = t.slice(1);
  const { unknown } = rule;
  const rest = (allowed: readonly string[]) => {
    for (let i = 0; i < opts.length; i++) if (!allowed.includes(opts[i]!)) unknown.push(opts[i]!);
  };
  if (isGoto || name.startsWith(CHAIN_PREFIX)) {
    rule.target = name.startsWith(CHAIN_PREFIX) ? { kind: isGoto ? 'goto' : 'jump', chain: name } : { kind: 'other', name, goto: true };
    rest([]);
    return;
  }
  switch (name) {
    case 'RETURN':
    case 'ACCEPT':
    case 'DROP':
      rule.target = { kind: name === 'RETURN' ? 'return' : name === 'ACCEPT' ? 'accept' : 'drop' };
      rest([]);
      return;
    case 'REJECT': {
      let w = 'icmp-port-unreachable';
      if (opts[0] === '--reject-with' && opts[1]) {
        w = opts[1];
        opts.splice(0, 2);
      }
      rule.target = { kind: 'reject', with: w };
      rest([]);
      return;
    }
    case 'DNAT': {
      const at = opts.indexOf('--to-destination');
      const d = at >= 0 && opts[at + 1] ? parseDnat(opts[at + 1]!) : undefined;
      if (!d) {
        unknown.push(`DNAT ${opts.join(' ')}`);
        rule.target = { kind: 'other', name, goto: false };
        return;
      }
      rule.target = { kind: 'dnat', ...d, text: opts[at + 1]! };
      opts.splice(at, 2);
      rest([]);
      return;
    }
    case 'MARK': {
      const op = opts[0];
      const kinds = { '--set-xmark': 'xset', '--set-mark': 'set', '--or-mark': 'or', '--and-mark': 'and', '--xor-mark': 'xor' } as const;
      const k = op !== undefined && op in kinds ? kinds[op as keyof typeof kinds] : undefined;
      const vm = k === 'xset' || k === 'set' ? parseMarkMask(opts[1], 0xffffffff) : ((v) => (v === undefined ? undefined : ([v, 0] as [number, number])))(parseNum(opts[1]));
      if (!k || !vm) {
        unknown.push(`MARK ${opts.join(' ')}`);
        rule.target = { kind: 'other', name, goto: false };
        return;
      }
      rule.target = { kind: 'mark', op: k, value: vm[0], mask: vm[1] };
      opts.splice(0, 2);
      rest([]);
      return;
    }
    case 'MASQUERADE':
      rule.target = { kind: 'masquerade' };
      rest(['--random-fully', '--random']);
      return;
    default:
      rule.target = { kind: 'other', name, goto: false };
  }
}

function applyMark(mark: number, t: Extract<Target, { kind: 'mark' }>): number {
  switch (t.op) {
    case 'xset':
      return ((mark & ~t.mask) ^ t.value) >>> 0;
    case 'set':
      return ((mark & ~t.mask) | t.value) >>> 0;
    case 'or':
      return (mark | t.value) >>> 0;
    case 'and':
      return (mark & t.value) >>> 0;
    case 'xor':
      return (mark ^ t.value) >>> 0;
  }
}

/** The probability the kernel applies: xt_statistic keeps lround(P * 2^31) and compares 31 random bits. */
function kernelProbability(p: number): number {
  return Math.min(1, Math.round(p * 0x80000000) / 0x80000000);
}

/** A canonical form of a rule's matches and target (our jumps are recognised whatever order iptables prints). */
function signature(r: Rule): string {
  const t = r.target;
  const target = !t ? '' : t.kind === 'jump' || t.kind === 'goto' ? `${t.kind} ${t.chain}` : t.kind;
  return `${r.matches.map((m) => (m.kind === 'comment' ? `comment ${m.comment}` : m.text)).sort().join(' ; ')} -> ${target}`;
}

/** Our one jump per built-in chain ("nat PREROUTING" -> its signature and target). */
const OUR_JUMPS = new Map(
  JUMPS.map((j) => {
    const r = parseRule(jumpLine(j))!;
    return [`${j.table} ${j.chain}`, { sig: signature(r), target: j.args[j.args.length - 1]! }] as const;
  }),
);

/**
 * What the interpreter does not understand in an iptables rule line (`-A CHAIN …`, either
 * spelling: restore input or `iptables -S`): [] when every option is a shape podnet writes.
 * (The planner's tests use it to check that every line it emits is interpretable.)
 */
export function unsupportedOptions(line: string): string[] {
  const r = parseRule(line);
  if (!r) return [`not a rule: ${line}`];
  const out = [...r.unknown];
  for (const m of r.matches) if (m.kind === 'opaque') out.push(m.text);
  if (r.target?.kind === 'other') out.push(`${r.target.goto ? '-g' : '-j'} ${r.target.name}`);
  return out;
}

// ---------------------------------------------------------------- sentences

interface ServiceRef {
  key: string;
  origin: Origin[];
}

const KEY_RE = /(?:^|\s)([a-z0-9][a-z0-9.-]*)\/([a-z0-9][a-z0-9.-]*):([a-z0-9-]*)(?=\s|$)/;

/** The service port a planner comment names (`ns/name:port …`). */
function serviceOf(comment: string | undefined): ServiceRef | undefined {
  const m = comment ? KEY_RE.exec(comment) : null;
  if (!m) return undefined;
  return { key: `${m[1]}/${m[2]}:${m[3]}`, origin: [{ kind: 'Service', namespace: m[1]!, name: m[2]! }] };
}

function serviceText(s: ServiceRef | undefined): string {
  if (!s) return 'a Service';
  const [nsName, port] = [s.key.slice(0, s.key.lastIndexOf(':')), s.key.slice(s.key.lastIndexOf(':') + 1)];
  return `Service ${nsName}${port ? ` port ${port}` : ''}`;
}

function hostPort(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

function dest(p: Packet): string {
  return `${hostPort(p.dst, p.dport)}/${p.proto}`;
}

function fmtP(p: number): string {
  return String(Math.round(p * 1000) / 1000);
}

// ---------------------------------------------------------------- evaluation

interface State {
  pkt: Packet;
  mark: number;
  prob: number;
  obs: Observation[];
  service?: ServiceRef;
  endpoint?: { ip: string; port: number };
  /** Postrouting: MASQUERADE applied. */
  masqueraded: boolean;
}

type End = { kind: 'continue' } | { kind: 'accept' } | { kind: 'verdict'; verdict: Verdict };

interface Branch {
  st: State;
  end: End;
}

interface Walk {
  node: string;
  isLocal?: (ip: string) => boolean;
  /** Postrouting: the address MASQUERADE uses; absent before routing (MASQUERADE is not valid there). */
  outAddress?: string;
  /** Whether random matches may fork the evaluation (not in postrouting: one outcome). */
  fork: boolean;
  /** The chains read in this call (each read once, also when the view does not cache). */
  chains: Map<string, Promise<Rule[] | undefined>>;
}

const MAX_DEPTH = 32;

const clone = (st: State): State => ({ ...st, pkt: { ...st.pkt }, obs: [...st.obs] });

const isServiceChain = (c: string) => /^PODNET-(SVC|SVL|EXT)-/.test(c);

class Interpreter implements LbInterpreter {
  readonly mode = 'iptables' as const;
  readonly #view: IptablesView;
  readonly #o: IptablesInterpreterOptions;
  /** Parsed lines (parsing is pure: keyed by the line's text). */
  readonly #parsed = new Map<string, Rule | undefined>();

  constructor(view: IptablesView, o: IptablesInterpreterOptions) {
    this.#view = view;
    this.#o = o;
  }

  async dnat(pkt: Packet, ctx: LbContext): Promise<LbOutcome[]> {
    this.#checkFamily(pkt);
    const w: Walk = { node: ctx.node, isLocal: (ip) => ctx.isLocal(ip), fork: true, chains: new Map() };
    const st: State = { pkt: { ...pkt }, mark: 0, prob: 1, obs: [], masqueraded: false };
    // Every path reads these: ask for them at once (each is a command on a node).
    const first = ctx.hook === 'prerouting' ? ['nat PREROUTING', 'filter INPUT', 'filter FORWARD'] : ['nat OUTPUT', 'filter OUTPUT'];
    for (const k of [...first, `nat ${SERVICES_CHAIN}`, `filter ${FILTER_SERVICES_CHAIN}`]) {
      const [table, chain] = k.split(' ') as [IptablesViewTable, string];
      this.#rules(table, chain, w).catch(() => undefined);
    }
    const out: LbOutcome[] = [];
    for (const b of await this.#builtin('nat', ctx.hook === 'prerouting' ? 'PREROUTING' : 'OUTPUT', st, w)) {
      if (b.end.kind === 'verdict') {
        out.push(this.#outcome(b));
        continue;
      }
      // Routing between nat and filter: INPUT when the (possibly DNATed) destination is ours.
      const filterChain = ctx.hook === 'output' ? 'OUTPUT' : ctx.isLocal(b.st.pkt.dst) ? 'INPUT' : 'FORWARD';
      for (const f of await this.#builtin('filter', filterChain, b.st, w)) out.push(this.#outcome(f));
    }
    return out;
  }

  async snat(pkt: Packet, masqueradeMark: boolean, ctx: SnatContext): Promise<SnatOutcome> {
    this.#checkFamily(pkt);
    const w: Walk = { node: ctx.node, outAddress: ctx.outAddress, fork: false, chains: new Map() };
    const st: State = { pkt: { ...pkt }, mark: masqueradeMark ? MASQUERADE_MARK : 0, prob: 1, obs: [], masqueraded: false };
    const [b] = await this.#builtin('nat', 'POSTROUTING', st, w);
    const s = b?.st ?? st;
    if (s.masqueraded && pkt.src === pkt.dst) {
      const last = s.obs[s.obs.length - 1];
      if (last) last.detail += ' (hairpin: the client is the endpoint the Service chose, its reply must come back through this node)';
    }
    return { observations: s.obs, packet: s.pkt, masqueraded: s.masqueraded };
  }

  #checkFamily(pkt: Packet): void {
    if (pkt.family !== this.#o.family) {
      throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `the IPv${this.#o.family} iptables interpreter was given an IPv${pkt.family} packet`, { family: pkt.family });
    }
  }

  #outcome(b: Branch): LbOutcome {
    const st = b.st;
    return {
      probability: st.prob,
      observations: st.obs,
      packet: st.pkt,
      masqueradeMark: (st.mark & MASQUERADE_MARK) !== 0,
      ...(b.end.kind === 'verdict' ? { verdict: b.end.verdict } : {}),
      ...(st.service ? { service: st.service.origin } : {}),
      ...(st.endpoint ? { endpoint: st.endpoint } : {}),
    };
  }

  #rules(table: IptablesViewTable, chain: string, w: Walk): Promise<Rule[] | undefined> {
    const key = `${table} ${chain}`;
    let p = w.chains.get(key);
    if (!p) {
      p = this.#read(table, chain);
      w.chains.set(key, p);
    }
    return p;
  }

  async #read(table: IptablesViewTable, chain: string): Promise<Rule[] | undefined> {
    const lines = await this.#view.rules(table, chain);
    if (!lines) return undefined;
    const out: Rule[] = [];
    for (const l of lines) {
      if (!l.startsWith('-A ')) continue;
      let r = this.#parsed.get(l);
      if (r === undefined && !this.#parsed.has(l)) {
        r = parseRule(l);
        if (this.#parsed.size > 50_000) this.#parsed.clear();
        this.#parsed.set(l, r);
      }
      if (r) out.push(r);
    }
    return out;
  }

  #observe(st: State, w: Walk, o: Omit<Observation, 'node' | 'component' | 'packet'>): void {
    st.obs.push({ node: w.node, component: 'Netfilter/LB', ...o, packet: { ...st.pkt } });
  }

  #origin(st: State, r?: Rule): { origin?: Origin[] } {
    const s = serviceOf(r?.comment) ?? st.service;
    return s ? { origin: s.origin } : {};
  }

  /** Stops a path at a rule not podnet's: a foreign observation and an Unknown verdict. */
  #foreign(st: State, w: Walk, table: string, chain: string, r: Rule, why: string): Branch {
    this.#observe(st, w, { action: 'Matched', detail: `a rule podnet did not write (or that was changed) may match the packet in ${table} ${chain}: ${why}; not interpreted`, rule: r.line, where: `${table} ${chain}`, foreign: true });
    return { st, end: { kind: 'verdict', verdict: { kind: 'Unknown', node: w.node, at: r.line, reason: `rule not written by podnet: ${why}` } } };
  }

  #stop(st: State, w: Walk, table: string, chain: string, reason: string, rule?: string): Branch {
    this.#observe(st, w, { action: 'Matched', detail: reason, where: `${table} ${chain}`, ...(rule ? { rule } : {}) });
    return { st, end: { kind: 'verdict', verdict: { kind: 'Unknown', node: w.node, ...(rule ? { at: rule } : {}), reason } } };
  }

  /** Evaluates one match: true / false, or undefined when the trace cannot know. Statistic is handled by the caller. */
  async #match(m: Match, st: State, w: Walk): Promise<boolean | undefined> {
    const p = st.pkt;
    const x = (v: boolean, neg: boolean) => v !== neg;
    switch (m.kind) {
      case 'comment':
        return true;
      case 'addr':
        return x(addrMatches(m.dir === 'src' ? p.src : p.dst, m), m.neg);
      case 'proto':
        return x(m.proto === 'all' || m.proto === p.proto, m.neg);
      case 'port': {
        if (p.proto !== m.proto) return false;
        const port = m.dir === 'src' ? p.sport : p.dport;
        return x(port >= m.lo && port <= m.hi, m.neg);
      }
      case 'set': {
        const ip = m.dirs[0] === 'src' ? p.src : p.dst;
        let entry = ip;
        if (m.dirs.length === 2) {
          const port = m.dirs[1] === 'src' ? p.sport : p.dport;
          // ICMP members are type/code; the trace's ICMP packets are echo requests.
          entry = p.proto === 'icmp' ? `${ip},${p.family === 4 ? 'icmp:8/0' : 'icmpv6:128/0'}` : `${ip},${p.proto}:${port}`;
        }
        return x(await this.#view.ipsetTest(m.name, entry), m.neg);
      }
      case 'addrtype':
        if (m.type !== 'LOCAL' || !w.isLocal) return undefined;
        return x(w.isLocal(m.dir === 'src' ? p.src : p.dst), m.neg);
      case 'recent':
        // A new client has no entry in any recent list; --set records it and matches.
        return m.op === 'set';
      case 'mark':
        return x((st.mark & m.mask) >>> 0 === m.value, m.neg);
      case 'ctstate': {
        // The first packet of a connection: NEW. DNAT / SNAT (virtual states) are not known before nat.
        if (m.states.includes('NEW')) return x(true, m.neg);
        if (m.states.every((s) => ['ESTABLISHED', 'RELATED', 'INVALID', 'UNTRACKED'].includes(s))) return x(false, m.neg);
        return undefined;
      }
      case 'opaque':
      case 'statistic':
        return undefined;
    }
  }

  /**
   * A built-in chain: rules before our jump that could match are foreign; our jump is
   * followed; the rules after it are not interpreted.
   */
  async #builtin(table: IptablesViewTable, chain: string, st: State, w: Walk): Promise<Branch[]> {
    const ours = OUR_JUMPS.get(`${table} ${chain}`);
    const rules = (await this.#rules(table, chain, w)) ?? [];
    for (const r of rules) {
      if (ours && signature(r) === ours.sig && !r.unknown.length) {
        // Its matches (comment, ct state NEW) hold for the first packet of a connection.
        const sub = await this.#chain(table, ours.target, st, w, 1, r);
        return sub;
      }
      if (!(await this.#couldMatch(r, st, w))) continue;
      const why =
        r.target?.kind === 'jump' || r.target?.kind === 'goto'
          ? `${r.target.kind === 'goto' ? '-g' : '-j'} ${r.target.chain} is not podnet's own jump (a stray or changed one)`
          : `it comes before podnet's jump in ${table} ${chain} and could match the packet`;
      return [this.#foreign(st, w, table, chain, r, why)];
    }
    if (ours) {
      this.#observe(st, w, { action: 'Matched', detail: `${table} ${chain} has no jump to ${ours.target}: podnet's rules there are not hooked (the proxy has not synced, or someone removed the jump)`, where: `${table} ${chain}` });
    }
    return [{ st, end: { kind: 'continue' } }];
  }

  /** False only when one of the rule's matches is provably false for this packet. */
  async #couldMatch(r: Rule, st: State, w: Walk): Promise<boolean> {
    for (const m of r.matches) {
      if (m.kind === 'statistic') {
        if ((m.neg ? 1 - kernelProbability(m.p) : kernelProbability(m.p)) === 0) return false;
        continue;
      }
      if (m.kind === 'recent' && m.op === 'rcheck') continue; // another owner's list: cannot tell
      if ((await this.#match(m, st, w)) === false) return false;
    }
    return true;
  }

  /** One of our chains. `via`: the rule that jumped here. */
  async #chain(table: IptablesViewTable, chain: string, st: State, w: Walk, depth: number, via: Rule): Promise<Branch[]> {
    if (depth > MAX_DEPTH) return [this.#stop(st, w, table, chain, `more than ${MAX_DEPTH} nested jumps (a loop?) at ${table} ${chain}`, via.line)];
    const rules = await this.#rules(table, chain, w);
    if (rules && isServiceChain(chain)) {
      // Every endpoint chain of a Service is visited (the random choice forks): read them at
      // once rather than one after the other (~10 `iptables -S` of ~5 ms each on a node).
      for (const r of rules) {
        if (r.target?.kind === 'jump' || r.target?.kind === 'goto') this.#rules(table, r.target.chain, w).catch(() => undefined);
      }
    }
    if (!rules) return [this.#stop(st, w, table, chain, `${table} ${chain} does not exist (or iptables cannot read it) although a rule jumps to it: the rules are changing (a sync in progress?)`, via.line)];
    return this.#from(table, chain, rules, 0, st, w, depth, via);
  }

  /** Why a rule in one of our chains cannot be interpreted, or undefined. */
  #strictProblem(r: Rule, w: Walk): string | undefined {
    if (r.unknown.length) return `${r.unknown.join(', ')} is not an option podnet writes`;
    const opaque = r.matches.find((m) => m.kind === 'opaque');
    if (opaque) return `${opaque.text} cannot be evaluated by the trace`;
    if (r.target?.kind === 'other') return `target ${r.target.name} is not a podnet chain`;
    if (r.target?.kind === 'masquerade' && w.outAddress === undefined) return 'MASQUERADE before routing';
    if (!w.fork && r.matches.some((m) => m.kind === 'statistic')) return 'a random match after routing';
    return undefined;
  }

  async #from(table: IptablesViewTable, chain: string, rules: Rule[], start: number, st: State, w: Walk, depth: number, via: Rule): Promise<Branch[]> {
    let affinityNoted = false;
    for (let i = start; i < rules.length; i++) {
      const r = rules[i]!;
      const problem = this.#strictProblem(r, w);
      if (problem) return [this.#foreign(st, w, table, chain, r, problem)];
      let p = 1;
      let ok = true;
      let rcheck: Extract<Match, { kind: 'recent' }> | undefined;
      // Cheap matches first, set lookups last (each may be a command on a node).
      const ordered = [...r.matches.filter((m) => m.kind !== 'set'), ...r.matches.filter((m) => m.kind === 'set')];
      for (const m of ordered) {
        if (m.kind === 'statistic') {
          const q = kernelProbability(m.p);
          p *= m.neg ? 1 - q : q;
          continue;
        }
        if (m.kind === 'recent' && m.op === 'rcheck') {
          rcheck = m;
          continue;
        }
        const v = await this.#match(m, st, w);
        if (v === undefined) return [this.#foreign(st, w, table, chain, r, `${m.text} cannot be evaluated by the trace`)];
        if (!v) {
          ok = false;
          break;
        }
      }
      if (ok && rcheck) {
        if (!affinityNoted) {
          affinityNoted = true;
          const secs = rcheck.seconds !== undefined ? ` (${rcheck.seconds} s)` : '';
          this.#observe(st, w, {
            action: 'Matched',
            detail: `${serviceText(serviceOf(r.comment) ?? st.service)} has ClientIP affinity${secs}: a new client (${st.pkt.src}) has no entry in the recent lists yet, so the random choice below applies; its later connections${secs ? ` within${secs.slice(1, -1)}` : ''} go back to the same endpoint`,
            rule: r.line,
            where: `${table} ${chain}`,
            ...this.#origin(st, r),
          });
        }
        ok = false;
      }
      if (!ok || p === 0) continue;
      if (p < 1) {
        const other = clone(st);
        other.prob *= 1 - p;
        st.prob *= p;
        const taken = await this.#apply(table, chain, rules, i, st, w, depth, via);
        const rest = await this.#from(table, chain, rules, i + 1, other, w, depth, via);
        return [...taken, ...rest];
      }
      return this.#apply(table, chain, rules, i, st, w, depth, via);
    }
    return [{ st, end: { kind: 'continue' } }];
  }

  /** The target of rules[i], which matched; then the rest of the chain when the target continues. */
  async #apply(table: IptablesViewTable, chain: string, rules: Rule[], i: number, st: State, w: Walk, depth: number, via: Rule): Promise<Branch[]> {
    const r = rules[i]!;
    const t = r.target;
    const where = `${table} ${chain}`;
    const next = (s: State) => this.#from(table, chain, rules, i + 1, s, w, depth, via);
    const svc = serviceOf(r.comment);
    if (svc) st.service = svc;
    if (!t) return next(st);
    switch (t.kind) {
      case 'jump':
      case 'goto': {
        if (isServiceChain(t.chain)) this.#observe(st, w, { action: 'Matched', detail: this.#entryText(r, t.chain, st), rule: r.line, where, ...this.#origin(st, r) });
        const sub = await this.#chain(table, t.chain, st, w, depth + 1, r);
        // goto: the target's RETURN returns from this chain too.
        if (t.kind === 'goto') return sub;
        const out: Branch[] = [];
        for (const b of sub) out.push(...(b.end.kind === 'continue' ? await next(b.st) : [b]));
        return out;
      }
      case 'return':
        return [{ st, end: { kind: 'continue' } }];
      case 'accept':
        this.#observe(st, w, { action: 'Accepted', detail: `accepted${r.comment ? `: ${r.comment}` : ''}`, rule: r.line, where, ...this.#origin(st, r) });
        return [{ st, end: { kind: 'accept' } }];
      case 'drop': {
        const detail = r.comment?.endsWith(' has no local endpoints')
          ? `${serviceText(svc ?? st.service)} has no endpoint on this node and its traffic policy is Local: ${dest(st.pkt)} dropped`
          : `${dest(st.pkt)} dropped${r.comment ? `: ${r.comment}` : ''}`;
        this.#observe(st, w, { action: 'Dropped', detail, rule: r.line, where, ...this.#origin(st, r) });
        return [{ st, end: { kind: 'verdict', verdict: { kind: 'Dropped', node: w.node, at: r.line, reason: detail } } }];
      }
      case 'reject': {
        const how = t.with === 'tcp-reset' ? 'with a TCP reset: connect() fails at once with ECONNREFUSED' : `with ${t.with}`;
        const detail = r.comment?.endsWith(' has no endpoints')
          ? `${serviceText(svc ?? st.service)} has no endpoints: ${dest(st.pkt)} rejected ${how}`
          : `${dest(st.pkt)} rejected ${how}${r.comment ? ` (${r.comment})` : ''}`;
        this.#observe(st, w, { action: 'Rejected', detail, rule: r.line, where, ...this.#origin(st, r) });
        return [{ st, end: { kind: 'verdict', verdict: { kind: 'Rejected', node: w.node, at: r.line, reason: detail } } }];
      }
      case 'dnat': {
        const before = dest(st.pkt);
        st.pkt.dst = t.ip;
        if (t.port !== undefined) st.pkt.dport = t.port;
        st.endpoint = { ip: st.pkt.dst, port: st.pkt.dport };
        const recent = r.matches.find((m): m is Extract<Match, { kind: 'recent' }> => m.kind === 'recent' && m.op === 'set');
        const chance = st.prob < 1 ? ` (chosen with probability ${fmtP(st.prob)})` : '';
        const detail = `${before} → endpoint ${hostPort(st.pkt.dst, st.pkt.dport)} of ${serviceText(svc ?? st.service)}${chance}${recent ? `; the client is recorded in recent list ${recent.name} for ClientIP affinity` : ''}`;
        this.#observe(st, w, { action: 'DNAT', detail, rule: r.line, where, ...this.#origin(st, r) });
        return [{ st, end: { kind: 'accept' } }];
      }
      case 'mark': {
        const had = (st.mark & MASQUERADE_MARK) !== 0;
        st.mark = applyMark(st.mark, t);
        if ((st.mark & MASQUERADE_MARK) !== 0) {
          // The rule that decided is the jump into PODNET-MARK-MASQ (via), when that is how we got here.
          const decided = chain === MARK_MASQ_CHAIN ? via : r;
          this.#observe(st, w, { action: 'Marked', detail: `${this.#markText(decided, st)}${had ? ' (already marked)' : ''}`, rule: decided.line, where: `${table} ${decided.chain}`, ...this.#origin(st, decided) });
        }
        return next(st);
      }
      case 'masquerade': {
        const from = st.pkt.src;
        st.pkt.src = w.outAddress!;
        st.masqueraded = true;
        this.#observe(st, w, { action: 'Masqueraded', detail: `source ${from} → ${st.pkt.src} (the packet carries podnet's masquerade mark 0x${MASQUERADE_MARK.toString(16)}; --random-fully picks the source port)`, rule: r.line, where, ...this.#origin(st, r) });
        return [{ st, end: { kind: 'accept' } }];
      }
      case 'other':
        return [this.#foreign(st, w, table, chain, r, `target ${t.name} is not a podnet chain`)];
    }
  }

  /** A sentence for a rule entering a Service's chain (dispatch, NodePort, eTP branches). */
  #entryText(r: Rule, target: string, st: State): string {
    const c = r.comment ?? '';
    const s = serviceOf(c) ?? st.service;
    const svc = serviceText(s);
    const kind = target.startsWith('PODNET-SVL-') ? "this node's endpoints only" : target.startsWith('PODNET-EXT-') ? 'its external-traffic rules' : 'all its endpoints';
    const to = `→ ${target} (${kind})`;
    if (c.endsWith(' cluster IP')) return `${dest(st.pkt)} is the cluster IP of ${svc}${target.startsWith('PODNET-SVL-') ? ' (internalTrafficPolicy Local)' : ''} ${to}`;
    if (c.endsWith(' external IP')) return `${dest(st.pkt)} is an external IP of ${svc} ${to}`;
    if (c.endsWith(' loadbalancer IP')) return `${dest(st.pkt)} is a LoadBalancer IP of ${svc} ${to}`;
    if (r.chain === 'PODNET-NODEPORTS') return `${dest(st.pkt)} is NodePort ${st.pkt.dport} of ${svc}${this.#o.nodeIPs.includes(st.pkt.dst) ? ` on node address ${st.pkt.dst}` : ''} ${to}`;
    if (c.startsWith('pod traffic for ')) return `source ${st.pkt.src} is in the cluster CIDR${this.#o.clusterCIDR ? ` ${this.#o.clusterCIDR}` : ''} (a pod): it reaches every endpoint of ${svc}, not only this node's ${to}`;
    if (c.startsWith('route LOCAL traffic for ')) return `source ${st.pkt.src} is this node's own address: it reaches every endpoint of ${svc} ${to}`;
    if (r.chain.startsWith('PODNET-EXT-') && target.startsWith('PODNET-SVL-')) return `${svc} has externalTrafficPolicy Local: this node's endpoints only, the client's source address is kept ${to}`;
    if (r.chain.startsWith('PODNET-EXT-')) return `${svc} has externalTrafficPolicy Cluster ${to}`;
    return `matched${c ? ` (${c})` : ''} ${to}`;
  }

  /** Why the masquerade mark was set, from the rule that decided it. */
  #markText(r: Rule, st: State): string {
    const c = r.comment ?? '';
    const svc = serviceText(serviceOf(c) ?? st.service);
    const tail = `marked 0x${MASQUERADE_MARK.toString(16)}: masqueraded in postrouting`;
    if (c === 'cluster IP from outside the cluster CIDR') {
      const cidr = r.matches.find((m) => m.kind === 'addr' && m.dir === 'src');
      return `source ${st.pkt.src} is outside the cluster CIDR${cidr ? ` ${cidr.text.replace(/^! -s /, '')}` : ''} and ${dest(st.pkt)} is a cluster IP: ${tail} (so the reply comes back through this node)`;
    }
    if (c.startsWith('masquerade traffic for ')) return `${svc} has externalTrafficPolicy Cluster: traffic to its external destination ${dest(st.pkt)} is ${tail}`;
    if (c.startsWith('masquerade LOCAL traffic for ')) return `source ${st.pkt.src} is this node's own address (${svc}, externalTrafficPolicy Local): ${tail}`;
    if (r.chain.startsWith('PODNET-SEP-') && r.matches.some((m) => m.kind === 'addr' && m.dir === 'src')) {
      return `hairpin: the client ${st.pkt.src} is the endpoint of ${svc} it is about to be sent to: ${tail} (else the reply would bypass the Service's NAT)`;
    }
    return `${tail}${c ? ` (${c})` : ''}`;
  }
}

/** The interpreter of podnet's iptables proxy mode over a view of one node's rules (one family). */
export function createIptablesInterpreter(view: IptablesView, o: IptablesInterpreterOptions): LbInterpreter {
  return new Interpreter(view, o);
}

// ---------------------------------------------------------------- the kernel view

export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs a command given as an argument array (never a shell). */
export type CommandRunner = (file: string, args: readonly string[]) => Promise<CommandResult>;

export interface KernelIptablesViewOptions {
  family: Family;
  /** Runs the tools (default: execa, no shell, 30 s timeout). Tests inject a fake. */
  run?: CommandRunner;
  /** Read this network namespace (a path such as /run/netns/x, through nsenter) instead of the current one. */
  netns?: string;
}

const defaultRun: CommandRunner = async (file, args) => {
  const r = await execa(file, [...args], { reject: false, timeout: 30_000 });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') };
};

/**
 * An IptablesView of this node's kernel: `iptables -w -t T -S CHAIN` (`ip6tables` for IPv6,
 * as src/kernel/iptables.ts runs them) per chain the packet walks and `ipset test SET ENTRY`
 * per lookup, each cached for the life of the view (one trace). A chain that does not
 * exist is undefined (iptables-nft 1.8.9 says "chain `X' in table `nat' is incompatible"
 * for a missing chain, legacy iptables "No chain/target/match by that name").
 */
export function kernelIptablesView(o: KernelIptablesViewOptions): IptablesView {
  const run = o.run ?? defaultRun;
  const ipt = o.family === 6 ? 'ip6tables' : 'iptables';
  const chains = new Map<string, Promise<string[] | undefined>>();
  const tests = new Map<string, Promise<boolean>>();
  const cached = <T>(m: Map<string, Promise<T>>, key: string, f: () => Promise<T>): Promise<T> => {
    let p = m.get(key);
    if (!p) {
      p = f();
      m.set(key, p);
      p.catch(() => m.delete(key));
    }
    return p;
  };
  return {
    rules: (table, chain) =>
      cached(chains, `${table} ${chain}`, async () => {
        const [file, args] = command(ipt, ['-w', '-t', table, '-S', chain], o.netns);
        const r = await run(file, args);
        if (r.exitCode === 0) return r.stdout.split('\n').filter((l) => l.trim() !== '');
        if (r.exitCode === 1 && /No chain|does not exist|incompatible/i.test(r.stderr)) return undefined;
        throw new PodnetError(ErrorCodes.EXEC, `${ipt} -t ${table} -S ${chain} failed: ${r.stderr.trim() || `exit ${r.exitCode}`}`, { tool: ipt, table, chain, netns: o.netns });
      }),
    ipsetTest: (set, entry) =>
      cached(tests, `${set} ${entry}`, async () => {
        const [file, args] = command('ipset', ['test', set, entry], o.netns);
        const r = await run(file, args);
        if (r.exitCode === 0) return true;
        if (r.exitCode === 1 && /is NOT in set/.test(r.stderr)) return false;
        throw new PodnetError(ErrorCodes.EXEC, `ipset test ${set} ${entry} failed: ${r.stderr.trim() || `exit ${r.exitCode}`}`, { tool: 'ipset', set, entry, netns: o.netns });
      }),
  };
}
