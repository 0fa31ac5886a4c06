import { describe, expect, it } from 'vitest';
import type { EndpointSlice, Service } from '../client/types.js';
import { buildSnapshot, isProxied, servicePorts, usable } from './snapshot.js';
import type { ProxyEndpoint, ProxyNodeConfig } from './types.js';

const node4: ProxyNodeConfig = { nodeName: 'n1', family: 4, nodeIPs: ['198.18.0.1'], clusterCIDR: '10.244.0.0/16' };
const node6: ProxyNodeConfig = { nodeName: 'n1', family: 6, nodeIPs: ['fd00:198:18::1'], clusterCIDR: 'fd00:10:244::/56' };

const svc = (spec: Service['spec'], status?: Service['status']): Service => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name: 'web', namespace: 'default' },
  spec: { clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10'], ports: [{ name: 'http', port: 80 }], ...spec },
  ...(status ? { status } : {}),
});

type Ep = { ip: string; node?: string; ready?: boolean; serving?: boolean; terminating?: boolean };
const slice = (eps: Ep[], o: { addressType?: 'IPv4' | 'IPv6'; ports?: EndpointSlice['ports']; service?: string; name?: string } = {}): EndpointSlice => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name: o.name ?? 'web-1', namespace: 'default', labels: { 'kubernetes.io/service-name': o.service ?? 'web' } },
  addressType: o.addressType ?? 'IPv4',
  ports: o.ports ?? [{ name: 'http', port: 8080, protocol: 'TCP' }],
  endpoints: eps.map((e) => ({
    addresses: [e.ip],
    conditions: { ...(e.ready !== undefined ? { ready: e.ready } : {}), ...(e.serving !== undefined ? { serving: e.serving } : {}), ...(e.terminating !== undefined ? { terminating: e.terminating } : {}) },
    ...(e.node ? { nodeName: e.node } : {}),
  })),
});
const ips = (eps: ProxyEndpoint[]) => eps.map((e) => e.ip);

