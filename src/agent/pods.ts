/**
 * The pod reconciler: the kubelet-networking half of the agent. Level-triggered: the
 * informer (pods whose spec.nodeName is this node) and the sandbox records only say
 * which pod keys to look at; each sync compares the pod (desired) with its record and
 * the kernel (observed) and converges — create the sandbox, repair it, replace it when
 * its pod was recreated, or tear it down — then reports the pod's addresses and
 * readiness in its status. A periodic full resync re-checks every pod and collects
 * garbage: IPAM allocations, namespaces and veths that no sandbox owns.
 *
 * Nothing syncs before the informer's first list: on start the agent adopts the
 * sandboxes it finds, so pods keep their addresses and connections across restarts.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { KubeClient } from '../client/index.js';
import { Informer, RESOURCES, isNotFound, isConflict } from '../client/index.js';
import type { Pod } from '../client/types.js';
import { NETNS_RUN_DIR, NetNS } from '../kernel/index.js';
import type { Netlink } from '../kernel/index.js';
import { podNetnsName, hostVethName } from '../pods/names.js';
import type { SandboxRecord, SandboxRecords } from '../pods/records.js';
import { createSandbox, destroySandbox, ensureSandbox, pauseAlive } from '../pods/sandbox.js';
import type { NodeNetwork } from '../pods/sandbox.js';
import type { IpamAllocator } from '../ipam/index.js';
import { ErrorCodes, PodnetError, formatError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { KeyedWorkQueue } from '../util/workqueue.js';
import type { AgentMetrics } from './metrics.js';

export interface PodReconcilerOptions {
  client: KubeClient;
  nodeName: string;
  /** Node addresses (hostIP / hostIPs of its pods). */
  nodeIPs: string[];
  netnsPrefix: string;
  net: NodeNetwork;
  host: Netlink;
  records: SandboxRecords;
  ipam: IpamAllocator;
  log: Logger;
  metrics: AgentMetrics;
  concurrency: number;
  resyncMs: number;
  /** Owner ids being set up elsewhere (the CNI handler): garbage collection leaves them alone. */
  busyOwners?: () => Iterable<string>;
}

const podKey = (ns: string, name: string) => `${ns}/${name}`;
const time = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
const terminal = (p: Pod) => p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed';

export class PodReconciler {
  readonly informer: Informer<Pod>;
  private readonly queue: KeyedWorkQueue;
  private readonly inflight = new Set<string>();
  /** Keys whose next sync checks the kernel state in full (resync, adoption); others only check pause. */
  private readonly deep = new Set<string>();
  private synced = false;

  constructor(private readonly o: PodReconcilerOptions) {
    this.informer = new Informer<Pod>({
      source: o.client.resource(RESOURCES.pods),
      fieldSelector: `spec.nodeName=${o.nodeName}`,
      onError: (err, info) => o.log.warn({ node: o.nodeName, resource: 'pods', phase: info.phase, retryInMs: info.delayMs, err: formatError(err) }, 'pod informer error'),
    });
    this.queue = new KeyedWorkQueue({
      name: 'pods',
      log: o.log,
      concurrency: o.concurrency,
      process: (key) => this.sync(key),
      onFailure: () => o.metrics.syncErrors.inc(),
    });
    const enqueue = (p: Pod) => this.queue.add(podKey(p.metadata.namespace ?? '', p.metadata.name ?? ''));
    this.informer.onAdd(enqueue);
    this.informer.onUpdate((_o, p) => enqueue(p));
    this.informer.onDelete((p) => enqueue(p));
  }

  /** True once the first list was reconciled. */
  get ready(): boolean {
    return this.synced;
  }

  /** Runs until `signal` aborts: informer, work queue, periodic resync and garbage collection. */
  async run(signal: AbortSignal): Promise<void> {
    const informer = this.informer.run(signal);
    if (!(await this.informer.waitForSync(signal))) return;
    // Adopt: every pod and every recorded sandbox gets a sync.
    this.resync();
    await this.queue.idle();
    await this.collectGarbage();
    this.synced = true;
    this.o.log.info({ pods: this.informer.size, sandboxes: this.o.records.list().length }, 'pods synced');
    const timer = setInterval(() => {
      this.resync();
      void this.queue.idle().then(() => this.collectGarbage()).catch((e: unknown) => this.o.log.warn({ err: formatError(e) }, 'garbage collection failed'));
    }, this.o.resyncMs);
    await new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
    clearInterval(timer);
    this.queue.stop();
    await this.queue.idle();
    await informer;
  }

  /** Queues every known pod and recorded sandbox for a full check against the kernel. */
  resync(): void {
    const keys = new Set<string>();
    for (const p of this.informer.list()) keys.add(podKey(p.metadata.namespace ?? '', p.metadata.name ?? ''));
    for (const r of this.o.records.list()) if (r.kind === 'pod' && r.namespace && r.name) keys.add(podKey(r.namespace, r.name));
    for (const k of keys) {
      this.deep.add(k);
      this.queue.add(k);
    }
  }

