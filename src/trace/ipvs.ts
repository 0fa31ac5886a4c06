/**
 * `podnet trace` for the IPVS proxy mode: the interpreter of what src/proxy/ipvs programs
 * (see its README for the data path), over an `IpvsView` of one node's IPVS table, iptables
 * chains and ipsets.
 *
 *   prerouting (pods, other nodes, outside)        output (host processes)
 *   nat PREROUTING -> PODNET-IPVS-SERVICES         nat OUTPUT -> PODNET-IPVS-SERVICES   (masquerade mark)
 *   routing: dst not local -> IPVS never sees it   IPVS LOCAL_OUT (before the filter):
 *   filter INPUT -> PODNET-IPVS-FILTER               virtual server -> real server (DNAT),
 *     (DROP / REJECT / unserved VIP port)            no real server -> ICMP port unreachable
 *   IPVS LOCAL_IN: virtual server -> real server   filter OUTPUT -> PODNET-IPVS-FILTER
 *   filter OUTPUT (IPVS re-sends the DNATed packet through LOCAL_OUT unless the real server is local)
 *   nat POSTROUTING -> PODNET-IPVS-POSTROUTING: hairpin (LOOPBACK set) or marked -> MASQUERADE   (snat())
 *
 * iptables rules are parsed, not compared as text: both the planner's iptables-restore input
 * (`--or-mark`, bare `-j REJECT`) and iptables-save / `iptables -S` output (`--set-xmark`,
 * `--reject-with icmp-port-unreachable`, `! -s` moved before `-m`) are understood. A rule is
 * understood when it is a bare jump to a podnet chain in a built-in chain, or, in a podnet
 * chain, is made only of the matches (`-p`, `-s`, `-d`, `-m set` on podnet's sets, `-m
 * conntrack --ctstate`, `-m mark`, `-m comment`) and targets (podnet chains, RETURN, ACCEPT,
 * DROP, REJECT, MARK, MASQUERADE) whose semantics are exact here. Anything else on the
 * packet's path is a foreign observation and the outcome is Unknown.
 *
 * The packet is taken as the first one of a new flow (conntrack state NEW, echo request for
 * ICMP), as the filter rules assume. Virtual servers that are not podnet's (address neither
 * in the VIPS set nor a recorded NodePort) are foreign too; fwmark virtual servers are not
 * looked at (podnet creates none).
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { execa } from 'execa';
import { Ipvs } from '../kernel/ipvs.js';
import type { IpvsForward, IpvsServiceId } from '../kernel/ipvs.js';
import { iptablesSave } from '../kernel/iptables.js';
import { CHAINS, DUMMY_DEVICE, SET_BASES, byAddressPort, missingJumps, planRules, planSnapshots, setName, vsId } from '../proxy/ipvs/plan.js';
import type { PlanIndex, SetBase } from '../proxy/ipvs/plan.js';
import { MASQUERADE_MARK } from '../proxy/types.js';
import type { ProxySnapshot } from '../proxy/types.js';
import { ErrorCodes, PodnetError } from '../util/errors.js';
import { Cidr, parseIP } from '../util/ipnet.js';
import type { LbContext, LbInterpreter, LbOutcome, SnatContext, SnatOutcome } from './lb.js';
import type { Family, Observation, Origin, Packet, Verdict } from './types.js';

// ---- the view

export type IpvsProto = 'TCP' | 'UDP' | 'SCTP';

export interface IpvsViewDestination {
  ip: string;
  port: number;
  weight: number;
  activeConns?: number;
  inactiveConns?: number;
  /** Forwarding method; absent means masq (NAT), the only one podnet programs. */
  forward?: IpvsForward;
}

export interface IpvsViewService {
  scheduler: string;
  /** Persistence (session affinity ClientIP) in seconds; absent when not persistent. */
  persistentTimeout?: number;
  destinations: IpvsViewDestination[];
  /** How `ipvsadm -Ln` prints the service and its real servers (see ipvsadmText). */
  text: string;
  /** The Service that owns the virtual server, when the view knows (the planner's view does, the kernel does not). */
  origin?: Origin[];
}

export interface IpvsConnectionEntry {
  /** The real server of the connection. */
  ip: string;
  port: number;
  /** The entry as the kernel shows it (a /proc/net/ip_vs_conn line). */
  text: string;
  /** A persistence template (client address -> real server, session affinity), not this connection itself. */
  template?: boolean;
}

/** One node's IPVS mode state, as the interpreter reads it. */
export interface IpvsView {
  /** The virtual server (proto, addr, port), undefined when there is none. Equivalent to `ipvsadm -Ln -t ADDR:PORT`. */
  service(proto: IpvsProto, addr: string, port: number): Promise<IpvsViewService | undefined>;
  /** The chain as `iptables -S CHAIN` prints it (`-P` / `-N` line, then `-A` lines); undefined when it does not exist. */
  rules(table: 'nat' | 'filter', chain: string): Promise<string[] | undefined>;
  /** Equivalent to `ipset test SET ENTRY`. */
  ipsetTest(set: string, entry: string): Promise<boolean>;
  /** Live mode: the IPVS connection (or persistence template) of the packet's client address:port. */
  connection?(pkt: Packet): Promise<IpvsConnectionEntry | undefined>;
}

export interface IpvsInterpreterOptions {
  family: Family;
  /** The agent's cluster CIDR of this family (named in details). */
  clusterCIDR?: string;
  /** The node's addresses of this family: NodePort virtual servers live on them. */
  nodeIPs: string[];
}

// ---- ipvsadm text

const hostPort = (ip: string, port: number) => `${ip.includes(':') ? `[${ip}]` : ip}:${port}`;
const FWD_NAMES: Record<IpvsForward, string> = { masq: 'Masq', local: 'Local', tunnel: 'Tunnel', route: 'Route', bypass: 'Bypass' };

function destLine(d: IpvsViewDestination): string {
  // ipvsadm: "  -> %-28s %-7s %-6d %-10u %-10u\n" (trailing padding trimmed here).
  return `  -> ${hostPort(d.ip, d.port).padEnd(28)} ${FWD_NAMES[d.forward ?? 'masq'].padEnd(7)} ${String(d.weight).padEnd(6)} ${String(d.activeConns ?? 0).padEnd(10)} ${d.inactiveConns ?? 0}`;
}

