/**
 * `podnet agent`: wiring only. Registers the node, claims its pod subnets, opens the
 * node's IPAM and sandbox records, builds the bridge and the egress masquerade, then runs
 * the pod reconciler, the CNI endpoint, the heartbeat and the HTTP endpoint until the
 * signal aborts. Stopping the agent leaves pods running: their sandboxes are owned by
 * pause processes and adopted by the next agent.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { Cidr } from '../util/ipnet.js';
import { KubeClient, configFromFlags, loadKubeconfig } from '../client/index.js';
import type { ClientConfig } from '../client/index.js';
import { NETNS_RUN_DIR, Netlink } from '../kernel/index.js';
import { native } from '../kernel/native.js';
import { setSysctl } from '../kernel/sysctl.js';
import { FileStore, IpamAllocator } from '../ipam/index.js';
import { SandboxRecords } from '../pods/records.js';
import { BRIDGE, ensureBridge } from '../pods/sandbox.js';
import type { NodeNetwork } from '../pods/sandbox.js';
import { createBackend, removeOtherBackends } from '../transport/index.js';
import { TransportController } from './transport.js';
import { EventRecorder, eventSink } from './events.js';
import { setupProxy } from './proxy.js';
import type { AgentProxy } from './proxy.js';
import { createAgentTrace } from './trace.js';
import { ErrorCodes, PodnetError, formatError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import type { AgentConfig } from './config.js';
import { applyMasquerade } from './masquerade.js';
import { writeAgentSettings } from './settings.js';
import { AgentMetrics } from './metrics.js';
import { UdpBackend } from '../transport/udp.js';
import { NodeRegistration } from './node.js';
import { PodReconciler } from './pods.js';
import { AgentServer, tokenReviewAuthenticator } from './server.js';
import { AgentCniHandler } from './cni.js';
import { CniServer } from '../cni/index.js';
import { claimSubnets } from './subnet.js';

export async function clientConfigFor(c: AgentConfig['connection']): Promise<ClientConfig> {
  if ('kubeconfig' in c) return loadKubeconfig({ path: c.kubeconfig });
  return configFromFlags({ server: c.server, ...(c.token ? { token: c.token } : {}), ...(c.tokenFile ? { tokenFile: c.tokenFile } : {}), ...(c.caFile ? { caFile: c.caFile } : {}), ...(c.insecure ? { insecure: true } : {}) });
}

/** The gateway of a node subnet: its first address, on the bridge. */
function gatewayOf(subnet: Cidr): string {
  return subnet.nth(1n);
}

export class Agent {
  readonly metrics = new AgentMetrics({ processMetrics: true });
  private reconciler: PodReconciler | undefined;
  private transport: TransportController | undefined;
  private ready = false;

  constructor(
    private readonly cfg: AgentConfig,
    private readonly log: Logger,
  ) {}

  get podReconciler(): PodReconciler | undefined {
    return this.reconciler;
  }

