/**
 * The CLI side of `podnet trace`: resolves `--from` / `--to` through the API, builds the
 * packet, then asks the node where the packet starts for its part, and each next node for
 * its part, following every outcome (every endpoint of a random choice) until each path ends
 * in a verdict. The nodes are asked over their agent endpoint; the CLI never enters another
 * host's namespaces. API access and the agent calls are injected (`TraceDeps`).
 */
import { isIP } from 'node:net';
import { randomInt } from 'node:crypto';
import type { EndpointSlice, Node, Pod, Service } from '../client/types.js';
import { Cidr, parseIP } from '../util/ipnet.js';
import { ErrorCodes, PodnetError } from '../util/errors.js';
import type { Directory, DirectoryNode } from './node.js';
import { MAX_HOPS } from './node.js';
import { makePacket, parseTarget } from './request.js';
const nm = (o: { metadata: { name?: string } }): string => o.metadata.name ?? '';
import type { LiveRequest, LiveStartAnswer, LiveProbeAnswer, LiveStopAnswer } from './live/agent.js';
import type { TraceEvent } from './live/nftrace.js';
import type { Ingress, NodeRequest, NodeStep, Observation, Packet, TracePath, TraceResult, Verdict } from './types.js';

export interface TraceDeps {
  nodes(): Promise<Node[]>;
  pods(): Promise<Pod[]>;
  services(): Promise<Service[]>;
  /** The EndpointSlices of a Service (label kubernetes.io/service-name): they name the endpoints' slices. */
  slices?(namespace: string, service: string): Promise<EndpointSlice[]>;
  /** One Service by name (undefined when missing); without it, services() is searched. */
  service?(namespace: string, name: string): Promise<Service | undefined>;
  /** POSTs a request to a node's agent (`path` /trace/explain or /trace/live). */
  ask(node: AgentAddress, path: string, body: NodeRequest & { directory: Directory }): Promise<NodeStep>;
  /** POSTs a live-trace phase (start / probe / stop) to a node's agent. */
  live(node: AgentAddress, body: LiveRequest): Promise<unknown>;
  /** Called once live tracing is installed: returns a function that stops it (Ctrl-C handling). */
  onInterrupt?(stop: () => Promise<void>): () => void;
}

export interface AgentAddress {
  name: string;
  url: string;
}

export interface TraceOptions {
  from: string;
  to: string;
  live?: boolean;
  srcPort?: number;
  /** IP packet size in bytes. */
  size?: number;
  /** Live: how long the probe waits, ms. */
  timeoutMs?: number;
}

const bad = (field: string, msg: string) => new PodnetError(ErrorCodes.INVALID_ARGUMENT, `${field}: ${msg}`, { field });

function inCidr(c: string, ip: string): boolean {
  try {
    return Cidr.parse(c, 'cidr', { strict: false }).contains(ip);
  } catch {
    return false;
  }
}

const addressesOf = (n: Node): string[] => (n.status?.addresses ?? []).filter((a) => a.type === 'InternalIP' || a.type === 'ExternalIP').map((a) => a.address);
const podCIDRsOf = (n: Node): string[] => n.spec?.podCIDRs ?? (n.spec?.podCIDR ? [n.spec.podCIDR] : []);
const podIPs = (p: Pod): string[] => (p.status?.podIPs?.map((x) => x.ip) ?? (p.status?.podIP ? [p.status.podIP] : [])).filter((x) => isIP(x));

/** The agent endpoint of a Node: its InternalIP and the port it published (daemonEndpoints). */
export function agentAddress(n: Node, defaultPort = 10260): AgentAddress {
  const ip = (n.status?.addresses ?? []).find((a) => a.type === 'InternalIP')?.address;
  if (!ip) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `node ${nm(n)} has no InternalIP address: its agent cannot be reached`);
  const port = n.status?.daemonEndpoints?.kubeletEndpoint?.Port ?? defaultPort;
  return { name: nm(n), url: `http://${isIP(ip) === 6 ? `[${ip}]` : ip}:${port}` };
}

