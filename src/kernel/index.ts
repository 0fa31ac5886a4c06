/**
 * The kernel room's public face: namespaces, the netlink handle and its typed operations.
 *
 *   const ns = NetNS.create('pod-a');
 *   const host = Netlink.open();            // current namespace
 *   await host.links.ensure({ kind: 'veth', name: 'pn1', peer: { name: 'eth0', netns: ns } });
 *   const pod = Netlink.open(ns);           // a socket that lives in pod-a
 *   await pod.addrs.ensure('eth0', '10.244.1.2/24');
 */
import { AddrOps } from './addrs.js';
import { LinkOps } from './links.js';
import { FdbOps, NeighOps } from './neigh.js';
import { NetlinkHandle } from './netlink.js';
import type { NetNS } from './netns.js';
import { RouteOps } from './routes.js';

export class Netlink {
  readonly handle: NetlinkHandle;
  readonly links: LinkOps;
  readonly addrs: AddrOps;
  readonly routes: RouteOps;
  readonly neigh: NeighOps;
  readonly fdb: FdbOps;

  private constructor(handle: NetlinkHandle) {
    this.handle = handle;
    this.links = new LinkOps(handle);
    this.addrs = new AddrOps(handle, this.links);
    this.routes = new RouteOps(handle, this.links);
    this.neigh = new NeighOps(handle, this.links);
    this.fdb = new FdbOps(handle, this.links);
  }

  /** A handle whose socket lives in `netns` (default: the current namespace). */
  static open(netns?: NetNS): Netlink {
    return new Netlink(NetlinkHandle.open(netns));
  }

  get netns(): NetNS | undefined {
    return this.handle.netns;
  }

  close(): void {
    this.handle.close();
  }
}

export { NetNS, NETNS_RUN_DIR } from './netns.js';
export { NetlinkHandle, NLM_F } from './netlink.js';
export type { Link, LinkKind, LinkSpec, VethLink, BridgeLink, VxlanLink, DummyLink, TunLink, DeviceLink, VethSpec, BridgeSpec, VxlanSpec, DummySpec, TunSpec } from './links.js';
export type { Addr, AddrOptions } from './addrs.js';
export type { Route, RouteSpec, RouteType, RouteScope } from './routes.js';
export { RT_TABLE_MAIN, RT_TABLE_LOCAL, RTPROT } from './routes.js';
export type { Neigh, NeighSpec, FdbEntry, FdbSpec } from './neigh.js';
