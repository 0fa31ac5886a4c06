/**
 * The backends' planners (pure): this node + the other nodes -> the routes, neighbours,
 * FDB entries and tunnel peers that should exist here. No kernel access.
 *
 *   host-gw: 10.244.2.0/24 via 198.18.0.2 dev eth0            (the peer must be on-link)
 *   vxlan:   10.244.2.0/24 via 10.244.2.0 dev podnet.1 onlink  (flannel's L3 model)
 *            neigh 10.244.2.0 lladdr <peer VTEP MAC> dev podnet.1 nud permanent
 *            fdb <peer VTEP MAC> dev podnet.1 dst 198.18.0.2 self permanent
 *            (DirectRouting: on-link peers get the host-gw route instead)
 *   udp:     10.244.2.0/24 dev podnet.udp, and 10.244.2.0/24 -> 198.18.0.2:8285 in the loop
 */
import type { Cidr } from '../util/ipnet.js';
import { familyOf } from '../util/ipnet.js';
import type { DesiredState, LocalNode, Peer, Problem } from './types.js';
import { emptyState } from './types.js';

export const VXLAN_DEV = 'podnet.1';
export const UDP_DEV = 'podnet.udp';
export const VXLAN_VNI = 1;
export const UDP_PORT = 8285;

/** Whether `ip` is directly reachable on the underlay (inside one of its connected prefixes). */
export function onLink(self: LocalNode, ip: string): boolean {
  return self.underlay.prefixes.some((p) => p.family === familyOf(ip) && p.contains(ip));
}

/** The underlay address of a peer to use for a subnet of `family` (IPv4 underlay first). */
function peerAddress(peer: Peer, self: LocalNode): string | undefined {
  // Both ends need an underlay address of one family; prefer the node's first family.
  if (familyOf(self.ip) === 4) return peer.ip && familyOf(peer.ip) === 4 ? peer.ip : undefined;
  return peer.ipv6 ?? (peer.ip && familyOf(peer.ip) === 6 ? peer.ip : undefined);
}

function hostRoutes(self: LocalNode, peer: Peer, out: DesiredState): void {
  for (const s of peer.subnets) {
    const via = s.family === 4 ? (peer.ip && familyOf(peer.ip) === 4 ? peer.ip : undefined) : (peer.ipv6 ?? (peer.ip && familyOf(peer.ip) === 6 ? peer.ip : undefined));
    if (!via) {
      out.problems.push({ peer: peer.name, reason: 'NoAddress', message: `node ${peer.name} has no IPv${s.family} underlay address for its subnet ${s}` });
      continue;
    }
    if (!onLink(self, via)) {
      out.problems.push({ peer: peer.name, reason: 'NotOnLink', message: `node ${peer.name} (${via}) is not on-link on ${self.underlay.name} (${self.underlay.prefixes.join(', ')}): host-gw needs the nodes on one layer-2 network; no route to ${s} is installed` });
      continue;
    }
    out.routes.push({ dst: s.toString(), via, dev: self.underlay.name });
  }
}

const others = (self: LocalNode, peers: Peer[]) => peers.filter((p) => p.name !== self.name && p.subnets.length > 0).sort((a, b) => (a.name < b.name ? -1 : 1));

function mismatch(self: LocalNode, peer: Peer, backend: string): Problem | undefined {
  if (peer.backend === undefined || peer.backend === backend) return undefined;
  return { peer: peer.name, reason: 'BackendMismatch', message: `node ${peer.name} runs the ${peer.backend} backend, this node (${self.name}) ${backend}: no path between them` };
}

export function planHostGw(self: LocalNode, peers: Peer[]): DesiredState {
  const out = emptyState();
  for (const peer of others(self, peers)) {
    const m = mismatch(self, peer, 'host-gw');
    if (m) {
      out.problems.push(m);
      continue;
    }
    hostRoutes(self, peer, out);
  }
  return out;
}

/**
 * A node subnet's address on a tunnel device: its network address (10.244.2.0, fd00:..:2::).
 * vxlan peers route via it; on podnet.1 / podnet.udp it is the source of the node's own
 * traffic to remote pods.
 */
export function tunnelAddress(subnet: Cidr): string {
  return subnet.network;
}

export function planVxlan(self: LocalNode, peers: Peer[], opts: { directRouting?: boolean } = {}): DesiredState {
  const out = emptyState();
  for (const peer of others(self, peers)) {
    const m = mismatch(self, peer, 'vxlan');
    if (m) {
      out.problems.push(m);
      continue;
    }
    const vtep = peerAddress(peer, self);
    if (opts.directRouting && vtep && onLink(self, vtep)) {
      hostRoutes(self, peer, out);
      continue;
    }
    const mac = typeof peer.data.VtepMAC === 'string' ? peer.data.VtepMAC.toLowerCase() : undefined;
    if (!mac) {
      out.problems.push({ peer: peer.name, reason: 'NoBackendData', message: `node ${peer.name} has not published its VTEP MAC (podnet.io/backend-data) yet` });
      continue;
    }
    if (!vtep) {
      out.problems.push({ peer: peer.name, reason: 'NoAddress', message: `node ${peer.name} has no underlay address of the family of ${self.ip}` });
      continue;
    }
    for (const s of peer.subnets) {
      const gw = tunnelAddress(s);
      out.routes.push({ dst: s.toString(), via: gw, dev: VXLAN_DEV, onlink: true });
      out.neighbours.push({ dev: VXLAN_DEV, ip: gw, mac });
    }
    out.fdb.push({ dev: VXLAN_DEV, mac, dst: vtep });
  }
  return out;
}

export function planUdp(self: LocalNode, peers: Peer[], port = UDP_PORT): DesiredState {
  const out = emptyState();
  for (const peer of others(self, peers)) {
    const m = mismatch(self, peer, 'udp');
    if (m) {
      out.problems.push(m);
      continue;
    }
    const addr = peerAddress(peer, self);
    if (!addr) {
      out.problems.push({ peer: peer.name, reason: 'NoAddress', message: `node ${peer.name} has no underlay address of the family of ${self.ip}` });
      continue;
    }
    const peerPort = typeof peer.data.Port === 'number' ? peer.data.Port : port;
    for (const s of peer.subnets) {
      out.routes.push({ dst: s.toString(), dev: UDP_DEV });
      out.udpPeers.push({ subnet: s.toString(), peer: addr, port: peerPort });
    }
  }
  return out;
}