interface Start {
  node: Node;
  ingress: Ingress;
  src: string;
  fromText: string;
}

/** Runs a trace. Throws PodnetError (INVALID_ARGUMENT) for bad or unknown input before asking any node. */
export async function runTrace(o: TraceOptions, deps: TraceDeps): Promise<TraceResult> {
  const t0 = performance.now();
  const target = parseTarget(o.to);
  // A Service by name needs only that Service; an address needs them all (is it a ClusterIP?).
  const byName = target.kind === 'service' && deps.service;
  const [nodes, pods, services] = await Promise.all([
    deps.nodes(),
    deps.pods(),
    byName ? deps.service!(target.namespace!, target.name!).then((s) => (s ? [s] : [])) : deps.services(),
  ]);
  if (o.srcPort !== undefined && (!Number.isInteger(o.srcPort) || o.srcPort < 1 || o.srcPort > 65535)) throw bad('--src-port', `${o.srcPort} is not a port (1-65535)`);
  if (o.size !== undefined && (!Number.isInteger(o.size) || o.size < 28 || o.size > 65535)) throw bad('--size', `${o.size} is not an IP packet size (28-65535 bytes)`);

  // ---- the destination
  let dst: string;
  let dport = target.port;
  if (target.kind === 'service') {
    const svc = services.find((s) => s.metadata.namespace === target.namespace && nm(s) === target.name);
    if (!svc) throw bad('--to', `Service ${target.namespace}/${target.name} not found`);
    const ips = (svc.spec?.clusterIPs ?? (svc.spec?.clusterIP ? [svc.spec.clusterIP] : [])).filter((x) => isIP(x));
    if (!ips.length) throw bad('--to', `Service ${target.namespace}/${target.name} has no ClusterIP (headless): trace a pod address instead`);
    const port = target.proto === 'icmp' ? { port: 0 } : (svc.spec?.ports ?? []).find((p) => (target.portName ? p.name === target.portName : p.port === target.port) && (p.protocol ?? 'TCP').toLowerCase() === target.proto);
    if (!port) throw bad('--to', `Service ${target.namespace}/${target.name} has no ${target.proto.toUpperCase()} port ${target.portName ?? target.port} (it serves ${(svc.spec?.ports ?? []).map((p) => `${p.name ? `${p.name}=` : ''}${p.port}/${(p.protocol ?? 'TCP').toLowerCase()}`).join(', ') || 'no ports'})`);
    dst = ips[0]!;
    dport = port.port;
  } else {
    dst = target.ip!;
    const svc = services.find((s) => (s.spec?.clusterIPs ?? [s.spec?.clusterIP]).includes(dst));
    if (svc && target.proto !== 'icmp') {
      const ok = (svc.spec?.ports ?? []).some((p) => p.port === dport && (p.protocol ?? 'TCP').toLowerCase() === target.proto);
      if (!ok) throw bad('--to', `${dst} is the ClusterIP of Service ${svc.metadata.namespace}/${nm(svc)}, which does not serve ${dport}/${target.proto} (it serves ${(svc.spec?.ports ?? []).map((p) => `${p.port}/${(p.protocol ?? 'TCP').toLowerCase()}`).join(', ')})`);
    }
  }
  const family = isIP(dst) === 6 ? 6 : 4;

  // ---- the source
  const start = resolveFrom(o.from, { nodes, pods, family, dst });
  const sport = target.proto === 'icmp' ? (o.srcPort ?? randomInt(1, 65535)) : (o.srcPort ?? randomInt(32768, 61000));
  const packet = makePacket({ src: start.src, dst, proto: target.proto, sport, dport: target.proto === 'icmp' ? 0 : dport, ...(o.size !== undefined ? { size: o.size } : {}) });

  const directory: Directory = {
    nodes: nodes.map((n): DirectoryNode => {
      const c = n.status?.conditions?.find((x) => x.type === 'PodnetTransport' && x.status === 'False');
      return { name: nm(n), addresses: addressesOf(n), podCIDRs: podCIDRsOf(n), ...(c ? { transportProblem: { reason: c.reason ?? '', message: c.message ?? '' } } : {}) };
    }),
    pods: pods.filter((p) => podIPs(p).length && !(p.spec?.hostNetwork ?? false)).map((p) => ({ namespace: p.metadata.namespace ?? 'default', name: nm(p), ips: podIPs(p), ...(p.spec?.nodeName ? { node: p.spec.nodeName } : {}) })),
  };
  const nodeByName = new Map(nodes.map((n) => [nm(n), n]));
  const path = '/trace/explain';

  // ---- follow the packet
  interface Pending {
    node: string;
    ingress: Ingress;
    packet: Packet;
    prob: number;
    obs: Observation[];
    endpoint?: TracePath['endpoint'];
    hops: number;
  }
  const paths: TracePath[] = [];
  const queue: Pending[] = [{ node: nm(start.node), ingress: start.ingress, packet, prob: 1, obs: [], hops: 0 }];
  while (queue.length) {
    const p = queue.shift()!;
    const n = nodeByName.get(p.node);
    if (!n) {
      paths.push({ probability: p.prob, ...(p.endpoint ? { endpoint: p.endpoint } : {}), observations: p.obs, verdict: { kind: 'Unknown', reason: `node ${p.node} is not in the API` } });
      continue;
    }
    let step: NodeStep;
    try {
      step = await deps.ask(agentAddress(n), path, { packet: p.packet, ingress: p.ingress, directory });
    } catch (e) {
      paths.push({ probability: p.prob, ...(p.endpoint ? { endpoint: p.endpoint } : {}), observations: p.obs, verdict: { kind: 'Unknown', node: p.node, reason: `could not ask the agent on node ${p.node}: ${e instanceof Error ? e.message : String(e)}` } });
      continue;
    }
    if (!step.outcomes.length) paths.push({ probability: p.prob, ...(p.endpoint ? { endpoint: p.endpoint } : {}), observations: p.obs, verdict: { kind: 'Unknown', node: p.node, reason: `node ${p.node} answered with no outcome` } });
    for (const out of step.outcomes) {
      const prob = p.prob * out.probability;
      const obs = [...p.obs, ...out.observations];
      const endpoint = out.endpoint ?? p.endpoint;
      if (out.next && !out.verdict) {
        if (p.hops + 1 >= MAX_HOPS) {
          paths.push({ probability: prob, ...(endpoint ? { endpoint } : {}), observations: obs, verdict: { kind: 'Unknown', node: p.node, reason: `more than ${MAX_HOPS} node hops: a routing loop?` } });
          continue;
        }
        queue.push({ node: out.next.node, ingress: out.next.ingress, packet: out.next.packet, prob, obs, ...(endpoint ? { endpoint } : {}), hops: p.hops + 1 });
      } else {
        paths.push({ probability: prob, ...(endpoint ? { endpoint } : {}), observations: obs, verdict: out.verdict ?? { kind: 'Unknown', node: p.node, reason: 'the node gave neither a verdict nor a next hop' } });
      }
    }
  }
  paths.sort((a, b) => b.probability - a.probability || (a.endpoint?.ip ?? '').localeCompare(b.endpoint?.ip ?? ''));
  await nameSlices(paths, deps);
  if (o.live) {
    const l = await liveTrace({ deps, start, packet, paths, byName: nodeByName, timeoutMs: o.timeoutMs ?? 1000 });
    return { schema: 'podnet.trace/v1', mode: 'live', from: start.fromText, to: o.to, packet, paths: [l.path], verdict: l.path.verdict, probe: l.probe, tookMs: Math.round(performance.now() - t0) };
  }
  return {
    schema: 'podnet.trace/v1',
    mode: 'explain',
    from: start.fromText,
    to: o.to,
    packet,
    paths,
    verdict: overall(paths),
    tookMs: Math.round(performance.now() - t0),
  };
}

