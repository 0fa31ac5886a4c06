/**
 * Pod sandboxes in the kernel: the node bridge, and for each pod a veth pair (host end on
 * the bridge, `eth0` in the pod's network namespace), its addresses, `lo` up and default
 * routes through the bridge's gateway addresses. Agent sandboxes also get a pause process
 * owning new net + uts + ipc namespaces, pinned at /run/netns/<name> and detached so it
 * outlives agent restarts; CNI sandboxes use the namespace the runtime gives.
 *
 * Every operation here applies a decision made elsewhere (the reconciler and the CNI
 * handler decide; IPAM chooses addresses) and is safe to repeat: `ensure*` converge,
 * `destroy` of what is gone succeeds.
 */
import { existsSync, readFileSync } from 'node:fs';
import { NetNS, Netlink } from '../kernel/index.js';
import { alive, startPause, stopPause } from '../kernel/pause.js';
import { deleteLinkOffThread } from '../kernel/offthread.js';
import { ErrorCodes, PodnetError, isPodnetError } from '../util/errors.js';
import { parseInterfaceAddress } from '../util/ipnet.js';
import type { InterfaceAddress } from '../util/ipnet.js';
import type { SandboxRecord } from './records.js';

export const BRIDGE = 'podnet0';

/** The node's side of pod networking. */
export interface NodeNetwork {
  bridge: string;
  /** Gateway address of each family on the bridge, with the subnet's prefix: "10.244.1.1/24". */
  gateways: InterfaceAddress[];
  /** MTU of pod interfaces (the transport's). */
  mtu: number;
}

/**
 * The node bridge with the gateway addresses, up. Equivalent to `ip link add podnet0 type
 * bridge; ip addr replace 10.244.1.1/24 dev podnet0; ip link set podnet0 mtu M up`.
 */
export async function ensureBridge(host: Netlink, net: NodeNetwork): Promise<void> {
  await host.links.ensure({ kind: 'bridge', name: net.bridge, mtu: net.mtu, up: true });
  for (const g of net.gateways) await host.addrs.ensure(net.bridge, `${g.ip}/${g.prefix}`, { nodad: g.family === 6 });
}

/** What a sandbox is to be (the record without what creating it produces). */
export type SandboxSpec = Omit<SandboxRecord, 'pausePid' | 'pauseStart' | 'mac' | 'createdAt' | 'netnsPath'> & {
  /** CNI: the runtime's namespace. Agent sandboxes: omitted (pause makes one at /run/netns/<netnsName>). */
  netnsPath?: string;
  hostname?: string;
};

/** A spec whose addresses are still being allocated (agent sandboxes start pause meanwhile). */
export type PendingSandboxSpec = Omit<SandboxSpec, 'addresses' | 'gateways'> & { addressing: Promise<{ addresses: string[]; gateways: string[] }> };

function withoutAddressing(spec: SandboxSpec | PendingSandboxSpec): Omit<SandboxSpec, 'addresses' | 'gateways'> {
  if (!('addressing' in spec)) return spec;
  const { addressing: _a, ...rest } = spec;
  return rest;
}

/** Start time (clock ticks after boot) of a process, from /proc/PID/stat; undefined when gone. */
export function processStart(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[19]);
  } catch {
    return undefined;
  }
}

/** True when the record's pause process is the one that is running under its pid. */
export function pauseAlive(rec: SandboxRecord): boolean {
  return rec.pausePid !== undefined && alive(rec.pausePid) && processStart(rec.pausePid) === rec.pauseStart;
}

/**
 * Creates a sandbox and returns its record (not yet saved). On failure everything made is
 * removed again before the error is thrown.
 *
 * Agent sandboxes: the namespace is created here (pinned at /run/netns/<name>), and then
 * three things run at once — the pause process starts and joins it, the addresses are
 * allocated, the veth pair is made — before eth0 gets its addresses and routes.
 */
export async function createSandbox(host: Netlink, net: NodeNetwork, spec: SandboxSpec | PendingSandboxSpec): Promise<SandboxRecord> {
  const addressing: Promise<{ addresses: string[]; gateways: string[] }> = 'addressing' in spec ? spec.addressing : Promise.resolve({ addresses: spec.addresses, gateways: spec.gateways });
  const base = withoutAddressing(spec);
  const fresh = spec.netnsPath === undefined;
  if (fresh && !spec.netnsName) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, 'a sandbox needs a netns path or a netns name', { owner: spec.owner });
  let ns: NetNS | undefined;
  let pod: Netlink | undefined;
  let pausing: Promise<number> | undefined;
  let vethMade = false;
  try {
    ns = fresh ? NetNS.create(spec.netnsName!) : NetNS.open(spec.netnsPath!);
    const netnsPath = ns.path;
    if (fresh) pausing = startPause({ joinNetns: netnsPath, ...(spec.hostname ? { hostname: spec.hostname } : {}) });
    const veth = { kind: 'veth' as const, name: base.hostVeth, master: net.bridge, mtu: base.mtu, up: true, peer: { name: base.ifname, netns: ns, ...(fresh ? { index: 2 } : {}) } };
    try {
      await host.links.create(veth);
    } catch (e) {
      // A host end left by an earlier, interrupted attempt for the same owner.
      if (!isPodnetError(e, ErrorCodes.LINK_EXISTS)) throw e;
      await host.links.delete(base.hostVeth);
      await host.links.create(veth);
    }
    vethMade = true;
    // Hairpin on the bridge port: a pod reaches itself through a Service VIP (kubelet's hairpin-veth).
    const hairpin = host.links.setHairpin(base.hostVeth, true);
    hairpin.catch(() => undefined); // awaited below; never an unhandled rejection meanwhile
    const { addresses, gateways } = await addressing;
    pod = Netlink.open(ns);
    const dev = fresh ? 2 : base.ifname;
    const addrs = addresses.map((a) => parseInterfaceAddress(a));
    // Pipelined, applied in order: links up, addresses, then default routes via the gateways.
    await Promise.all([
      hairpin,
      pod.links.setUp(dev),
      pod.links.setUp('lo'),
      ...addrs.map((a) => pod!.addrs.add(dev, `${a.ip}/${a.prefix}`, { nodad: a.family === 6 })),
      ...gateways.map((gw) => pod!.routes.add({ dst: 'default', via: gw, dev })),
    ]);
    const mac = (await pod.links.get(dev))?.mac;
    const pausePid = pausing ? await pausing : undefined;
    return {
      ...base,
      addresses,
      gateways,
      netnsPath,
      ...(pausePid !== undefined ? { pausePid, pauseStart: processStart(pausePid) } : {}),
      ...(mac ? { mac } : {}),
      createdAt: new Date().toISOString(),
    } as SandboxRecord;
  } catch (e) {
    if (fresh) {
      // Unpin, then end pause if it came up: the kernel destroys the namespace and the veth.
      if (spec.netnsName) NetNS.delete(spec.netnsName);
      const pid = await pausing?.catch(() => undefined);
      if (pid !== undefined) await stopPause(pid, { wait: false });
    } else if (vethMade) {
      await deleteLinkOffThread(host.netns, base.hostVeth).catch(() => false);
    }
    throw e;
  } finally {
    pod?.close();
    ns?.close();
  }
}

