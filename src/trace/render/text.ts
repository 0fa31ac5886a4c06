/**
 * `podnet trace`'s text output: the request, every path's observations grouped by node, and
 * the verdict (plus, in live mode, what the probe saw). Pure: a `TraceResult` in, a string
 * out. ANSI colour only when asked; without it the output holds no escape sequence at all,
 * not even one smuggled in by a foreign rule's comment (control characters in the input are
 * shown as `\xNN`).
 *
 * The small formatters (addresses, NAT, transport, verdict) are exported for svg.ts.
 */
import type { Encapsulation, Observation, Packet, TracePath, TraceResult, Verdict } from '../types.js';

// ---------------------------------------------------------------------------------------
// Shared formatters
// ---------------------------------------------------------------------------------------

/** Control characters (C0 but tab/newline, DEL, C1) as `\xNN`; tabs as spaces. */
export function sanitize(s: string): string {
  return s
    .replace(/\t/g, ' ')
    .replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** A string's lines (split on newlines, each sanitized, trailing empty lines dropped). */
export function linesOf(s: string): string[] {
  const out = s.split(/\r?\n/).map(sanitize);
  while (out.length > 1 && out[out.length - 1]!.trim() === '') out.pop();
  return out;
}

/** One line: newlines become " / ". */
export function oneLine(s: string): string {
  return linesOf(s).join(' / ');
}

/** `10.0.0.1:80`, `[fd00::1]:80`; without the port for ICMP. */
export function addrPort(ip: string, port: number, proto: Packet['proto']): string {
  if (proto === 'icmp') return ip;
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** `tcp 10.244.1.5:40000 → 10.96.0.10:80`, `icmp 10.244.1.5 → 10.96.0.10 (echo id 7)`. */
export function packetTuple(p: Packet): string {
  const s = `${p.proto} ${addrPort(p.src, p.sport, p.proto)} → ${addrPort(p.dst, p.dport, p.proto)}`;
  return p.proto === 'icmp' && p.sport ? `${s} (echo id ${p.sport})` : s;
}

/** `33.3%`, `50%`, `100%`, `0.0015%`. */
export function percent(p: number): string {
  const v = p * 100;
  if (v > 0 && v < 0.1) return `${Number(v.toPrecision(2))}%`;
  const s = v.toFixed(1);
  return `${s.endsWith('.0') ? s.slice(0, -2) : s}%`;
}

export interface PacketChange {
  /** DNAT (destination), SNAT / masquerade (source), or another field that changed. */
  kind: 'DNAT' | 'SNAT' | 'masquerade' | 'proto' | 'size' | 'family';
  from: string;
  to: string;
}

/** What changed between the packet before a hop and after it. */
export function packetChanges(before: Packet, after: Packet, action: string): PacketChange[] {
  const out: PacketChange[] = [];
  if (before.family !== after.family) out.push({ kind: 'family', from: `IPv${before.family}`, to: `IPv${after.family}` });
  if (before.proto !== after.proto) out.push({ kind: 'proto', from: before.proto, to: after.proto });
  const portless = before.proto === 'icmp' && after.proto === 'icmp';
  if (before.dst !== after.dst || (!portless && before.dport !== after.dport)) {
    out.push({ kind: 'DNAT', from: addrPort(before.dst, before.dport, before.proto), to: addrPort(after.dst, after.dport, after.proto) });
  }
  if (before.src !== after.src || (!portless && before.sport !== after.sport)) {
    out.push({
      kind: /masq/i.test(action) ? 'masquerade' : 'SNAT',
      from: addrPort(before.src, before.sport, before.proto),
      to: addrPort(after.src, after.sport, after.proto),
    });
  }
  if (before.size !== after.size) out.push({ kind: 'size', from: `${before.size}`, to: `${after.size} bytes` });
  return out;
}

/** `10.96.0.10:80 → 10.244.2.5:8080 (DNAT)`. */
export function changeText(c: PacketChange): string {
  switch (c.kind) {
    case 'DNAT':
    case 'SNAT':
    case 'masquerade':
      return `${c.from} → ${c.to} (${c.kind})`;
    default:
      return `${c.kind} ${c.from} → ${c.to}`;
  }
}

/** Every transport detail in one line, in the backend's own words. */
export function transportText(e: Encapsulation, size?: number): string {
  const parts: string[] = [];
  switch (e.backend) {
    case 'vxlan':
      if (e.vni !== undefined) parts.push(`VNI ${e.vni}`);
      if (e.outerSrc || e.outerDst) parts.push(`outer ${e.outerSrc ?? '?'} → ${e.outerDst ?? '?'}`);
      if (e.port !== undefined) parts.push(`UDP port ${e.port}`);
      if (e.nextHop) parts.push(`VTEP ${e.nextHop}`);
      if (e.mac) parts.push(`MAC ${e.mac}`);
      break;
    case 'udp':
      if (e.outerDst) parts.push(`peer ${e.outerDst}${e.port !== undefined ? `:${e.port}` : ''}`);
      else if (e.port !== undefined) parts.push(`UDP port ${e.port}`);
      if (e.outerSrc) parts.push(`from ${e.outerSrc}`);
      if (e.nextHop) parts.push(`next hop ${e.nextHop}`);
      break;
    case 'host-gw':
      if (e.nextHop) parts.push(`next hop ${e.nextHop}`);
      if (e.outerSrc || e.outerDst) parts.push(`${e.outerSrc ?? '?'} → ${e.outerDst ?? '?'}`);
      break;
  }
  parts.push(`MTU ${e.mtu}`);
  let s = `${e.backend} dev ${e.device}: ${parts.map(sanitize).join(', ')}`;
  if (size !== undefined && size > e.mtu) s += ` — packet of ${size} bytes exceeds the MTU`;
  return s;
}

/** The short label of a hop between nodes: `VXLAN VNI 1 198.18.0.1→198.18.0.2`. */
export function transportLabel(e: Encapsulation): string {
  const pair = e.outerSrc || e.outerDst ? `${e.outerSrc ?? '?'}→${e.outerDst ?? '?'}` : '';
  switch (e.backend) {
    case 'vxlan':
      return sanitize(['VXLAN', e.vni !== undefined ? `VNI ${e.vni}` : '', pair].filter(Boolean).join(' '));
    case 'udp':
      return sanitize(['UDP', pair ? `${pair}${e.port !== undefined ? `:${e.port}` : ''}` : e.port !== undefined ? `port ${e.port}` : ''].filter(Boolean).join(' '));
    case 'host-gw':
      return sanitize(`host-gw via ${e.nextHop ?? e.outerDst ?? '?'}`);
  }
  return sanitize(String((e as { backend: unknown }).backend));
}

/** `pod default/web-1 on n2`, `pod default/web-1`, `on n2`; '' when nothing is known. */
function endpointOwner(ep: NonNullable<TracePath['endpoint']>): string {
  if (ep.pod && ep.node) return `pod ${ep.pod} on ${ep.node}`;
  if (ep.pod) return `pod ${ep.pod}`;
  if (ep.node) return `on ${ep.node}`;
  return '';
}

/** `10.244.2.5:8080 (pod default/web-1 on n2)`. */
export function endpointText(ep: NonNullable<TracePath['endpoint']>, proto: Packet['proto'] = 'tcp'): string {
  const owner = endpointOwner(ep);
  return sanitize(`${addrPort(ep.ip, ep.port, proto)}${owner ? ` (${owner})` : ''}`);
}

/** `path 2 of 3, probability 33.3%, endpoint 10.244.2.5:8080 (pod default/web-1 on n2)`. */
export function pathHeading(p: TracePath, k: number, n: number, proto: Packet['proto']): string {
  let s = `path ${k} of ${n}, probability ${percent(p.probability)}`;
  if (p.endpoint) s += `, endpoint ${endpointText(p.endpoint, proto)}`;
  return s;
}

/**
 * The verdict in one line:
 * `Delivered to pod default/web-1 on n2 (10.244.2.5:8080)`, `Dropped at <rule> on n1: why`,
 * `Rejected by <rule> on n1: why`, `ForwardedOutOfCluster from n1: why`, `Unknown on n1: why`.
 */
export function verdictLine(v: Verdict): string {
  const on = v.node ? ` on ${v.node}` : '';
  const why = v.reason ? `: ${oneLine(v.reason)}` : '';
  const at = v.at ? oneLine(v.at) : '';
  let s: string;
  switch (v.kind) {
    case 'Delivered': {
      const target = v.pod ? `pod ${v.pod}` : (v.address ?? 'the destination');
      const addr = v.pod && v.address ? ` (${v.address})` : '';
      s = `Delivered to ${target}${on}${addr}`;
      if (!v.pod && !v.address && v.reason) s += why;
      break;
    }
    case 'Dropped':
      s = `Dropped${at ? ` at ${at}` : ''}${on}${why}`;
      break;
    case 'Rejected':
      s = `Rejected${at ? ` by ${at}` : ''}${on}${why}`;
      break;
    case 'ForwardedOutOfCluster':
      s = `ForwardedOutOfCluster${v.node ? ` from ${v.node}` : ''}${at ? ` (${at})` : ''}${why}`;
      break;
    default:
      s = `${String(v.kind)}${at ? ` at ${at}` : ''}${on}${why}`;
  }
  return sanitize(s);
}

/** `Service default/web, EndpointSlice default/web-abc12`. */
export function originText(o: NonNullable<Observation['origin']>): string {
  return o.map((x) => sanitize(`${x.kind} ${x.namespace ? `${x.namespace}/` : ''}${x.name}`)).join(', ');
}

/** Observations grouped into runs on one node, in order. */
export function byNode(obs: Observation[]): { node: string; observations: Observation[] }[] {
  const out: { node: string; observations: Observation[] }[] = [];
  for (const o of obs) {
    const last = out[out.length - 1];
    if (last && last.node === o.node) last.observations.push(o);
    else out.push({ node: o.node, observations: [o] });
  }
  return out;
}

/** Deep equality of plain JSON values (key order ignored). */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => sameJson(x, b[i]));
  const ka = Object.keys(a).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
  const kb = Object.keys(b).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
  return ka.length === kb.length && ka.every((k) => sameJson((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/** How many leading observations every path shares. */
export function commonPrefix(paths: TracePath[]): number {
  if (paths.length < 2) return 0;
  const first = paths[0]!.observations;
  let n = 0;
  while (n < first.length && paths.every((p) => n < p.observations.length && sameJson(p.observations[n], first[n]))) n++;
  // A path that is nothing but the prefix would print an empty section: keep its last step.
  if (paths.some((p) => p.observations.length === n)) n = Math.max(0, n - 1);
  return n;
}

// ---------------------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------------------

const SGR = {
  reset: '\x1b[0m',
  bold: '\x1b[1m',
  dim: '\x1b[2m',
  red: '\x1b[31m',
  green: '\x1b[32m',
  yellow: '\x1b[33m',
  magenta: '\x1b[35m',
  cyan: '\x1b[36m',
} as const;
type Style = keyof typeof SGR;

const FAILING_ACTIONS = new Set(['Dropped', 'Rejected']);

/**
 * The trace for people:
 *
 * ```
 * trace default/client → 10.96.0.10:80 (tcp, explain)
 * packet tcp 10.244.1.5:40000 → 10.96.0.10:80, 64 bytes, IPv4; took 12 ms
 *
 *   node n1
 *     Netfilter/LB  DNAT          Service default/web chose endpoint 10.244.2.7:8080
 *                   rule:      meta l4proto tcp dnat ip to numgen random mod 65536 map @endpoints-… (where: ip podnet service-…)
 *                   from:      Service default/web, EndpointSlice default/web-x7k2p
 *                   nat:       10.96.0.10:80 → 10.244.2.7:8080 (DNAT)
 * ...
 * verdict: Delivered to pod default/web-2 on n2 (10.244.2.7:8080)
 * ```
 */
export function renderText(r: TraceResult, o: { color: boolean }): string {
  const paint = (s: string, ...styles: Style[]): string =>
    o.color && styles.length && s !== '' ? styles.map((x) => SGR[x]).join('') + s + SGR.reset : s;

  const all = r.paths.flatMap((p) => p.observations);
  const compW = Math.max(12, ...all.map((x) => oneLine(x.component).length));
  const actW = Math.max(12, ...all.map((x) => oneLine(x.action).length));
  const sub = ' '.repeat(2 + compW + 2);
  const label = (l: string): string => paint(l.padEnd(11), 'dim');

  const out: string[] = [];
  out.push(
    paint(`trace ${sanitize(r.from)} → ${sanitize(r.to)}`, 'bold') + ` (${r.packet.proto}, ${r.mode})`,
  );
  out.push(`packet ${sanitize(packetTuple(r.packet))}, ${r.packet.size} bytes, IPv${r.packet.family}; took ${r.tookMs} ms`);

  const verdictColour = (v: Verdict): Style => (v.kind === 'Delivered' ? 'green' : 'red');

  const observationLines = (x: Observation, before: Packet): string[] => {
    const lines: string[] = [];
    const tags: string[] = [];
    if (x.foreign) tags.push(paint("[foreign rule: not podnet's, not interpreted]", 'yellow', 'bold'));
    if (x.live) tags.push(paint('[kernel trace event]', 'magenta'));
    const detail = linesOf(x.detail);
    const action = oneLine(x.action).padEnd(actW);
    lines.push(
      '  ' +
        paint(oneLine(x.component).padEnd(compW), 'bold') +
        '  ' +
        (FAILING_ACTIONS.has(x.action) ? paint(action, 'red', 'bold') : paint(action, 'cyan')) +
        '  ' +
        [...tags, detail[0] ?? ''].filter((s) => s !== '').join(' '),
    );
    for (const d of detail.slice(1)) lines.push(sub + ' '.repeat(actW + 2) + d);
    if (x.rule !== undefined && x.rule !== '') {
      const rule = linesOf(x.rule);
      const place = x.where ? `(where: ${sanitize(x.where)})` : '';
      const where = place ? ' ' + paint(place, 'dim') : '';
      // A long rule and its place do not share a line: the place goes under the rule.
      if (rule.length === 1 && rule[0]!.length + place.length < 120) lines.push(sub + label('rule:') + rule[0] + where);
      else {
        lines.push(sub + label('rule:') + rule[0]);
        for (const l of rule.slice(1)) lines.push(sub + ' '.repeat(11) + l);
        if (where) lines.push(sub + ' '.repeat(11) + where.trimStart());
      }
    } else if (x.where) lines.push(sub + label('where:') + sanitize(x.where));
    if (x.origin && x.origin.length) lines.push(sub + label('from:') + originText(x.origin));
    for (const c of packetChanges(before, x.packet, x.action)) {
      const isNat = c.kind === 'DNAT' || c.kind === 'SNAT' || c.kind === 'masquerade';
      lines.push(sub + label(isNat ? 'nat:' : 'packet:') + paint(sanitize(changeText(c)), 'yellow'));
    }
    if (x.transport) lines.push(sub + label('transport:') + transportText(x.transport, x.packet.size));
    return lines;
  };

  /** Prints observations grouped by node; returns the packet after the last one. */
  const section = (obs: Observation[], before: Packet, indent: string): Packet => {
    let prev = before;
    for (const g of byNode(obs)) {
      out.push(indent + paint(`node ${oneLine(g.node)}`, 'bold'));
      for (const x of g.observations) {
        for (const l of observationLines(x, prev)) out.push(indent + l);
        prev = x.packet;
      }
    }
    return prev;
  };

  const n = r.paths.length;
  if (n === 0) {
    out.push('', 'no path: nothing was observed');
  } else if (n === 1) {
    out.push('');
    section(r.paths[0]!.observations, r.packet, '  ');
    const pv = r.paths[0]!.verdict;
    if (!sameJson(pv, r.verdict)) out.push('  → ' + paint(verdictLine(pv), verdictColour(pv)));
  } else {
    const k = commonPrefix(r.paths);
    let after = r.packet;
    if (k > 0) {
      out.push('', paint(`all ${n} paths`, 'bold'));
      after = section(r.paths[0]!.observations.slice(0, k), r.packet, '  ');
    }
    r.paths.forEach((p, i) => {
      out.push('', paint(pathHeading(p, i + 1, n, r.packet.proto), 'bold'));
      if (k > 0) out.push(paint(`  (after the ${k} common step${k === 1 ? '' : 's'} above)`, 'dim'));
      section(p.observations.slice(k), after, '  ');
      out.push('  → ' + paint(verdictLine(p.verdict), verdictColour(p.verdict)));
    });
  }

  out.push('');
  if (n > 1) {
    const ok = r.paths.filter((p) => p.verdict.kind === 'Delivered');
    const prob = ok.reduce((s, p) => s + p.probability, 0);
    out.push(`paths: ${ok.length} of ${n} delivered (probability ${percent(prob)})`);
  }
  out.push('verdict: ' + paint(verdictLine(r.verdict), verdictColour(r.verdict), 'bold'));
  if (r.probe) {
    const rtt = r.probe.rttMs !== undefined ? `, rtt ${r.probe.rttMs} ms` : '';
    out.push(`probe: ${sanitize(r.probe.result)}${rtt}`);
    const ct = r.probe.conntrack ?? [];
    if (ct.length === 0) out.push('conntrack: no entry');
    else {
      out.push('conntrack:');
      for (const e of ct) for (const l of linesOf(e)) out.push('  ' + l);
    }
  }
  return out.join('\n') + '\n';
}
