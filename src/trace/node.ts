/**
 * One node's part of a trace (explain mode): given the packet as it reaches the node, what
 * the node's kernel state does with it — the source hop, the proxy's rules (through the
 * mode's interpreter), the routing decision (the kernel's own FIB lookup, `ip route get`,
 * and the FIB entry that matched), the bridge (neighbour and FDB entry of the pod), the
 * postrouting masquerade, and the transport (vxlan neighbour + FDB → VTEP, the UDP peer, or
 * the host-gw next hop) with the MTU. Pure logic over an injected `NodeEnv`; the agent gives
 * it the real kernel (src/agent/trace.ts), tests give it fakes.
 */
import type { Route } from '../kernel/routes.js';
import type { FdbEntry, Link, Neigh } from '../kernel/index.js';
import { Cidr } from '../util/ipnet.js';
import type { LbInterpreter } from './lb.js';
import type { Encapsulation, NodeOutcome, NodeRequest, NodeStep, Observation, Origin, Packet, Verdict } from './types.js';

/** A node of the cluster as the CLI tells the node about it (from the API). */
export interface DirectoryNode {
  name: string;
  addresses: string[];
  podCIDRs: string[];
  /** The node's PodnetTransport condition when it is not True (e.g. NotOnLink naming a peer). */
  transportProblem?: { reason: string; message: string };
}

/** A pod of the cluster (from the API): name and addresses. */
export interface DirectoryPod {
  namespace: string;
  name: string;
  ips: string[];
  node?: string;
}

export interface Directory {
  nodes: DirectoryNode[];
  pods: DirectoryPod[];
}

/** What the node tracer reads; each method is one kernel query. */
export interface NodeEnv {
  node: string;
  backend: 'vxlan' | 'udp' | 'host-gw';
  proxyMode: string;
  /** The proxy's interpreter for a family (undefined: no proxy). */
  lb(family: 4 | 6): LbInterpreter | undefined;
  /** The node's own addresses. */
  localAddresses(): Promise<string[]>;
  /** `ip route get DST [from SRC] [iif DEV]` and the FIB entry (`ip route get fibmatch`). */
  route(dst: string, o: { src?: string; iif?: string }): Promise<{ route: Route; entry: Route | undefined } | undefined>;
  link(index: number | string): Promise<Link | undefined>;
  neighbours(dev: string): Promise<Neigh[]>;
  fdb(dev: string): Promise<FdbEntry[]>;
  /** The pods with a sandbox on this node (namespace/name, host veth, addresses). */
  localPods(): Promise<{ namespace: string; name: string; hostVeth: string; addresses: string[]; mtu: number; ifname: string }[]>;
  /** The MTU a pod's interface has now (read in its namespace: someone may have changed it). */
  podMtu(pod: { namespace: string; name: string; ifname: string }): Promise<number | undefined>;
  /** The Service a packet's destination (VIP or node address + NodePort) belongs to, from the proxy's snapshot. */
  serviceFor?(pkt: Packet): Origin[] | undefined;
  /** The vxlan VNI and UDP port, the udp backend's port. */
  vxlan: { vni: number; port: number; device: string };
  udp: { port: number; device: string };
  bridge: string;
}

/** Node hops a trace follows at most (a longer path is a routing loop). */
export const MAX_HOPS = 8;

/** Text of a route as `ip route` prints it. */
export async function routeText(env: Pick<NodeEnv, 'link'>, r: Route): Promise<string> {
  const dev = r.devIndex !== undefined ? (await env.link(r.devIndex))?.name : undefined;
  const dst = r.dst === '0.0.0.0/0' || r.dst === '::/0' ? 'default' : r.dst.endsWith('/32') || r.dst.endsWith('/128') ? r.dst.split('/')[0] : r.dst;
  const parts = [r.type !== 'unicast' ? `${r.type} ${dst}` : dst!];
  if (r.via) parts.push(`via ${r.via}`);
  if (dev) parts.push(`dev ${dev}`);
  if (r.protocol === 222) parts.push('proto 222');
  else if (r.protocol === 2) parts.push('proto kernel');
  if (r.scope === 253) parts.push('scope link');
  if (r.src) parts.push(`src ${r.src}`);
  if (r.metric) parts.push(`metric ${r.metric}`);
  if (r.onlink) parts.push('onlink');
  if (r.table !== 254) parts.push(`table ${r.table === 255 ? 'local' : r.table}`);
  return parts.join(' ');
}