/** Delivered only when every path delivers; otherwise the most likely path that does not. */
export function overall(paths: readonly TracePath[]): Verdict {
  if (!paths.length) return { kind: 'Unknown', reason: 'no path' };
  const bad = paths.filter((p) => p.verdict.kind !== 'Delivered');
  if (!bad.length) {
    if (paths.length === 1) return paths[0]!.verdict;
    const pods = [...new Set(paths.map((p) => p.verdict.pod ?? p.verdict.node ?? '?'))];
    return { kind: 'Delivered', reason: `delivered on every path: to one of ${pods.length} endpoints (${pods.join(', ')})`, ...(pods.length === 1 ? paths[0]!.verdict : {}) };
  }
  const worst = bad.sort((a, b) => b.probability - a.probability)[0]!;
  if (bad.length === paths.length) return worst.verdict;
  const share = bad.reduce((s, p) => s + p.probability, 0);
  return { ...worst.verdict, reason: `${worst.verdict.reason} (on ${(share * 100).toFixed(1)}% of the paths; the others deliver)` };
}

/** The DSCP value that marks live probes (CS5 would collide with real traffic; 0x2b is unassigned). */
export const LIVE_DSCP = 0x2b;

function randomId(): string {
  return randomInt(0, 2 ** 40).toString(36);
}