  /** Waits until no sync is queued or running (tests, benchmarks). */
  idle(): Promise<void> {
    return this.queue.idle();
  }

  /** Converges one pod. */
  private async sync(key: string): Promise<void> {
    const slash = key.indexOf('/');
    const ns = key.slice(0, slash);
    const name = key.slice(slash + 1);
    const pod = this.informer.getByName(ns, name);
    let rec = this.o.records.byPod(ns, name);
    const uid = pod?.metadata.uid;
    if (uid) this.inflight.add(uid);
    try {
      if (!pod || pod.metadata.deletionTimestamp || terminal(pod)) {
        if (rec) await this.teardown(rec, 'pod deleted');
        if (pod?.metadata.deletionTimestamp) await this.finishDelete(pod);
        return;
      }
      if (pod.spec?.hostNetwork) {
        await this.reportStatus(pod, this.o.nodeIPs);
        return;
      }
      if (rec && rec.uid !== uid) {
        await this.teardown(rec, 'pod was recreated');
        rec = undefined;
      }
      const deep = this.deep.delete(key);
      if (rec) {
        // Pod updates (status writes, labels) need no kernel work: only a resync re-reads
        // links, addresses and routes; a dead pause is noticed either way.
        const health = deep ? await ensureSandbox(this.o.host, this.o.net, rec) : pauseAlive(rec) ? 'ok' : 'gone';
        if (health === 'repaired') this.o.log.info({ pod: key }, 'repaired the pod sandbox');
        if (health === 'gone') {
          this.o.log.warn({ pod: key }, 'the pod sandbox is gone; making it again');
          await destroySandbox(this.o.host, rec);
          this.o.records.remove(rec.owner);
          rec = undefined;
        }
      }
      if (!rec) {
        try {
          rec = await this.create(pod);
        } catch (e) {
          await this.reportFailure(pod, e);
          throw e;
        }
      }
      await this.reportStatus(pod, rec.addresses.map((a) => a.slice(0, a.indexOf('/'))));
    } finally {
      if (uid) this.inflight.delete(uid);
    }
  }

  private async create(pod: Pod): Promise<SandboxRecord> {
    const t0 = performance.now();
    const ns = pod.metadata.namespace!;
    const name = pod.metadata.name!;
    const uid = pod.metadata.uid!;
    const netnsName = podNetnsName(this.o.netnsPrefix, ns, name);
    // A namespace by this name without a record: left by a crash mid-creation. (One a record
    // holds belongs to another sandbox: never remove that one.)
    if (existsSync(join(NETNS_RUN_DIR, netnsName))) {
      const holder = this.o.records.list().find((r) => r.netnsName === netnsName);
      if (holder) throw new PodnetError(ErrorCodes.NETNS_EXISTS, `the pod namespace ${netnsName} belongs to another sandbox (${holder.namespace}/${holder.name})`, { netns: netnsName });
      removeNetns(netnsName);
    }
    const allocation = this.o.ipam.allocate({ id: uid, namespace: ns, name, netns: join(NETNS_RUN_DIR, netnsName), ifname: 'eth0' });
    try {
      const rec = await createSandbox(this.o.host, this.o.net, {
        owner: uid,
        kind: 'pod',
        namespace: ns,
        name,
        uid,
        netnsName,
        hostname: (pod.spec?.hostname ?? name).slice(0, 63),
        hostVeth: hostVethName(uid),
        ifname: 'eth0',
        addressing: allocation.then(({ addresses }) => ({ addresses: addresses.map((a) => `${a.ip}/${a.prefix}`), gateways: addresses.map((a) => a.gateway) })),
        mtu: this.o.net.mtu,
      });
      const ips = rec.addresses.map((a) => a.slice(0, a.indexOf('/')));
      this.o.records.save(rec);
      const s = (performance.now() - t0) / 1000;
      this.o.metrics.sandboxSetup.observe(s);
      this.o.metrics.sandboxOps.inc({ op: 'create', result: 'ok' });
      this.o.log.info({ pod: `${ns}/${name}`, netns: netnsName, ips, ms: Math.round(s * 1e5) / 100 }, 'pod sandbox ready');
      return rec;
    } catch (e) {
      this.o.metrics.sandboxOps.inc({ op: 'create', result: 'error' });
      await this.o.ipam.release(uid);
      throw e;
    }
  }

  private async teardown(rec: SandboxRecord, why: string): Promise<void> {
    const t0 = performance.now();
    await destroySandbox(this.o.host, rec);
    await this.o.ipam.release(rec.owner);
    this.o.records.remove(rec.owner);
    this.o.metrics.sandboxOps.inc({ op: 'delete', result: 'ok' });
    this.o.log.info({ pod: `${rec.namespace}/${rec.name}`, netns: rec.netnsName, why, ms: Math.round((performance.now() - t0) * 100) / 100 }, 'pod sandbox removed');
  }

