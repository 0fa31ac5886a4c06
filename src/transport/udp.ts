/**
 * The udp backend (flannel's "udp", done fast): a TUN device `podnet.udp` whose packets
 * podnet's native loop carries in UDP datagrams to the agent of the node owning the
 * destination subnet (port 8285), on its own thread with batched syscalls. Routes send
 * remote pod subnets into the device; the loop's subnet -> peer table follows the peers.
 * MTU = underlay − 28 (IPv4 + UDP headers).
 */
import { UdpTunnel } from '../kernel/udptunnel.js';
import { deleteLinkOffThread } from '../kernel/offthread.js';
import { familyOf } from '../util/ipnet.js';
import type { BackendOptions } from './backends.js';
import { BACKEND_DATA_ANNOTATION, deleteTransportRoutes, ensureTunnelAddresses } from './backends.js';
import { podMtu } from './mtu.js';
import { UDP_DEV, UDP_PORT, planUdp } from './plan.js';
import { applyState } from './reconcile.js';
import type { Backend, Peer, Registration, SyncReport } from './types.js';

export class UdpBackend implements Backend {
  readonly name = 'udp' as const;
  private tunnel: UdpTunnel | undefined;

  constructor(private readonly o: BackendOptions) {}

  private get port(): number {
    return this.o.udpPort ?? UDP_PORT;
  }

  /** Entries in the loop's subnet -> peer table. */
  peerCount(): number {
    return this.tunnel?.peers.length ?? 0;
  }

  async register(): Promise<Registration> {
    const self = this.o.self;
    const mtu = this.o.mtu ?? podMtu('udp', self.underlay.mtu, familyOf(self.ip));
    this.tunnel = await UdpTunnel.open({ ...(this.o.nl.netns ? { netns: this.o.nl.netns } : {}), tunName: UDP_DEV, localAddress: self.ip, port: this.port, mtu });
    // The node's own traffic to remote pods leaves from its subnet's network address
    // (flannel gives flannel0 one too): the peer's loop accepts only sources inside the
    // sending node's subnets, and the answer routes back through the tunnel.
    await ensureTunnelAddresses(this.o.nl, UDP_DEV, self.subnets);
    this.tunnel.start();
    return { mtu, publish: { [BACKEND_DATA_ANNOTATION]: JSON.stringify({ Port: this.port }) } };
  }

  async sync(peers: Peer[]): Promise<SyncReport> {
    const desired = planUdp(this.o.self, peers, this.port);
    this.tunnel?.setPeers(desired.udpPeers);
    return applyState(this.o.nl, desired, { neighDevs: [] });
  }

  /** Counters of the packet loop (for metrics and the trace). */
  stats(): ReturnType<UdpTunnel['stats']> | undefined {
    return this.tunnel?.stats();
  }

  async close(): Promise<void> {
    this.tunnel?.stop();
    this.tunnel = undefined;
  }

  async teardown(): Promise<void> {
    await this.close();
    await deleteTransportRoutes(this.o.nl);
    if (await this.o.nl.links.get(UDP_DEV)) await deleteLinkOffThread(this.o.nl.netns, UDP_DEV);
  }
}