/**
 * A virtual server as `ipvsadm -Ln` prints it, without the header lines:
 * `TCP  10.96.0.10:80 rr persistent 60` then one `  -> 10.244.1.5:8080  Masq  1  0  0` line
 * per real server (columns padded as ipvsadm pads them, trailing blanks trimmed).
 */
export function ipvsadmText(s: { protocol: IpvsProto; address: string; port: number; scheduler: string; persistentTimeout?: number; netmask?: number; destinations: readonly IpvsViewDestination[] }): string {
  let head = `${s.protocol}  ${hostPort(s.address, s.port)} ${s.scheduler}`;
  if (s.persistentTimeout !== undefined) {
    head += ` persistent ${s.persistentTimeout}`;
    const v6 = s.address.includes(':');
    if (s.netmask !== undefined && s.netmask !== (v6 ? 128 : 0xffffffff)) head += ` mask ${v6 ? s.netmask : ipv4Mask(s.netmask)}`;
  }
  return [head, ...s.destinations.map(destLine)].join('\n');
}

/** The IPv4 persistence netmask as src/kernel/ipvs.ts reads it (the be32 attribute read as a little-endian number). */
function ipv4Mask(m: number): string {
  return [0, 8, 16, 24].map((sh) => (m >>> sh) & 0xff).join('.');
}

// ---- iptables rules: parsing

type Dim = 'ip' | 'port';
type Dir = 'src' | 'dst';

type Match =
  | { m: 'proto'; neg: boolean; proto: string }
  | { m: 'addr'; dir: Dir; neg: boolean; cidr: Cidr }
  | { m: 'set'; neg: boolean; set: string; base: SetBase; dims: Dim[]; flags: Dir[] }
  | { m: 'ctstate'; neg: boolean; states: string[] }
  | { m: 'mark'; neg: boolean; value: number; mask: number }
  | { m: 'comment'; text: string };

type Target =
  | { t: 'jump'; chain: string }
  | { t: 'RETURN' | 'ACCEPT' | 'DROP' | 'MASQUERADE' }
  | { t: 'REJECT'; with: string }
  /** skb->mark = (mark & ~mask) ^ value (every MARK form reduces to this, as the kernel's xt_MARK). */
  | { t: 'MARK'; value: number; mask: number };

interface Rule {
  text: string;
  chain: string;
  matches: Match[];
  target: Target;
}

const BUILTIN: Record<'nat' | 'filter', readonly string[]> = {
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
};

/** The podnet chain each built-in chain jumps to in IPVS mode. */
const EXPECTED_JUMP: Record<string, string> = {
  'nat PREROUTING': 'PODNET-IPVS-SERVICES',
  'nat OUTPUT': 'PODNET-IPVS-SERVICES',
  'nat POSTROUTING': 'PODNET-IPVS-POSTROUTING',
  'filter INPUT': 'PODNET-IPVS-FILTER',
  'filter OUTPUT': 'PODNET-IPVS-FILTER',
};

const SET_MEANING: Record<SetBase, string> = {
  CLUSTER: 'ClusterIP ports',
  MASQ: 'external, LB and node IP ports with externalTrafficPolicy Cluster',
  SERVED: 'VIP ports with a virtual server',
  VIPS: `the VIPs on ${DUMMY_DEVICE}`,
  NODEPORTS: 'NodePorts',
  LOOPBACK: 'local endpoints reaching themselves: hairpin',
  REJECT: 'Service ports without usable endpoints',
  DROP: 'externalTrafficPolicy Local ports whose endpoints are all on other nodes',
};

function dimsOf(type: string): Dim[] {
  return type
    .replace(/^hash:/, '')
    .split(',')
    .map((d) => (d === 'port' ? 'port' : 'ip'));
}

/** Splits an iptables line into words; double-quoted words (comments) keep their blanks. */
function tokenize(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!);
  return out;
}

function parseNumber(s: string | undefined): number | undefined {
  if (!s || !/^(0x[0-9a-f]+|\d+)$/i.test(s)) return undefined;
  const n = Number(s);
  return n <= 0xffffffff ? n >>> 0 : undefined;
}

/** `V` or `V/M` (M defaults to 0xffffffff). */
function parseValueMask(s: string | undefined): { value: number; mask: number } | undefined {
  if (!s) return undefined;
  const [v, m, extra] = s.split('/');
  const value = parseNumber(v);
  const mask = m === undefined ? 0xffffffff : parseNumber(m);
  return value === undefined || mask === undefined || extra !== undefined ? undefined : { value, mask };
}

function protoName(p: string): string | undefined {
  const names: Record<string, string> = {
    tcp: 'tcp', '6': 'tcp', udp: 'udp', '17': 'udp', sctp: 'sctp', '132': 'sctp', icmp: 'icmp', '1': 'icmp',
    icmpv6: 'ipv6-icmp', 'ipv6-icmp': 'ipv6-icmp', '58': 'ipv6-icmp', all: 'all', '0': 'all',
  };
  return names[p.toLowerCase()];
}

interface ParseContext {
  family: Family;
  table: 'nat' | 'filter';
  sets: ReadonlyMap<string, { base: SetBase; dims: Dim[] }>;
}

