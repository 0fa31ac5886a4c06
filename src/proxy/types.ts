/**
 * The proxy's model: what every mode (nftables, iptables, ipvs) programs, derived from
 * Services and EndpointSlices by `buildSnapshot` (src/proxy/snapshot.ts), one snapshot per
 * IP family. Modes never look at API objects; they get this, already filtered to the
 * family and with each Service port's endpoints categorised (kube-proxy's
 * CategorizeEndpoints): which endpoints serve traffic from inside the cluster, which serve
 * traffic from outside, and whether the Service has any endpoint at all.
 */

export type Family = 4 | 6;
export type L4Protocol = 'TCP' | 'UDP' | 'SCTP';
export const PROXY_MODES = ['nftables', 'iptables', 'ipvs'] as const;
export type ProxyModeName = (typeof PROXY_MODES)[number];

/** The mark bit that asks for masquerade in postrouting (kube-proxy's 0x4000). */
export const MASQUERADE_MARK = 0x4000;

/** One endpoint of one Service port: an address and the target port resolved for that port. */
export interface ProxyEndpoint {
  ip: string;
  port: number;
  nodeName?: string;
  /** On this node (nodeName is this node's name). */
  isLocal: boolean;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
}

/** One port of one Service in one family (kube-proxy's ServicePort). */
export interface ProxyServicePort {
  /**
   * `namespace/name:portName` (portName may be empty: `default/web:`): unique in a family,
   * stable across syncs; modes derive chain names from it (see chainSuffix).
   */
  key: string;
  namespace: string;
  name: string;
  portName: string;
  protocol: L4Protocol;
  /** The Service port (what clients connect to on the ClusterIP, externalIPs, LB IPs). */
  port: number;
  /** The ClusterIP of this family (headless Services have none and are not in a snapshot). */
  clusterIP: string;
  /** 0 when the Service has no NodePort for this port. */
  nodePort: number;
  /** externalIPs of this family. */
  externalIPs: string[];
  /** status.loadBalancer.ingress[].ip of this family. */
  loadBalancerIPs: string[];
  /** sessionAffinity: ClientIP -> timeoutSeconds (default 10800); undefined for None. */
  affinityTimeoutSeconds?: number;
  /** externalTrafficPolicy: Local (applies to NodePort, externalIPs, LB IPs). */
  externalPolicyLocal: boolean;
  /** internalTrafficPolicy: Local (applies to the ClusterIP). */
  internalPolicyLocal: boolean;
  /** healthCheckNodePort (eTP Local LoadBalancer Services), 0 when none. */
  healthCheckNodePort: number;
  /** Every endpoint of this port in this family, sorted by ip then port. */
  endpoints: ProxyEndpoint[];
  /**
   * Endpoints for traffic to the ClusterIP: ready ones (all of them, or only local ones with
   * internalTrafficPolicy Local); when none is ready, the serving terminating ones.
   */
  clusterEndpoints: ProxyEndpoint[];
  /**
   * Endpoints for traffic to NodePorts / externalIPs / LB IPs: as clusterEndpoints, but
   * local-only when externalTrafficPolicy is Local.
   */
  externalEndpoints: ProxyEndpoint[];
  /** True when some endpoint of the Service port can serve (ready, or serving while terminating). */
  hasEndpoints: boolean;
}

/** What a node contributes to the rules (per family). */
export interface ProxyNodeConfig {
  nodeName: string;
  family: Family;
  /** The node's own addresses of this family: NodePorts answer on these. */
  nodeIPs: string[];
  /**
   * The cluster (pod) CIDR of this family: traffic to a VIP from outside it is
   * masqueraded (kube-proxy's --cluster-cidr local-traffic detector). Undefined: masquerade
   * nothing for that reason.
   */
  clusterCIDR?: string;
}

/** Everything a mode needs for one family, at one point in time. */
export interface ProxySnapshot {
  family: Family;
  node: ProxyNodeConfig;
  /** By key (see ProxyServicePort.key), sorted by key. */
  services: ReadonlyMap<string, ProxyServicePort>;
}

/** What a sync did, for logs and metrics. */
export interface SyncResult {
  /** Service ports whose rules were written in this sync. */
  servicesWritten: number;
  /** Service ports whose rules were removed. */
  servicesRemoved: number;
  /** True when everything was rewritten (first sync, resync, after a failure). */
  full: boolean;
}

/**
 * One proxy mode: plans (pure) and applies (kernel) the rules for both families. The proxier
 * calls `sync` with the current snapshots and the keys of the service ports that may have
 * changed since the last successful sync (undefined: a full sync — rewrite and repair
 * everything, remove what is not desired). A mode keeps its own model of what it installed
 * (no read-back of the whole ruleset per sync). After a failed sync the next call is full.
 */
export interface ProxyMode {
  readonly name: ProxyModeName;
  sync(snapshots: readonly ProxySnapshot[], changed: ReadonlySet<string> | undefined): Promise<SyncResult>;
  /** Removes everything this mode installs (idempotent; leaves anything not podnet's alone). */
  cleanup(): Promise<void>;
  /** Releases what the mode holds open (netlink sockets); the rules stay. */
  close?(): Promise<void> | void;
}
