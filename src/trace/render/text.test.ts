import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import type { TraceResult } from '../types.js';
import { addrPort, commonPrefix, packetTuple, percent, renderText, transportText, verdictLine } from './text.js';
import { ALL, FOREIGN_RULE, HOST_GW, REJECT_RULE, UDP, VXLAN, droppedAtRouting, explainThreePaths, liveUdp, nodePortHostGw, pkt, rejected, unknownForeign } from './testdata.js';

const plain = (r: TraceResult): string => renderText(r, { color: false });
const coloured = (r: TraceResult): string => renderText(r, { color: true });
// eslint-disable-next-line no-control-regex
const stripAnsi = (s: string): string => s.replace(/\x1b\[[0-9;]*m/g, '');
const lines = (s: string): string[] => s.split('\n');
const lastVerdict = (s: string): string => lines(s).find((l) => l.startsWith('verdict: '))!;

describe('renderText: header and verdict lines', () => {
  it('starts with the request, the mode and the packet 5-tuple', () => {
    const out = lines(plain(explainThreePaths()));
    expect(out[0]).toBe('trace default/client → 10.96.0.10:80 (tcp, explain)');
    expect(out[1]).toBe('packet tcp 10.244.1.5:40000 → 10.96.0.10:80, 60 bytes, IPv4; took 14 ms');
    expect(lines(plain(liveUdp()))[0]).toBe('trace default/client → svc/default/web:80 (tcp, live)');
  });

  it('ends with one verdict line per kind, in the documented words', () => {
    expect(lastVerdict(plain(liveUdp()))).toBe('verdict: Delivered to pod default/web-1 on n2 (10.244.2.5:8080)');
    expect(lastVerdict(plain(droppedAtRouting()))).toBe(
      "verdict: Dropped at unreachable 10.244.0.0/16 proto 222 on n1: no route to n3's pod subnet 10.244.3.0/24: n3 is not on-link (NotOnLink)",
    );
    expect(lastVerdict(plain(rejected()))).toBe(`verdict: Rejected by ${REJECT_RULE} on n1: Service default/empty has no endpoints: TCP reset`);
    expect(lastVerdict(plain(unknownForeign()))).toBe(
      'verdict: Unknown on n1: a rule podnet did not write matches the packet (filter FORWARD): not interpreted',
    );
    // Not live: no probe lines.
    expect(plain(rejected())).not.toMatch(/^probe:/m);
  });

  it('verdictLine covers the kinds and missing fields', () => {
    expect(verdictLine({ kind: 'ForwardedOutOfCluster', node: 'n1', at: 'default via 198.18.0.254 dev eth0', reason: '8.8.8.8 is outside the cluster' })).toBe(
      'ForwardedOutOfCluster from n1 (default via 198.18.0.254 dev eth0): 8.8.8.8 is outside the cluster',
    );
    expect(verdictLine({ kind: 'Delivered', node: 'n2', address: '198.18.0.2:10250', reason: 'a host process listens' })).toBe('Delivered to 198.18.0.2:10250 on n2');
    expect(verdictLine({ kind: 'Unknown', reason: 'n3 did not answer' })).toBe('Unknown: n3 did not answer');
    expect(verdictLine({ kind: 'Dropped', node: 'n2', reason: 'no local endpoints' })).toBe('Dropped on n2: no local endpoints');
  });

  it('prints the probe result and the conntrack entry in live mode, after the verdict', () => {
    const out = lines(plain(liveUdp()));
    const v = out.findIndex((l) => l.startsWith('verdict: '));
    expect(out[v + 1]).toBe('probe: connected, rtt 0.41 ms');
    expect(out[v + 2]).toBe('conntrack:');
    expect(out[v + 3]).toMatch(/^ {2}tcp +6 118 TIME_WAIT src=10\.244\.1\.5 dst=10\.96\.0\.10 .*\[ASSURED\]/);
    const none = liveUdp();
    none.probe = { result: 'timeout' };
    expect(plain(none)).toMatch(/^probe: timeout\nconntrack: no entry$/m);
  });
});

describe('renderText: observations', () => {
  it('groups observations by node, in order, one line each with component, action, detail', () => {
    const out = plain(liveUdp());
    const n1 = out.indexOf('  node n1\n');
    const n2 = out.indexOf('  node n2\n');
    expect(n1).toBeGreaterThan(0);
    expect(n2).toBeGreaterThan(n1);
    expect(out.match(/^ {2}node /gm)).toHaveLength(2);
    expect(out).toContain('\n    Transport     Encapsulated  sent to n2 (198.18.0.2)\n');
    expect(out).toContain('\n    Delivery      Delivered     pod default/web-1 eth0 (10.244.2.5)\n');
    // Observation order inside n1 is kept.
    const order = ['Source        Received', 'Netfilter/LB  DNAT', 'Routing       Routed', 'Transport     Encapsulated'].map((s) => out.indexOf(s));
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(order.every((i) => i > n1 && i < n2)).toBe(true);
  });

  it('shows the rule with where it lives, and the origin objects', () => {
    const out = plain(explainThreePaths());
    // Short: on one line; long: the place on the next line, under the rule.
    expect(out).toContain('rule:      10.244.2.0/24 via 10.244.2.0 dev podnet.1 onlink proto 222 (where: main)\n');
    expect(out).toContain(
      'rule:      meta l4proto tcp dnat ip to numgen random mod 65536 map @endpoints-CDGGSHYL-default/web/tcp/80\n' +
        ' '.repeat(29) +
        '(where: ip podnet service-CDGGSHYL-default/web/tcp/80)\n',
    );
    expect(out).toContain('from:      Service default/web, EndpointSlice default/web-x7k2p');
    expect(plain(rejected())).toContain(`rule:      ${REJECT_RULE}\n${' '.repeat(29)}(where: ip podnet filter-prerouting)\n`);
  });

  it('shows DNAT and masquerade as address changes, and nothing when the packet did not change', () => {
    const out = plain(explainThreePaths());
    expect(out).toContain('nat:       10.96.0.10:80 → 10.244.1.9:8080 (DNAT)');
    expect(out).toContain('nat:       10.96.0.10:80 → 10.244.2.5:8080 (DNAT)');
    expect(out).toContain('nat:       10.96.0.10:80 → 10.244.2.7:8080 (DNAT)');
    expect(out.match(/nat: /g)).toHaveLength(3);
    const np = plain(nodePortHostGw());
    expect(np).toContain('nat:       198.18.0.1:30080 → 10.244.2.5:8080 (DNAT)');
    expect(np).toContain('nat:       203.0.113.7:51000 → 198.18.0.1:51000 (masquerade)');
    expect(plain(droppedAtRouting())).not.toContain('nat:');
    // A source change by a rule that is not a masquerade is SNAT.
    const r = droppedAtRouting();
    r.paths[0]!.observations[1]!.packet = { ...r.packet, src: '198.18.0.9' };
    r.paths[0]!.observations[1]!.action = 'SNAT';
    expect(plain(r)).toContain('nat:       198.18.0.1:41000 → 198.18.0.9:41000 (SNAT)');
  });

  it('shows every transport detail: vxlan VNI, outer addresses, port, MAC, MTU; udp peer; host-gw next hop', () => {
    const vx = plain(explainThreePaths());
    expect(vx).toContain('transport: vxlan dev podnet.1: VNI 1, outer 198.18.0.1 → 198.18.0.2, UDP port 8472, VTEP 10.244.2.0, MAC 0a:58:c6:12:00:02, MTU 1450');
    expect(plain(liveUdp())).toContain('transport: udp dev podnet.udp: peer 198.18.0.2:8285, from 198.18.0.1, MTU 1472');
    expect(plain(nodePortHostGw())).toContain('transport: host-gw dev eth0: next hop 198.18.0.2, MTU 1500');
    expect(transportText(VXLAN, 1451)).toMatch(/MTU 1450 — packet of 1451 bytes exceeds the MTU$/);
    expect(transportText(UDP, 1472)).not.toContain('exceeds');
    expect(transportText(HOST_GW)).toBe('host-gw dev eth0: next hop 198.18.0.2, MTU 1500');
  });

  it('marks foreign rules and kernel trace events', () => {
    const out = plain(unknownForeign());
    const line = lines(out).find((l) => l.includes('Matched'))!;
    expect(line).toContain("[foreign rule: not podnet's, not interpreted]");
    expect(out.match(/\[foreign rule/g)).toHaveLength(1);
    const live = plain(liveUdp());
    expect(live.match(/\[kernel trace event\]/g)).toHaveLength(3);
    expect(lines(live).find((l) => l.includes('Netfilter/LB'))).toContain('[kernel trace event]');
    expect(lines(live).find((l) => l.includes('Encapsulated'))).not.toContain('[kernel trace event]');
    expect(plain(explainThreePaths())).not.toContain('[kernel trace event]');
  });

  it('prints multi-line rules on aligned continuation lines', () => {
    const r = rejected();
    r.paths[0]!.observations[1]!.rule = 'TCP  10.96.0.20:80 rr\n  -> 10.244.2.5:8080  Masq  1  0  0';
    const out = lines(plain(r));
    const i = out.findIndex((l) => l.includes('rule:      TCP  10.96.0.20:80 rr'));
    expect(i).toBeGreaterThan(0);
    expect(out[i + 1]).toBe(' '.repeat(29) + '  -> 10.244.2.5:8080  Masq  1  0  0');
    expect(out[i + 2]).toBe(' '.repeat(29) + '(where: ip podnet filter-prerouting)');
  });
});

describe('renderText: several paths', () => {
  it('prints each path with its probability and endpoint, the shared prefix once, and a summary', () => {
    const out = plain(explainThreePaths());
    expect(out).toContain('\npath 1 of 3, probability 33.3%, endpoint 10.244.1.9:8080 (pod default/web-0 on n1)\n');
    expect(out).toContain('\npath 2 of 3, probability 33.3%, endpoint 10.244.2.5:8080 (pod default/web-1 on n2)\n');
    expect(out).toContain('\npath 3 of 3, probability 33.3%, endpoint 10.244.2.7:8080 (pod default/web-2 on n2)\n');
    expect(out).toContain('\nall 3 paths\n');
    expect(out.match(/Source +Received/g)).toHaveLength(1);
    expect(out.match(/^ {2}→ Delivered to pod default\/web-\d on n\d/gm)).toHaveLength(3);
    expect(out).toContain('\npaths: 3 of 3 delivered (probability 100%)\n');
    expect(commonPrefix(explainThreePaths().paths)).toBe(1);
  });

  it('reports the failing path and the share of paths that deliver', () => {
    const r = explainThreePaths();
    const p = r.paths[2]!;
    p.verdict = { kind: 'Dropped', node: 'n2', at: 'drop comment "no local endpoints"', reason: 'no local endpoint' };
    r.verdict = p.verdict;
    const out = plain(r);
    expect(out).toContain('\n  → Dropped at drop comment "no local endpoints" on n2: no local endpoint\n');
    expect(out).toContain('\npaths: 2 of 3 delivered (probability 66.7%)\n');
    expect(lastVerdict(out)).toBe('verdict: Dropped at drop comment "no local endpoints" on n2: no local endpoint');
  });

  it('says so when there is no path at all', () => {
    const r = unknownForeign();
    r.paths = [];
    r.verdict = { kind: 'Unknown', reason: 'default/client does not exist' };
    const out = plain(r);
    expect(out).toContain('no path: nothing was observed');
    expect(lastVerdict(out)).toBe('verdict: Unknown: default/client does not exist');
  });
});

describe('renderText: colour', () => {
  for (const [name, f] of Object.entries(ALL)) {
    it(`${name}: no escape sequence without colour, the same text with it`, () => {
      const p = plain(f());
      expect(p).not.toMatch(/\x1b/);
      const c = coloured(f());
      expect(c).toMatch(/\x1b\[[0-9;]*m/);
      expect(stripAnsi(c)).toBe(p);
    });
  }

  it('colours the verdict green when delivered and red otherwise', () => {
    const green = lines(coloured(liveUdp())).find((l) => l.startsWith('verdict: '))!;
    expect(green).toBe('verdict: \x1b[32m\x1b[1mDelivered to pod default/web-1 on n2 (10.244.2.5:8080)\x1b[0m');
    for (const f of [droppedAtRouting, rejected, unknownForeign]) {
      const v = lines(coloured(f())).find((l) => l.startsWith('verdict: '))!;
      expect(v.startsWith('verdict: \x1b[31m')).toBe(true);
    }
  });

  it('never passes control characters through, not even from a foreign rule', () => {
    expect(FOREIGN_RULE).toContain('\x1b');
    const out = plain(unknownForeign());
    expect(out).toContain('--comment "\\x1b[31mblock <bad> & \'quote\'"');
    // eslint-disable-next-line no-control-regex
    expect(out).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f]/);
  });
});

describe('formatters', () => {
  it('formats addresses, tuples and probabilities', () => {
    expect(addrPort('fd00:10:96::a', 443, 'tcp')).toBe('[fd00:10:96::a]:443');
    expect(addrPort('10.96.0.10', 0, 'icmp')).toBe('10.96.0.10');
    expect(packetTuple(pkt({ proto: 'icmp', sport: 4711, dport: 0 }))).toBe('icmp 10.244.1.5 → 10.96.0.10 (echo id 4711)');
    expect(percent(1 / 3)).toBe('33.3%');
    expect(percent(0.5)).toBe('50%');
    expect(percent(1)).toBe('100%');
    expect(percent(1 / 65536)).toBe('0.0015%');
    expect(percent(0)).toBe('0%');
  });

  it('shows an IPv6 DNAT with bracketed addresses', () => {
    const r = rejected();
    const before = { ...r.packet, family: 6 as const, src: 'fd00:10:244:1::5', dst: 'fd00:10:96::a' };
    r.packet = before;
    r.paths[0]!.observations = [{ ...r.paths[0]!.observations[1]!, action: 'DNAT', packet: { ...before, dst: 'fd00:10:244:2::7', dport: 8080 } }];
    expect(plain(r)).toContain('nat:       [fd00:10:96::a]:80 → [fd00:10:244:2::7]:8080 (DNAT)');
  });
});

describe('docs/trace.md', () => {
  const doc = readFileSync(new URL('../../../docs/trace.md', import.meta.url), 'utf8');
  const blocks = (lang: string): string[] => [...doc.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)\\n```', 'g'))].map((m) => m[1]!);
  const documented = (field: string): boolean => doc.split('\n').some((l) => l.startsWith('| ') && l.split('|')[1]!.includes(`\`${field}\``));

  it('has a complete JSON example whose text rendering is the one shown', () => {
    const example = JSON.parse(blocks('json')[0]!) as TraceResult;
    expect(example.schema).toBe('podnet.trace/v1');
    const text = plain(example);
    expect(lastVerdict(text)).toBe('verdict: Delivered to pod default/web-2 on n2 (10.244.2.7:8080)');
    expect(text).toContain('nat:       10.96.0.10:80 → 10.244.2.7:8080 (DNAT)');
    expect(text).toContain('transport: vxlan dev podnet.1: VNI 1, outer 198.18.0.1 → 198.18.0.2, UDP port 8472, VTEP 10.244.2.0, MAC 0a:58:c6:12:00:02, MTU 1450');
    expect(blocks('text')[0]! + '\n').toBe(text);
  });

  it('documents every field of the example and of the result types', () => {
    const keys = new Set<string>();
    const walk = (v: unknown): void => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) keys.add(k), walk(x);
    };
    for (const b of blocks('json')) walk(JSON.parse(b));
    const types = readFileSync(new URL('../types.ts', import.meta.url), 'utf8');
    for (const name of ['TraceResult', 'TracePath', 'Observation', 'Packet', 'Encapsulation', 'Verdict', 'Origin']) {
      const body = new RegExp(`export interface ${name} \\{([\\s\\S]*?)\\n\\}`).exec(types)?.[1];
      expect(body, name).toBeDefined();
      for (const m of body!.matchAll(/^ {2}(\w+)\??:/gm)) keys.add(m[1]!);
    }
    expect(keys.size).toBeGreaterThan(30);
    expect([...keys].filter((k) => !documented(k))).toEqual([]);
  });
});
