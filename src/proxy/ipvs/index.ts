/**
 * The IPVS proxy mode: plans with plan.ts (pure) and applies with the kernel executors --
 * IPVS over generic netlink (kernel/ipvs.ts), the VIPs on the dummy device podnet-ipvs0
 * over rtnetlink, ipsets (kernel/ipset.ts) and a small static iptables ruleset
 * (kernel/iptables.ts) for masquerade, hairpin and the filter on VIP ports.
 *
 * - A full sync (the first, the periodic one, the one after a failure, or when the node's
 *   addresses / cluster CIDR changed) makes sure of the infrastructure (IPVS sysctls, the
 *   dummy device, the sets, the chains and their jumps), then OBSERVES the kernel: the IPVS
 *   table (GET_SERVICE dump, and GET_DEST per podnet service), the dummy device's addresses
 *   and podnet's set members; and applies diff(desired, observed). A virtual server is
 *   podnet's when its address is on podnet-ipvs0 or it is recorded in a NODEPORTS set; any
 *   other (foreign) IPVS service is never touched.
 * - A partial sync plans only the changed service ports and diffs them against the model of
 *   what the last sync installed: only their virtual servers, real servers, VIPs and set
 *   entries change.
 * - Graceful termination (kube-proxy's): a TCP real server whose endpoint went away while
 *   it still has connections is set to weight 0 instead of deleted, and deleted once its
 *   connections are gone (checked every drainCheckMs, and by every full sync).
 * - cleanup() removes podnet's virtual servers, the dummy device (its VIPs go with it),
 *   podnet's chains and the jumps to them, and podnet's sets, in both families.
 */
import { Netlink } from '../../kernel/index.js';
import type { NetNS } from '../../kernel/netns.js';
import { Ipvs } from '../../kernel/ipvs.js';
import type { IpvsService } from '../../kernel/ipvs.js';
import { ipsetDestroy, ipsetMembers, ipsetNames, ipsetRestore } from '../../kernel/ipset.js';
import { iptablesRestore, iptablesSave } from '../../kernel/iptables.js';
import type { IptablesExecOptions } from '../../kernel/iptables.js';
import { setSysctl } from '../../kernel/sysctl.js';
import { ErrorCodes, isPodnetError } from '../../util/errors.js';
import type { Logger } from '../../util/log.js';
import type { Family, ProxyMode, ProxyNodeConfig, ProxySnapshot, SyncResult } from '../types.js';
import {
  DUMMY_DEVICE,
  PlanIndex,
  byAddressPort,
  cleanupRules,
  destKey,
  destVs,
  diff,
  drainRemovals,
  drains,
  emptyState,
  ipPortEntry,
  merge,
  missingJumps,
  planPort,
  planRules,
  planSnapshots,
  restrict,
  setDefs,
  setName,
  vsId,
} from './plan.js';
import type { IpvsOp, IpvsState, Touched, VirtualServer } from './plan.js';

export interface IpvsModeOptions {
  /** Program this network namespace instead of the current one. */
  netns?: NetNS;
  log: Logger;
  /**
   * How often the real servers kept draining (weight 0, see plan.ts drainRemovals) are
   * checked: each one whose connections are all gone is deleted. Default 15 s (kube-proxy
   * checks every minute). A TCP connection stays in IPVS's table as inactive for its
   * TIME_WAIT, 2 minutes after it closed.
   */
  drainCheckMs?: number;
}

/** What the last successful sync did (logs, tests). */
export interface IpvsSyncReport {
  full: boolean;
  ops: number;
  /** Operations by kind: `add-service` -> 3 ... */
  byOp: Record<string, number>;
  /** Real servers kept at weight 0 until their connections end (all, after this sync). */
  draining: number;
  ms: number;
}

export interface IpvsMode extends ProxyMode {
  readonly name: 'ipvs';
  lastSync(): IpvsSyncReport | undefined;
  /** What podnet believes is installed (after a successful sync). */
  model(): IpvsState;
  /** Closes the netlink sockets (they reopen on the next sync). */
  close(): void;
}

const FAMILIES: readonly Family[] = [4, 6];
/** The IPv6 link-local address the kernel gives an up device is not a VIP. */
const SCOPE_LINK = 253;
/** The IPVS sysctls kube-proxy's IPVS mode sets (net.ipv4.vs.* covers both families). */
const SYSCTLS: readonly [string, string][] = [
  // Conntrack for IPVS connections: required for the iptables masquerade of IPVS traffic.
  ['net.ipv4.vs.conntrack', '1'],
  // A connection to a removed real server is dropped at once, so clients reconnect elsewhere.
  ['net.ipv4.vs.expire_nodest_conn', '1'],
  ['net.ipv4.vs.expire_quiescent_template', '1'],
];