function resolveFrom(text: string, c: { nodes: Node[]; pods: Pod[]; family: 4 | 6; dst: string }): Start {
  const famIP = (ips: string[]) => ips.find((x) => isIP(x) === c.family);
  if (text.startsWith('node/')) {
    const name = text.slice(5);
    const n = c.nodes.find((x) => nm(x) === name);
    if (!n) throw bad('--from', `node ${name} not found`);
    const src = famIP(addressesOf(n));
    if (!src) throw bad('--from', `node ${name} has no IPv${c.family} address`);
    return { node: n, ingress: { kind: 'node' }, src, fromText: text };
  }
  if (isIP(text)) {
    const pod = c.pods.find((p) => podIPs(p).includes(text) && !(p.spec?.hostNetwork ?? false));
    if (pod) return fromPod(pod, c, text);
    const n = c.nodes.find((x) => addressesOf(x).includes(text));
    if (n && isIP(text) !== c.family) throw bad('--from', `${text} (node ${nm(n)}) is IPv${isIP(text)} but the destination ${c.dst} is IPv${c.family}`);
    if (n) return { node: n, ingress: { kind: 'node' }, src: text, fromText: `node/${nm(n)} (${text})` };
    if (c.nodes.some((x) => podCIDRsOf(x).some((cidr) => inCidr(cidr, text)))) throw bad('--from', `${text} is in a node's pod subnet but no pod has it`);
    if (isIP(text) !== c.family) throw bad('--from', `${text} is IPv${isIP(text)} but the destination ${c.dst} is IPv${c.family}`);
    // An outside client: it can only reach the cluster on a node's own address (NodePort).
    const entry = c.nodes.find((x) => addressesOf(x).includes(c.dst));
    if (!entry) throw bad('--from', `${text} is outside every known range (no pod, node or pod subnet has it); an outside client can only be traced to a node address (a NodePort), not to ${c.dst}`);
    return { node: entry, ingress: { kind: 'external' }, src: text, fromText: `${text} (outside the cluster)` };
  }
  const m = /^([a-z0-9][-a-z0-9.]*)\/([a-z0-9][-a-z0-9.]*)$/.exec(text);
  if (!m) throw bad('--from', `${JSON.stringify(text)} is not NAMESPACE/NAME (a pod), node/NAME or an IP address`);
  const pod = c.pods.find((p) => (p.metadata.namespace ?? 'default') === m[1] && nm(p) === m[2]);
  if (!pod) throw bad('--from', `pod ${text} not found`);
  return fromPod(pod, c, text);
}