  async run(signal: AbortSignal): Promise<void> {
    const cfg = this.cfg;
    const log = this.log.child({ node: cfg.nodeName });
    if (process.getuid?.() !== 0) throw new PodnetError(ErrorCodes.PERMISSION, 'podnet agent must run as root (it configures namespaces, links and rules)');
    mkdirSync(cfg.stateDir, { recursive: true, mode: 0o700 });
    writeAgentSettings(cfg.stateDir, { nodeName: cfg.nodeName, netnsPrefix: cfg.netnsPrefix });
    native().prepareNetnsDir(NETNS_RUN_DIR);
    const host = Netlink.open();
    const client = new KubeClient(await clientConfigFor(cfg.connection));
    const closers: (() => Promise<void> | void)[] = [() => host.close(), () => client.close()];
    try {
      // The underlay: the interface holding the node address gives the MTU.
      const addrs = await host.addrs.list();
      const nodeAddr = addrs.find((a) => a.ip === cfg.nodeIP);
      if (!nodeAddr) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `--node-ip ${cfg.nodeIP} is not an address of this host`, { field: 'node-ip' });
      const iface = cfg.iface ? await host.links.require(cfg.iface) : await host.links.require(nodeAddr.devIndex);
      setSysctl(undefined, 'net.ipv4.ip_forward', '1');
      if (cfg.networks.some((n) => n.cidr.family === 6)) setSysctl(undefined, 'net.ipv6.conf.all.forwarding', '1');
      // Bridged pod-to-pod traffic must pass netfilter, or replies to a Service VIP from a pod on the
      // same bridge skip the reverse NAT (kube-proxy requires the same). Needs br_netfilter loaded.
      if (existsSync('/proc/sys/net/bridge/bridge-nf-call-iptables')) {
        setSysctl(undefined, 'net.bridge.bridge-nf-call-iptables', '1');
        if (cfg.networks.some((n) => n.cidr.family === 6)) setSysctl(undefined, 'net.bridge.bridge-nf-call-ip6tables', '1');
      } else if (cfg.proxyMode !== 'none') log.warn('br_netfilter is not loaded: a pod reaching a Service whose endpoint is on its own bridge may time out (modprobe br_netfilter)');

      const reg = new NodeRegistration(client, { nodeName: cfg.nodeName, nodeIP: cfg.nodeIP, nodeIPv6: cfg.nodeIPv6, backend: cfg.backend, agentPort: cfg.listen.port }, log);
      await retryUntil(signal, log, 'registering the node', () => reg.register());
      const subnets = await claimSubnets({ client, nodeName: cfg.nodeName, networks: cfg.networks, stateDir: cfg.stateDir, log });
      const store = await FileStore.open(cfg.stateDir);
      closers.push(() => store.close());
      const ipam = await IpamAllocator.open(store, { subnets: subnets.map(String) });
      const records = SandboxRecords.open(cfg.stateDir, (file, err) => log.warn({ file, err: formatError(err) }, 'skipped an unreadable sandbox record'));
      // The transport: its devices, the MTU it leaves to pods, the data its peers need.
      const prefixes = addrs.filter((a) => a.devIndex === iface.index && a.scope === 0).map((a) => Cidr.parse(`${a.ip}/${a.prefix}`, 'underlay', { strict: false }));
      const backend = createBackend(cfg.backend, {
        nl: host,
        self: { name: cfg.nodeName, ip: cfg.nodeIP, ipv6: cfg.nodeIPv6, subnets, underlay: { name: iface.name, mtu: iface.mtu, prefixes } },
        log: log.child({ component: 'transport' }),
        mtu: cfg.mtu,
        directRouting: cfg.directRouting,
      });
      await removeOtherBackends(host, cfg.backend);
      const transportReg = await backend.register();
      closers.push(() => backend.close?.());
      if (backend instanceof UdpBackend) this.metrics.udpTunnel = backend;
      const mtu = transportReg.mtu;
      await retryUntil(signal, log, 'publishing the transport data', () => reg.annotate(transportReg.publish));
      const net: NodeNetwork = { bridge: BRIDGE, mtu, gateways: subnets.map((s) => ({ ip: gatewayOf(s), prefix: s.prefix, family: s.family })) };
      await ensureBridge(host, net);
      await applyMasquerade(cfg.networks.map((n) => n.cidr), cfg.masquerade);
      log.info({ subnets: subnets.map(String), bridge: BRIDGE, mtu, backend: cfg.backend, underlay: iface.name, masquerade: cfg.masquerade }, 'node network ready');

      const cni = new AgentCniHandler({ host, net, records, ipam, log: log.child({ component: 'cni' }), metrics: this.metrics, ready: () => this.ready });
      const cniServer = new CniServer({ socketPath: cfg.cniSocket, handler: cni, log: log.child({ component: 'cni' }) });
      await cniServer.listen();
      closers.push(async () => {
        await cniServer.close();
        await cni.settled();
      });
      const reconciler = new PodReconciler({
        client,
        nodeName: cfg.nodeName,
        nodeIPs: [cfg.nodeIP, ...(cfg.nodeIPv6 ? [cfg.nodeIPv6] : [])],
        netnsPrefix: cfg.netnsPrefix,
        net,
        host,
        records,
        ipam,
        log,
        metrics: this.metrics,
        concurrency: cfg.podConcurrency,
        resyncMs: cfg.resyncMs,
        busyOwners: () => cni.busy,
      });
      this.reconciler = reconciler;
      let proxyRef: AgentProxy | undefined;
      const trace = createAgentTrace({ nodeName: cfg.nodeName, backend: cfg.backend, proxyMode: cfg.proxyMode, host, records, bridge: BRIDGE, proxier: () => proxyRef?.proxier, masquerade: cfg.masquerade, log });
      closers.push(() => trace.close());
      await trace.sweep();
      const server = new AgentServer({
        listen: cfg.listen,
        metrics: this.metrics,
        authenticate: tokenReviewAuthenticator(client),
        healthy: () => true,
        ready: () => this.ready,
        log,
        routes: trace.routes,
      });
      await server.listen();
      closers.push(() => server.close());
      this.updateGauges(ipam, records);
      const gauges = setInterval(() => this.updateGauges(ipam, records), 5000);
      closers.push(() => clearInterval(gauges));

      const recorder = new EventRecorder({ sink: eventSink(client), component: 'podnet-agent', host: cfg.nodeName, log: log.child({ component: 'events' }) });
      const transport = new TransportController({ client, backend, registration: reg, nodeName: cfg.nodeName, log: log.child({ component: 'transport' }), metrics: this.metrics, resyncMs: cfg.resyncMs, recorder });
      this.transport = transport;
      const proxy = await setupProxy({ cfg, client, metrics: this.metrics, log });
      proxyRef = proxy;
      if (proxy) closers.push(() => proxy.close());
      const heartbeat = reg.run(signal);
      const pods = reconciler.run(signal);
      const peers = transport.run(signal);
      const services = proxy ? proxy.proxier.run(signal) : Promise.resolve();
      void (async () => {
        while (!signal.aborted && !(reconciler.ready && transport.ready && (!proxy || proxy.proxier.ready))) await new Promise((r) => setTimeout(r, 50));
        if (signal.aborted) return;
        this.ready = true;
        await reg.setReady(true, 'PodnetAgentReady', 'podnet agent is ready: pod network configured').catch((e: unknown) => log.warn({ err: formatError(e) }, 'cannot report the node ready'));
      })();
      log.info({ listen: `${cfg.listen.host}:${server.port}`, cniSocket: cfg.cniSocket }, 'podnet agent running');
      await Promise.all([heartbeat, pods, peers, services]);
    } finally {
      for (const c of closers.reverse()) {
        try {
          await c();
        } catch (e) {
          log.warn({ err: formatError(e) }, 'shutdown step failed');
        }
      }
      log.info('podnet agent stopped');
    }
  }

  private updateGauges(ipam: IpamAllocator, records: SandboxRecords): void {
    for (const u of ipam.usage()) {
      const family = `IPv${u.family}`;
      this.metrics.ipamAllocated.set({ family }, u.inUse);
      this.metrics.ipamCapacity.set({ family }, Number(u.capacity));
    }
    const all = records.list();
    this.metrics.sandboxes.set({ kind: 'pod' }, all.filter((r) => r.kind === 'pod').length);
    this.metrics.sandboxes.set({ kind: 'cni' }, all.filter((r) => r.kind === 'cni').length);
  }
}

/** Retries `fn` with backoff (API not up yet) until it succeeds or `signal` aborts. */
async function retryUntil<T>(signal: AbortSignal, log: Logger, what: string, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (signal.aborted || attempt >= 30) throw e;
      const wait = Math.min(5000, 100 * 2 ** attempt);
      log.warn({ attempt, retryInMs: wait, err: formatError(e) }, `${what} failed; retrying`);
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}
