/**
 * The agent's service proxy: the chosen mode (nftables, iptables or ipvs) fed by the
 * Proxier from the Service and EndpointSlice informers, with the healthCheckNodePort
 * responders and conntrack cleanup. Other modes' leftovers are removed first.
 */
import type { KubeClient } from '../client/index.js';
import { RESOURCES } from '../client/index.js';
import type { EndpointSlice, Service } from '../client/types.js';
import { conntrackDelete } from '../kernel/conntrack.js';
import { ServiceHealthServer } from '../proxy/healthcheck.js';
import { ProxyMetrics } from '../proxy/metrics.js';
import { cleanupOtherModes, createMode } from '../proxy/modes.js';
import { Proxier } from '../proxy/proxier.js';
import type { ProxyNodeConfig } from '../proxy/types.js';
import type { Logger } from '../util/log.js';
import type { AgentConfig } from './config.js';
import type { AgentMetrics } from './metrics.js';

export interface AgentProxy {
  proxier: Proxier;
  close(): Promise<void>;
}

/** The proxy's per-family node view: node addresses for NodePorts, the cluster CIDR for masquerade. */
export function proxyNodes(cfg: Pick<AgentConfig, 'nodeName' | 'nodeIP' | 'nodeIPv6' | 'networks'>): ProxyNodeConfig[] {
  const ips = [cfg.nodeIP, ...(cfg.nodeIPv6 ? [cfg.nodeIPv6] : [])];
  return ([4, 6] as const).flatMap((family) => {
    const net = cfg.networks.find((n) => n.cidr.family === family);
    if (!net) return [];
    return [{ nodeName: cfg.nodeName, family, nodeIPs: ips.filter((ip) => ip.includes(':') === (family === 6)), clusterCIDR: String(net.cidr) }];
  });
}

/** Starts nothing: returns the proxy for `run()`; undefined with --proxy-mode none. */
export async function setupProxy(o: { cfg: AgentConfig; client: KubeClient; metrics: AgentMetrics; log: Logger }): Promise<AgentProxy | undefined> {
  const { cfg, log } = o;
  const plog = log.child({ component: 'proxy' });
  await cleanupOtherModes(cfg.proxyMode === 'none' ? undefined : cfg.proxyMode, plog);
  if (cfg.proxyMode === 'none') {
    plog.info('service proxy off (--proxy-mode none)');
    return undefined;
  }
  const health = new ServiceHealthServer({ log: plog });
  const mode = createMode(cfg.proxyMode, log);
  const proxier = new Proxier({
    sources: { services: o.client.resource<Service>(RESOURCES.services), slices: o.client.resource<EndpointSlice>(RESOURCES.endpointslices) },
    mode,
    nodes: proxyNodes(cfg),
    minSyncMs: cfg.proxyMinSyncMs,
    syncMs: cfg.proxySyncMs,
    fullSyncMs: cfg.proxyFullSyncMs,
    log: plog,
    metrics: new ProxyMetrics(o.metrics.registry),
    health,
    conntrack: conntrackDelete,
  });
  return {
    proxier,
    close: async () => {
      await health.close();
      await mode.close?.();
    },
  };
}
