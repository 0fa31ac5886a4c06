/**
 * The agent's side of the CNI plugin: podnet-cni relays each runtime call (podman,
 * containerd) over a unix socket, and this handler serves it with the same IPAM,
 * sandbox code and records as the agent's own pods. The runtime owns the namespace
 * (CNI_NETNS); podnet adds the veth pair, addresses and routes, and records the
 * attachment under `cni-<containerId>-<ifname>` so DEL, CHECK and GC find it.
 */
import { existsSync } from 'node:fs';
import type { CniAddRequest, CniAddResult, CniCheckRequest, CniDelRequest, CniGcRequest, CniHandler, CniStatusRequest } from '../cni/index.js';
import { CniError, CniErrorCode } from '../cni/index.js';
import type { IpamAllocator } from '../ipam/index.js';
import { NetNS, Netlink } from '../kernel/index.js';
import { cniOwnerId, hostVethName } from '../pods/names.js';
import type { SandboxRecord, SandboxRecords } from '../pods/records.js';
import { createSandbox, destroySandbox } from '../pods/sandbox.js';
import type { NodeNetwork } from '../pods/sandbox.js';
import type { Logger } from '../util/log.js';
import type { AgentMetrics } from './metrics.js';

export interface CniDeps {
  host: Netlink;
  net: NodeNetwork;
  records: SandboxRecords;
  ipam: IpamAllocator;
  log: Logger;
  metrics: AgentMetrics;
  /** False until the node's network is set up (STATUS answers 50 then). */
  ready: () => boolean;
}

export class AgentCniHandler implements CniHandler {
  /** Owners with an operation in progress (garbage collection leaves them alone). */
  readonly busy = new Set<string>();

  constructor(private readonly d: CniDeps) {}

  async add(req: CniAddRequest): Promise<CniAddResult> {
    if (!this.d.ready()) throw new CniError(CniErrorCode.TRY_AGAIN_LATER, 'the podnet agent is still setting up the node network');
    const { containerId, ifname, netns } = req.attachment;
    const owner = cniOwnerId(containerId, ifname);
    return this.exclusive(owner, 'add', async () => {
      const existing = this.d.records.get(owner);
      if (existing) {
        if (existing.netnsPath === netns && (await this.verify(existing)) === undefined) return this.result(existing);
        await this.remove(existing);
      }
      if (!existsSync(netns)) throw new CniError(CniErrorCode.UNKNOWN_CONTAINER, `the network namespace ${netns} does not exist`);
      const { addresses } = await this.d.ipam.allocate({ id: owner, ...(req.pod.namespace ? { namespace: req.pod.namespace } : {}), ...(req.pod.name ? { name: req.pod.name } : {}), netns, ifname });
      try {
        const rec = await createSandbox(this.d.host, this.d.net, {
          owner,
          kind: 'cni',
          containerId,
          ...(req.pod.namespace ? { namespace: req.pod.namespace } : {}),
          ...(req.pod.name ? { name: req.pod.name } : {}),
          ...(req.pod.uid ? { uid: req.pod.uid } : {}),
          netnsPath: netns,
          hostVeth: hostVethName(owner),
          ifname,
          addresses: addresses.map((a) => `${a.ip}/${a.prefix}`),
          gateways: addresses.map((a) => a.gateway),
          mtu: req.config.mtu ?? this.d.net.mtu,
        });
        this.d.records.save(rec);
        this.d.log.info({ container: containerId, ifname, netns, ips: addresses.map((a) => a.ip), pod: req.pod.name ? `${req.pod.namespace ?? ''}/${req.pod.name}` : undefined }, 'cni attachment added');
        return this.result(rec);
      } catch (e) {
        await this.d.ipam.release(owner);
        throw e;
      }
    });
  }

  /**
   * Forgets the attachment at once and removes its interface right after answering:
   * deleting a link waits for an RCU grace period (~16-20 ms here), which the runtime
   * need not wait for. The address is released only once the interface is gone, and any
   * later call for the same attachment waits for it (one chain per attachment).
   */
  async del(req: CniDelRequest): Promise<void> {
    const { containerId, ifname } = req.attachment;
    const owner = cniOwnerId(containerId, ifname);
    await this.exclusive(owner, 'del', async () => {
      const rec = this.d.records.get(owner);
      if (!rec) {
        await this.d.ipam.release(owner); // an ADD interrupted before its record
        return;
      }
      this.d.records.remove(owner);
      this.background(owner, async () => {
        await destroySandbox(this.d.host, rec);
        await this.d.ipam.release(owner);
        this.d.log.info({ container: rec.containerId, ifname: rec.ifname }, 'cni attachment removed');
      });
    });
  }