function fromPod(pod: Pod, c: { nodes: Node[]; family: 4 | 6 }, text: string): Start {
  const id = `${pod.metadata.namespace ?? 'default'}/${nm(pod)}`;
  if (!pod.spec?.nodeName) throw bad('--from', `pod ${id} is not scheduled to a node yet`);
  const n = c.nodes.find((x) => nm(x) === pod.spec!.nodeName);
  if (!n) throw bad('--from', `pod ${id} runs on node ${pod.spec.nodeName}, which is not in the API`);
  const src = podIPs(pod).find((x) => isIP(x) === c.family);
  if (!src) throw bad('--from', `pod ${id} has no IPv${c.family} address yet`);
  if (pod.spec.hostNetwork) return { node: n, ingress: { kind: 'node' }, src, fromText: `${id} (host network)` };
  return { node: n, ingress: { kind: 'pod', namespace: pod.metadata.namespace ?? 'default', name: nm(pod) }, src, fromText: text };
}

// ---------------------------------------------------------------- live mode

const nodesOf = (paths: readonly TracePath[], first: string): string[] => [...new Set([first, ...paths.flatMap((p) => p.observations.map((x) => x.node))])];

/** The endpoint a conntrack line's reply direction names (`src=` of the reply tuple). */
export function conntrackEndpoint(line: string): { ip: string; port: number } | undefined {
  const src = [...line.matchAll(/\bsrc=(\S+)/g)].map((m) => m[1]!);
  const sport = [...line.matchAll(/\bsport=(\d+)/g)].map((m) => Number(m[1]));
  return src[1] && sport[1] !== undefined ? { ip: src[1], port: sport[1] } : undefined;
}

/**
 * The real server of an /proc/net/ip_vs_conn line (`TCP 0A000001 9C40 0A60000A 0050 0AF40205 1F90 SYN_RECV 57`:
 * DestIP and DPrt in hex; IPv6 addresses are printed as eight colon-separated groups).
 */
export function ipvsConnEndpoint(line: string): { ip: string; port: number } | undefined {
  const c = line.trim().split(/\s+/);
  const ip = c[5];
  const port = c[6];
  if (!ip || !port || !/^[0-9A-Fa-f]{1,4}$/.test(port)) return undefined;
  if (/^[0-9A-Fa-f]{8}$/.test(ip)) return { ip: [0, 2, 4, 6].map((i) => parseInt(ip.slice(i, i + 2), 16)).join('.'), port: parseInt(port, 16) };
  if (ip.includes(':') && isIP(ip) === 6) return { ip: parseIP(ip), port: parseInt(port, 16) };
  return undefined;
}

/** Kernel trace events as observations (our own trace table's events left out). */
export function eventObservations(node: string, events: readonly TraceEvent[], packet: Packet): Observation[] {
  const out: Observation[] = [];
  const seen = new Set<string>();
  for (const e of events) {
    if (e.table.startsWith('podnet-trace-')) continue;
    const where = `${e.family} ${e.table} ${e.chain}`;
    if (e.kind === 'packet') {
      if (seen.has(where)) continue;
      seen.add(where);
      const f = e.fields ?? {};
      const addr = (k: string) => f[`ip ${k}`] ?? f[`ip6 ${k}`];
      const dev = [f['iif'] ? `in ${f['iif'].replace(/"/g, '')}` : '', f['oif'] ? `out ${f['oif'].replace(/"/g, '')}` : ''].filter(Boolean).join(', ');
      out.push({ node, component: 'Netfilter/LB', action: 'Received', detail: `kernel trace: the probe entered ${where}${dev ? ` (${dev})` : ''}: ${addr('saddr') ?? '?'} → ${addr('daddr') ?? '?'}`, where, packet, live: true });
      continue;
    }
    const verdict = e.verdict ?? '';
    const action = e.kind === 'policy' ? (verdict === 'drop' ? 'Dropped' : 'Accepted') : e.kind === 'verdict' ? 'Returned' : 'Matched';
    const detail = e.kind === 'policy' ? `kernel trace: ${where} policy ${verdict}` : e.kind === 'verdict' ? `kernel trace: end of ${where}${verdict ? `, ${verdict}` : ''}` : `kernel trace: rule matched${verdict ? `, verdict ${verdict}` : ''}`;
    out.push({ node, component: 'Netfilter/LB', action, detail, ...(e.rule ? { rule: e.rule } : {}), where, packet, live: true });
  }
  return out;
}