function contains(cidr: string, ip: string): boolean {
  try {
    return Cidr.parse(cidr, 'cidr', { strict: false }).contains(ip);
  } catch {
    return false;
  }
}

const endpointOf = (dir: Directory, ip: string): { pod?: string; node?: string } => {
  const p = dir.pods.find((x) => x.ips.includes(ip));
  if (p) return { pod: `${p.namespace}/${p.name}`, ...(p.node ? { node: p.node } : {}) };
  const n = dir.nodes.find((x) => x.podCIDRs.some((c) => contains(c, ip)));
  return n ? { node: n.name } : {};
};

/** This node's part of a trace. */
export async function traceNode(env: NodeEnv, req: NodeRequest & { directory: Directory }): Promise<NodeStep> {
  const t0 = performance.now();
  const local = new Set(await env.localAddresses());
  const isLocal = (ip: string) => local.has(ip);
  const pkt = req.packet;
  const node = env.node;
  const pre: Observation[] = [];
  const ob = (o: Omit<Observation, 'node'>): Observation => ({ node, ...o });

  // ---- where the packet comes from
  let iif: string | undefined;
  const ing = req.ingress;
  if (ing.kind === 'pod') {
    const pods = await env.localPods();
    const me = pods.find((p) => p.namespace === ing.namespace && p.name === ing.name);
    if (!me) {
      return step(env, t0, [{ probability: 1, observations: [ob({ component: 'Source', action: 'Unknown', detail: `pod ${ing.namespace}/${ing.name} has no sandbox on node ${node}`, packet: pkt })], verdict: { kind: 'Unknown', node, reason: `pod ${ing.namespace}/${ing.name} has no sandbox on node ${node}` } }]);
    }
    iif = env.bridge;
    const mtu = (await env.podMtu(me).catch(() => undefined)) ?? me.mtu;
    const changed = mtu !== me.mtu ? ` (podnet set ${me.mtu}: changed inside the pod)` : '';
    pre.push(ob({ component: 'Source', action: 'Sent', detail: `sent by pod ${ing.namespace}/${ing.name} (${me.addresses.join(', ')}) from ${me.ifname}, MTU ${mtu}${changed}`, origin: [{ kind: 'Pod', namespace: ing.namespace, name: ing.name }], packet: pkt }));
    if (pkt.size > mtu) {
      return step(env, t0, [{ probability: 1, observations: [...pre, ob({ component: 'Source', action: 'Dropped', detail: `a ${pkt.size}-byte packet with DF does not fit the pod's MTU ${mtu}: the pod's own stack refuses it (EMSGSIZE)`, packet: pkt })], verdict: { kind: 'Dropped', node, at: `${me.ifname} mtu ${mtu} (pod ${ing.namespace}/${ing.name})`, reason: `packet of ${pkt.size} bytes exceeds the pod MTU ${mtu}` } }]);
    }
    pre.push(ob({ component: 'Bridge', action: 'Forwarded', detail: `through veth ${me.hostVeth} into bridge ${env.bridge} to the node's gateway address`, where: `${env.bridge} port ${me.hostVeth}`, packet: pkt }));
  } else if (ing.kind === 'node') {
    pre.push(ob({ component: 'Source', action: 'Sent', detail: `sent by a process on node ${node}`, origin: [{ kind: 'Node', name: node }], packet: pkt }));
  } else if (ing.kind === 'transport') {
    pre.push(ob({ component: 'Transport', action: 'Decapsulated', detail: `arrived from node ${ing.fromNode} over ${env.backend}`, origin: [{ kind: 'Node', name: ing.fromNode }], packet: pkt }));
    iif = env.backend === 'vxlan' ? env.vxlan.device : env.backend === 'udp' ? env.udp.device : undefined;
  } else {
    pre.push(ob({ component: 'Source', action: 'Received', detail: `arrived on node ${node} from ${pkt.src} (outside the cluster)`, packet: pkt }));
  }

  // ---- the proxy's rules (prerouting / output)
  const lb = env.lb(pkt.family);
  const hook = ing.kind === 'node' ? 'output' : 'prerouting';
  const lbOuts = lb ? await lb.dnat(pkt, { node, hook, isLocal }) : [{ probability: 1, observations: [], packet: pkt, masqueradeMark: false }];
  const outcomes: NodeOutcome[] = [];
  for (const o of lbOuts) {
    // Every DNAT names the Service it belongs to (interpreters that know it only per outcome).
    const svc = o.service ?? (o.endpoint ? env.serviceFor?.(pkt) : undefined);
    const lbObs = svc ? o.observations.map((x) => (x.action === 'DNAT' && !x.origin?.some((g) => g.kind === 'Service') ? { ...x, origin: [...(x.origin ?? []), ...svc] } : x)) : o.observations;
    const obs = [...pre, ...lbObs];
    const ep = o.endpoint ? { ...o.endpoint, ...endpointOf(req.directory, o.endpoint.ip) } : undefined;
    const base = { probability: o.probability, ...(ep ? { endpoint: ep } : {}) };
    if (o.verdict) {
      outcomes.push({ ...base, observations: obs, verdict: o.verdict });
      continue;
    }
    const rest = await afterLb(env, req, o.packet, o.masqueradeMark, iif, isLocal, obs);
    outcomes.push({ ...base, ...rest });
  }
  return step(env, t0, outcomes);
}

