/**
 * The transport contract, flannel's small backend interface made level-triggered:
 *
 *   register()   sets up this node's side (devices) and says what to publish on the Node
 *                (backend data for the peers) and the pod MTU it leaves;
 *   sync(peers)  converges the kernel to the full desired state toward every other node:
 *                adds what is missing, replaces what differs, deletes what it owns and is
 *                no longer wanted (routes, neighbours, FDB entries, tunnel peers);
 *   teardown()   removes everything this backend ever made (backend switch, cleanup).
 *
 * Each backend is a pure planner (peers -> desired state, unit-tested) plus the shared
 * reconciler (reconcile.ts) that applies a desired state against what the kernel holds.
 */
import type { Cidr } from '../util/ipnet.js';

/** What a backend knows of another node, from its Node object. */
export interface Peer {
  name: string;
  /** Underlay addresses (InternalIP): IPv4 and/or IPv6. */
  ip: string | undefined;
  ipv6: string | undefined;
  /** Pod subnets (spec.podCIDRs). */
  subnets: Cidr[];
  /** The backend type the peer runs (podnet.io/backend-type). */
  backend: string | undefined;
  /** Its podnet.io/backend-data annotation, parsed (e.g. { VtepMAC }). */
  data: Record<string, unknown>;
}

/** This node, as the backend sees it. */
export interface LocalNode {
  name: string;
  ip: string;
  ipv6: string | undefined;
  subnets: Cidr[];
  /** The underlay interface and the prefixes connected on it (for on-link checks). */
  underlay: { name: string; mtu: number; prefixes: Cidr[] };
}

/** A route the transport owns (main table, podnet's route protocol). */
export interface DesiredRoute {
  dst: string;
  via?: string;
  dev: string;
  onlink?: boolean;
}

export interface DesiredNeigh {
  dev: string;
  ip: string;
  mac: string;
}

export interface DesiredFdb {
  dev: string;
  mac: string;
  dst: string;
}

/** A peer the transport cannot reach as configured, and why (logged, on the Node, traced). */
export interface Problem {
  peer: string;
  reason: 'NotOnLink' | 'NoBackendData' | 'BackendMismatch' | 'NoAddress';
  message: string;
}

export interface DesiredState {
  routes: DesiredRoute[];
  neighbours: DesiredNeigh[];
  fdb: DesiredFdb[];
  /** UDP backend: the subnet -> peer table of its packet loop. */
  udpPeers: { subnet: string; peer: string; port: number }[];
  problems: Problem[];
}

export interface SyncReport {
  added: number;
  replaced: number;
  deleted: number;
  problems: Problem[];
}

export interface Registration {
  /** Pod MTU this transport leaves. */
  mtu: number;
  /** Annotations to publish on this node's Node (backend data for the peers). */
  publish: Record<string, string>;
}

export interface Backend {
  readonly name: 'vxlan' | 'host-gw' | 'udp';
  register(): Promise<Registration>;
  sync(peers: Peer[]): Promise<SyncReport>;
  teardown(): Promise<void>;
  /** Stops what the backend runs in this process (the udp loop) without removing anything. */
  close?(): Promise<void>;
}

export const emptyState = (): DesiredState => ({ routes: [], neighbours: [], fdb: [], udpPeers: [], problems: [] });