interface LiveInput {
  deps: TraceDeps;
  start: Start;
  packet: Packet;
  paths: TracePath[];
  byName: Map<string, Node>;
  timeoutMs: number;
}

/**
 * Installs nftrace on every node the explained paths touch, sends the probe from the source,
 * collects the events and conntrack entries, and folds them into the explained path the
 * probe really took (the endpoint conntrack / IPVS names). Trace rules are removed in every
 * case: a stop goes to every node that started, also after an error or Ctrl-C.
 */
async function liveTrace(x: LiveInput): Promise<{ path: TracePath; probe: NonNullable<TraceResult['probe']> }> {
  const id = randomId();
  const involved = nodesOf(x.paths, nm(x.start.node)).map((n) => x.byName.get(n)).filter((n): n is Node => !!n);
  const started: AgentAddress[] = [];
  const stops = new Map<string, LiveStopAnswer>();
  const reasons: string[] = [];
  let stopped = false;
  const stopAll = async () => {
    if (stopped) return;
    stopped = true;
    await Promise.all(
      started.map(async (a) => {
        try {
          stops.set(a.name, (await x.deps.live(a, { phase: 'stop', id })) as LiveStopAnswer);
        } catch (e) {
          reasons.push(`stopping the trace on ${a.name}: ${e instanceof Error ? e.message : String(e)}`);
        }
      }),
    );
  };
  const release = x.deps.onInterrupt?.(stopAll);
  let probe: LiveProbeAnswer['probe'];
  const ing = x.start.ingress;
  if (ing.kind !== 'pod' && ing.kind !== 'node') throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, '--live needs a pod or node source: podnet cannot send from outside the cluster', { field: '--from' });
  try {
    // Every start settles before any error is thrown, so that each node that did start is stopped.
    const results = await Promise.allSettled(
      involved.map(async (n) => {
        const a = agentAddress(n);
        const ans = (await x.deps.live(a, { phase: 'start', id, family: x.packet.family, dscp: LIVE_DSCP, sport: x.packet.sport, proto: x.packet.proto })) as LiveStartAnswer;
        started.push(a);
        if (!ans.tracing && ans.reason) reasons.push(`${a.name}: ${ans.reason}`);
      }),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    const src = agentAddress(x.start.node);
    probe = ((await x.deps.live(src, { phase: 'probe', id, dscp: LIVE_DSCP, timeoutMs: x.timeoutMs, packet: x.packet, source: ing.kind === 'pod' ? { kind: 'pod', namespace: ing.namespace, name: ing.name } : { kind: 'node' } })) as LiveProbeAnswer).probe;
    // Events of the answer's last packets reach the monitors a moment later.
    await new Promise((r) => setTimeout(r, 150));
  } finally {
    await stopAll();
    release?.();
  }
  const conntrack = [...stops.entries()].flatMap(([n, s]) => s.conntrack.map((l) => `${n}: ${l}`));
  const ipvs = [...stops.values()].flatMap((s) => s.ipvs ?? []);
  for (const [n, s] of stops) if (s.reason) reasons.push(`${n}: ${s.reason}`);
  // Which explained path did the probe take? The endpoint the source node's conntrack names.
  const srcStop = stops.get(nm(x.start.node));
  const ep = srcStop?.conntrack.map(conntrackEndpoint).find((e) => e && e.ip !== x.packet.dst) ?? ipvs.map(ipvsConnEndpoint).find((e) => e !== undefined);
  const chosen = (ep && x.paths.find((p) => p.endpoint?.ip === ep.ip && p.endpoint.port === ep.port)) || (x.paths.length === 1 ? x.paths[0] : undefined) || x.paths[0]!;
  // Fold each node's kernel events in after that node's last explained observation.
  const obs: Observation[] = [];
  const lastIdx = new Map<string, number>();
  chosen.observations.forEach((o, i) => lastIdx.set(o.node, i));
  chosen.observations.forEach((o, i) => {
    obs.push(o);
    if (lastIdx.get(o.node) === i) obs.push(...eventObservations(o.node, stops.get(o.node)?.events ?? [], o.packet));
  });
  const verdict = liveVerdict(probe, chosen, ep, [...new Set(reasons)]);
  return {
    path: { probability: 1, ...(chosen.endpoint ? { endpoint: chosen.endpoint } : {}), observations: obs, verdict },
    probe: { result: probe.result, ...(probe.rttMs !== undefined ? { rttMs: probe.rttMs } : {}), conntrack: [...conntrack, ...ipvs.map((l) => `ipvs: ${l}`)] },
  };
}