const nodeKey = (n: ProxyNodeConfig) => JSON.stringify([n.family, [...n.nodeIPs].sort(), n.clusterCIDR ?? '']);

export function createIpvsMode(o: IpvsModeOptions): IpvsMode {
  const log = o.log;
  const exec: IptablesExecOptions = o.netns ? { netns: o.netns } : {};
  let ipvs: Ipvs | undefined;
  let nl: Netlink | undefined;
  let index = new PlanIndex();
  let installed: IpvsState = emptyState();
  let nodes = '';
  let needFull = true;
  let report: IpvsSyncReport | undefined;
  /** destKey of each real server kept draining (weight 0 in the kernel and in `installed`). */
  let draining = new Set<string>();
  const drainCheckMs = o.drainCheckMs ?? 15_000;
  let drainTimer: NodeJS.Timeout | undefined;
  /** Syncs, cleanup and the drain check run one at a time. */
  let busy: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = busy.then(fn);
    busy = p.catch(() => undefined);
    return p;
  };

  async function handles(): Promise<{ ipvs: Ipvs; nl: Netlink }> {
    nl ??= Netlink.open(o.netns);
    ipvs ??= await Ipvs.open(o.netns);
    return { ipvs, nl };
  }

  function close(): void {
    clearTimeout(drainTimer);
    drainTimer = undefined;
    ipvs?.close();
    nl?.close();
    ipvs = undefined;
    nl = undefined;
  }

  /** Sysctls, the dummy device, the sets and the chains (idempotent). */
  async function ensureInfra(h: { nl: Netlink }, snapshots: readonly ProxySnapshot[]): Promise<void> {
    for (const [k, v] of SYSCTLS) setSysctl(o.netns, k, v);
    // Up: IPv6 gets its local routes only on an up device. A dummy is NOARP anyway.
    await h.nl.links.ensure({ kind: 'dummy', name: DUMMY_DEVICE, up: true });
    const creates = snapshots.flatMap((s) => setDefs(s.family).map((d) => `create ${d.name} ${d.type} family ${d.family === 4 ? 'inet' : 'inet6'}`));
    await ipsetRestore(`${creates.join('\n')}\n`, 'creating the IPVS mode ipsets', exec);
    await Promise.all(
      snapshots.map(async (s) => {
        const saved = await savedRules(s.family);
        await iptablesRestore(s.family, planRules(s.family, s.node, missingJumps(saved)), `installing the IPVS mode's iptables rules (IPv${s.family})`, exec);
      }),
    );
  }

  async function savedRules(family: Family): Promise<string> {
    const [nat, filter] = await Promise.all([iptablesSave(family, 'nat', exec), iptablesSave(family, 'filter', exec)]);
    return nat + filter;
  }

  /** Members of podnet's sets that exist, by name. */
  async function setMembers(names: readonly string[]): Promise<Map<string, Set<string>>> {
    const existing = new Set(await ipsetNames(exec));
    const present = names.filter((n) => existing.has(n));
    const members = await Promise.all(present.map((n) => ipsetMembers(n, exec)));
    return new Map(present.map((n, i) => [n, new Set(members[i] ?? [])]));
  }

  /** podnet's part of the kernel state, as an IpvsState. */
  async function observe(h: { ipvs: Ipvs; nl: Netlink }, families: readonly Family[], desired: IpvsState, connections: Map<string, number>): Promise<IpvsState> {
    const out = emptyState();
    const link = await h.nl.links.get(DUMMY_DEVICE);
    if (link) for (const a of await h.nl.addrs.list({ dev: link.index })) if (families.includes(a.family) && a.scope !== SCOPE_LINK) out.vips.add(a.ip);
    for (const [n, m] of await setMembers(families.flatMap((f) => setDefs(f).map((d) => d.name)))) out.sets.set(n, m);
    const services = await h.ipvs.listServices();
    const ours = services.filter((s) => families.includes(s.family) && isOurs(s, out, desired));
    const dests = await Promise.all(ours.map((s) => h.ipvs.listDests(s)));
    ours.forEach((s, i) => {
      const v = fromKernel(s, dests[i]!);
      out.virtualServers.set(v.id, v);
      for (const d of dests[i]!) connections.set(destKey(v.id, d), d.activeConns + d.inactiveConns);
    });
    return out;
  }

  async function apply(h: { ipvs: Ipvs; nl: Netlink }, ops: readonly IpvsOp[]): Promise<void> {
    const adds = ops.filter((x) => x.op === 'add-entry');
    const dels = ops.filter((x) => x.op === 'del-entry');
    if (adds.length) await ipsetRestore(adds.map((x) => `add ${x.set} ${x.entry}`).join('\n') + '\n', 'adding IPVS mode ipset entries', exec);
    await inChunks(ops.filter((x) => x.op === 'add-vip').map((x) => () => h.nl.addrs.ensure(DUMMY_DEVICE, hostAddr(x.address), { nodad: true, noprefixroute: true })));
    // Requests are written in call order and the kernel applies each in turn, so a service
    // is created before its real servers even though the calls are not awaited one by one.
    // They are issued KERNEL_CHUNK at a time: queueing 110,000 requests in one synchronous
    // stretch kept the event loop from reading replies for longer than a request's timeout
    // (seconds in a slow guest), so early requests timed out with their answers waiting.
    const calls: (() => Promise<unknown>)[] = [];
    for (const x of ops) {
      switch (x.op) {
        case 'add-service':
          calls.push(() => h.ipvs.addService(spec(x.vs)));
          break;
        case 'update-service':
          calls.push(() => h.ipvs.updateService(spec(x.vs)));
          break;
        case 'add-dest':
          calls.push(() => h.ipvs.addDest(spec(x.vs), { address: x.rs.address, port: x.rs.port, weight: x.rs.weight }));
          break;
        case 'update-dest':
          calls.push(() => h.ipvs.updateDest(spec(x.vs), { address: x.rs.address, port: x.rs.port, weight: x.rs.weight }));
          break;
        case 'del-dest':
          calls.push(() => h.ipvs.deleteDest(spec(x.vs), x.rs));
          break;
        case 'del-service':
          calls.push(() => h.ipvs.deleteService(spec(x.vs)));
          break;
        default:
          break;
      }
    }
    await inChunks(calls);
    await inChunks(ops.filter((x) => x.op === 'del-vip').map((x) => () => h.nl.addrs.delete(DUMMY_DEVICE, hostAddr(x.address))));
    if (dels.length) await ipsetRestore(dels.map((x) => `del ${x.set} ${x.entry}`).join('\n') + '\n', 'removing IPVS mode ipset entries', exec);
  }

  function count(ops: readonly IpvsOp[]): Record<string, number> {
    const by: Record<string, number> = {};
    for (const x of ops) by[x.op] = (by[x.op] ?? 0) + 1;
    return by;
  }

  async function fullSync(snapshots: readonly ProxySnapshot[]): Promise<SyncResult> {
    const t0 = performance.now();
    const h = await handles();
    const families = snapshots.map((s) => s.family);
    const next = planSnapshots(snapshots);
    const desired = next.state();
    await ensureInfra(h, snapshots);
    const connections = new Map<string, number>();
    const observed = await observe(h, families, desired, connections);
    const d = drainRemovals(desired, diff(desired, observed), (k) => connections.get(k));
    const ops = d.ops;
    await apply(h, ops);
    const removed = [...index.keys()].filter((k) => !next.has(k)).length;
    index = next;
    installed = d.desired;
    nodes = JSON.stringify(snapshots.map((s) => nodeKey(s.node)));
    startDraining(new Set(d.draining), d.draining, connections);
    report = { full: true, ops: ops.length, byOp: count(ops), draining: draining.size, ms: performance.now() - t0 };
    log.debug({ mode: 'ipvs', ...report }, 'ipvs full sync');
    return { servicesWritten: [...next.keys()].length, servicesRemoved: removed, full: true };
  }

  async function partialSync(snapshots: readonly ProxySnapshot[], changed: ReadonlySet<string>): Promise<SyncResult> {
    const t0 = performance.now();
    const h = await handles();
    const touched: Touched = { virtualServers: new Set(), vips: new Set(), entries: new Set() };
    let written = 0;
    let removed = 0;
    for (const snap of snapshots) {
      for (const key of changed) {
        const pk = PlanIndex.portKey(snap.family, key);
        const sp = snap.services.get(key);
        if (sp) {
          const plan = planPort(sp, snap.node);
          if (JSON.stringify(plan, mapJson) === JSON.stringify(index.get(pk), mapJson)) continue;
          index.set(pk, plan, touched);
          written++;
        } else if (index.has(pk)) {
          index.set(pk, undefined, touched);
          removed++;
        }
      }
    }
    const planned = index.state(touched);
    const raw = diff(planned, restrict(installed, touched));
    const connections = await connectionsOf(h, raw, planned);
    const d = drainRemovals(planned, raw, (k) => connections.get(k));
    const ops = d.ops;
    await apply(h, ops);
    merge(installed, d.desired, touched);
    const keep = new Set([...draining].filter((k) => !touched.virtualServers.has(destVs(k))));
    for (const k of d.draining) keep.add(k);
    startDraining(keep, d.draining, connections);
    report = { full: false, ops: ops.length, byOp: count(ops), draining: draining.size, ms: performance.now() - t0 };
    log.debug({ mode: 'ipvs', ...report }, 'ipvs partial sync');
    return { servicesWritten: written, servicesRemoved: removed, full: false };
  }

  /** Active + inactive connections of the real servers the ops would delete from TCP virtual servers that stay. */
  async function connectionsOf(h: { ipvs: Ipvs }, ops: readonly IpvsOp[], desired: IpvsState): Promise<Map<string, number>> {
    const vss = new Map<string, VirtualServer>();
    for (const x of ops) if (x.op === 'del-dest' && drains(x.vs.protocol) && desired.virtualServers.has(x.vs.id)) vss.set(x.vs.id, x.vs);
    const out = new Map<string, number>();
    await inChunks(
      [...vss.values()].map((vs) => async () => {
        for (const d of await h.ipvs.listDests(spec(vs))) out.set(destKey(vs.id, d), d.activeConns + d.inactiveConns);
      }),
    );
    return out;
  }

  /** Takes the new set of draining real servers; logs those that started; (re)arms the check. */
  function startDraining(next: Set<string>, started: readonly string[], connections: ReadonlyMap<string, number>): void {
    for (const k of started) if (!draining.has(k)) log.debug({ mode: 'ipvs', realServer: k, connections: connections.get(k) }, 'ipvs real server draining: weight 0 until its connections end');
    draining = next;
    if (draining.size && !drainTimer) {
      drainTimer = setTimeout(() => void serial(checkDraining).catch((e: unknown) => log.warn({ mode: 'ipvs', err: e }, 'checking the draining ipvs real servers failed')), drainCheckMs);
      drainTimer.unref();
    }
  }

  /** Deletes each draining real server whose connections are gone (or that is gone already). */
  async function checkDraining(): Promise<void> {
    drainTimer = undefined;
    if (!draining.size || !ipvs || needFull) return;
    const h = ipvs;
    const byVs = new Map<string, string[]>();
    for (const k of draining) {
      const id = destVs(k);
      byVs.set(id, [...(byVs.get(id) ?? []), k]);
    }
    const left = new Set(draining);
    try {
      for (const [id, keys] of byVs) {
        const vs = installed.virtualServers.get(id);
        if (!vs) {
          for (const k of keys) left.delete(k);
          continue;
        }
        const dests = new Map((await h.listDests(spec(vs))).map((d) => [destKey(id, d), d]));
        const gone = new Set<string>();
        for (const k of keys) {
          const d = dests.get(k);
          if (d && d.activeConns + d.inactiveConns > 0) continue;
          if (d) await h.deleteDest(spec(vs), d);
          gone.add(k);
          left.delete(k);
          log.debug({ mode: 'ipvs', realServer: k }, 'ipvs drained real server deleted');
        }
        if (gone.size) installed.virtualServers.set(id, { ...vs, realServers: vs.realServers.filter((r) => !gone.has(destKey(id, r))) });
      }
    } catch (e) {
      // The model may be off: the next sync re-reads the kernel (and drains or deletes again).
      needFull = true;
      log.warn({ mode: 'ipvs', err: e }, 'checking the draining ipvs real servers failed; the next sync is full');
    }
    draining = left;
    startDraining(left, [], new Map());
  }

  return {
    name: 'ipvs',

    sync: (snapshots, changed) =>
      serial(async () => {
        const full = needFull || changed === undefined || JSON.stringify(snapshots.map((s) => nodeKey(s.node))) !== nodes;
        try {
          const r = full ? await fullSync(snapshots) : await partialSync(snapshots, changed!);
          needFull = false;
          return r;
        } catch (e) {
          // The model may be off now: the next sync re-reads the kernel.
          needFull = true;
          throw e;
        }
      }),

    cleanup: () => serial(cleanupNow),

    lastSync: () => report,
    model: () => installed,
    close,
  };

  async function cleanupNow(): Promise<void> {
    needFull = true;
    draining = new Set();
    const problems: unknown[] = [];
    const step = async (fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (e) {
        problems.push(e);
      }
    };
    let h: { ipvs: Ipvs | undefined; nl: Netlink };
    try {
      const opened = await handles();
      h = opened;
    } catch (e) {
      // No IPVS in this kernel: nothing of ours can be in its table.
      if (!isPodnetError(e, ErrorCodes.UNSUPPORTED)) throw e;
      nl ??= Netlink.open(o.netns);
      h = { ipvs: undefined, nl };
    }
    await step(async () => {
      if (!h.ipvs) return;
      const state = emptyState();
      const link = await h.nl.links.get(DUMMY_DEVICE);
      if (link) for (const a of await h.nl.addrs.list({ dev: link.index })) state.vips.add(a.ip);
      state.sets = await setMembers(FAMILIES.map((f) => setName('NODEPORTS', f)));
      const ipvsH = h.ipvs;
      const ours = (await ipvsH.listServices()).filter((s) => isOurs(s, state, installed));
      await inChunks(ours.map((s) => () => ipvsH.deleteService(s)));
    });
    await step(() => h.nl.links.delete(DUMMY_DEVICE));
    for (const f of FAMILIES) {
      await step(async () => {
        const script = cleanupRules(await savedRules(f));
        if (script) await iptablesRestore(f, script, `removing the IPVS mode's iptables rules (IPv${f})`, exec);
      });
    }
    await step(async () => {
      const existing = new Set(await ipsetNames(exec));
      const ours = FAMILIES.flatMap((f) => setDefs(f).map((d) => d.name)).filter((n) => existing.has(n));
      await ipsetDestroy(ours, 'destroying the IPVS mode ipsets', exec);
    });
    index = new PlanIndex();
    installed = emptyState();
    close();
    if (problems.length) throw problems[0];
  }
}