export type SandboxHealth = 'ok' | 'repaired' | 'gone';

/**
 * Checks a recorded sandbox against the kernel and converges what drifted (the host veth
 * on the bridge and up, eth0 up with its addresses, the default routes). 'gone': the
 * pause process or the namespace no longer exists (the sandbox must be made again).
 */
export async function ensureSandbox(host: Netlink, net: NodeNetwork, rec: SandboxRecord): Promise<SandboxHealth> {
  if (rec.kind === 'pod' && !pauseAlive(rec)) return 'gone';
  if (!existsSync(rec.netnsPath)) return 'gone';
  let ns: NetNS;
  try {
    ns = NetNS.open(rec.netnsPath);
  } catch (e) {
    if (isPodnetError(e, ErrorCodes.NETNS_NOT_FOUND) || isPodnetError(e, ErrorCodes.NOT_A_NETNS)) return 'gone';
    throw e;
  }
  const pod = Netlink.open(ns);
  try {
    let repaired = false;
    const inPod = await pod.links.get(rec.ifname);
    const onHost = await host.links.get(rec.hostVeth);
    if (!inPod || !onHost) {
      // Half a pair (or none): make the pair again.
      if (onHost) await host.links.delete(rec.hostVeth);
      if (inPod) await pod.links.delete(rec.ifname);
      await host.links.create({ kind: 'veth', name: rec.hostVeth, master: net.bridge, mtu: rec.mtu, up: true, peer: { name: rec.ifname, netns: ns } });
      repaired = true;
    } else if (onHost.kind !== 'veth' || !onHost.up || onHost.masterIndex === undefined || onHost.mtu !== rec.mtu) {
      await host.links.ensure({ kind: 'veth', name: rec.hostVeth, master: net.bridge, mtu: rec.mtu, up: true, peer: { name: rec.ifname, netns: ns } });
      repaired = true;
    }
    if (repaired) await host.links.setHairpin(rec.hostVeth, true);
    const eth = await pod.links.require(rec.ifname);
    if (!eth.up) {
      await pod.links.setUp(rec.ifname);
      repaired = true;
    }
    const lo = await pod.links.get('lo');
    if (lo && !lo.up) await pod.links.setUp('lo');
    const have = new Set((await pod.addrs.list({ dev: rec.ifname })).map((a) => `${a.ip}/${a.prefix}`));
    for (const a of rec.addresses.map((x) => parseInterfaceAddress(x))) {
      if (have.has(`${a.ip}/${a.prefix}`)) continue;
      await pod.addrs.ensure(rec.ifname, `${a.ip}/${a.prefix}`, { nodad: a.family === 6 });
      repaired = true;
    }
    const routes = await pod.routes.list();
    for (const gw of rec.gateways) {
      if (routes.some((r) => r.via === gw && (r.dst === '0.0.0.0/0' || r.dst === '::/0'))) continue;
      await pod.routes.ensure({ dst: 'default', via: gw, dev: rec.ifname });
      repaired = true;
    }
    return repaired ? 'repaired' : 'ok';
  } finally {
    pod.close();
    ns.close();
  }
}

/**
 * Removes a sandbox: stops its pause process (which unpins the namespace; the kernel then
 * destroys it with the veth pair), or for a CNI sandbox deletes the pod's interface in the
 * runtime's namespace. Anything already gone is fine.
 */
export async function destroySandbox(host: Netlink, rec: SandboxRecord): Promise<void> {
  if (rec.kind === 'pod') {
    // Unpin first (a new sandbox of the same name may follow at once), then let pause go;
    // the kernel destroys the namespace, and the veth with it, once pause has exited.
    if (rec.netnsName) NetNS.delete(rec.netnsName);
    if (pauseAlive(rec)) await stopPause(rec.pausePid!, { wait: false });
    return;
  }
  // Off the event loop: a link deletion blocks its caller for an RCU grace period.
  if (rec.netnsPath && existsSync(rec.netnsPath) && (await deleteLinkOffThread(rec.netnsPath, rec.ifname))) return;
  await deleteLinkOffThread(host.netns, rec.hostVeth);
}
