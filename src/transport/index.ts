/**
 * The transports between nodes behind one contract (types.ts): vxlan, host-gw, udp.
 */
import type { Netlink } from '../kernel/index.js';
import { deleteLinkOffThread } from '../kernel/offthread.js';
import { HostGwBackend, VxlanBackend } from './backends.js';
import { UdpBackend } from './udp.js';
import type { BackendOptions } from './backends.js';
import { UDP_DEV, VXLAN_DEV } from './plan.js';
import type { Backend } from './types.js';

export type BackendName = Backend['name'];

export function createBackend(name: BackendName, opts: BackendOptions): Backend {
  switch (name) {
    case 'vxlan':
      return new VxlanBackend(opts);
    case 'host-gw':
      return new HostGwBackend(opts);
    case 'udp':
      return new UdpBackend(opts);
  }
}

/** A restart with another --backend: the devices of the others go (their routes go with them or are replaced). */
export async function removeOtherBackends(nl: Netlink, keep: BackendName): Promise<void> {
  if (keep !== 'vxlan' && (await nl.links.get(VXLAN_DEV))) await deleteLinkOffThread(nl.netns, VXLAN_DEV);
  if (keep !== 'udp' && (await nl.links.get(UDP_DEV))) await deleteLinkOffThread(nl.netns, UDP_DEV);
}

export { teardownAll, vtepMac, BACKEND_DATA_ANNOTATION } from './backends.js';
export type { Backend, Peer, LocalNode, DesiredState, SyncReport, Problem } from './types.js';
