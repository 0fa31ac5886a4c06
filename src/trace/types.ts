/**
 * `podnet trace`'s model: the packet, what each node observed about it, and the verdict.
 * This is also the `--json` schema (`schema: "podnet.trace/v1"`, documented in
 * docs/trace.md): fields are only ever added, never renamed or removed.
 *
 * A trace is distributed: the CLI asks each node's agent (POST /trace/explain or
 * /trace/live on the agent endpoint) for that node's part, given the packet as it arrives
 * there (`NodeRequest`), and the node answers with the possible outcomes (`NodeStep`): more
 * than one when load balancing is random, each with its probability, its observations on
 * that node and either a verdict or the next node to ask.
 */

export type Family = 4 | 6;
export type Proto = 'tcp' | 'udp' | 'sctp' | 'icmp';

/** One packet's headers as podnet cares about them. ICMP: ports are 0 (echo id in sport). */
export interface Packet {
  family: Family;
  proto: Proto;
  src: string;
  sport: number;
  dst: string;
  dport: number;
  /** IP packet length in bytes (header included): checked against each hop's MTU. */
  size: number;
}

export type Component = 'Source' | 'Routing' | 'Bridge' | 'Netfilter/LB' | 'IPVS' | 'Transport' | 'Delivery';

/** An API object a rule or route came from. */
export interface Origin {
  kind: 'Service' | 'EndpointSlice' | 'Pod' | 'Node';
  namespace?: string;
  name: string;
}

/** How a packet leaves a node toward another one. */
export interface Encapsulation {
  backend: 'vxlan' | 'udp' | 'host-gw';
  /** The tunnel / underlay device ("podnet.1", "podnet.udp", "eth0"). */
  device: string;
  /** vxlan: VNI and UDP port; udp: the UDP port. */
  vni?: number;
  port?: number;
  /** vxlan / udp: the outer addresses (this node's underlay address → the peer's). */
  outerSrc?: string;
  outerDst?: string;
  /** host-gw: the next hop (the peer node's address); vxlan: the peer's VTEP address. */
  nextHop?: string;
  /** vxlan: the peer's VTEP MAC (the neighbour entry) and the FDB entry that maps it. */
  mac?: string;
  /** The MTU of the path on this hop (device MTU, or route MTU when set). */
  mtu: number;
}

export interface Observation {
  node: string;
  component: Component;
  /**
   * What was decided, one word: Received, Forwarded, Routed, Bridged, DNAT, Masqueraded,
   * Marked, Encapsulated, Decapsulated, Delivered, Dropped, Rejected, Accepted, Matched.
   */
  action: string;
  /** A sentence for people. */
  detail: string;
  /**
   * The rule or route that decided, exactly as the kernel shows it (`nft list` / `iptables
   * -S` / `ip route` / `ipvsadm` text).
   */
  rule?: string;
  /** Where the rule lives: "ip podnet service-ips", "nat PODNET-SERVICES", "main". */
  where?: string;
  /** The API objects the rule / route came from. */
  origin?: Origin[];
  /** The packet after this hop (NAT shown by comparing with the previous one). */
  packet: Packet;
  transport?: Encapsulation;
  /** Set on observations from kernel trace events (live mode), not from reading state. */
  live?: boolean;
  /** A rule podnet did not write that could affect the packet: reported, not interpreted. */
  foreign?: boolean;
}

export type VerdictKind = 'Delivered' | 'Dropped' | 'Rejected' | 'ForwardedOutOfCluster' | 'Unknown';

export interface Verdict {
  kind: VerdictKind;
  /** The node where the trace ended. */
  node?: string;
  /** Delivered: the pod (namespace/name) and its address:port. */
  pod?: string;
  address?: string;
  /** Dropped / Rejected: the rule or route (kernel text) that did it. */
  at?: string;
  /** A sentence for people: why. */
  reason: string;
}

/** Where a packet comes from when it reaches a node (what the node's part starts with). */
export type Ingress =
  /** Sent by a pod on this node (its namespace/name). */
  | { kind: 'pod'; namespace: string; name: string }
  /** Sent by the node itself (a host process). */
  | { kind: 'node' }
  /** Arrived from another node over the transport (after decapsulation). */
  | { kind: 'transport'; fromNode: string }
  /** Arrived on the node's underlay address from outside the cluster. */
  | { kind: 'external' };

/** What the CLI asks one node. */
export interface NodeRequest {
  packet: Packet;
  ingress: Ingress;
  /** Live mode: the probe's marker (DSCP) and id; absent in explain mode. */
  live?: { id: string; dscp: number; timeoutMs: number };
}

/** One possible outcome of a node's part. */
export interface NodeOutcome {
  /** 0..1: the chance of this outcome given the packet arrived (1 when deterministic). */
  probability: number;
  observations: Observation[];
  /** Present when the trace ends on this node. */
  verdict?: Verdict;
  /** Present when the packet leaves toward another cluster node: ask it next. */
  next?: { node: string; packet: Packet; ingress: Ingress };
  /** The endpoint the load balancer chose in this outcome (ip, port, owning pod / node). */
  endpoint?: { ip: string; port: number; pod?: string; node?: string };
}

/** A node's answer. */
export interface NodeStep {
  node: string;
  proxyMode: string;
  backend: string;
  outcomes: NodeOutcome[];
  /** Live mode: kernel events seen on this node (already folded into the observations). */
  events?: number;
  /** Live mode, the source node: what the probe saw. */
  probe?: TraceResult['probe'];
  /** How long the node took, ms. */
  tookMs: number;
}

/** One path through the cluster: a sequence of node parts, with its overall probability. */
export interface TracePath {
  probability: number;
  endpoint?: NodeOutcome['endpoint'];
  observations: Observation[];
  verdict: Verdict;
}

export interface TraceResult {
  schema: 'podnet.trace/v1';
  mode: 'explain' | 'live';
  /** The request as given (`--from`, `--to`) and as resolved. */
  from: string;
  to: string;
  packet: Packet;
  /** Every possible path (one in live mode: the one the probe took). */
  paths: TracePath[];
  /** The trace's verdict: Delivered only when every path delivers; otherwise the first that does not. */
  verdict: Verdict;
  /** Live mode: what the probe itself saw (connected, refused, timeout) and the conntrack entry. */
  probe?: { result: string; rttMs?: number; conntrack?: string[] };
  tookMs: number;
}