function step(env: NodeEnv, t0: number, outcomes: NodeOutcome[]): NodeStep {
  return { node: env.node, proxyMode: env.proxyMode, backend: env.backend, outcomes, tookMs: Math.round((performance.now() - t0) * 10) / 10 };
}

/** Routing, bridge / delivery, postrouting and transport for one packet after the proxy. */
async function afterLb(env: NodeEnv, req: NodeRequest & { directory: Directory }, pkt: Packet, mark: boolean, iif: string | undefined, isLocal: (ip: string) => boolean, obs: Observation[]): Promise<Omit<NodeOutcome, 'probability'>> {
  const node = env.node;
  const end = (verdict: Verdict): Omit<NodeOutcome, 'probability'> => ({ observations: obs, verdict });
  const ob = (o: Omit<Observation, 'node'>) => obs.push({ node, ...o });

  // Delivered to the node itself (a local address, no DNAT to elsewhere).
  if (isLocal(pkt.dst)) {
    ob({ component: 'Routing', action: 'Routed', detail: `${pkt.dst} is an address of node ${node}: local delivery`, where: 'local', packet: pkt });
    ob({ component: 'Delivery', action: 'Delivered', detail: `to a process on node ${node} listening on ${pkt.dst}:${pkt.dport}`, origin: [{ kind: 'Node', name: node }], packet: pkt });
    return end({ kind: 'Delivered', node, address: `${pkt.dst}:${pkt.dport}`, reason: `delivered to node ${node} itself (${pkt.dst} is one of its addresses)` });
  }

  const r = await env.route(pkt.dst, { ...(iif && req.ingress.kind !== 'node' ? { iif, src: pkt.src } : {}) });
  const owner = req.directory.nodes.find((n) => n.podCIDRs.some((c) => contains(c, pkt.dst)));
  const ownerCidr = owner?.podCIDRs.find((c) => contains(c, pkt.dst));
  const problem = req.directory.nodes.find((n) => n.name === node)?.transportProblem;
  const why = problem ? `; node ${node} reports PodnetTransport=False ${problem.reason}: ${problem.message}` : '';
  if (!r || r.route.type === 'unreachable' || r.route.type === 'blackhole' || r.route.type === 'prohibit') {
    const text = r ? await routeText(env, r.entry ?? r.route) : `no route to ${pkt.dst}`;
    ob({ component: 'Routing', action: 'Dropped', detail: r ? `the route to ${pkt.dst} is ${r.route.type}` : `node ${node} has no route to ${pkt.dst} (network unreachable)${owner ? `: the route to node ${owner.name}'s pod subnet ${ownerCidr} is missing` : ''}${why}`, rule: text, where: 'main', packet: pkt });
    return end({ kind: 'Dropped', node, at: text, reason: owner ? `no route to node ${owner.name}'s pod subnet ${ownerCidr} on node ${node}${why}` : `no usable route to ${pkt.dst} on node ${node}` });
  }
  const dev = r.route.devIndex !== undefined ? await env.link(r.route.devIndex) : undefined;
  const entryText = await routeText(env, r.entry ?? r.route);
  const inCluster = req.directory.nodes.some((n) => n.podCIDRs.some((c) => contains(c, pkt.dst)));

  // Postrouting (masquerade) happens before the packet leaves, whatever the device.
  const snat = async (outAddress: string): Promise<Packet> => {
    const lb = env.lb(pkt.family);
    if (!lb) return pkt;
    const s = await lb.snat(pkt, mark, { node, outAddress, original: req.packet });
    obs.push(...s.observations);
    return s.packet;
  };
  const outAddr = r.route.src ?? (await env.localAddresses()).find((a) => (a.includes(':') ? 6 : 4) === pkt.family) ?? pkt.src;

  // ---- a pod on this node's bridge
  if (dev && dev.name === env.bridge) {
    ob({ component: 'Routing', action: 'Routed', detail: `${pkt.dst} is on this node's pod subnet: out of bridge ${env.bridge}`, rule: entryText, where: 'main', packet: pkt });
    const after = await snat(outAddr);
    const pods = await env.localPods();
    const pod = pods.find((p) => p.addresses.some((a) => a.split('/')[0] === pkt.dst));
    const neigh = (await env.neighbours(env.bridge)).find((n) => n.ip === pkt.dst);
    if (!pod) {
      ob({ component: 'Delivery', action: 'Dropped', detail: `no pod on node ${node} has address ${pkt.dst}${neigh ? ` (neighbour entry ${neigh.state.join(',')})` : ' (no neighbour entry: ARP would go unanswered)'}`, packet: after });
      return end({ kind: 'Dropped', node, at: entryText, reason: `no pod with address ${pkt.dst} on node ${node}` });
    }
    const fdb = neigh?.mac ? (await env.fdb(env.bridge)).find((f) => f.mac === neigh.mac) : undefined;
    const port = fdb?.devIndex !== undefined ? (await env.link(fdb.devIndex))?.name : undefined;
    ob({ component: 'Bridge', action: 'Bridged', detail: neigh?.mac ? `${pkt.dst} is at ${neigh.mac}${port ? ` on port ${port}` : ''} (neighbour ${neigh.state.join(',')})` : `${pkt.dst} not resolved yet: the bridge resolves it by ARP/ND to port ${pod.hostVeth}`, rule: neigh?.mac ? `${pkt.dst} dev ${env.bridge} lladdr ${neigh.mac} ${neigh.state.join(' ').toUpperCase()}` : undefined, where: `${env.bridge} port ${port ?? pod.hostVeth}`, packet: after } as Omit<Observation, 'node'>);
    if (after.size > pod.mtu) {
      ob({ component: 'Delivery', action: 'Dropped', detail: `a ${after.size}-byte packet exceeds the pod's MTU ${pod.mtu}`, packet: after });
      return end({ kind: 'Dropped', node, at: `${pod.hostVeth} mtu ${pod.mtu}`, reason: `packet of ${after.size} bytes exceeds MTU ${pod.mtu}` });
    }
    ob({ component: 'Delivery', action: 'Delivered', detail: `to pod ${pod.namespace}/${pod.name} (${pkt.dst}:${pkt.dport}) through ${pod.hostVeth}`, origin: [{ kind: 'Pod', namespace: pod.namespace, name: pod.name }], packet: after });
    return end({ kind: 'Delivered', node, pod: `${pod.namespace}/${pod.name}`, address: `${pkt.dst}:${pkt.dport}`, reason: `delivered to pod ${pod.namespace}/${pod.name} on node ${node}` });
  }

  // ---- another node, over the transport
  const mtu = dev?.mtu ?? 1500;
  const next = (toNode: string | undefined, enc: Encapsulation, after: Packet): Omit<NodeOutcome, 'probability'> => {
    if (after.size > enc.mtu) {
      ob({ component: 'Transport', action: 'Dropped', detail: `a ${after.size}-byte packet with DF exceeds the MTU ${enc.mtu} of ${enc.device}: ICMP fragmentation needed goes back to ${after.src}`, transport: enc, packet: after });
      return end({ kind: 'Dropped', node, at: `${enc.device} mtu ${enc.mtu}`, reason: `packet of ${after.size} bytes is too large for the ${enc.backend} transport (MTU ${enc.mtu})` });
    }
    if (!toNode) {
      const hop = enc.outerDst ?? enc.nextHop ?? `the peer owning ${after.dst}`;
      ob({ component: 'Transport', action: 'Unknown', detail: `${hop} is not a node of the cluster (${entryText}): where the packet goes from here is not known`, transport: enc, packet: after });
      return end({ kind: 'Unknown', node, at: entryText, reason: `next hop ${hop} is not a known node` });
    }
    ob({ component: 'Transport', action: 'Encapsulated', detail: describeEnc(enc, toNode), rule: entryText, transport: enc, origin: [{ kind: 'Node', name: toNode }], packet: after });
    return { observations: obs, next: { node: toNode, packet: after, ingress: { kind: 'transport', fromNode: node } } };
  };
  const nodeByAddress = (ip: string | undefined) => (ip ? req.directory.nodes.find((n) => n.addresses.includes(ip))?.name : undefined);
  const nodeBySubnet = (ip: string) => req.directory.nodes.find((n) => n.podCIDRs.some((c) => contains(c, ip)))?.name;

  if (dev && dev.name === env.vxlan.device) {
    ob({ component: 'Routing', action: 'Routed', detail: `${pkt.dst} is in another node's pod subnet: via the VXLAN device ${dev.name}`, rule: entryText, where: 'main', packet: pkt });
    const after = await snat(outAddr);
    const gw = r.route.via ?? pkt.dst;
    const neigh = (await env.neighbours(dev.name)).find((n) => n.ip === gw);
    if (!neigh?.mac) {
      ob({ component: 'Transport', action: 'Dropped', detail: `no neighbour entry for ${gw} on ${dev.name}: the VXLAN device cannot address the inner frame (the agent writes it per node)`, packet: after });
      return end({ kind: 'Dropped', node, at: `neighbour ${gw} dev ${dev.name}`, reason: `no VTEP MAC for ${gw} on node ${node}` });
    }
    const fdb = (await env.fdb(dev.name)).find((f) => f.mac === neigh.mac && f.dst);
    if (!fdb?.dst) {
      ob({ component: 'Transport', action: 'Dropped', detail: `no FDB entry for ${neigh.mac} on ${dev.name}: the VTEP address of the peer is unknown`, packet: after });
      return end({ kind: 'Dropped', node, at: `fdb ${neigh.mac} dev ${dev.name}`, reason: `no FDB entry for ${neigh.mac} on node ${node}` });
    }
    const enc: Encapsulation = { backend: 'vxlan', device: dev.name, vni: env.vxlan.vni, port: env.vxlan.port, outerSrc: outAddrUnderlay(req, env.node, fdb.dst), outerDst: fdb.dst, nextHop: gw, mac: neigh.mac, mtu };
    return next(nodeByAddress(fdb.dst), enc, after);
  }
  if (dev && dev.name === env.udp.device) {
    ob({ component: 'Routing', action: 'Routed', detail: `${pkt.dst} is in another node's pod subnet: into the UDP tunnel ${dev.name}`, rule: entryText, where: 'main', packet: pkt });
    const after = await snat(outAddr);
    const peer = nodeBySubnet(pkt.dst);
    const peerAddr = req.directory.nodes.find((n) => n.name === peer)?.addresses.find((a) => (a.includes(':') ? 6 : 4) === 4);
    const enc: Encapsulation = { backend: 'udp', device: dev.name, port: env.udp.port, ...(peerAddr ? { outerDst: peerAddr, outerSrc: outAddrUnderlay(req, env.node, peerAddr) } : {}), mtu };
    return next(peer, enc, after);
  }
  const dstNode = nodeByAddress(pkt.dst);
  if (dstNode && dstNode !== node) {
    // Another node's own address (its NodePorts): over the underlay, where it arrives from outside.
    ob({ component: 'Routing', action: 'Routed', detail: `${pkt.dst} is node ${dstNode}'s address: over the underlay`, rule: entryText, where: 'main', origin: [{ kind: 'Node', name: dstNode }], packet: pkt });
    const after = await snat(outAddr);
    if (after.size > mtu) {
      ob({ component: 'Routing', action: 'Dropped', detail: `a ${after.size}-byte packet with DF exceeds the MTU ${mtu} of ${dev?.name ?? '?'}`, packet: after });
      return end({ kind: 'Dropped', node, at: `${dev?.name ?? '?'} mtu ${mtu}`, reason: `packet of ${after.size} bytes exceeds MTU ${mtu}` });
    }
    return { observations: obs, next: { node: dstNode, packet: after, ingress: { kind: 'external' } } };
  }
  if (inCluster && r.route.via && nodeByAddress(r.route.via)) {
    ob({ component: 'Routing', action: 'Routed', detail: `${pkt.dst} is in node ${nodeByAddress(r.route.via)}'s pod subnet: straight to it on the underlay (host-gw)`, rule: entryText, where: 'main', packet: pkt });
    const after = await snat(outAddr);
    const enc: Encapsulation = { backend: 'host-gw', device: dev?.name ?? '?', nextHop: r.route.via, mtu };
    return next(nodeByAddress(r.route.via), enc, after);
  }
  if (inCluster) {
    // A pod subnet of another node, but the route does not lead to it (deleted route → default).
    ob({ component: 'Routing', action: 'Dropped', detail: `${pkt.dst} belongs to node ${owner?.name ?? '?'}'s pod subnet but the route that matches does not lead there (${entryText}): the route to that subnet is missing${why}`, rule: entryText, where: 'main', packet: pkt });
    return end({ kind: 'Dropped', node, at: entryText, reason: `no route to node ${owner?.name ?? '?'}'s pod subnet ${ownerCidr ?? ''} on node ${node}${why}`.replace(/ {2,}/g, ' ') });
  }
  // ---- out of the cluster
  ob({ component: 'Routing', action: 'Routed', detail: `${pkt.dst} is outside the cluster: ${entryText}`, rule: entryText, where: 'main', packet: pkt });
  const after = await snat(outAddr);
  return { observations: obs, verdict: { kind: 'ForwardedOutOfCluster', node, at: entryText, reason: `leaves node ${node} ${r.route.via ? `via ${r.route.via}` : ''} ${dev ? `on ${dev.name}` : ''} toward ${after.dst}`.replace(/\s+/g, ' ').trim() } };
}

/** This node's underlay address in the family of the peer's address. */
function outAddrUnderlay(req: { directory: Directory }, self: string, peer: string): string | undefined {
  const fam = peer.includes(':') ? 6 : 4;
  return req.directory.nodes.find((n) => n.name === self)?.addresses.find((a) => (a.includes(':') ? 6 : 4) === fam);
}

function describeEnc(e: Encapsulation, toNode: string): string {
  switch (e.backend) {
    case 'vxlan':
      return `VXLAN VNI ${e.vni} to node ${toNode}: outer ${e.outerSrc ?? '?'} → ${e.outerDst}:${e.port}, inner to VTEP MAC ${e.mac}; MTU ${e.mtu}`;
    case 'udp':
      return `UDP tunnel to node ${toNode}: outer ${e.outerSrc ?? '?'} → ${e.outerDst ?? '?'}:${e.port}; MTU ${e.mtu}`;
    case 'host-gw':
      return `routed to node ${toNode} via next hop ${e.nextHop} on ${e.device}; MTU ${e.mtu}`;
  }
}