/** A rule, or why it is not one the interpreter understands. */
function parseRule(line: string, pc: ParseContext): Rule | string {
  const tok = tokenize(line);
  if (tok[0] !== '-A' || !tok[1]) return 'not an -A rule';
  const chain = tok[1];
  const matches: Match[] = [];
  let target: Target | undefined;
  let neg = false;
  let mod: string | undefined;
  let i = 2;
  const arg = () => tok[i++];
  while (i < tok.length) {
    const t = tok[i++]!;
    if (t === '!') {
      if (neg) return 'a double negation';
      neg = true;
      continue;
    }
    switch (t) {
      case '-p':
      case '--protocol': {
        const p = protoName(arg() ?? '');
        if (!p) return `protocol ${tok[i - 1] ?? ''}`;
        matches.push({ m: 'proto', neg, proto: p });
        mod = undefined;
        break;
      }
      case '-s':
      case '--source':
      case '-d':
      case '--destination': {
        const v = arg() ?? '';
        if (v.includes(',')) return `address list ${v}`;
        const f = isIP(v.split('/')[0] ?? '');
        if (f !== pc.family) return `address ${v} is not IPv${pc.family}`;
        let cidr: Cidr;
        try {
          cidr = Cidr.parse(v.includes('/') ? v : `${v}/${f === 4 ? 32 : 128}`, 'address', { strict: false });
        } catch {
          return `address ${v}`;
        }
        matches.push({ m: 'addr', dir: t === '-s' || t === '--source' ? 'src' : 'dst', neg, cidr });
        break;
      }
      case '-m':
      case '--match': {
        if (neg) return '! before -m';
        const v = arg() ?? '';
        if (!['set', 'conntrack', 'mark', 'comment'].includes(v)) return `match -m ${v}`;
        mod = v;
        break;
      }
      case '--match-set': {
        if (mod !== 'set') return '--match-set outside -m set';
        const name = arg() ?? '';
        const flags = (arg() ?? '').split(',');
        const known = pc.sets.get(name);
        if (!known) return `set ${name} is not one of podnet's IPv${pc.family} sets`;
        if (!flags.every((f): f is Dir => f === 'src' || f === 'dst')) return `set flags ${flags.join(',')}`;
        matches.push({ m: 'set', neg, set: name, base: known.base, dims: known.dims, flags });
        break;
      }
      case '--ctstate': {
        if (mod !== 'conntrack') return '--ctstate outside -m conntrack';
        matches.push({ m: 'ctstate', neg, states: (arg() ?? '').toUpperCase().split(',') });
        break;
      }
      case '--mark': {
        if (mod !== 'mark') return '--mark outside -m mark';
        const vm = parseValueMask(arg());
        if (!vm) return `mark ${tok[i - 1] ?? ''}`;
        matches.push({ m: 'mark', neg, ...vm });
        break;
      }
      case '--comment': {
        if (mod !== 'comment' || neg) return '--comment outside -m comment';
        matches.push({ m: 'comment', text: arg() ?? '' });
        break;
      }
      case '-j':
      case '--jump': {
        if (neg) return '! before -j';
        const parsed = parseTarget(arg() ?? '', tok.slice(i), pc);
        if (typeof parsed === 'string') return parsed;
        target = parsed;
        i = tok.length;
        break;
      }
      default:
        return `option ${t}`;
    }
    neg = false;
  }
  if (neg) return 'a trailing !';
  if (!target) return 'no target';
  return { text: line, chain, matches, target };
}

function parseTarget(name: string, rest: string[], pc: ParseContext): Target | string {
  const opts = rest.join(' ');
  switch (name) {
    case 'RETURN':
    case 'ACCEPT':
    case 'DROP':
    case 'MASQUERADE':
      return rest.length ? `target ${name} ${opts}` : { t: name };
    case 'REJECT':
      if (!rest.length) return { t: 'REJECT', with: pc.family === 4 ? 'icmp-port-unreachable' : 'icmp6-port-unreachable' };
      return rest.length === 2 && rest[0] === '--reject-with' ? { t: 'REJECT', with: rest[1]! } : `target REJECT ${opts}`;
    case 'MARK': {
      if (rest.length !== 2) return `target MARK ${opts}`;
      const [op, v] = rest as [string, string];
      const vm = parseValueMask(v);
      const single = parseNumber(v);
      switch (op) {
        case '--set-xmark':
          return vm ? { t: 'MARK', ...vm } : `target MARK ${opts}`;
        case '--set-mark':
          return vm ? { t: 'MARK', value: vm.value, mask: (vm.value | vm.mask) >>> 0 } : `target MARK ${opts}`;
        case '--or-mark':
          return single !== undefined ? { t: 'MARK', value: single, mask: single } : `target MARK ${opts}`;
        case '--xor-mark':
          return single !== undefined ? { t: 'MARK', value: single, mask: 0 } : `target MARK ${opts}`;
        case '--and-mark':
          return single !== undefined ? { t: 'MARK', value: 0, mask: ~single >>> 0 } : `target MARK ${opts}`;
        default:
          return `target MARK ${opts}`;
      }
    }
    default:
      if ((CHAINS[pc.table] as readonly string[]).includes(name) && !rest.length) return { t: 'jump', chain: name };
      return `target ${name}${opts ? ` ${opts}` : ''}`;
  }
}

/**
 * iptables-save / iptables-restore text as `iptables -S` chains: a `-P CHAIN POLICY` (built-in)
 * or `-N CHAIN` line, then the `-A` lines. `-I CHAIN` rules (the planner's jumps) go first.
 * Built-in chains of a table always exist (policy ACCEPT unless the text says otherwise).
 */
function chainsFromSave(text: string): Map<string, Map<string, string[]>> {
  const tables = new Map<string, Map<string, string[]>>();
  let cur: Map<string, string[]> | undefined;
  let table = '';
  const chainOf = (name: string) => {
    let c = cur!.get(name);
    if (!c) cur!.set(name, (c = [(BUILTIN[table as 'nat' | 'filter'] ?? []).includes(name) ? `-P ${name} ACCEPT` : `-N ${name}`]));
    return c;
  };
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line === 'COMMIT') continue;
    if (line.startsWith('*')) {
      table = line.slice(1);
      cur = tables.get(table) ?? new Map<string, string[]>();
      tables.set(table, cur);
      for (const b of BUILTIN[table as 'nat' | 'filter'] ?? []) chainOf(b);
      continue;
    }
    if (!cur) continue;
    if (line.startsWith(':')) {
      const [name, policy] = line.slice(1).split(/\s+/) as [string, string | undefined];
      const c = chainOf(name);
      c[0] = policy && policy !== '-' ? `-P ${name} ${policy}` : `-N ${name}`;
    } else if (line.startsWith('-A ')) {
      chainOf(line.split(/\s+/)[1]!).push(line);
    } else if (line.startsWith('-I ')) {
      const words = line.split(/\s+/);
      const name = words[1]!;
      const pos = /^\d+$/.test(words[2] ?? '') ? Number(words[2]) : 1;
      const rest = words.slice(/^\d+$/.test(words[2] ?? '') ? 3 : 2).join(' ');
      chainOf(name).splice(pos, 0, `-A ${name} ${rest}`);
    }
  }
  return tables;
}

// ---- the interpreter

interface EvalState {
  node: string;
  pkt: Packet;
  mark: number;
  obs: Observation[];
  masqueraded: boolean;
  /** snat(): the address MASQUERADE uses. */
  outAddress?: string;
}

type ChainEnd = { kind: 'continue' } | { kind: 'accept' } | { kind: 'verdict'; verdict: Verdict };