/** A virtual server is podnet's when its address is one of podnet's VIPs, or a recorded NodePort. */
function isOurs(s: IpvsService, observed: IpvsState, desired: IpvsState): boolean {
  if (observed.vips.has(s.address)) return true;
  if (observed.sets.get(setName('NODEPORTS', s.family))?.has(ipPortEntry(s.address, s.protocol, s.port))) return true;
  return desired.virtualServers.has(vsId(s.protocol, s.address, s.port));
}

function fromKernel(s: IpvsService, dests: readonly { address: string; port: number; weight: number }[]): VirtualServer {
  return {
    id: vsId(s.protocol, s.address, s.port),
    family: s.family,
    protocol: s.protocol,
    address: s.address,
    port: s.port,
    scheduler: s.scheduler,
    ...(s.persistent ? { persistentTimeout: s.timeout } : {}),
    realServers: dests
      .map((d) => ({ address: d.address, port: d.port, weight: d.weight }))
      .sort(byAddressPort),
  };
}

function spec(vs: VirtualServer) {
  return {
    family: vs.family,
    protocol: vs.protocol,
    address: vs.address,
    port: vs.port,
    scheduler: vs.scheduler,
    ...(vs.persistentTimeout !== undefined ? { persistentTimeout: vs.persistentTimeout } : {}),
  };
}

const hostAddr = (ip: string) => `${ip}/${ip.includes(':') ? 128 : 32}`;

/** JSON.stringify replacer that writes Maps as entry lists (PortPlan.entries). */
function mapJson(_k: string, v: unknown): unknown {
  return v instanceof Map ? [...v] : v;
}

/** Waits for every promise (so none is left in flight), then throws the first failure. */
/** Kernel requests issued per loop turn (each chunk pipelined, MAX_IN_FLIGHT at a time). */
const KERNEL_CHUNK = 512;

/** Runs every call, KERNEL_CHUNK at a time, in order; throws the first failure after all ran (like settle). */
async function inChunks(calls: readonly (() => Promise<unknown>)[]): Promise<void> {
  let first: { reason: unknown } | undefined;
  for (let i = 0; i < calls.length; i += KERNEL_CHUNK) {
    const rs = await Promise.allSettled(calls.slice(i, i + KERNEL_CHUNK).map((c) => c()));
    first ??= rs.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  }
  if (first) throw first.reason;
}


