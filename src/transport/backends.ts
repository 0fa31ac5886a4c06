/**
 * The backends: vxlan and host-gw (kernel data paths), udp (podnet's packet loop over a
 * TUN device). Each sets up its own devices in register(), plans with plan.ts and applies
 * with reconcile.ts; teardown() removes its devices and every podnet route.
 */
import { createHash } from 'node:crypto';
import type { Cidr } from '../util/ipnet.js';
import type { Netlink } from '../kernel/index.js';
import { deleteLinkOffThread } from '../kernel/offthread.js';
import type { Logger } from '../util/log.js';
import { familyOf } from '../util/ipnet.js';
import { podMtu } from './mtu.js';
import { UDP_DEV, UDP_PORT, VXLAN_DEV, VXLAN_VNI, planHostGw, planUdp, planVxlan, tunnelAddress } from './plan.js';
import { RTPROT_PODNET, applyState } from './reconcile.js';
import type { Backend, LocalNode, Peer, Registration, SyncReport } from './types.js';
import { emptyState } from './types.js';

export const BACKEND_DATA_ANNOTATION = 'podnet.io/backend-data';

export interface BackendOptions {
  nl: Netlink;
  self: LocalNode;
  log: Logger;
  /** Pod MTU override (default: underlay MTU minus the overhead). */
  mtu?: number | undefined;
  /** vxlan: route to on-link peers directly (flannel's DirectRouting). */
  directRouting?: boolean;
  vni?: number;
  vxlanPort?: number;
  udpPort?: number;
}

/** A stable, locally administered MAC for this node's VTEP (the same across restarts). */
export function vtepMac(nodeName: string): string {
  const h = createHash('sha256').update(`podnet-vtep:${nodeName}`).digest();
  const b = [0x0a, h[0]!, h[1]!, h[2]!, h[3]!, h[4]!];
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** The node subnets' network addresses on a tunnel device (10.244.1.0/32, fd00:..:1::/128). */
export async function ensureTunnelAddresses(nl: Netlink, dev: string, subnets: Cidr[]): Promise<void> {
  for (const s of subnets) await nl.addrs.ensure(dev, `${tunnelAddress(s)}/${s.family === 4 ? 32 : 128}`, { nodad: s.family === 6, noprefixroute: true });
}

/** Deletes every route podnet's transports installed (any table, any device). */
export async function deleteTransportRoutes(nl: Netlink): Promise<number> {
  let n = 0;
  for (const r of await nl.routes.list({ table: 'all', protocol: RTPROT_PODNET })) {
    if (await nl.routes.delete({ dst: r.dst, table: r.table, ...(r.devIndex !== undefined ? { dev: r.devIndex } : {}) })) n++;
  }
  return n;
}

/** Removes what any backend made: its devices and routes (backend switch, cleanup). */
export async function teardownAll(nl: Netlink): Promise<void> {
  await deleteTransportRoutes(nl);
  for (const dev of [VXLAN_DEV, UDP_DEV]) if (await nl.links.get(dev)) await deleteLinkOffThread(nl.netns, dev);
}

export class HostGwBackend implements Backend {
  readonly name = 'host-gw' as const;
  constructor(private readonly o: BackendOptions) {}

  async register(): Promise<Registration> {
    return { mtu: this.o.mtu ?? podMtu('host-gw', this.o.self.underlay.mtu, familyOf(this.o.self.ip)), publish: { [BACKEND_DATA_ANNOTATION]: '{}' } };
  }

  sync(peers: Peer[]): Promise<SyncReport> {
    return applyState(this.o.nl, planHostGw(this.o.self, peers), { neighDevs: [] });
  }

  async teardown(): Promise<void> {
    await deleteTransportRoutes(this.o.nl);
  }
}

export class VxlanBackend implements Backend {
  readonly name = 'vxlan' as const;
  readonly mac: string;
  constructor(private readonly o: BackendOptions) {
    this.mac = vtepMac(o.self.name);
  }

  /**
   * The VTEP: `ip link add podnet.1 type vxlan id 1 dstport 8472 local NODE_IP dev UNDERLAY
   * nolearning`, a stable MAC, MTU = underlay − 50 (− 70 over IPv6), and the node subnets'
   * network addresses on it (`10.244.1.0/32`): the peers' routes point at those.
   */
  async register(): Promise<Registration> {
    const self = this.o.self;
    const fam = familyOf(self.ip);
    const mtu = this.o.mtu ?? podMtu('vxlan', self.underlay.mtu, fam);
    await this.o.nl.links.ensure(
      { kind: 'vxlan', name: VXLAN_DEV, vni: this.o.vni ?? VXLAN_VNI, port: this.o.vxlanPort ?? 8472, local: self.ip, dev: self.underlay.name, learning: false, mac: this.mac, mtu, up: true },
      { recreate: true },
    );
    await ensureTunnelAddresses(this.o.nl, VXLAN_DEV, self.subnets);
    return { mtu, publish: { [BACKEND_DATA_ANNOTATION]: JSON.stringify({ VNI: this.o.vni ?? VXLAN_VNI, VtepMAC: this.mac }) } };
  }

  sync(peers: Peer[]): Promise<SyncReport> {
    return applyState(this.o.nl, planVxlan(this.o.self, peers, { directRouting: !!this.o.directRouting }), { neighDevs: [VXLAN_DEV] });
  }

  async teardown(): Promise<void> {
    await deleteTransportRoutes(this.o.nl);
    if (await this.o.nl.links.get(VXLAN_DEV)) await deleteLinkOffThread(this.o.nl.netns, VXLAN_DEV);
  }
}

export { UDP_DEV, UDP_PORT, emptyState };