const hex = (n: number) => `0x${n.toString(16)}`;
const upper = (p: Packet['proto']): IpvsProto | undefined => (p === 'tcp' ? 'TCP' : p === 'udp' ? 'UDP' : p === 'sctp' ? 'SCTP' : undefined);

function canonical(pkt: Packet): Packet {
  return { ...pkt, src: parseIP(pkt.src, 'packet source'), dst: parseIP(pkt.dst, 'packet destination') };
}

/** The ipset member a packet presents to a set of these dimensions with these direction flags. */
function setEntry(dims: readonly Dim[], flags: readonly Dir[], pkt: Packet): string {
  return dims
    .map((d, k) => {
      const src = flags[k] === 'src';
      if (d === 'ip') return src ? pkt.src : pkt.dst;
      // ipset reads the ICMP type/code as the port; trace probes are echo requests.
      if (pkt.proto === 'icmp') return pkt.family === 4 ? 'icmp:8/0' : 'icmpv6:128/0';
      return `${pkt.proto}:${src ? pkt.sport : pkt.dport}`;
    })
    .join(',');
}

export function createIpvsInterpreter(view: IpvsView, o: IpvsInterpreterOptions): LbInterpreter {
  const family = o.family;
  const sets = new Map<string, { base: SetBase; dims: Dim[] }>((Object.keys(SET_BASES) as SetBase[]).map((b) => [setName(b, family), { base: b, dims: dimsOf(SET_BASES[b]) }]));
  const nodeIPs = new Set(o.nodeIPs.map((ip) => parseIP(ip)));
  const parsed = new Map<string, Rule | string>();

  const parse = (line: string, table: 'nat' | 'filter') => {
    const key = `${table} ${line}`;
    let r = parsed.get(key);
    if (r === undefined) parsed.set(key, (r = parseRule(line, { family, table, sets })));
    return r;
  };

  async function matches(m: Match, st: EvalState): Promise<boolean> {
    let r: boolean;
    switch (m.m) {
      case 'proto': {
        const p = st.pkt.proto === 'icmp' && st.pkt.family === 6 ? 'ipv6-icmp' : st.pkt.proto;
        r = m.proto === 'all' || m.proto === p;
        break;
      }
      case 'addr':
        r = m.cidr.contains(m.dir === 'src' ? st.pkt.src : st.pkt.dst);
        break;
      case 'set':
        // The kernel's ip_set_test: fewer direction flags than the set has dimensions never match.
        r = m.flags.length >= m.dims.length && (await view.ipsetTest(m.set, setEntry(m.dims, m.flags, st.pkt)));
        break;
      case 'ctstate':
        r = m.states.includes('NEW');
        break;
      case 'mark':
        r = (st.mark & m.mask) >>> 0 === m.value;
        break;
      case 'comment':
        return true;
    }
    return m.neg ? !r : r;
  }

  function describe(ms: readonly Match[], st: EvalState): string {
    const parts: string[] = [];
    for (const m of ms) {
      switch (m.m) {
        case 'proto':
          parts.push(`protocol ${m.neg ? 'not ' : ''}${m.proto}`);
          break;
        case 'addr':
          parts.push(`${m.dir === 'src' ? 'source' : 'destination'} ${m.dir === 'src' ? st.pkt.src : st.pkt.dst} ${m.neg ? 'not in' : 'in'} ${m.cidr.toString()}`);
          break;
        case 'set':
          parts.push(`${setEntry(m.dims, m.flags, st.pkt)} ${m.neg ? 'not in' : 'in'} ${m.set} (${SET_MEANING[m.base]})`);
          break;
        case 'ctstate':
          parts.push(m.neg ? `conntrack state not ${m.states.join(',')}` : 'a new connection');
          break;
        case 'mark':
          parts.push(`mark ${hex(st.mark)}${m.neg ? ' does not match' : ' matches'} ${hex(m.value)}/${hex(m.mask)}`);
          break;
        case 'comment':
          break;
      }
    }
    return parts.join(', ');
  }

  function observe(st: EvalState, table: string, chain: string, action: string, detail: string, rule: string, extra: Partial<Observation> = {}): void {
    st.obs.push({ node: st.node, component: 'Netfilter/LB', action, detail, rule, where: `${table} ${chain}`, packet: { ...st.pkt }, ...extra });
  }

  function foreign(st: EvalState, table: string, chain: string, line: string, why: string): ChainEnd {
    const detail = `not a rule podnet's IPVS mode writes (${why}): not interpreted`;
    observe(st, table, chain, 'Unknown', detail, line, { foreign: true });
    return { kind: 'verdict', verdict: { kind: 'Unknown', node: st.node, at: line, reason: `a rule podnet did not write is on the packet's path in ${table} ${chain}: ${line}` } };
  }

  /** Evaluates one chain; built-in chains end in their policy. */
  async function chain(table: 'nat' | 'filter', name: string, st: EvalState, depth = 0): Promise<ChainEnd> {
    const builtin = BUILTIN[table].includes(name);
    const lines = (await view.rules(table, name)) ?? (builtin ? [`-P ${name} ACCEPT`] : undefined);
    if (!lines) return foreign(st, table, name, `-N ${name}`, `chain ${name} does not exist`);
    if (depth > 8) return foreign(st, table, name, lines[0] ?? name, 'jumps nested too deep');
    let policy = 'ACCEPT';
    let jumped = false;
    for (const raw of lines) {
      const line = raw.trim();
      if (!line) continue;
      if (line.startsWith('-P ')) {
        policy = line.split(/\s+/)[2] ?? 'ACCEPT';
        continue;
      }
      if (line.startsWith('-N ')) continue;
      const rule = parse(line, table);
      if (typeof rule === 'string') {
        // A foreign rule in a built-in chain with options podnet never writes matters only
        // if it can match this packet (`-A INPUT -p tcp --dport 9998 -j ACCEPT` cannot, for port 80).
        if (builtin && cannotMatch(line, st.pkt)) continue;
        return foreign(st, table, name, line, rule);
      }
      const conditions = rule.matches.filter((m) => m.m !== 'comment');
      if (builtin && !(rule.target.t === 'jump' && conditions.length === 0)) {
        // Not podnet's: it matters only if it can match this packet (e.g. a foreign
        // `-A INPUT -p tcp --dport 9998 -j ACCEPT` cannot match a packet to port 80).
        let possible = true;
        for (const m of rule.matches) {
          if (!(await matches(m, st))) {
            possible = false;
            break;
          }
        }
        if (possible) return foreign(st, table, name, line, 'a rule podnet did not write matches the packet in a built-in chain');
        continue;
      }
      let ok = true;
      for (const m of rule.matches) {
        if (!(await matches(m, st))) {
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      const why = describe(rule.matches, st);
      const t = rule.target;
      switch (t.t) {
        case 'jump': {
          if (t.chain === EXPECTED_JUMP[`${table} ${name}`]) jumped = true;
          if (conditions.length) observe(st, table, name, 'Matched', `${why}: jump to ${t.chain}`, line);
          const r = await chain(table, t.chain, st, depth + 1);
          if (r.kind !== 'continue') return r;
          continue;
        }
        case 'RETURN':
          // Not observed: it decides nothing (the SERVED and unmarked RETURNs would be on
          // every packet). Never in a built-in chain: only bare jumps are understood there.
          return { kind: 'continue' };
        case 'ACCEPT':
          observe(st, table, name, 'Accepted', why ? `${why}: accepted` : 'accepted', line);
          return { kind: 'accept' };
        case 'DROP':
          observe(st, table, name, 'Dropped', why ? `${why}: dropped` : 'dropped', line);
          return { kind: 'verdict', verdict: { kind: 'Dropped', node: st.node, at: line, reason: why ? `${why}: dropped` : 'dropped' } };
        case 'REJECT': {
          const how = t.with === 'tcp-reset' ? 'a TCP reset' : `ICMP ${t.with.replace(/^icmp6?-/, '')}`;
          const reason = `${why ? `${why}: ` : ''}rejected with ${how}`;
          observe(st, table, name, 'Rejected', reason, line);
          return { kind: 'verdict', verdict: { kind: 'Rejected', node: st.node, at: line, reason } };
        }
        case 'MARK': {
          const before = st.mark;
          st.mark = ((st.mark & ~t.mask) ^ t.value) >>> 0;
          const set = !(before & MASQUERADE_MARK) && st.mark & MASQUERADE_MARK;
          const cleared = before & MASQUERADE_MARK && !(st.mark & MASQUERADE_MARK);
          const note = set ? ': the masquerade mark, postrouting masquerades the packet' : cleared ? ': the masquerade mark cleared before masquerading' : '';
          observe(st, table, name, 'Marked', `${why ? `${why}, ` : ''}mark ${hex(before)} -> ${hex(st.mark)}${note}`, line);
          continue;
        }
        case 'MASQUERADE': {
          const from = st.pkt.src;
          if (st.outAddress) st.pkt = { ...st.pkt, src: st.outAddress };
          st.masqueraded = true;
          observe(st, table, name, 'Masqueraded', `${why || `mark ${hex(MASQUERADE_MARK)} was set`}: source ${from} -> ${st.pkt.src} (the outgoing device's address)`, line);
          return { kind: 'accept' };
        }
      }
    }
    if (!builtin) return { kind: 'continue' };
    const expected = EXPECTED_JUMP[`${table} ${name}`];
    if (expected && !jumped) {
      st.obs.push({ node: st.node, component: 'Netfilter/LB', action: 'Accepted', detail: `${table} ${name} has no jump to ${expected}: podnet's IPVS mode rules are not on this packet's path`, where: `${table} ${name}`, packet: { ...st.pkt } });
    }
    if (policy === 'ACCEPT') return { kind: 'continue' };
    const line = `-P ${name} ${policy}`;
    if (policy === 'DROP') {
      observe(st, table, name, 'Dropped', `the policy of ${table} ${name} (not podnet's) drops the packet`, line, { foreign: true });
      return { kind: 'verdict', verdict: { kind: 'Dropped', node: st.node, at: line, reason: `the policy of ${table} ${name} is DROP` } };
    }
    return foreign(st, table, name, line, `policy ${policy}`);
  }

  type IpvsChoice = { probability: number; endpoint: { ip: string; port: number }; observation: Observation };
  type IpvsStep = { kind: 'none' } | { kind: 'verdict'; verdict: Verdict; observation: Observation } | { kind: 'dnat'; choices: IpvsChoice[]; service?: Origin[] };

  /** IPVS's LOCAL_IN / LOCAL_OUT hook for a new flow. */
  async function ipvs(st: EvalState, hook: 'LOCAL_IN' | 'LOCAL_OUT'): Promise<IpvsStep> {
    const pkt = st.pkt;
    const proto = upper(pkt.proto);
    if (!proto) return { kind: 'none' }; // IPVS schedules TCP, UDP and SCTP only
    const where = `ipvs ${hook}`;
    const obs = (action: string, detail: string, rule: string, packet: Packet, extra: Partial<Observation> = {}): Observation => ({ node: st.node, component: 'IPVS', action, detail, rule, where, packet, ...extra });
    const label = `${proto} ${hostPort(pkt.dst, pkt.dport)}`;
    let found = await view.service(proto, pkt.dst, pkt.dport);
    let vport = pkt.dport;
    if (!found) {
      // ip_vs_service_find: a port-zero (all ports) persistent service catches the rest.
      found = await view.service(proto, pkt.dst, 0);
      vport = 0;
    }
    const conn = view.connection ? await view.connection(pkt) : undefined;
    if (conn) {
      const packet = { ...pkt, dst: conn.ip, dport: conn.port };
      const what = conn.template
        ? `the IPVS persistence template of client ${pkt.src} (session affinity) sends it to ${hostPort(conn.ip, conn.port)}`
        : `the IPVS connection table already holds this connection, to ${hostPort(conn.ip, conn.port)}`;
      const rule = found ? `${found.text.split('\n')[0]}\n${conn.text}` : conn.text;
      return {
        kind: 'dnat',
        choices: [{ probability: 1, endpoint: { ip: conn.ip, port: conn.port }, observation: obs('DNAT', `${label}: ${what} (live: from the connection table)`, rule, packet, { live: true }) }],
        ...(found?.origin ? { service: found.origin } : {}),
      };
    }
    if (!found) return { kind: 'none' };
    const svc = found;
    const head = svc.text.split('\n')[0] ?? label;
    const vsLabel = `${proto} ${hostPort(pkt.dst, vport)}`;
    const ours = (await view.ipsetTest(setName('VIPS', family), pkt.dst)) || (await view.ipsetTest(setName('NODEPORTS', family), `${pkt.dst},${pkt.proto}:${vport}`));
    const unknown = (why: string): IpvsStep => ({
      kind: 'verdict',
      observation: obs('Unknown', `${why}: not interpreted`, svc.text, { ...pkt }, { foreign: true }),
      verdict: { kind: 'Unknown', node: st.node, at: head, reason: `${why}: not interpreted` },
    });
    if (!ours) return unknown(`IPVS virtual server ${vsLabel} is not podnet's (${pkt.dst} is not in ${setName('VIPS', family)} and not a recorded NodePort)`);
    const odd = svc.destinations.find((d) => (d.forward ?? 'masq') !== 'masq');
    if (odd) return unknown(`IPVS virtual server ${vsLabel} forwards to ${hostPort(odd.ip, odd.port)} with method ${odd.forward}, podnet only uses masq`);
    const live = svc.destinations.filter((d) => d.weight > 0);
    if (!live.length) {
      const ipv6TcpLocal = hook === 'LOCAL_OUT' && family === 6 && pkt.proto === 'tcp';
      const reason =
        `IPVS virtual server ${vsLabel} has no real server${svc.destinations.length ? ' with a weight above 0' : ''}: ` +
        `IPVS answers a new connection with ICMP port unreachable` +
        (ipv6TcpLocal ? ' (an IPv6 TCP client on this node loses that ICMPv6 error inside connect() and is refused only at its SYN retransmit, about 1 s later)' : '');
      return { kind: 'verdict', observation: obs('Rejected', reason, svc.text, { ...pkt }), verdict: { kind: 'Rejected', node: st.node, at: svc.text, reason } };
    }
    const weighted = svc.scheduler !== 'rr';
    const total = live.reduce((s, d) => s + (weighted ? d.weight : 1), 0);
    const kind = nodeIPs.has(pkt.dst) ? 'NodePort on a node address' : 'VIP';
    const sched =
      svc.scheduler === 'rr'
        ? `rr: each of the ${live.length} real server${live.length === 1 ? '' : 's'} in turn`
        : svc.scheduler === 'wrr'
          ? `wrr: by weight over ${live.length} real server${live.length === 1 ? '' : 's'}`
          : `${svc.scheduler} (not podnet's rr): approximated as a share by weight over ${live.length} real server${live.length === 1 ? '' : 's'}`;
    const affinity =
      svc.persistentTimeout !== undefined
        ? `; persistent ${svc.persistentTimeout} s (session affinity ClientIP): the first connection from ${pkt.src} picks the real server, its later ones within ${svc.persistentTimeout} s go to the same one`
        : '';
    const lines = svc.text.split('\n');
    const choices = live.map((d): IpvsChoice => {
      const probability = (weighted ? d.weight : 1) / total;
      const packet = { ...pkt, dst: parseIP(d.ip), dport: d.port };
      const dl = lines.find((l) => l.startsWith(`  -> ${hostPort(d.ip, d.port)} `)) ?? destLine(d);
      const share = weighted ? `weight ${d.weight} of ${total}` : `1 in ${live.length}`;
      const detail = `IPVS virtual server ${vsLabel} (${kind}), ${sched}; this outcome: ${hostPort(d.ip, d.port)} (${share})${affinity}`;
      return { probability, endpoint: { ip: packet.dst, port: d.port }, observation: obs('DNAT', detail, `${head}\n${dl}`, packet) };
    });
    return { kind: 'dnat', choices, ...(svc.origin ? { service: svc.origin } : {}) };
  }

  function outcome(st: EvalState, probability: number, extra: Partial<LbOutcome> = {}): LbOutcome {
    return { probability, observations: st.obs, packet: st.pkt, masqueradeMark: (st.mark & MASQUERADE_MARK) !== 0, ...extra };
  }

  return {
    mode: 'ipvs',

    async dnat(input: Packet, ctx: LbContext): Promise<LbOutcome[]> {
      if (input.family !== family) {
        throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `the IPv${family} IPVS interpreter was given an IPv${input.family} packet`, { family: input.family });
      }
      const st: EvalState = { node: ctx.node, pkt: canonical(input), mark: 0, obs: [], masqueraded: false };
      const nat = await chain('nat', ctx.hook === 'prerouting' ? 'PREROUTING' : 'OUTPUT', st);
      if (nat.kind === 'verdict') return [outcome(st, 1, { verdict: nat.verdict })];

      if (ctx.hook === 'prerouting') {
        if (!ctx.isLocal(st.pkt.dst)) {
          const p = upper(st.pkt.proto);
          const vs = p ? await view.service(p, st.pkt.dst, st.pkt.dport) : undefined;
          if (vs) {
            st.obs.push({
              node: st.node,
              component: 'IPVS',
              action: 'Matched',
              detail: `a virtual server ${p} ${hostPort(st.pkt.dst, st.pkt.dport)} exists, but ${st.pkt.dst} is not a local address (not on ${DUMMY_DEVICE}): the packet is routed on and IPVS never sees it`,
              rule: vs.text.split('\n')[0] ?? '',
              where: 'ipvs LOCAL_IN',
              packet: { ...st.pkt },
            });
          }
          return [outcome(st, 1)];
        }
        const filter = await chain('filter', 'INPUT', st);
        if (filter.kind === 'verdict') return [outcome(st, 1, { verdict: filter.verdict })];
      }

      const step = await ipvs(st, ctx.hook === 'prerouting' ? 'LOCAL_IN' : 'LOCAL_OUT');
      if (step.kind === 'verdict') {
        st.obs.push(step.observation);
        return [outcome(st, 1, { verdict: step.verdict })];
      }
      if (step.kind === 'none') {
        if (ctx.hook === 'output') {
          const filter = await chain('filter', 'OUTPUT', st);
          if (filter.kind === 'verdict') return [outcome(st, 1, { verdict: filter.verdict })];
        }
        return [outcome(st, 1)];
      }
      const out: LbOutcome[] = [];
      for (const c of step.choices) {
        const s: EvalState = { ...st, pkt: c.observation.packet, obs: [...st.obs, c.observation] };
        const base = { endpoint: c.endpoint, ...(step.service ? { service: step.service } : {}) };
        // IPVS sends the DNATed packet through LOCAL_OUT (filter OUTPUT), unless a local real
        // server takes it straight from LOCAL_IN.
        if (ctx.hook === 'output' || !ctx.isLocal(c.endpoint.ip)) {
          const filter = await chain('filter', 'OUTPUT', s);
          if (filter.kind === 'verdict') {
            out.push(outcome(s, c.probability, { ...base, verdict: filter.verdict }));
            continue;
          }
        }
        out.push(outcome(s, c.probability, base));
      }
      return out;
    },

    async snat(input: Packet, masqueradeMark: boolean, ctx: SnatContext): Promise<SnatOutcome> {
      const st: EvalState = { node: ctx.node, pkt: canonical(input), mark: masqueradeMark ? MASQUERADE_MARK : 0, obs: [], masqueraded: false, outAddress: ctx.outAddress };
      // A foreign rule here is reported as a foreign observation (SnatOutcome has no verdict).
      await chain('nat', 'POSTROUTING', st);
      return { observations: st.obs, packet: st.pkt, masqueraded: st.masqueraded };
    },
  };
}

// ---- a view over the planner's output (table tests, offline explain)

export interface PlanIpvsView extends IpvsView {
  /** The node's local addresses as the plan makes them: the VIPs on podnet-ipvs0 and the node IPs. */
  localAddresses: string[];
}

/**
 * An IpvsView of what the IPVS planner would program for one snapshot: its virtual servers,
 * set members and iptables rules (planRules with every jump, as after a first full sync).
 * `iptables` replaces the rules with iptables-save text (e.g. how the kernel prints them).
 */
/** Virtual server id (`TCP 10.96.0.10:80`) -> the Service that defines it (the first port key, as PlanIndex.state()). */
function originsOf(index: PlanIndex, snapshot: ProxySnapshot): Map<string, Origin[]> {
  const origins = new Map<string, Origin[]>();
  for (const portKey of [...index.keys()].sort()) {
    const sp = snapshot.services.get(portKey.slice(portKey.indexOf('/') + 1));
    if (!sp) continue;
    for (const vs of index.get(portKey)?.virtualServers ?? []) if (!origins.has(vs.id)) origins.set(vs.id, [{ kind: 'Service', namespace: sp.namespace, name: sp.name }]);
  }
  return origins;
}

export function planIpvsView(snapshot: ProxySnapshot, opts: { iptables?: string } = {}): PlanIpvsView {
  const index = planSnapshots([snapshot]);
  const state = index.state();
  const origins = originsOf(index, snapshot);
  const services = new Map<string, IpvsViewService>();
  for (const vs of state.virtualServers.values()) {
    const destinations = vs.realServers.map((r) => ({ ip: r.address, port: r.port, weight: r.weight }));
    const origin = origins.get(vs.id);
    services.set(`${vs.protocol} ${vs.address} ${vs.port}`, {
      scheduler: vs.scheduler,
      ...(vs.persistentTimeout !== undefined ? { persistentTimeout: vs.persistentTimeout } : {}),
      destinations,
      text: ipvsadmText({ protocol: vs.protocol, address: vs.address, port: vs.port, scheduler: vs.scheduler, persistentTimeout: vs.persistentTimeout, destinations }),
      ...(origin ? { origin } : {}),
    });
  }
  const tables = chainsFromSave(opts.iptables ?? planRules(snapshot.family, snapshot.node, missingJumps('')));
  return {
    localAddresses: [...new Set([...state.vips, ...snapshot.node.nodeIPs.map((ip) => parseIP(ip))])].sort(),
    service: async (proto, addr, port) => (isIP(addr) ? services.get(`${proto} ${parseIP(addr)} ${port}`) : undefined),
    rules: async (table, name) => {
      const c = tables.get(table)?.get(name);
      return c ? [...c] : undefined;
    },
    ipsetTest: async (set, entry) => state.sets.get(set)?.has(entry) ?? false,
  };
}

// ---- the kernel's view (the local network namespace)

export interface IpvsConnectionRow {
  protocol: string;
  client: string;
  clientPort: number;
  virtual: string;
  virtualPort: number;
  dest: string;
  destPort: number;
  state: string;
  /** Seconds left. */
  expires: number;
  /** The line as the kernel printed it. */
  text: string;
}

function procAddr(s: string): string | undefined {
  if (/^[0-9A-Fa-f]{8}$/.test(s)) {
    const n = parseInt(s, 16);
    return [24, 16, 8, 0].map((sh) => (n >>> sh) & 0xff).join('.');
  }
  return isIP(s) === 6 ? parseIP(s) : undefined;
}

/**
 * /proc/net/ip_vs_conn: `Pro FromIP FPrt ToIP TPrt DestIP DPrt State Expires [PEName PEData]`;
 * IPv4 addresses as 8 hex digits (host order of the number, i.e. 0A60000A = 10.96.0.10),
 * IPv6 ones as 8 colon-separated groups, ports as 4 hex digits. Persistence templates have
 * client port 0.
 */
export function parseIpvsConnections(text: string): IpvsConnectionRow[] {
  const out: IpvsConnectionRow[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 9 || f[0] === 'Pro') continue;
    const [protocol, ca, cp, va, vp, da, dp, state, exp] = f as [string, string, string, string, string, string, string, string, string];
    const client = procAddr(ca);
    const virtual = procAddr(va);
    const dest = procAddr(da);
    if (!client || !virtual || !dest || ![cp, vp, dp].every((p) => /^[0-9A-Fa-f]{4}$/.test(p))) continue;
    out.push({ protocol, client, clientPort: parseInt(cp, 16), virtual, virtualPort: parseInt(vp, 16), dest, destPort: parseInt(dp, 16), state, expires: Number(exp) || 0, text: line.trimEnd() });
  }
  return out;
}

