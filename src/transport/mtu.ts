/**
 * Pod MTU per transport: the underlay MTU minus what the transport adds to each packet,
 * so a full-size pod packet still fits the underlay without fragmentation.
 *   vxlan: outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14 = 50 (70 over IPv6)
 *   udp:   outer IPv4 20 + UDP 8 = 28 (48 over IPv6)
 *   host-gw: nothing (plain routing)
 */
import type { Family } from '../util/ipnet.js';

export type TransportName = 'vxlan' | 'host-gw' | 'udp';

export function transportOverhead(backend: TransportName, underlay: Family): number {
  switch (backend) {
    case 'vxlan':
      return underlay === 6 ? 70 : 50;
    case 'udp':
      return underlay === 6 ? 48 : 28;
    case 'host-gw':
      return 0;
  }
}

export function podMtu(backend: TransportName, underlayMtu: number, underlay: Family): number {
  return underlayMtu - transportOverhead(backend, underlay);
}