/** The verdict of a live trace: what the probe saw, with the rule / route the explanation names. */
function liveVerdict(probe: LiveProbeAnswer['probe'], chosen: TracePath, ep: { ip: string; port: number } | undefined, reasons: string[]): Verdict {
  const ex = chosen.verdict;
  const note = reasons.length ? ` (${reasons.join('; ')})` : '';
  switch (probe.result) {
    case 'connected':
    case 'replied':
      if (ex.kind === 'Delivered') return { ...ex, reason: `${ex.reason}; the probe was answered in ${probe.rttMs ?? '?'} ms${note}` };
      return { kind: 'Delivered', ...(chosen.endpoint?.pod ? { pod: chosen.endpoint.pod } : {}), ...(chosen.endpoint?.node ? { node: chosen.endpoint.node } : {}), ...(ep ? { address: `${ep.ip}:${ep.port}` } : {}), reason: `the probe was answered${ep ? ` by ${ep.ip}:${ep.port}` : ''} although the explanation says ${ex.kind}: ${ex.reason}${note}` };
    case 'refused':
      return { kind: 'Rejected', ...(ex.node ? { node: ex.node } : {}), at: ex.kind === 'Rejected' ? ex.at : probe.from ? `an ICMP error / reset from ${probe.from}` : 'a TCP reset', reason: `the probe was refused (${probe.errno ?? 'refused'}${probe.from ? ` from ${probe.from}` : ''})${ex.kind === 'Rejected' ? '' : `; the explanation says ${ex.kind}: ${ex.reason}`}${note}` };
    case 'sent':
      return { kind: 'Unknown', reason: `the probe got no answer within the timeout (UDP gives none when nothing replies); the explanation says ${ex.kind}: ${ex.reason}${note}` };
    default:
      if (ex.kind === 'Dropped' || ex.kind === 'Rejected' || ex.kind === 'ForwardedOutOfCluster') return { ...ex, reason: `${ex.reason}; the probe: ${probe.result}${probe.errno ? ` (${probe.errno})` : ''}${note}` };
      return { kind: 'Dropped', reason: `the probe: ${probe.result}${probe.errno ? ` (${probe.errno})` : ''}${probe.mtu ? `, path MTU ${probe.mtu}` : ''}, although the explanation says ${ex.kind}${note}` };
  }
}

/** Adds the EndpointSlice each DNAT's endpoint came from to that observation's origins. */
async function nameSlices(paths: TracePath[], deps: TraceDeps): Promise<void> {
  if (!deps.slices) return;
  const cache = new Map<string, Promise<EndpointSlice[]>>();
  for (const p of paths) {
    for (const o of p.observations) {
      if (o.action !== 'DNAT' || !o.origin) continue;
      const svc = o.origin.find((x) => x.kind === 'Service');
      if (!svc?.namespace || o.origin.some((x) => x.kind === 'EndpointSlice')) continue;
      const key = `${svc.namespace}/${svc.name}`;
      let sl = cache.get(key);
      if (!sl) cache.set(key, (sl = deps.slices(svc.namespace, svc.name).catch(() => [])));
      const slice = (await sl).find((s) => (s.endpoints ?? []).some((e) => e.addresses.includes(o.packet.dst)));
      if (slice) o.origin = [...o.origin, { kind: 'EndpointSlice', namespace: svc.namespace, name: slice.metadata.name ?? '' }];
    }
  }
}