export interface KernelIpvsViewOptions {
  family: Family;
  /**
   * The proxy's snapshot of this family, when the caller has it (the agent does): names the
   * Service of each virtual server (`origin`), which the kernel does not know.
   */
  snapshot?: ProxySnapshot;
}

/**
 * The IPVS mode's state in the current network namespace, read once per view (every answer
 * is cached: make a view per trace):
 * - virtual servers through the generic netlink client (src/kernel/ipvs.ts): one GET_SERVICE
 *   for the service (`ipvsadm -Ln -t ADDR:PORT`), then a GET_DEST dump of its real servers,
 *   on a socket opened for the lookup and closed after it (a view holds nothing open);
 * - chains through `iptables-save -t TABLE` / `ip6tables-save` (the binaries
 *   src/kernel/iptables.ts runs; iptables-legacy where `iptables` is legacy, as in the UML
 *   guest), one call per table, split into `iptables -S CHAIN` form;
 * - `ipset test SET ENTRY` per question;
 * - connections from /proc/net/ip_vs_conn (this namespace's).
 * PODNET_UNSUPPORTED from service() when the kernel has no IPVS.
 */
export function kernelIpvsView(o: KernelIpvsViewOptions): IpvsView {
  const services = new Map<string, Promise<IpvsViewService | undefined>>();
  const tables = new Map<string, Promise<Map<string, string[]>>>();
  const tests = new Map<string, Promise<boolean>>();
  let conns: Promise<IpvsConnectionRow[]> | undefined;
  let origins: Map<string, Origin[]> | undefined;

  async function readService(protocol: IpvsProto, addr: string, port: number): Promise<IpvsViewService | undefined> {
    if (isIP(addr) !== o.family) return undefined;
    const id: IpvsServiceId = { family: o.family, protocol, address: parseIP(addr), port };
    const h = await Ipvs.open();
    try {
      const s = await h.getService(id);
      if (!s) return undefined;
      const dests = (await h.listDests(id)).sort(byAddressPort);
      const destinations: IpvsViewDestination[] = dests.map((d) => ({ ip: d.address, port: d.port, weight: d.weight, activeConns: d.activeConns, inactiveConns: d.inactiveConns, forward: d.forward }));
      const persistentTimeout = s.persistent ? s.timeout : undefined;
      if (o.snapshot && !origins) origins = originsOf(planSnapshots([o.snapshot]), o.snapshot);
      const origin = origins?.get(vsId(protocol, s.address, s.port));
      return {
        scheduler: s.scheduler,
        ...(persistentTimeout !== undefined ? { persistentTimeout } : {}),
        destinations,
        text: ipvsadmText({ protocol, address: s.address, port: s.port, scheduler: s.scheduler, persistentTimeout, netmask: s.netmask, destinations }),
        ...(origin ? { origin } : {}),
      };
    } finally {
      h.close();
    }
  }

  async function readTable(table: 'nat' | 'filter'): Promise<Map<string, string[]>> {
    const text = await iptablesSave(o.family, table);
    return chainsFromSave(text).get(table) ?? new Map<string, string[]>();
  }

  async function test(set: string, entry: string): Promise<boolean> {
    const r = await execa('ipset', ['test', set, entry], { reject: false, timeout: 10_000 });
    if (r.exitCode === 0) return true;
    const msg = `${String(r.stderr)}${String(r.stdout)}`;
    if (/is NOT in set/.test(msg)) return false;
    throw new PodnetError(ErrorCodes.EXEC, `ipset test ${set} ${entry} failed: ${msg.trim() || `exit ${r.exitCode}`}`, { tool: 'ipset', set, entry });
  }

  async function readConns(): Promise<IpvsConnectionRow[]> {
    try {
      return parseIpvsConnections(await readFile('/proc/net/ip_vs_conn', 'utf8')).filter((r) => isIP(r.client) === o.family);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return []; // no IPVS loaded: no connections
      throw e;
    }
  }

  const cached = <T>(m: Map<string, Promise<T>>, key: string, make: () => Promise<T>): Promise<T> => {
    let p = m.get(key);
    if (!p) m.set(key, (p = make()));
    return p;
  };

  return {
    service: (proto, addr, port) => cached(services, `${proto} ${addr} ${port}`, () => readService(proto, addr, port)),
    rules: async (table, name) => {
      const c = (await cached(tables, table, () => readTable(table))).get(name);
      return c ? [...c] : undefined;
    },
    ipsetTest: (set, entry) => cached(tests, `${set} ${entry}`, () => test(set, entry)),
    async connection(pkt) {
      const proto = upper(pkt.proto);
      if (!proto || isIP(pkt.src) !== o.family || isIP(pkt.dst) !== o.family) return undefined;
      const rows = await (conns ??= readConns());
      const src = parseIP(pkt.src);
      const dst = parseIP(pkt.dst);
      const mine = rows.filter((r) => r.protocol === proto && r.client === src && r.virtual === dst);
      const exact = mine.find((r) => r.clientPort === pkt.sport && r.virtualPort === pkt.dport);
      if (exact) return { ip: exact.dest, port: exact.destPort, text: exact.text };
      const tpl = mine.find((r) => r.clientPort === 0 && (r.virtualPort === pkt.dport || r.virtualPort === 0));
      return tpl ? { ip: tpl.dest, port: tpl.destPort, text: tpl.text, template: true } : undefined;
    },
  };
}