describe('servicePorts', () => {
  it('one port: ClusterIP, endpoints with the slice port, sorted, local flag from the node name', () => {
    const [p] = servicePorts(svc({}), [slice([{ ip: '10.244.2.5', node: 'n2' }, { ip: '10.244.1.5', node: 'n1' }])], node4);
    expect(p).toMatchObject({ key: 'default/web:http', protocol: 'TCP', port: 80, clusterIP: '10.96.0.10', nodePort: 0, hasEndpoints: true });
    expect(p!.endpoints.map((e) => [e.ip, e.port, e.isLocal])).toEqual([
      ['10.244.1.5', 8080, true],
      ['10.244.2.5', 8080, false],
    ]);
    expect(ips(p!.clusterEndpoints)).toEqual(['10.244.1.5', '10.244.2.5']);
  });

  it('two named ports take their own slice ports; a slice port of another protocol does not match', () => {
    const s = svc({ ports: [{ name: 'http', port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }] });
    const ports = servicePorts(s, [slice([{ ip: '10.244.1.5' }], { ports: [{ name: 'http', port: 8080, protocol: 'TCP' }, { name: 'dns', port: 5353, protocol: 'UDP' }, { name: 'dns', port: 9999, protocol: 'TCP' }] })], node4);
    expect(ports.map((p) => [p.key, p.protocol, p.endpoints[0]?.port])).toEqual([
      ['default/web:http', 'TCP', 8080],
      ['default/web:dns', 'UDP', 5353],
    ]);
  });

  it('terminating endpoints only when no ready one exists, and only serving ones', () => {
    const both = servicePorts(svc({}), [slice([{ ip: '10.244.1.5' }, { ip: '10.244.1.6', ready: false, serving: true, terminating: true }])], node4)[0]!;
    expect(ips(both.clusterEndpoints)).toEqual(['10.244.1.5']);
    const onlyTerm = servicePorts(svc({}), [slice([{ ip: '10.244.1.6', ready: false, serving: true, terminating: true }, { ip: '10.244.1.7', ready: false, serving: false, terminating: true }])], node4)[0]!;
    expect(ips(onlyTerm.clusterEndpoints)).toEqual(['10.244.1.6']);
    expect(onlyTerm.hasEndpoints).toBe(true);
    const none = servicePorts(svc({}), [slice([{ ip: '10.244.1.7', ready: false, serving: false }])], node4)[0]!;
    expect(none.clusterEndpoints).toEqual([]);
    expect(none.hasEndpoints).toBe(false);
  });

  it('externalTrafficPolicy Local: external endpoints are the local ones; the ClusterIP keeps all', () => {
    const s = svc({ type: 'LoadBalancer', externalTrafficPolicy: 'Local', healthCheckNodePort: 31000, ports: [{ name: 'http', port: 80, nodePort: 30080 }] }, { loadBalancer: { ingress: [{ ip: '198.18.1.10' }, { ip: 'fd00::1' }] } });
    const p = servicePorts(s, [slice([{ ip: '10.244.1.5', node: 'n1' }, { ip: '10.244.2.5', node: 'n2' }])], node4)[0]!;
    expect(p).toMatchObject({ externalPolicyLocal: true, nodePort: 30080, healthCheckNodePort: 31000, loadBalancerIPs: ['198.18.1.10'] });
    expect(ips(p.externalEndpoints)).toEqual(['10.244.1.5']);
    expect(ips(p.clusterEndpoints)).toEqual(['10.244.1.5', '10.244.2.5']);
  });

  it('internalTrafficPolicy Local: cluster endpoints are the local ones (none here)', () => {
    const p = servicePorts(svc({ internalTrafficPolicy: 'Local' }), [slice([{ ip: '10.244.2.5', node: 'n2' }])], node4)[0]!;
    expect(p.clusterEndpoints).toEqual([]);
    expect(p.hasEndpoints).toBe(true);
  });

  it('session affinity defaults to 10800 s; externalIPs of the family only', () => {
    const p = servicePorts(svc({ sessionAffinity: 'ClientIP', externalIPs: ['198.18.1.5', 'fd00::5'] }), [], node4)[0]!;
    expect(p.affinityTimeoutSeconds).toBe(10800);
    expect(p.externalIPs).toEqual(['198.18.1.5']);
    expect(servicePorts(svc({ sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 30 } } }), [], node4)[0]!.affinityTimeoutSeconds).toBe(30);
  });

  it('dual-stack: each family takes its ClusterIP and its slices', () => {
    const s = svc({ clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10', 'fd00:10:96::a'], ipFamilies: ['IPv4', 'IPv6'] });
    const sl = [slice([{ ip: '10.244.1.5' }]), slice([{ ip: 'fd00:10:244:1::5' }], { addressType: 'IPv6', name: 'web-2' })];
    expect(ips(servicePorts(s, sl, node4)[0]!.endpoints)).toEqual(['10.244.1.5']);
    const p6 = servicePorts(s, sl, node6)[0]!;
    expect(p6.clusterIP).toBe('fd00:10:96::a');
    expect(ips(p6.endpoints)).toEqual(['fd00:10:244:1::5']);
    expect(servicePorts(svc({}), sl, node6)).toEqual([]);
  });

  it('headless and ExternalName Services are not proxied', () => {
    expect(isProxied(svc({ clusterIP: 'None', clusterIPs: ['None'] }))).toBe(false);
    expect(isProxied(svc({ type: 'ExternalName', externalName: 'example.org', clusterIP: '', clusterIPs: [] }))).toBe(false);
    expect(servicePorts(svc({ clusterIP: 'None', clusterIPs: ['None'] }), [], node4)).toEqual([]);
  });

  it('an endpoint in two slices is listed once, ready winning', () => {
    const p = servicePorts(svc({}), [slice([{ ip: '10.244.1.5', ready: false }], { name: 'a' }), slice([{ ip: '10.244.1.5' }], { name: 'b' })], node4)[0]!;
    expect(p.endpoints).toHaveLength(1);
    expect(p.endpoints[0]!.ready).toBe(true);
  });

  it('NodePort only for NodePort / LoadBalancer types', () => {
    expect(servicePorts(svc({ type: 'ClusterIP', ports: [{ name: 'http', port: 80, nodePort: 30080 }] }), [], node4)[0]!.nodePort).toBe(0);
    expect(servicePorts(svc({ type: 'NodePort', ports: [{ name: 'http', port: 80, nodePort: 30080 }] }), [], node4)[0]!.nodePort).toBe(30080);
  });
});

describe('buildSnapshot', () => {
  it('collects every Service port sorted by key, with only its own slices', () => {
    const a = { ...svc({}), metadata: { name: 'b', namespace: 'default' } };
    const b = { ...svc({ clusterIP: '10.96.0.11', clusterIPs: ['10.96.0.11'] }), metadata: { name: 'a', namespace: 'default' } };
    const snap = buildSnapshot([a, b], [slice([{ ip: '10.244.1.5' }], { service: 'a' })], node4);
    expect([...snap.services.keys()]).toEqual(['default/a:http', 'default/b:http']);
    expect(snap.services.get('default/a:http')!.endpoints).toHaveLength(1);
    expect(snap.services.get('default/b:http')!.endpoints).toHaveLength(0);
  });

  it('usable(): local-only scope falls back to local terminating endpoints', () => {
    const e = (ip: string, isLocal: boolean, ready: boolean, terminating = false): ProxyEndpoint => ({ ip, port: 1, isLocal, ready, serving: true, terminating });
    expect(ips(usable([e('a', false, true), e('b', true, false, true)], true))).toEqual(['b']);
    expect(ips(usable([e('a', false, true), e('b', true, false, true)], false))).toEqual(['a']);
  });
});
