/**
 * The iptables interpreter as the iptables planner's test oracle: Services planned by
 * planIptables, loaded into an in-memory view (the restore text's `-A` lines per table, the
 * JUMPS as index.ts installs them, the ipsets' members), then table tests
 * `{from, to dst:port/proto, hook}` → `{verdict, endpoints with probabilities, masquerade}`.
 * The same table runs against testdata/iptables-kernel-ipv4.txt: the same plan as the
 * kernel prints it back (`iptables -S`, `ipset save`), so the interpreter is also checked
 * against the kernel's spelling of every rule shape.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { EndpointSlice, Service } from '../client/types.js';
import { endpointIP, syntheticSnapshot, vipOf } from '../proxy/iptables/fixtures.js';
import { JUMPS, jumpLine, planIptables, svcChain, type IptablesPlan } from '../proxy/iptables/plan.js';
import { buildSnapshot } from '../proxy/snapshot.js';
import type { ProxyNodeConfig, ProxySnapshot } from '../proxy/types.js';
import { createIptablesInterpreter, kernelIptablesView, unsupportedOptions, type CommandResult, type IptablesView, type IptablesViewTable } from './iptables.js';
import type { LbOutcome } from './lb.js';
import type { Packet, Proto } from './types.js';

// ---------------------------------------------------------------- in-memory views

const BUILTIN: Record<IptablesViewTable, string[]> = { nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'], filter: ['INPUT', 'FORWARD', 'OUTPUT'] };

/** A node's chains and sets in memory; `rules` answers as `iptables -S CHAIN` (with the -N / -P line). */
class MemView implements IptablesView {
  readonly chains = new Map<string, string[]>();
  readonly sets = new Map<string, Set<string>>();
  readonly reads: string[] = [];
  readonly tests: string[] = [];

  constructor() {
    for (const t of ['nat', 'filter'] as const) for (const c of BUILTIN[t]) this.chains.set(`${t} ${c}`, []);
  }

  rules(table: IptablesViewTable, chain: string): Promise<string[] | undefined> {
    this.reads.push(`${table} ${chain}`);
    const l = this.chains.get(`${table} ${chain}`);
    const head = BUILTIN[table].includes(chain) ? `-P ${chain} ACCEPT` : `-N ${chain}`;
    return Promise.resolve(l ? [head, ...l] : undefined);
  }

  ipsetTest(set: string, entry: string): Promise<boolean> {
    this.tests.push(`${set} ${entry}`);
    return Promise.resolve(this.sets.get(set)?.has(entry) ?? false);
  }

  /** Every rule line the view holds. */
  lines(): Set<string> {
    return new Set([...this.chains.values()].flat());
  }

  chain(table: IptablesViewTable, chain: string): string[] {
    const l = this.chains.get(`${table} ${chain}`);
    if (!l) throw new Error(`no chain ${table} ${chain}`);
    return l;
  }

  /** Loads `*table … COMMIT` sections of a restore input (`:C` declares = flushes, `-A` appends, `-X` deletes). */
  restore(text: string): this {
    let table: IptablesViewTable | undefined;
    for (const line of text.split('\n')) {
      if (line.startsWith('*')) table = line.slice(1) as IptablesViewTable;
      else if (!table || line === 'COMMIT' || line === '-S' || line === '' || line.startsWith('#')) continue;
      else if (line.startsWith(':')) this.chains.set(`${table} ${line.slice(1).split(' ')[0]}`, []);
      else if (line.startsWith('-X ')) this.chains.delete(`${table} ${line.slice(3)}`);
      else if (line.startsWith('-A ')) this.chain(table, line.split(' ')[1]!).push(line);
      else throw new Error(`unexpected restore line ${line}`);
    }
    return this;
  }
}

/** The plan applied as index.ts applies it: restore, sets filled, one jump inserted at the top of each built-in chain. */
function planView(plan: IptablesPlan): MemView {
  const v = new MemView().restore(plan.nat + plan.filter);
  for (const j of JUMPS) v.chain(j.table, j.chain).unshift(jumpLine(j));
  for (const s of plan.ipsets) v.sets.set(s.name, new Set(s.replace ?? []));
  return v;
}

/** A testdata dump: `*nat` / `*filter` sections of `iptables -S` output, `*ipset` of `ipset save`. */
function dumpView(file: string): MemView {
  const v = new MemView();
  let section = '';
  for (const line of readFileSync(new URL(`./testdata/${file}`, import.meta.url), 'utf8').split('\n')) {
    if (line.startsWith('#') || !line.trim()) continue;
    if (line.startsWith('*')) {
      section = line.slice(1);
      continue;
    }
    const [op, name, entry] = line.split(' ');
    if (section === 'ipset') {
      if (op === 'create') v.sets.set(name!, new Set());
      else if (op === 'add') v.sets.get(name!)!.add(entry!);
      continue;
    }
    const table = section as IptablesViewTable;
    if (op === '-P' || op === '-N') v.chains.set(`${table} ${name}`, v.chains.get(`${table} ${name}`) ?? []);
    else if (op === '-A') v.chain(table, name!).push(line);
  }
  return v;
}

// ---------------------------------------------------------------- scenarios

type Spec = NonNullable<Service['spec']>;
type Ep = { ip: string; node?: string; ready?: boolean; serving?: boolean; terminating?: boolean };

function svc(name: string, spec: Partial<Spec> & { clusterIP: string }, lbIP?: string): Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: 'default' },
    spec: { clusterIPs: [spec.clusterIP], ports: [{ name: 'http', port: 80 }], ...spec },
    ...(lbIP ? { status: { loadBalancer: { ingress: [{ ip: lbIP }] } } } : {}),
  };
}