/**
 * True when a rule line has a plain match that is false for the packet: `-p`, `--dport` /
 * `--sport` (a port or a range), `-d` / `-s` (an address or a prefix), each possibly negated.
 * Anything else may match: the rule is then reported as foreign, not guessed.
 */
export function cannotMatch(line: string, pkt: Packet): boolean {
  const t = line.trim().split(/\s+/);
  for (let i = 0; i < t.length; i++) {
    const neg = t[i] === '!';
    const k = neg ? t[++i] : t[i];
    const v = t[i + 1];
    if (v === undefined) break;
    let ok: boolean | undefined;
    if (k === '-p' || k === '--protocol') ok = v === pkt.proto || (v === 'icmpv6' && pkt.proto === 'icmp' && pkt.family === 6) || v === 'all';
    else if (k === '--dport' || k === '--destination-port' || k === '--sport' || k === '--source-port') {
      const port = k.includes('d') && !k.includes('source') ? pkt.dport : pkt.sport;
      const [a, b] = v.split(':').map(Number);
      ok = b === undefined ? port === a : port >= (a ?? 0) && port <= b;
      if (pkt.proto === 'icmp') ok = false;
    } else if (k === '-d' || k === '--destination' || k === '-s' || k === '--source') {
      const ip = k === '-d' || k === '--destination' ? pkt.dst : pkt.src;
      try {
        ok = Cidr.parse(v.includes('/') ? v : `${v}/${isIP(v) === 6 ? 128 : 32}`, 'rule', { strict: false }).contains(ip);
      } catch {
        ok = undefined;
      }
    }
    if (ok !== undefined && ok === neg) return true;
    if (ok !== undefined) i++;
  }
  return false;
}
