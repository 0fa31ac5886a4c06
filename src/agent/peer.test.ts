import { describe, expect, it } from 'vitest';
import type { Node, NodeAddress } from '../client/types.js';
import { peerOf } from './transport.js';

const node = (over: { annotations?: Record<string, string>; addresses?: NodeAddress[]; podCIDR?: string; podCIDRs?: string[] }): Node => ({
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name: 'n2', annotations: over.annotations ?? {} },
  spec: { ...(over.podCIDR ? { podCIDR: over.podCIDR } : {}), ...(over.podCIDRs ? { podCIDRs: over.podCIDRs } : {}) },
  status: { addresses: over.addresses ?? [] },
});

describe('peerOf (a Node as a transport peer)', () => {
  it('reads the InternalIPs by family, podCIDRs, backend type and data', () => {
    const p = peerOf(node({
      annotations: { 'podnet.io/backend-type': 'vxlan', 'podnet.io/backend-data': '{"VNI":1,"VtepMAC":"0a:01:02:03:04:05"}' },
      addresses: [{ type: 'Hostname', address: 'n2' }, { type: 'InternalIP', address: '2001:2::2' }, { type: 'InternalIP', address: '198.18.0.2' }, { type: 'ExternalIP', address: '192.0.2.2' }],
      podCIDRs: ['10.244.2.0/24', 'fd00:10:244:2::/64'],
    }));
    expect(p).toMatchObject({ name: 'n2', ip: '198.18.0.2', ipv6: '2001:2::2', backend: 'vxlan', data: { VNI: 1, VtepMAC: '0a:01:02:03:04:05' } });
    expect(p.subnets.map(String)).toEqual(['10.244.2.0/24', 'fd00:10:244:2::/64']);
  });

  it('falls back to spec.podCIDR; an IPv6-only node has its IPv6 address as ip', () => {
    const p = peerOf(node({ addresses: [{ type: 'InternalIP', address: '2001:2::2' }], podCIDR: 'fd00:10:244:2::/64' }));
    expect(p.ip).toBe('2001:2::2');
    expect(p.ipv6).toBe('2001:2::2');
    expect(p.subnets.map(String)).toEqual(['fd00:10:244:2::/64']);
  });

  it('garbage backend data or subnets make a peer without them, never a throw', () => {
    for (const data of ['not json', '[1,2]', 'null', '"text"']) {
      expect(peerOf(node({ annotations: { 'podnet.io/backend-data': data } })).data).toEqual({});
    }
    expect(peerOf(node({ podCIDRs: ['10.244.2.0/33', 'x', '10.244.3.0/24'] })).subnets.map(String)).toEqual(['10.244.3.0/24']);
  });

  it('a Node without subnet or addresses yet', () => {
    expect(peerOf(node({}))).toEqual({ name: 'n2', ip: undefined, ipv6: undefined, subnets: [], backend: undefined, data: {} });
  });
});