  /** A terminating pod whose sandbox is gone: remove the object, as the kubelet does. */
  private async finishDelete(pod: Pod): Promise<void> {
    try {
      await this.o.client.resource(RESOURCES.pods).delete(pod.metadata.namespace, pod.metadata.name!, { gracePeriodSeconds: 0, preconditions: { uid: pod.metadata.uid! } });
    } catch (e) {
      if (!isNotFound(e) && !isConflict(e)) throw e;
    }
  }

  /** Writes phase Running, Ready, the pod's and host's addresses, unless the status says so already. */
  private async reportStatus(pod: Pod, ips: string[]): Promise<void> {
    const st = pod.status ?? {};
    const ready = st.conditions?.find((c) => c.type === 'Ready');
    const same = st.phase === 'Running' && ready?.status === 'True' && st.podIP === ips[0] && (st.podIPs ?? []).map((p) => p.ip).join(',') === ips.join(',') && st.hostIP === this.o.nodeIPs[0];
    if (same) return;
    const now = time();
    const cond = (type: string) => ({ type, status: 'True' as const, lastProbeTime: null, lastTransitionTime: now });
    const status = {
      phase: 'Running',
      reason: null,
      message: null,
      hostIP: this.o.nodeIPs[0],
      hostIPs: this.o.nodeIPs.map((ip) => ({ ip })),
      podIP: ips[0],
      podIPs: ips.map((ip) => ({ ip })),
      startTime: st.startTime ?? now,
      conditions: [cond('PodReadyToStartContainers'), cond('Initialized'), cond('Ready'), cond('ContainersReady'), cond('PodScheduled')],
    };
    try {
      await this.o.client.resource(RESOURCES.pods).patch(pod.metadata.namespace, pod.metadata.name!, { metadata: { uid: pod.metadata.uid }, status }, 'merge', { subresource: 'status' });
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }

  /** Tells the pod why it has no network yet (as the kubelet's FailedCreatePodSandBox), once per reason. */
  private async reportFailure(pod: Pod, err: unknown): Promise<void> {
    const message = `podnet could not set up the pod network: ${formatError(err)}`;
    if (pod.status?.message === message) return;
    await this.o.client
      .resource(RESOURCES.pods)
      .patch(pod.metadata.namespace, pod.metadata.name!, { metadata: { uid: pod.metadata.uid }, status: { phase: 'Pending', reason: 'FailedCreatePodSandBox', message } }, 'merge', { subresource: 'status' })
      .catch((e: unknown) => this.o.log.warn({ pod: `${pod.metadata.namespace}/${pod.metadata.name}`, err: formatError(e) }, 'cannot report the sandbox failure'));
  }

  /**
   * Releases what no sandbox owns: IPAM allocations without a record, namespaces with
   * this node's prefix without a record, and podnet veths on the bridge without a record.
   * Owners being set up right now are left alone.
   */
  async collectGarbage(): Promise<{ ips: number; netns: number; links: number }> {
    const owned = new Set(this.o.records.list().map((r) => r.owner));
    const busy = new Set([...this.inflight, ...(this.o.busyOwners?.() ?? [])]);
    let ips = 0;
    for (const id of this.o.ipam.list().map((a) => a.owner.id)) {
      if (owned.has(id) || busy.has(id)) continue;
      await this.o.ipam.release(id);
      ips++;
      this.o.log.info({ owner: id }, 'released an address no sandbox holds');
    }
    const names = new Set(this.o.records.list().map((r) => r.netnsName).filter(Boolean));
    const busyNames = new Set(this.informer.list().filter((p) => p.metadata.uid && busy.has(p.metadata.uid)).map((p) => podNetnsName(this.o.netnsPrefix, p.metadata.namespace!, p.metadata.name!)));
    let netns = 0;
    for (const n of existsSync(NETNS_RUN_DIR) ? readdirSync(NETNS_RUN_DIR) : []) {
      if (!n.startsWith(this.o.netnsPrefix) || names.has(n) || busyNames.has(n)) continue;
      removeNetns(n);
      netns++;
      this.o.log.info({ netns: n }, 'removed a pod namespace no sandbox holds');
    }
    const veths = new Set(this.o.records.list().map((r) => r.hostVeth));
    const busyVeths = new Set([...busy].map((id) => hostVethName(id)));
    const bridge = await this.o.host.links.get(this.o.net.bridge);
    let links = 0;
    if (bridge) {
      for (const l of await this.o.host.links.list()) {
        if (l.kind !== 'veth' || l.masterIndex !== bridge.index || !/^pn[0-9a-f]{11}$/.test(l.name) || veths.has(l.name) || busyVeths.has(l.name)) continue;
        await this.o.host.links.delete(l.index);
        links++;
        this.o.log.info({ link: l.name }, 'removed a pod veth no sandbox holds');
      }
    }
    return { ips, netns, links };
  }
}

/** Ends the processes inside a pod namespace (its pause, leftovers) and unpins it. */
export function removeNetns(name: string): void {
  for (const pid of NetNS.pids(name)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  NetNS.delete(name);
}
