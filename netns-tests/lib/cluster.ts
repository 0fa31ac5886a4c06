/**
 * A virtual cluster made only of network namespaces: a fabric namespace holding the
 * underlay bridge, and N node namespaces attached to it by veth pairs with addresses from
 * 198.18.0.0/15 (DESIGN.md's address plan). Built through src/kernel; nothing in the
 * machine's root namespace.
 *
 *     [fabric: br0] ── u1 ═ eth0 [node n1 198.18.0.1] ── u2 ═ eth0 [node n2 198.18.0.2] ...
 */
import { Netlink, NetNS } from '../../src/kernel/index.js';
import { setSysctl } from '../../src/kernel/sysctl.js';
import type { Scope } from './harness.js';

export interface VNode {
  /** Short name: n1, n2... */
  name: string;
  netns: NetNS;
  nl: Netlink;
  /** Underlay address (198.18.0.i). */
  ip: string;
  /** IPv6 underlay address (2001:2::i, RFC 5180's benchmarking range), with `underlayV6`. */
  ipv6: string | undefined;
  /** Underlay interface inside the node namespace. */
  iface: string;
}

export interface VirtualCluster {
  fabric: NetNS;
  fabricNl: Netlink;
  nodes: VNode[];
  /** Underlay prefix length used for node addresses. */
  underlayPrefix: number;
  /** Attaches one more namespace to the underlay (an outside client, another node). */
  attach(name: string, ip: string): Promise<VNode>;
  /**
   * Attaches the namespace this process runs in (a test's own namespace, see
   * insideOwnNetns) to the underlay with `ip`, so the test talks to the nodes directly.
   */
  attachSelf(ip: string): Promise<void>;
}

export interface ClusterOptions {
  nodes?: number;
  /** Underlay MTU. Default 1500. */
  mtu?: number;
  /** Third octet of the underlay /24 (198.18.<n>.0/24). Default 0. */
  underlayNet?: number;
  /** Also give nodes IPv6 underlay addresses 2001:2::<i>/64. */
  underlayV6?: boolean;
}

export async function buildCluster(scope: Scope, opts: ClusterOptions = {}): Promise<VirtualCluster> {
  const count = opts.nodes ?? 3;
  const mtu = opts.mtu ?? 1500;
  const net = opts.underlayNet ?? 0;
  const fabric = await scope.netns('fabric');
  const fabricNl = scope.netlink(fabric);
  await fabricNl.links.ensure({ kind: 'bridge', name: 'br0', mtu, up: true });
  let port = 0;
  const attach = async (name: string, ip: string): Promise<VNode> => {
    port++;
    const netns = await scope.netns(name);
    const nl = scope.netlink(netns);
    await fabricNl.links.ensure({ kind: 'veth', name: `u${port}`, mtu, master: 'br0', up: true, peer: { name: 'eth0', netns } });
    await nl.links.setUp('eth0');
    await nl.addrs.ensure('eth0', `${ip}/24`);
    const ipv6 = opts.underlayV6 ? `2001:2::${Number(ip.split('.')[3]).toString(16)}` : undefined;
    if (ipv6) await nl.addrs.ensure('eth0', `${ipv6}/64`, { nodad: true });
    setSysctl(netns, 'net.ipv4.ip_forward', '1');
    setSysctl(netns, 'net.ipv6.conf.all.forwarding', '1');
    return { name, netns, nl, ip, ipv6, iface: 'eth0' };
  };
  const attachSelf = async (ip: string): Promise<void> => {
    // Never the machine's root namespace: only a test's own one (insideOwnNetns sets this).
    if (!process.env.PODNET_TEST_NETNS) throw new Error('attachSelf: this process is not inside a test namespace (use insideOwnNetns)');
    port++;
    const self = NetNS.current();
    const nl = scope.netlink();
    await fabricNl.links.ensure({ kind: 'veth', name: `u${port}`, mtu, master: 'br0', up: true, peer: { name: 'uplink', netns: self } });
    self.close();
    await nl.links.setUp('uplink');
    await nl.addrs.ensure('uplink', `${ip}/24`);
  };
  const nodes: VNode[] = [];
  for (let i = 1; i <= count; i++) nodes.push(await attach(`n${i}`, `198.18.${net}.${i}`));
  return { fabric, fabricNl, nodes, underlayPrefix: 24, attach, attachSelf };
}

export interface VPod {
  name: string;
  netns: NetNS;
  nl: Netlink;
  ip: string;
  hostVeth: string;
}

/**
 * Adds a pod namespace to a node the way a CNI bridge plugin would: bridge `cbr0` with the
 * gateway address, a veth pair with the pod end as eth0, the pod address and default route.
 */
export async function addPod(scope: Scope, node: VNode, name: string, subnet: { gateway: string; prefix: number }, ip: string): Promise<VPod> {
  const netns = await scope.netns(`${node.name}-${name}`);
  const nl = scope.netlink(netns);
  await node.nl.links.ensure({ kind: 'bridge', name: 'cbr0', up: true });
  await node.nl.addrs.ensure('cbr0', `${subnet.gateway}/${subnet.prefix}`);
  const hostVeth = `v${name}`.slice(0, 15);
  await node.nl.links.ensure({ kind: 'veth', name: hostVeth, master: 'cbr0', up: true, peer: { name: 'eth0', netns } });
  await nl.links.setUp('eth0');
  await nl.addrs.ensure('eth0', `${ip}/${subnet.prefix}`);
  await nl.routes.ensure({ dst: 'default', via: subnet.gateway });
  return { name, netns, nl, ip, hostVeth };
}