function slice(service: string, eps: Ep[], ports: EndpointSlice['ports'] = [{ name: 'http', port: 8080, protocol: 'TCP' }], addressType: 'IPv4' | 'IPv6' = 'IPv4'): EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${service}-1`, namespace: 'default', labels: { 'kubernetes.io/service-name': service } },
    addressType,
    ports,
    endpoints: eps.map((e) => ({
      addresses: [e.ip],
      conditions: { ...(e.ready !== undefined ? { ready: e.ready } : {}), ...(e.serving !== undefined ? { serving: e.serving } : {}), ...(e.terminating !== undefined ? { terminating: e.terminating } : {}) },
      ...(e.node ? { nodeName: e.node } : {}),
    })),
  };
}

const NODE = '198.18.0.1';
const NODE6 = 'fd00:198:18::1';
const node4: ProxyNodeConfig = { nodeName: 'n1', family: 4, nodeIPs: [NODE], clusterCIDR: '10.244.0.0/16' };
const node6: ProxyNodeConfig = { nodeName: 'n1', family: 6, nodeIPs: [NODE6], clusterCIDR: 'fd00:10:244::/56' };

/**
 * The IPv4 kernel scenario: every feature at once (testdata/iptables-kernel-ipv4.txt is
 * this plan as the kernel prints it). Pods of n1 (this node) are 10.244.1.x, of n2 10.244.2.x.
 */
function scenario4(node: ProxyNodeConfig = node4): ProxySnapshot {
  const services = [
    svc('web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 'http' }, { name: 'https', port: 443, targetPort: 'https' }] }),
    svc('dns', { clusterIP: '10.96.0.53', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] }),
    svc('sig', { clusterIP: '10.96.0.60', ports: [{ name: 'sig', port: 3868, protocol: 'SCTP' }] }),
    svc('sticky', { clusterIP: '10.96.0.40', sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 300 } } }),
    svc('np', { clusterIP: '10.96.0.20', type: 'LoadBalancer', externalIPs: ['203.0.113.7'], ports: [{ name: 'http', port: 80, nodePort: 30080 }] }, '192.0.2.10'),
    svc('local', { clusterIP: '10.96.0.21', type: 'LoadBalancer', externalTrafficPolicy: 'Local', ports: [{ name: 'http', port: 80, nodePort: 30081 }] }, '192.0.2.11'),
    svc('remote', { clusterIP: '10.96.0.22', type: 'NodePort', externalTrafficPolicy: 'Local', externalIPs: ['203.0.113.8'], ports: [{ name: 'http', port: 80, nodePort: 30082 }] }),
    svc('itp', { clusterIP: '10.96.0.30', internalTrafficPolicy: 'Local' }),
    svc('itpnone', { clusterIP: '10.96.0.31', internalTrafficPolicy: 'Local' }),
    svc('term', { clusterIP: '10.96.0.50' }),
    svc('empty', { clusterIP: '10.96.0.70', type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30090 }, { name: 'dns', port: 53, protocol: 'UDP' }] }),
  ];
  const slices = [
    slice('web', [{ ip: '10.244.1.5', node: 'n1' }, { ip: '10.244.2.5', node: 'n2' }, { ip: '10.244.2.6', node: 'n2' }], [{ name: 'http', port: 8080, protocol: 'TCP' }, { name: 'https', port: 8443, protocol: 'TCP' }]),
    slice('dns', [{ ip: '10.244.2.53', node: 'n2' }], [{ name: 'dns', port: 5353, protocol: 'UDP' }]),
    slice('sig', [{ ip: '10.244.2.60', node: 'n2' }], [{ name: 'sig', port: 3868, protocol: 'SCTP' }]),
    slice('sticky', [{ ip: '10.244.1.20', node: 'n1' }, { ip: '10.244.2.20', node: 'n2' }]),
    slice('np', [{ ip: '10.244.1.7', node: 'n1' }, { ip: '10.244.2.7', node: 'n2' }]),
    slice('local', [{ ip: '10.244.1.8', node: 'n1' }, { ip: '10.244.2.8', node: 'n2' }]),
    slice('remote', [{ ip: '10.244.2.9', node: 'n2' }]),
    slice('itp', [{ ip: '10.244.1.30', node: 'n1' }, { ip: '10.244.2.30', node: 'n2' }]),
    slice('itpnone', [{ ip: '10.244.2.31', node: 'n2' }]),
    slice('term', [{ ip: '10.244.1.50', node: 'n1', ready: false, serving: true, terminating: true }, { ip: '10.244.1.51', node: 'n1', ready: false, serving: false, terminating: true }]),
  ];
  return buildSnapshot(services, slices, node);
}

/** The IPv6 kernel scenario (testdata/iptables-kernel-ipv6.txt), planned with 4 buckets. */
function scenario6(): ProxySnapshot {
  const s6 = (name: string, spec: Partial<Spec> & { clusterIP: string }) => svc(name, { ipFamilies: ['IPv6'], ...spec });
  const services = [s6('web', { clusterIP: 'fd00:10:96::a', type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }] }), s6('api', { clusterIP: 'fd00:10:96::b' }), s6('gone', { clusterIP: 'fd00:10:96::c' })];
  const http: EndpointSlice['ports'] = [{ name: 'http', port: 8080, protocol: 'TCP' }];
  const slices = [slice('web', [{ ip: 'fd00:10:244:1::5', node: 'n1' }, { ip: 'fd00:10:244:2::5', node: 'n2' }], http, 'IPv6'), slice('api', [{ ip: 'fd00:10:244:2::6', node: 'n2' }], http, 'IPv6')];
  return buildSnapshot(services, slices, node6);
}

// ---------------------------------------------------------------- tracing

type Hook = 'prerouting' | 'output';
type VerdictKind = 'pass' | 'Rejected' | 'Dropped' | 'Unknown';

interface Probe {
  from: string;
  to: string;
  port: number;
  proto?: Proto;
  hook?: Hook;
}

/** One outcome, summarised: endpoint `ip:port` ('none' without DNAT), probability, masqueraded after snat, verdict. */
interface Row {
  to: string;
  p: number;
  masq: boolean;
  /** 'pass' (no verdict: the packet goes on) or the verdict's kind. */
  verdict: string;
}

const local4 = new Set([NODE, '127.0.0.1']);
const local6 = new Set([NODE6, '::1']);

interface Traced {
  rows: Row[];
  outs: LbOutcome[];
  pkt: Packet;
}

async function trace(view: IptablesView, probe: Probe, node: ProxyNodeConfig = node4): Promise<Traced> {
  const family = node.family;
  const interp = createIptablesInterpreter(view, { family, nodeIPs: node.nodeIPs, ...(node.clusterCIDR ? { clusterCIDR: node.clusterCIDR } : {}) });
  expect(interp.mode).toBe('iptables');
  const pkt: Packet = { family, proto: probe.proto ?? 'tcp', src: probe.from, sport: 40000, dst: probe.to, dport: probe.port, size: 60 };
  const isLocal = (ip: string) => (family === 4 ? local4 : local6).has(ip);
  const outs = await interp.dnat(pkt, { node: 'n1', hook: probe.hook ?? 'prerouting', isLocal });
  // The outcomes of one call sum to 1.
  expect(Math.abs(outs.reduce((a, o) => a + o.probability, 0) - 1)).toBeLessThan(1e-12);
  const rows: Row[] = [];
  for (const o of outs) {
    expect(o.probability).toBeGreaterThan(0);
    for (const ob of o.observations) {
      expect(ob).toMatchObject({ node: 'n1', component: 'Netfilter/LB' });
      expect(['DNAT', 'Marked', 'Rejected', 'Dropped', 'Matched', 'Accepted']).toContain(ob.action);
    }
    let masq = false;
    if (!o.verdict) {
      const s = await interp.snat(o.packet, o.masqueradeMark, { node: 'n1', outAddress: family === 4 ? NODE : NODE6, original: pkt });
      masq = s.masqueraded;
      expect(masq).toBe(o.masqueradeMark);
      expect(s.packet.src).toBe(masq ? (family === 4 ? NODE : NODE6) : o.packet.src);
    }
    const to = o.endpoint ? (family === 4 ? `${o.endpoint.ip}:${o.endpoint.port}` : `[${o.endpoint.ip}]:${o.endpoint.port}`) : 'none';
    if (o.endpoint) expect(o.packet).toMatchObject({ dst: o.endpoint.ip, dport: o.endpoint.port });
    else expect(o.packet).toEqual(pkt);
    rows.push({ to, p: o.probability, masq, verdict: o.verdict?.kind ?? 'pass' });
  }
  return { rows, outs, pkt };
}

/** Rows compared exactly, probabilities within 1e-9. */
function expectRows(got: Row[], want: Row[]): void {
  const key = (r: Row) => `${r.verdict} ${r.to} masq=${r.masq}`;
  const sum = (rows: Row[]) => {
    const m = new Map<string, number>();
    for (const r of rows) m.set(key(r), (m.get(key(r)) ?? 0) + r.p);
    return m;
  };
  const g = sum(got);
  const w = sum(want);
  expect([...g.keys()].sort()).toEqual([...w.keys()].sort());
  for (const [k, p] of w) expect(Math.abs(g.get(k)! - p), k).toBeLessThan(1e-9);
}

const ep = (to: string, p: number, masq = false): Row => ({ to, p, masq, verdict: 'pass' });
const pass: Row = ep('none', 1);
const ended = (verdict: VerdictKind): Row => ({ to: 'none', p: 1, masq: false, verdict });

const POD = '10.244.1.100';
const OUTSIDE = '192.168.50.9';
const third = 1 / 3;

interface Case extends Probe {
  name: string;
  out: Row[];
  /** Rejected / Dropped: the verdict's rule must contain these. */
  at?: string[];
}

const cases4: Case[] = [
  { name: 'ClusterIP TCP, 3 endpoints: 1/3 each, not masqueraded', from: POD, to: '10.96.0.10', port: 80, out: [ep('10.244.1.5:8080', third), ep('10.244.2.5:8080', third), ep('10.244.2.6:8080', third)] },
  { name: 'second port, named targetPort: 443 → 8443', from: POD, to: '10.96.0.10', port: 443, out: [ep('10.244.1.5:8443', third), ep('10.244.2.5:8443', third), ep('10.244.2.6:8443', third)] },
  { name: 'ClusterIP UDP', from: POD, to: '10.96.0.53', port: 53, proto: 'udp', out: [ep('10.244.2.53:5353', 1)] },
  { name: 'ClusterIP SCTP', from: POD, to: '10.96.0.60', port: 3868, proto: 'sctp', out: [ep('10.244.2.60:3868', 1)] },
  { name: 'the UDP port of a TCP Service is not a service destination', from: POD, to: '10.96.0.10', port: 80, proto: 'udp', out: [pass] },
  { name: 'hairpin: a pod choosing itself is masqueraded, the others not', from: '10.244.1.5', to: '10.96.0.10', port: 80, out: [ep('10.244.1.5:8080', third, true), ep('10.244.2.5:8080', third), ep('10.244.2.6:8080', third)] },
  { name: 'off-cluster source to a ClusterIP: masqueraded', from: OUTSIDE, to: '10.96.0.10', port: 80, out: [ep('10.244.1.5:8080', third, true), ep('10.244.2.5:8080', third, true), ep('10.244.2.6:8080', third, true)] },
  { name: 'host process to a ClusterIP (output hook): masqueraded', from: NODE, to: '10.96.0.10', port: 80, hook: 'output', out: [ep('10.244.1.5:8080', third, true), ep('10.244.2.5:8080', third, true), ep('10.244.2.6:8080', third, true)] },
  { name: 'ClientIP affinity, a new client: the random choice', from: POD, to: '10.96.0.40', port: 80, out: [ep('10.244.1.20:8080', 0.5), ep('10.244.2.20:8080', 0.5)] },
  { name: 'NodePort (eTP Cluster) from outside: every endpoint, masqueraded', from: OUTSIDE, to: NODE, port: 30080, out: [ep('10.244.1.7:8080', 0.5, true), ep('10.244.2.7:8080', 0.5, true)] },
  { name: 'externalIP (eTP Cluster): masqueraded', from: OUTSIDE, to: '203.0.113.7', port: 80, out: [ep('10.244.1.7:8080', 0.5, true), ep('10.244.2.7:8080', 0.5, true)] },
  { name: 'LoadBalancer IP (eTP Cluster): masqueraded', from: OUTSIDE, to: '192.0.2.10', port: 80, out: [ep('10.244.1.7:8080', 0.5, true), ep('10.244.2.7:8080', 0.5, true)] },
  { name: 'LoadBalancer IP (eTP Cluster) from a pod: masqueraded too', from: POD, to: '192.0.2.10', port: 80, out: [ep('10.244.1.7:8080', 0.5, true), ep('10.244.2.7:8080', 0.5, true)] },
  { name: 'the ClusterIP of a NodePort Service from a pod: not masqueraded', from: POD, to: '10.96.0.20', port: 80, out: [ep('10.244.1.7:8080', 0.5), ep('10.244.2.7:8080', 0.5)] },
  { name: 'eTP Local NodePort from outside: the local endpoint only, source kept', from: OUTSIDE, to: NODE, port: 30081, out: [ep('10.244.1.8:8080', 1)] },
  { name: 'eTP Local LoadBalancer IP from outside: the local endpoint only, source kept', from: OUTSIDE, to: '192.0.2.11', port: 80, out: [ep('10.244.1.8:8080', 1)] },
  { name: 'eTP Local LoadBalancer IP from a pod: every endpoint, not masqueraded', from: POD, to: '192.0.2.11', port: 80, out: [ep('10.244.1.8:8080', 0.5), ep('10.244.2.8:8080', 0.5)] },
  { name: 'eTP Local NodePort from the node itself: every endpoint, masqueraded', from: NODE, to: NODE, port: 30081, hook: 'output', out: [ep('10.244.1.8:8080', 0.5, true), ep('10.244.2.8:8080', 0.5, true)] },
  { name: 'eTP Local without local endpoints: NodePort from outside dropped', from: OUTSIDE, to: NODE, port: 30082, out: [ended('Dropped')], at: ['-d 198.18.0.1/32', '--dport 30082', '-j DROP', 'default/remote:http has no local endpoints'] },
  { name: 'eTP Local without local endpoints: externalIP from outside dropped', from: OUTSIDE, to: '203.0.113.8', port: 80, out: [ended('Dropped')], at: ['-d 203.0.113.8/32', '-j DROP'] },
  { name: 'eTP Local without local endpoints: a pod still reaches the remote endpoint', from: POD, to: '203.0.113.8', port: 80, out: [ep('10.244.2.9:8080', 1)] },
  { name: 'eTP Local without local endpoints: the node itself too, masqueraded', from: NODE, to: NODE, port: 30082, hook: 'output', out: [ep('10.244.2.9:8080', 1, true)] },
  { name: 'eTP Local without local endpoints: its ClusterIP reaches every endpoint', from: POD, to: '10.96.0.22', port: 80, out: [ep('10.244.2.9:8080', 1)] },
  { name: 'iTP Local: the local endpoint only', from: POD, to: '10.96.0.30', port: 80, out: [ep('10.244.1.30:8080', 1)] },
  { name: 'iTP Local without a local endpoint: dropped', from: POD, to: '10.96.0.31', port: 80, out: [ended('Dropped')], at: ['-d 10.96.0.31/32', '-j DROP', 'default/itpnone:http has no local endpoints'] },
  { name: 'terminating endpoints: the serving one is used when none is ready', from: POD, to: '10.96.0.50', port: 80, out: [ep('10.244.1.50:8080', 1)] },
  { name: 'no endpoints, TCP: rejected with a reset', from: POD, to: '10.96.0.70', port: 80, out: [ended('Rejected')], at: ['-d 10.96.0.70/32', '--dport 80', '-j REJECT --reject-with tcp-reset', 'default/empty:http has no endpoints'] },
  { name: 'no endpoints, UDP: rejected (ICMP port unreachable)', from: POD, to: '10.96.0.70', port: 53, proto: 'udp', out: [ended('Rejected')], at: ['-p udp', '--dport 53', '-j REJECT', 'default/empty:dns has no endpoints'] },
  { name: 'no endpoints, NodePort from outside: rejected (filter INPUT)', from: OUTSIDE, to: NODE, port: 30090, out: [ended('Rejected')], at: ['-d 198.18.0.1/32', '--dport 30090', '-j REJECT --reject-with tcp-reset'] },
  { name: 'no endpoints, from the node itself: rejected (filter OUTPUT)', from: NODE, to: '10.96.0.70', port: 80, hook: 'output', out: [ended('Rejected')], at: ['-d 10.96.0.70/32', '-j REJECT --reject-with tcp-reset'] },
  { name: 'not a service: pod to pod passes untouched', from: POD, to: '10.244.2.5', port: 8080, out: [pass] },
  { name: 'not a service: a ClusterIP on a port it does not serve', from: POD, to: '10.96.0.10', port: 81, out: [pass] },
  { name: 'not a service: the node address on a port that is not a NodePort', from: OUTSIDE, to: NODE, port: 22, out: [pass] },
  { name: 'not a service: ICMP to a ClusterIP', from: POD, to: '10.96.0.10', port: 0, proto: 'icmp', out: [pass] },
];

for (const [name, makeView] of [
  ['planner output (restore text)', () => planView(planIptables({ snapshot: scenario4() }))],
  ['the kernel’s spelling (testdata/iptables-kernel-ipv4.txt)', () => dumpView('iptables-kernel-ipv4.txt')],
] as const) {
  describe(`iptables interpreter, IPv4 scenario: ${name}`, () => {
    for (const c of cases4) {
      it(c.name, async () => {
        const view = makeView();
        const { rows, outs } = await trace(view, c);
        expectRows(rows, c.out);
        for (const o of outs) {
          if (o.verdict?.kind === 'Rejected' || o.verdict?.kind === 'Dropped') {
            // The verdict names the rule exactly as the view holds it, and it is this Service's.
            expect(view.lines().has(o.verdict.at!)).toBe(true);
            for (const s of c.at ?? []) expect(o.verdict.at).toContain(s);
            const last = o.observations.at(-1)!;
            expect(last).toMatchObject({ action: o.verdict.kind, rule: o.verdict.at, where: 'filter PODNET-SERVICES' });
            expect(last.origin?.[0]).toMatchObject({ kind: 'Service', namespace: 'default' });
          }
          if (!o.endpoint && !o.verdict) expect(o.observations).toEqual([]);
        }
      });
    }

    it('the same outcomes from both spellings, observation for observation (actions, places, services)', async () => {
      const a = planView(planIptables({ snapshot: scenario4() }));
      const b = dumpView('iptables-kernel-ipv4.txt');
      for (const c of cases4) {
        const shape = (t: Traced) => t.outs.map((o) => ({ p: o.probability.toFixed(12), ep: o.endpoint, m: o.masqueradeMark, obs: o.observations.map((x) => [x.action, x.where, x.origin, x.packet]) }));
        expect(shape(await trace(b, c)), c.name).toEqual(shape(await trace(a, c)));
      }
    });
  });
}

describe('iptables interpreter: observations', () => {
  const plan = planIptables({ snapshot: scenario4() });
  const lineOf = (chain: string, has: string) => {
    // `chain` ending in '-' is a prefix (PODNET-SEP-).
    const l = (plan.nat + plan.filter).split('\n').filter((x) => x.startsWith(chain.endsWith('-') ? `-A ${chain}` : `-A ${chain} `) && x.includes(has));
    expect(l).toHaveLength(1);
    return l[0]!;
  };

  it('ClusterIP: the dispatch rule, then the DNAT, each with its exact rule, place and Service', async () => {
    const { outs } = await trace(planView(plan), { from: POD, to: '10.96.0.10', port: 80 });
    const web = { key: 'default/web:http', protocol: 'TCP' as const };
    const first = outs.find((o) => o.endpoint?.ip === '10.244.1.5')!;
    expect(first.service).toEqual([{ kind: 'Service', namespace: 'default', name: 'web' }]);
    expect(first.endpoint).toEqual({ ip: '10.244.1.5', port: 8080 });
    expect(first.masqueradeMark).toBe(false);
    expect(first.observations.map((o) => [o.action, o.where, o.rule])).toEqual([
      ['Matched', 'nat PODNET-SERVICES', lineOf('PODNET-SERVICES', '-d 10.96.0.10/32 -p tcp -m tcp --dport 80 ')],
      ['DNAT', expect.stringMatching(/^nat PODNET-SEP-/), lineOf('PODNET-SEP-', '--to-destination 10.244.1.5:8080')],
    ]);
    expect(first.observations[0]!.detail).toBe(`10.96.0.10:80/tcp is the cluster IP of Service default/web port http → ${svcChain(web)} (all its endpoints)`);
    expect(first.observations[0]!.packet.dst).toBe('10.96.0.10');
    expect(first.observations[1]!.detail).toMatch(/^10\.96\.0\.10:80\/tcp → endpoint 10\.244\.1\.5:8080 of Service default\/web port http \(chosen with probability 0\.333\)$/);
    expect(first.observations[1]!.packet).toMatchObject({ dst: '10.244.1.5', dport: 8080 });
    for (const o of first.observations) expect(o.origin).toEqual([{ kind: 'Service', namespace: 'default', name: 'web' }]);
  });

  it('hairpin: Marked by the endpoint chain\'s -s rule', async () => {
    const { outs } = await trace(planView(plan), { from: '10.244.1.5', to: '10.96.0.10', port: 80 });
    const self = outs.find((o) => o.endpoint?.ip === '10.244.1.5')!;
    const marked = self.observations.find((o) => o.action === 'Marked')!;
    expect(marked.rule).toBe(lineOf('PODNET-SEP-', '"default/web:http" -s 10.244.1.5/32 -j PODNET-MARK-MASQ'));
    expect(marked.detail).toMatch(/^hairpin: the client 10\.244\.1\.5 is the endpoint of Service default\/web port http/);
    const interp = createIptablesInterpreter(planView(plan), { family: 4, nodeIPs: [NODE] });
    const s = await interp.snat(self.packet, true, { node: 'n1', outAddress: NODE, original: { ...self.packet, dst: '10.96.0.10', dport: 80 } });
    expect(s.observations).toEqual([
      expect.objectContaining({ action: 'Masqueraded', where: 'nat PODNET-POSTROUTING', rule: '-A PODNET-POSTROUTING -m comment --comment "podnet service traffic requiring SNAT" -j MASQUERADE --random-fully' }),
    ]);
    expect(s.observations[0]!.detail).toContain('hairpin');
    expect(s.packet).toMatchObject({ src: NODE, dst: '10.244.1.5', dport: 8080 });
  });

  it('off-cluster source: Marked by the one cluster-CIDR rule of PODNET-SERVICES', async () => {
    const { outs } = await trace(planView(plan), { from: OUTSIDE, to: '10.96.0.10', port: 80 });
    for (const o of outs) {
      const m = o.observations.filter((x) => x.action === 'Marked');
      expect(m.map((x) => x.rule)).toEqual([lineOf('PODNET-SERVICES', '! -s 10.244.0.0/16 -m set --match-set PODNET-CLUSTER-IPS-4 dst,dst -j PODNET-MARK-MASQ')]);
      expect(m[0]!.detail).toContain('outside the cluster CIDR 10.244.0.0/16');
    }
  });

  it('ClientIP affinity: reported once per lookup, and the DNAT records the client', async () => {
    const { outs } = await trace(planView(plan), { from: POD, to: '10.96.0.40', port: 80 });
    for (const o of outs) {
      const aff = o.observations.filter((x) => x.detail.includes('has ClientIP affinity'));
      expect(aff).toHaveLength(1);
      expect(aff[0]!.rule).toMatch(/-m recent --name PODNET-SEP-\S+ --rcheck --seconds 300 --reap -j PODNET-SEP-/);
      expect(aff[0]!.detail).toContain('has ClientIP affinity (300 s): a new client (10.244.1.100)');
      expect(o.observations.at(-1)!.detail).toMatch(/recorded in recent list PODNET-SEP-\S+ for ClientIP affinity$/);
    }
  });

  it('eTP Local: the branches say why (pod short-circuit, local endpoints only)', async () => {
    const pod = await trace(planView(plan), { from: POD, to: '192.0.2.11', port: 80 });
    expect(pod.outs[0]!.observations.map((o) => o.detail)[1]).toBe(
      'source 10.244.1.100 is in the cluster CIDR 10.244.0.0/16 (a pod): it reaches every endpoint of Service default/local port http, not only this node\'s → ' + svcChain({ key: 'default/local:http', protocol: 'TCP' }) + ' (all its endpoints)',
    );
    const ext = await trace(planView(plan), { from: OUTSIDE, to: NODE, port: 30081 });
    expect(ext.outs[0]!.observations.map((o) => [o.action, o.where])).toEqual([
      ['Matched', 'nat PODNET-NODEPORTS'],
      ['Matched', expect.stringMatching(/^nat PODNET-EXT-/)],
      ['DNAT', expect.stringMatching(/^nat PODNET-SEP-/)],
    ]);
    expect(ext.outs[0]!.observations[0]!.detail).toMatch(/^198\.18\.0\.1:30081\/tcp is NodePort 30081 of Service default\/local port http on node address 198\.18\.0\.1 → PODNET-EXT-/);
    expect(ext.outs[0]!.observations[1]!.detail).toMatch(/externalTrafficPolicy Local: this node's endpoints only, the client's source address is kept → PODNET-SVL-/);
  });

  it('no endpoints: the verdict is the exact reject rule of the planner', async () => {
    const { outs } = await trace(planView(plan), { from: POD, to: '10.96.0.70', port: 80 });
    expect(outs).toHaveLength(1);
    expect(outs[0]!.verdict).toEqual({
      kind: 'Rejected',
      node: 'n1',
      at: '-A PODNET-SERVICES -m comment --comment "default/empty:http has no endpoints" -d 10.96.0.70/32 -p tcp -m tcp --dport 80 -j REJECT --reject-with tcp-reset',
      reason: 'Service default/empty port http has no endpoints: 10.96.0.70:80/tcp rejected with a TCP reset: connect() fails at once with ECONNREFUSED',
    });
    expect(outs[0]!.service).toEqual([{ kind: 'Service', namespace: 'default', name: 'empty' }]);
    expect(outs[0]!.endpoint).toBeUndefined();
  });

  it('non-service traffic costs one set lookup and reads only the chains on its way', async () => {
    const view = planView(plan);
    await trace(view, { from: POD, to: '10.244.2.5', port: 8080 });
    expect(view.tests).toEqual(['PODNET-SERVICE-IPS-4 10.244.2.5,tcp:8080']);
    expect(new Set(view.reads)).toEqual(new Set(['nat PREROUTING', 'nat PODNET-SERVICES', 'filter INPUT', 'filter FORWARD', 'filter PODNET-SERVICES', 'nat POSTROUTING', 'nat PODNET-POSTROUTING']));
    expect(view.reads).toHaveLength(7);
  });
});

describe('iptables interpreter: IPv6 (4 buckets)', () => {
  const cases6: Case[] = [
    { name: 'ClusterIP in bucket 2: half each', from: 'fd00:10:244:1::100', to: 'fd00:10:96::a', port: 80, out: [ep('[fd00:10:244:1::5]:8080', 0.5), ep('[fd00:10:244:2::5]:8080', 0.5)] },
    { name: 'ClusterIP in bucket 3', from: 'fd00:10:244:1::100', to: 'fd00:10:96::b', port: 80, out: [ep('[fd00:10:244:2::6]:8080', 1)] },
    { name: 'hairpin', from: 'fd00:10:244:2::6', to: 'fd00:10:96::b', port: 80, out: [ep('[fd00:10:244:2::6]:8080', 1, true)] },
    { name: 'NodePort from outside: masqueraded', from: '2001:db8::9', to: NODE6, port: 30080, out: [ep('[fd00:10:244:1::5]:8080', 0.5, true), ep('[fd00:10:244:2::5]:8080', 0.5, true)] },
    { name: 'off-cluster source to a ClusterIP: masqueraded', from: '2001:db8::9', to: 'fd00:10:96::a', port: 80, out: [ep('[fd00:10:244:1::5]:8080', 0.5, true), ep('[fd00:10:244:2::5]:8080', 0.5, true)] },
    { name: 'no endpoints: rejected', from: 'fd00:10:244:1::100', to: 'fd00:10:96::c', port: 80, out: [ended('Rejected')], at: ['-d fd00:10:96::c/128', '-j REJECT --reject-with tcp-reset'] },
    { name: 'not a service', from: 'fd00:10:244:1::100', to: 'fd00:10:244:2::6', port: 8080, out: [pass] },
  ];
  for (const [name, makeView] of [
    ['planner output', () => planView(planIptables({ snapshot: scenario6(), bucketBits: 2 }))],
    ['the kernel’s spelling (testdata/iptables-kernel-ipv6.txt)', () => dumpView('iptables-kernel-ipv6.txt')],
  ] as const) {
    for (const c of cases6) {
      it(`${name}: ${c.name}`, async () => {
        const view = makeView();
        const { rows, outs } = await trace(view, c, node6);
        expectRows(rows, c.out);
        for (const o of outs) if (o.verdict) for (const s of c.at ?? []) expect(o.verdict.at).toContain(s);
      });
    }
  }

  it('the bucket rule is walked: PODNET-SERVICES → PODNET-SERVICES-02 → SVC', async () => {
    const view = planView(planIptables({ snapshot: scenario6(), bucketBits: 2 }));
    await trace(view, { from: 'fd00:10:244:1::100', to: 'fd00:10:96::a', port: 80 }, node6);
    expect(view.reads).toContain('nat PODNET-SERVICES-02');
    expect(view.reads).not.toContain('nat PODNET-SERVICES-03');
    expect(view.tests[0]).toBe('PODNET-SERVICE-IPS-6 fd00:10:96::a,tcp:80');
  });

  it('a v4 packet to the v6 interpreter is a programming error', async () => {
    const interp = createIptablesInterpreter(new MemView(), { family: 6, nodeIPs: [] });
    await expect(interp.dnat({ family: 4, proto: 'tcp', src: POD, sport: 1, dst: '10.96.0.10', dport: 80, size: 60 }, { node: 'n1', hook: 'prerouting', isLocal: () => false })).rejects.toThrow(/IPv6 iptables interpreter was given an IPv4 packet/);
  });
});

describe('iptables interpreter: large-cluster mode (buckets, no comments on SVC/SEP rules)', () => {
  const plan = planIptables({ snapshot: syntheticSnapshot({ services: 200, endpoints: 6 }) });

  it('a VIP in a bucket: 6 endpoints, 1/6 each, the Service known from the dispatch rule', async () => {
    expect(plan.state.large).toBe(true);
    expect(plan.state.bucketBits).toBe(4);
    const i = 137;
    const { rows, outs } = await trace(planView(plan), { from: POD, to: vipOf(4, i), port: 80 });
    const eps = [0, 1, 2, 3, 4, 5].map((k) => endpointIP(4, i * 6 + k));
    expectRows(rows, eps.map((ip) => ep(`${ip}:8080`, 1 / 6)));
    for (const o of outs) {
      expect(o.service).toEqual([{ kind: 'Service', namespace: 'ns0', name: `svc${i}` }]);
      const dnat = o.observations.at(-1)!;
      expect(dnat.action).toBe('DNAT');
      expect(dnat.rule).not.toContain('--comment');
      expect(dnat.origin).toEqual([{ kind: 'Service', namespace: 'ns0', name: `svc${i}` }]);
      expect(dnat.detail).toContain(`of Service ns0/svc${i} port http`);
    }
  });

  it('IPv6 buckets (::K/::M)', async () => {
    const p6 = planIptables({ snapshot: syntheticSnapshot({ services: 200, endpoints: 2, family: 6 }) });
    const node = syntheticSnapshot({ services: 0, endpoints: 0, family: 6 }).node;
    const { rows } = await trace(planView(p6), { from: 'fd00:10:244::ffff', to: vipOf(6, 77), port: 80 }, node);
    expectRows(rows, [ep(`[${endpointIP(6, 154)}]:8080`, 0.5), ep(`[${endpointIP(6, 155)}]:8080`, 0.5)]);
  });
});

describe('iptables interpreter: NodePorts on every local address (no node IPs: -g PODNET-NODEPORTS)', () => {
  const node: ProxyNodeConfig = { ...node4, nodeIPs: [] };
  const plan = planIptables({ snapshot: scenario4(node) });

  it('the planner uses the goto and addrtype shapes', () => {
    expect(plan.nat).toContain('-m set ! --match-set PODNET-SERVICE-IPS-4 dst,dst -g PODNET-NODEPORTS');
    expect(plan.nat).toContain('-A PODNET-NODEPORTS -m addrtype ! --dst-type LOCAL -j RETURN');
  });

  const cases: Case[] = [
    { name: 'NodePort on a local address from outside', from: OUTSIDE, to: NODE, port: 30080, out: [ep('10.244.1.7:8080', 0.5, true), ep('10.244.2.7:8080', 0.5, true)] },
    { name: 'NodePort on a local address from a pod (eTP Cluster: masqueraded)', from: POD, to: NODE, port: 30080, out: [ep('10.244.1.7:8080', 0.5, true), ep('10.244.2.7:8080', 0.5, true)] },
    { name: 'not a NodePort on a local address', from: OUTSIDE, to: NODE, port: 22, out: [pass] },
    { name: 'not local: RETURN from PODNET-NODEPORTS ends PODNET-SERVICES (goto)', from: POD, to: '10.244.2.5', port: 8080, out: [pass] },
    { name: 'a ClusterIP still works', from: POD, to: '10.96.0.10', port: 80, out: [ep('10.244.1.5:8080', third), ep('10.244.2.5:8080', third), ep('10.244.2.6:8080', third)] },
    { name: 'no endpoints: the NodePort is rejected on any local address', from: OUTSIDE, to: NODE, port: 30090, out: [ended('Rejected')], at: ['-m addrtype --dst-type LOCAL', '--dport 30090', '-j REJECT'] },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const { rows, outs } = await trace(planView(plan), c, node);
      expectRows(rows, c.out);
      for (const o of outs) if (o.verdict) for (const s of c.at ?? []) expect(o.verdict.at).toContain(s);
    });
  }
});

describe('iptables interpreter: rules podnet did not write', () => {
  const plan = planIptables({ snapshot: scenario4() });
  const web = svcChain({ key: 'default/web:http', protocol: 'TCP' });

  it('a foreign rule before our jump that could match: Unknown, reported with its line', async () => {
    const view = planView(plan);
    const bad = '-A PREROUTING -p tcp -m tcp --dport 80 -j DOCKER';
    view.chain('nat', 'PREROUTING').unshift(bad);
    const { outs } = await trace(view, { from: POD, to: '10.96.0.10', port: 80 });
    expect(outs).toHaveLength(1);
    expect(outs[0]!.verdict).toEqual({ kind: 'Unknown', node: 'n1', at: bad, reason: "rule not written by podnet: it comes before podnet's jump in nat PREROUTING and could match the packet" });
    expect(outs[0]!.observations).toEqual([expect.objectContaining({ foreign: true, rule: bad, where: 'nat PREROUTING', action: 'Matched' })]);
    // Provably not for this packet (another port): ignored.
    const other = await trace(view, { from: POD, to: '10.96.0.10', port: 443 });
    expectRows(other.rows, [ep('10.244.1.5:8443', third), ep('10.244.2.5:8443', third), ep('10.244.2.6:8443', third)]);
  });

  it('foreign rules whose matches are provably false are skipped; an interface match cannot be proved false', async () => {
    const view = planView(plan);
    view.chain('nat', 'PREROUTING').unshift('-A PREROUTING -d 172.17.0.0/16 -j DOCKER', '-A PREROUTING -m addrtype --dst-type LOCAL -p udp -j DOCKER');
    expectRows((await trace(view, { from: POD, to: '10.96.0.10', port: 80 })).rows, [ep('10.244.1.5:8080', third), ep('10.244.2.5:8080', third), ep('10.244.2.6:8080', third)]);
    view.chain('nat', 'PREROUTING').unshift('-A PREROUTING -i docker0 -j RETURN');
    expectRows((await trace(view, { from: POD, to: '10.96.0.10', port: 80 })).rows, [ended('Unknown')]);
  });

  it('an option podnet never writes inside one of our chains stops exactly the paths that reach it', async () => {
    const view = planView(plan);
    const bad = `-A ${web} -m connlimit --connlimit-above 10 -j REJECT`;
    view.chain('nat', web).splice(1, 0, bad); // after the first endpoint's rule
    const { rows, outs } = await trace(view, { from: POD, to: '10.96.0.10', port: 80 });
    expectRows(rows, [ep('10.244.1.5:8080', third), { to: 'none', p: 1 - third, masq: false, verdict: 'Unknown' }]);
    const unknown = outs.find((o) => o.verdict)!;
    expect(unknown.verdict).toEqual({ kind: 'Unknown', node: 'n1', at: bad, reason: 'rule not written by podnet: -m connlimit, --connlimit-above 10 is not an option podnet writes' });
    expect(unknown.observations.at(-1)).toMatchObject({ foreign: true, rule: bad, where: `nat ${web}` });
  });

  it('a jump from our chain to a chain not ours: Unknown', async () => {
    const view = planView(plan);
    view.chain('nat', 'PODNET-SERVICES').unshift('-A PODNET-SERVICES -j KUBE-SERVICES');
    const { outs } = await trace(view, { from: POD, to: '10.244.2.5', port: 8080 });
    expect(outs.map((o) => o.verdict?.reason)).toEqual(['rule not written by podnet: target KUBE-SERVICES is not a podnet chain']);
  });

  it('a foreign rule in filter FORWARD before our jump: every DNATed path ends Unknown there', async () => {
    const view = planView(plan);
    view.chain('filter', 'FORWARD').unshift('-A FORWARD -o eth9 -j DROP');
    const { outs } = await trace(view, { from: POD, to: '10.96.0.10', port: 80 });
    expect(outs).toHaveLength(3);
    for (const o of outs) {
      expect(o.verdict?.kind).toBe('Unknown');
      expect(o.endpoint).toBeDefined();
      expect(o.observations.at(-1)).toMatchObject({ foreign: true, where: 'filter FORWARD', rule: '-A FORWARD -o eth9 -j DROP' });
    }
  });

  it('routing between nat and filter: INPUT for a local destination, FORWARD after DNAT to a pod, OUTPUT from the host', async () => {
    const view = planView(plan);
    const bad = '-A INPUT -m comment --comment "someone else" -j ACCEPT';
    view.chain('filter', 'INPUT').unshift(bad);
    const np = await trace(view, { from: OUTSIDE, to: NODE, port: 30090 });
    expect(np.outs.map((o) => [o.verdict?.kind, o.verdict?.at, o.observations.at(-1)?.where])).toEqual([['Unknown', bad, 'filter INPUT']]);
    // A NodePort DNATed to pods is routed by its new destination: FORWARD.
    expectRows((await trace(view, { from: OUTSIDE, to: NODE, port: 30080 })).rows, [ep('10.244.1.7:8080', 0.5, true), ep('10.244.2.7:8080', 0.5, true)]);
    expectRows((await trace(view, { from: NODE, to: '10.96.0.70', port: 80, hook: 'output' })).rows, [ended('Rejected')]);
  });

  it('our jump missing: nothing is load-balanced, and the trace says so', async () => {
    const view = planView(plan);
    view.chains.set('nat PREROUTING', []);
    const { rows, outs } = await trace(view, { from: POD, to: '10.96.0.10', port: 80 });
    expectRows(rows, [pass]);
    expect(outs[0]!.observations).toEqual([expect.objectContaining({ action: 'Matched', where: 'nat PREROUTING', detail: expect.stringContaining('nat PREROUTING has no jump to PODNET-SERVICES') })]);
  });

  it('a chain jumped to that does not exist (a sync in progress): Unknown', async () => {
    const view = planView(plan);
    view.chains.delete(`nat ${web}`);
    const { outs } = await trace(view, { from: POD, to: '10.96.0.10', port: 80 });
    expect(outs).toHaveLength(1);
    expect(outs[0]!.verdict?.kind).toBe('Unknown');
    expect(outs[0]!.verdict?.reason).toContain(`nat ${web} does not exist`);
  });

  it('postrouting: a foreign rule before our jump is reported, not interpreted', async () => {
    const view = planView(plan);
    view.chain('nat', 'POSTROUTING').unshift('-A POSTROUTING -o eth0 -j MASQUERADE');
    const interp = createIptablesInterpreter(view, { family: 4, nodeIPs: [NODE] });
    const pkt: Packet = { family: 4, proto: 'tcp', src: OUTSIDE, sport: 4000, dst: '10.244.2.5', dport: 8080, size: 60 };
    const s = await interp.snat(pkt, true, { node: 'n1', outAddress: NODE, original: pkt });
    expect(s.masqueraded).toBe(false);
    expect(s.packet).toEqual(pkt);
    expect(s.observations).toEqual([expect.objectContaining({ foreign: true, where: 'nat POSTROUTING', rule: '-A POSTROUTING -o eth0 -j MASQUERADE' })]);
  });
});

describe('iptables interpreter: snat', () => {
  const interp = createIptablesInterpreter(planView(planIptables({ snapshot: scenario4() })), { family: 4, nodeIPs: [NODE], clusterCIDR: '10.244.0.0/16' });
  const pkt: Packet = { family: 4, proto: 'tcp', src: OUTSIDE, sport: 4000, dst: '10.244.2.5', dport: 8080, size: 60 };

  it('marked: masqueraded to the outgoing address', async () => {
    const s = await interp.snat(pkt, true, { node: 'n1', outAddress: '198.18.0.7', original: { ...pkt, dst: '10.96.0.10', dport: 80 } });
    expect(s.masqueraded).toBe(true);
    expect(s.packet).toEqual({ ...pkt, src: '198.18.0.7' });
    expect(s.observations).toHaveLength(1);
    expect(s.observations[0]).toMatchObject({ node: 'n1', component: 'Netfilter/LB', action: 'Masqueraded', where: 'nat PODNET-POSTROUTING', packet: { ...pkt, src: '198.18.0.7' } });
    expect(s.observations[0]!.detail).toBe("source 192.168.50.9 → 198.18.0.7 (the packet carries podnet's masquerade mark 0x4000; --random-fully picks the source port)");
  });

  it('not marked: untouched, nothing to say', async () => {
    const s = await interp.snat(pkt, false, { node: 'n1', outAddress: '198.18.0.7', original: pkt });
    expect(s).toEqual({ observations: [], packet: pkt, masqueraded: false });
  });
});

describe('every rule line the planner writes is understood', () => {
  const golden = new URL('../proxy/iptables/__golden__/', import.meta.url);
  const lines = (text: string) => text.split('\n').filter((l) => l.startsWith('-A '));

  it('golden files, the IPv4/IPv6 scenarios, large-cluster and no-node-IP plans, and the kernel dumps', async () => {
    const { readdirSync } = await import('node:fs');
    const all: string[] = [];
    for (const f of readdirSync(golden)) all.push(...lines(readFileSync(new URL(f, golden), 'utf8')));
    for (const p of [
      planIptables({ snapshot: scenario4() }),
      planIptables({ snapshot: scenario4({ ...node4, nodeIPs: [] }) }),
      planIptables({ snapshot: scenario6(), bucketBits: 2 }),
      planIptables({ snapshot: syntheticSnapshot({ services: 200, endpoints: 6 }) }),
    ]) {
      all.push(...lines(p.nat + p.filter));
    }
    for (const f of ['iptables-kernel-ipv4.txt', 'iptables-kernel-ipv6.txt']) all.push(...lines(readFileSync(new URL(`./testdata/${f}`, import.meta.url), 'utf8')));
    all.push(...JUMPS.map(jumpLine));
    expect(all.length).toBeGreaterThan(1000);
    const bad = all.map((l) => [l, unsupportedOptions(l)] as const).filter(([, u]) => u.length);
    expect(bad).toEqual([]);
  });

  it('and what it does not write is named', () => {
    expect(unsupportedOptions('-A X -m connlimit --connlimit-above 10 -j REJECT')).toEqual(['-m connlimit', '--connlimit-above 10']);
    expect(unsupportedOptions('-A X -i eth0 -p tcp --syn -j LOG --log-prefix x')).toEqual(['--syn', '-i eth0', '-j LOG']);
    expect(unsupportedOptions('-A X -j DNAT --to-destination 10.0.0.1-10.0.0.3')).toEqual(['DNAT --to-destination 10.0.0.1-10.0.0.3', '-j DNAT']);
    expect(unsupportedOptions('-N X')).toEqual(['not a rule: -N X']);
  });
});

describe('kernelIptablesView', () => {
  function fake(answers: Record<string, Partial<CommandResult>>) {
    const calls: string[] = [];
    const run = (file: string, args: readonly string[]) => {
      const k = [file, ...args].join(' ');
      calls.push(k);
      const a = answers[k];
      if (!a) throw new Error(`unexpected command ${k}`);
      return Promise.resolve({ exitCode: 0, stdout: '', stderr: '', ...a });
    };
    return { calls, run };
  }

  it('iptables -w -t T -S CHAIN as an argument array, cached; a missing chain is undefined', async () => {
    const f = fake({
      'iptables -w -t nat -S PODNET-SERVICES': { stdout: '-N PODNET-SERVICES\n-A PODNET-SERVICES -j RETURN\n' },
      'iptables -w -t filter -S NOPE': { exitCode: 1, stderr: "iptables v1.8.9 (nf_tables): chain `NOPE' in table `filter' is incompatible, use 'nft' tool.\n" },
      'iptables -w -t nat -S OLD': { exitCode: 1, stderr: 'iptables: No chain/target/match by that name.\n' },
      'iptables -w -t nat -S BROKEN': { exitCode: 4, stderr: 'iptables: Permission denied (you must be root).\n' },
    });
    const v = kernelIptablesView({ family: 4, run: f.run });
    expect(await v.rules('nat', 'PODNET-SERVICES')).toEqual(['-N PODNET-SERVICES', '-A PODNET-SERVICES -j RETURN']);
    expect(await v.rules('nat', 'PODNET-SERVICES')).toEqual(['-N PODNET-SERVICES', '-A PODNET-SERVICES -j RETURN']);
    expect(await v.rules('filter', 'NOPE')).toBeUndefined();
    expect(await v.rules('nat', 'OLD')).toBeUndefined();
    await expect(v.rules('nat', 'BROKEN')).rejects.toThrow('iptables -t nat -S BROKEN failed: iptables: Permission denied (you must be root).');
    expect(f.calls.filter((c) => c.endsWith('PODNET-SERVICES'))).toHaveLength(1);
  });

  it('ip6tables for IPv6, nsenter for another netns; ipset test: 0 member, 1 "is NOT in set" not', async () => {
    const f = fake({
      'nsenter --net=/run/netns/x -- ip6tables -w -t nat -S PREROUTING': { stdout: '-P PREROUTING ACCEPT\n' },
      'nsenter --net=/run/netns/x -- ipset test PODNET-SERVICE-IPS-6 fd00:10:96::a,tcp:80': { stderr: 'Warning: fd00:10:96::a,tcp:80 is in set PODNET-SERVICE-IPS-6.' },
      'nsenter --net=/run/netns/x -- ipset test PODNET-SERVICE-IPS-6 fd00:10:96::b,tcp:80': { exitCode: 1, stderr: 'fd00:10:96::b,tcp:80 is NOT in set PODNET-SERVICE-IPS-6.' },
      'nsenter --net=/run/netns/x -- ipset test NOSET fd00:10:96::b,tcp:80': { exitCode: 1, stderr: 'ipset v7.17: The set with the given name does not exist' },
    });
    const v = kernelIptablesView({ family: 6, run: f.run, netns: '/run/netns/x' });
    expect(await v.rules('nat', 'PREROUTING')).toEqual(['-P PREROUTING ACCEPT']);
    expect(await v.ipsetTest('PODNET-SERVICE-IPS-6', 'fd00:10:96::a,tcp:80')).toBe(true);
    expect(await v.ipsetTest('PODNET-SERVICE-IPS-6', 'fd00:10:96::b,tcp:80')).toBe(false);
    expect(await v.ipsetTest('PODNET-SERVICE-IPS-6', 'fd00:10:96::b,tcp:80')).toBe(false);
    await expect(v.ipsetTest('NOSET', 'fd00:10:96::b,tcp:80')).rejects.toThrow(/does not exist/);
    expect(f.calls).toHaveLength(4);
  });

  it('drives the interpreter: a trace over the kernel view asks only for what the packet needs', async () => {
    const dump = dumpView('iptables-kernel-ipv4.txt');
    const calls: string[] = [];
    const run = async (file: string, args: readonly string[]): Promise<CommandResult> => {
      calls.push([file, ...args].join(' '));
      if (file === 'ipset') return (await dump.ipsetTest(args[1]!, args[2]!)) ? { exitCode: 0, stdout: '', stderr: '' } : { exitCode: 1, stdout: '', stderr: 'is NOT in set' };
      const lines = await dump.rules(args[2] as IptablesViewTable, args[4]!);
      return lines ? { exitCode: 0, stdout: lines.join('\n') + '\n', stderr: '' } : { exitCode: 1, stdout: '', stderr: 'incompatible' };
    };
    const { rows } = await trace(kernelIptablesView({ family: 4, run }), { from: POD, to: '10.96.0.10', port: 80 });
    expectRows(rows, [ep('10.244.1.5:8080', third), ep('10.244.2.5:8080', third), ep('10.244.2.6:8080', third)]);
    expect(calls.filter((c) => c.startsWith('ipset'))).toEqual(['ipset test PODNET-SERVICE-IPS-4 10.96.0.10,tcp:80']);
    expect(new Set(calls).size).toBe(calls.length); // cached: each chain listed once
    expect(calls.length).toBeLessThan(15);
  });
});