  async check(req: CniCheckRequest): Promise<void> {
    const owner = cniOwnerId(req.attachment.containerId, req.attachment.ifname);
    const rec = this.d.records.get(owner);
    if (!rec) throw new CniError(CniErrorCode.UNKNOWN_CONTAINER, `no podnet attachment for container ${req.attachment.containerId} interface ${req.attachment.ifname}`);
    const problem = await this.verify(rec);
    if (problem) throw new CniError(CniErrorCode.PODNET_FAILURE, `the attachment of container ${req.attachment.containerId} is broken: ${problem}`);
    for (const ip of req.config.prevResult.ips) {
      if (!rec.addresses.includes(ip.address)) throw new CniError(CniErrorCode.PODNET_FAILURE, `the previous result lists ${ip.address}, which podnet did not assign (it assigned ${rec.addresses.join(', ')})`);
    }
  }

  async status(_req: CniStatusRequest): Promise<void> {
    if (!this.d.ready()) throw new CniError(CniErrorCode.PLUGIN_NOT_AVAILABLE, 'the podnet agent has not set up the node network yet');
  }

  async gc(req: CniGcRequest): Promise<void> {
    const valid = new Set(req.validAttachments.map((a) => cniOwnerId(a.containerId, a.ifname)));
    for (const rec of this.d.records.list()) {
      if (rec.kind !== 'cni' || valid.has(rec.owner) || this.busy.has(rec.owner)) continue;
      await this.remove(rec);
      this.d.log.info({ container: rec.containerId, ifname: rec.ifname }, 'cni gc removed a stale attachment');
    }
  }

  private async remove(rec: SandboxRecord): Promise<void> {
    await destroySandbox(this.d.host, rec);
    await this.d.ipam.release(rec.owner);
    this.d.records.remove(rec.owner);
    this.d.log.info({ container: rec.containerId, ifname: rec.ifname }, 'cni attachment removed');
  }

  /** What is wrong with an attachment in the kernel, or undefined when all is there. */
  private async verify(rec: SandboxRecord): Promise<string | undefined> {
    if (!existsSync(rec.netnsPath)) return `its namespace ${rec.netnsPath} is gone`;
    if (!(await this.d.host.links.get(rec.hostVeth))) return `the host interface ${rec.hostVeth} is missing`;
    const ns = NetNS.open(rec.netnsPath);
    const pod = Netlink.open(ns);
    try {
      if (!(await pod.links.get(rec.ifname))) return `${rec.ifname} is missing in the container`;
      const have = new Set((await pod.addrs.list({ dev: rec.ifname })).map((a) => `${a.ip}/${a.prefix}`));
      const missing = rec.addresses.filter((a) => !have.has(a));
      if (missing.length) return `${rec.ifname} lacks ${missing.join(', ')}`;
      return undefined;
    } finally {
      pod.close();
      ns.close();
    }
  }

  private result(rec: SandboxRecord): CniAddResult {
    return {
      interfaces: [{ name: rec.hostVeth }, { name: rec.ifname, ...(rec.mac ? { mac: rec.mac } : {}), sandbox: rec.netnsPath }],
      ips: rec.addresses.map((address, i) => ({ address, gateway: rec.gateways[i]!, interface: 1 })),
      routes: rec.gateways.map((gw) => ({ dst: gw.includes(':') ? '::/0' : '0.0.0.0/0', gw })),
    };
  }

  /** Queues `fn` after the attachment's current operation; the attachment stays busy until it is done. */
  private background(owner: string, fn: () => Promise<void>): void {
    const prev = this.chains.get(owner) ?? Promise.resolve();
    const run = prev.catch(() => undefined).then(async () => {
      this.busy.add(owner);
      try {
        await fn();
      } catch (e) {
        this.d.log.warn({ owner, err: e instanceof Error ? e.message : String(e) }, 'removing a cni attachment failed; the next garbage collection retries');
      } finally {
        this.busy.delete(owner);
      }
    });
    this.chain(owner, run);
  }

  private chain(owner: string, run: Promise<unknown>): void {
    this.chains.set(owner, run);
    void run
      .finally(() => {
        if (this.chains.get(owner) === run) this.chains.delete(owner);
      })
      .catch(() => undefined);
  }

  /** Resolves when every attachment's pending work is done (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.chains.size) await Promise.allSettled([...this.chains.values()]);
  }

  /** One operation per attachment at a time (a runtime may retry while the first call runs). */
  private readonly chains = new Map<string, Promise<unknown>>();
  private async exclusive<T>(owner: string, op: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.chains.get(owner) ?? Promise.resolve();
    const run = prev.catch(() => undefined).then(async () => {
      this.busy.add(owner);
      try {
        const r = await fn();
        this.d.metrics.cniRequests.inc({ command: op, result: 'ok' });
        return r;
      } catch (e) {
        this.d.metrics.cniRequests.inc({ command: op, result: 'error' });
        throw e;
      } finally {
        this.busy.delete(owner);
      }
    });
    this.chain(owner, run);
    return run;
  }
}
