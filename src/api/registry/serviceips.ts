/**
 * What the api does to a Service's networking fields on create, update and delete:
 * IP families and policy, ClusterIPs (requested or random), NodePorts and the health
 * check NodePort — choosing what is new (its records are written in the Service's own
 * transaction), keeping what was already allocated, and releasing what is no longer used
 * only after the Service write succeeded.
 */
import type { IPFamily, KubeObject, Service, ServicePort } from '../../client/types.js';
import { isIP } from 'node:net';
import { familyOf, parseIP } from '../../util/ipnet.js';
import type { Family } from '../../util/ipnet.js';
import { AllocationError, ClusterIPAllocator, PortAllocator } from './allocators.js';
import type { KeyAllocator, Owner } from './allocators.js';
import type { TxnOp } from '../store/types.js';

/** Records `v` as taken by this write (a `requested` value was asked for by the user). */
type Take = <V extends string | number>(alloc: KeyAllocator<V>, v: V, field: string, requested: boolean) => void;

export interface ServiceNetwork {
  /** Allocators per family; the first configured service CIDR's family is primary. */
  clusterIPs: Partial<Record<Family, ClusterIPAllocator>>;
  primary: Family;
  nodePorts: PortAllocator;
}

/** What one write of a Service takes from the allocators. */
export interface AllocationPlan {
  /** Record creates for the values this write takes: they go in the Service's transaction. */
  ops: TxnOp[];
  /** Record key -> the value and field it is for, and whether the user asked for it. */
  keys: Map<string, { value: string | number; field: string; requested: boolean }>;
  /** After the write succeeded: frees what the old object held and the new one does not. */
  releaseUnused(): Promise<void>;
}

/**
 * What a resource's writes take from allocators (Services: ClusterIPs and NodePorts;
 * Nodes: pod subnets), planned without writing and recorded in the object's own
 * transaction.
 */
export interface ObjectAllocations {
  /** The record ops a create (`old` undefined) or update of `obj` needs; may fill in `obj`. */
  plan(obj: KubeObject, old: KubeObject | undefined, owner: Owner, state: PlanState): Promise<AllocationPlan>;
  /** A write of `plan` met KeyExists on `key`: learn (true: retry) or throw AllocationError. False: not a record of the plan. */
  onKeyExists(plan: AllocationPlan, key: string, owner: Owner, state: PlanState): Promise<boolean>;
  /** The object was deleted: free what it held. */
  onDelete(obj: KubeObject, owner: Owner): Promise<void>;
}

/** What earlier attempts of one request learned; a retry plans with it. */
export interface PlanState {
  /** Record keys held by someone else: never picked again. */
  avoid: Set<string>;
  /** Record keys this Service holds already (an earlier write left them): not created again. */
  ours: Set<string>;
}

export const newPlanState = (): PlanState => ({ avoid: new Set(), ours: new Set() });

const famName = (f: Family): IPFamily => (f === 4 ? 'IPv4' : 'IPv6');
const famNum = (f: IPFamily): Family => (f === 'IPv4' ? 4 : 6);

export class ServiceAllocations implements ObjectAllocations {
  constructor(private readonly net: ServiceNetwork) {}

  /**
   * Fills the Service's networking fields (families, ClusterIPs, NodePorts) on create
   * (`old` undefined) or update (after prepareServiceUpdate), keeping what `old` already
   * holds, and returns the record ops to write with it. Writes nothing. AllocationError
   * for a value out of range. Requested addresses are stored in canonical form.
   */
  async plan(obj: KubeObject, oldObj: KubeObject | undefined, owner: Owner, state: PlanState): Promise<AllocationPlan> {
    const svc = obj as Service;
    const old = oldObj as Service | undefined;
    const spec = (svc.spec ??= {});
    const plan: AllocationPlan = {
      ops: [],
      keys: new Map(),
      releaseUnused: async () => {
        if (!old) return;
        const keepIPs = new Set(heldIPs(svc));
        const keepPorts = new Set(heldPorts(svc));
        for (const ip of heldIPs(old)) if (!keepIPs.has(ip)) await this.allocatorFor(ip)?.release(ip, owner);
        for (const p of heldPorts(old)) if (!keepPorts.has(p)) await this.net.nodePorts.release(p, owner);
      },
    };
    const take = <V extends string | number>(alloc: KeyAllocator<V>, v: V, field: string, requested: boolean) => {
      const key = alloc.key(v);
      if (plan.keys.has(key)) throw new AllocationError(field, v, `provided ${typeof v === 'number' ? 'port' : 'IP'} is already allocated`);
      plan.keys.set(key, { value: v, field, requested });
      if (!state.ours.has(key)) plan.ops.push(alloc.recordOp(v, owner));
    };
    await this.assignIPs(spec, old, state, take);
    await this.assignPorts(spec, old, state, take);
    return plan;
  }

  /**
   * A write of `plan` failed with KeyExists on `key`. Returns false when the key is not
   * one of the plan's records. Otherwise learns from it for the next attempt and returns
   * true (retry) — or throws AllocationError when a value the user asked for belongs to
   * another object.
   */
  async onKeyExists(plan: AllocationPlan, key: string, owner: Owner, state: PlanState): Promise<boolean> {
    const k = plan.keys.get(key);
    if (!k) return false;
    if (!k.requested) {
      state.avoid.add(key);
      return true;
    }
    const holder = await this.ownerOf(key, k.value);
    if (holder === undefined) return true; // freed meanwhile
    if (holder.uid === owner.uid) {
      state.ours.add(key);
      return true;
    }
    throw (typeof k.value === 'number' ? this.net.nodePorts.taken(k.value, k.field) : this.allocatorFor(k.value)!.taken(k.value, k.field));
  }

  /** Frees everything the Service holds (after it was deleted). */
  async onDelete(obj: KubeObject, owner: Owner): Promise<void> {
    const svc = obj as Service;
    for (const ip of heldIPs(svc)) await this.allocatorFor(ip)?.release(ip, owner);
    for (const p of heldPorts(svc)) await this.net.nodePorts.release(p, owner);
  }

  private ownerOf(key: string, value: string | number): Promise<Owner | undefined> {
    return typeof value === 'number' ? this.net.nodePorts.owner(value) : (this.allocatorFor(value)?.owner(value) ?? Promise.resolve(undefined));
  }

  private allocatorFor(ip: string): ClusterIPAllocator | undefined {
    return this.net.clusterIPs[familyOf(ip)];
  }

  private async assignIPs(spec: NonNullable<Service['spec']>, old: Service | undefined, state: PlanState, take: Take): Promise<void> {
    if (spec.type === 'ExternalName') {
      delete spec.clusterIP;
      delete spec.clusterIPs;
      delete spec.ipFamilies;
      delete spec.ipFamilyPolicy;
      return;
    }
    const configured = ([4, 6] as const).filter((f) => this.net.clusterIPs[f]);
    const dualStackCluster = configured.length === 2;
    // Canonical spelling ("FD00:10:96:0::5" is fd00:10:96::5): one address, one record.
    const requested = (spec.clusterIPs?.length ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : []).filter((x) => x !== '').map((ip) => (ip === 'None' || isIP(ip) === 0 ? ip : parseIP(ip)));
    const headless = requested[0] === 'None';
    // Families: explicit, else from requested IPs, else the cluster's primary.
    let families: Family[] = (spec.ipFamilies ?? []).map(famNum);
    if (!families.length && !headless) families = requested.map((ip) => familyOf(ip));
    if (!families.length) families = [this.net.primary];
    const policy = spec.ipFamilyPolicy ?? (families.length > 1 ? 'RequireDualStack' : 'SingleStack');
    if (policy === 'RequireDualStack' && !dualStackCluster) {
      throw new AllocationError('spec.ipFamilyPolicy', policy, 'this cluster is not configured for dual-stack services');
    }
    if (policy !== 'SingleStack' && dualStackCluster && families.length === 1) families.push(families[0] === 4 ? 6 : 4);
    for (const [i, f] of families.entries()) {
      if (!this.net.clusterIPs[f]) {
        if (policy === 'PreferDualStack' && i > 0) {
          families = families.slice(0, i);
          break;
        }
        throw new AllocationError(`spec.ipFamilies[${i}]`, famName(f), 'not configured on this cluster');
      }
    }
    spec.ipFamilyPolicy = policy;
    spec.ipFamilies = families.map(famName);
    if (headless) {
      spec.clusterIP = 'None';
      spec.clusterIPs = ['None'];
      return;
    }
    const ips: string[] = [];
    for (const [i, f] of families.entries()) {
      const want = requested[i];
      const alloc = this.net.clusterIPs[f]!;
      const field = `spec.clusterIPs[${i}]`;
      if (want !== undefined) {
        if (familyOf(want) !== f) throw new AllocationError(field, want, `expected an ${famName(f)} address (ipFamilies[${i}] is ${famName(f)})`);
        alloc.checkRequested(want, field);
        if (!(old && heldIPs(old).includes(want))) take(alloc, want, field, true);
        ips.push(want);
      } else {
        const ip = await alloc.pick(state.avoid, field);
        take(alloc, ip, field, false);
        ips.push(ip);
      }
    }
    spec.clusterIPs = ips;
    spec.clusterIP = ips[0];
  }

  private async assignPorts(spec: NonNullable<Service['spec']>, old: Service | undefined, state: PlanState, take: Take): Promise<void> {
    const ports = this.net.nodePorts;
    // Ports this write takes, so that two of its fields never pick the same one.
    const avoid = new Set(state.avoid);
    const pick = async (field: string) => {
      const p = await ports.pick(avoid, field);
      avoid.add(ports.key(p));
      take(ports, p, field, false);
      return p;
    };
    const request = (p: number, field: string) => {
      ports.checkRequested(p, field);
      take(ports, p, field, true);
    };
    const wantsNodePorts = spec.type === 'NodePort' || (spec.type === 'LoadBalancer' && spec.allocateLoadBalancerNodePorts !== false);
    const wantsHealthCheck = spec.type === 'LoadBalancer' && spec.externalTrafficPolicy === 'Local';
    const oldHeld = new Set(old ? heldPorts(old) : []);
    // Values given in the object first, so that no random pick lands on one of them.
    for (const p of spec.ports ?? []) if (p.nodePort && (wantsNodePorts || spec.type === 'LoadBalancer')) avoid.add(ports.key(p.nodePort));
    if (wantsHealthCheck && spec.healthCheckNodePort) avoid.add(ports.key(spec.healthCheckNodePort));
    const usedHere = new Map<number, ServicePort>();
    for (const [i, p] of (spec.ports ?? []).entries()) {
      if (!wantsNodePorts) {
        // A LoadBalancer that allocates no NodePorts still holds the ones the user gave.
        if (spec.type !== 'LoadBalancer') delete p.nodePort;
        else if (p.nodePort && !usedHere.has(p.nodePort)) {
          if (!oldHeld.has(p.nodePort)) request(p.nodePort, `spec.ports[${i}].nodePort`);
          usedHere.set(p.nodePort, p);
        }
        continue;
      }
      if (p.nodePort) {
        const dup = usedHere.get(p.nodePort);
        // The same nodePort may serve two ports of this Service only for different protocols.
        if (dup && (dup.protocol ?? 'TCP') === (p.protocol ?? 'TCP')) throw new AllocationError(`spec.ports[${i}].nodePort`, p.nodePort, 'provided port is already allocated');
        if (!dup && !oldHeld.has(p.nodePort)) request(p.nodePort, `spec.ports[${i}].nodePort`);
      } else {
        p.nodePort = await pick(`spec.ports[${i}].nodePort`);
      }
      usedHere.set(p.nodePort, p);
    }
    if (!wantsHealthCheck) {
      delete spec.healthCheckNodePort;
    } else if (spec.healthCheckNodePort) {
      if (!oldHeld.has(spec.healthCheckNodePort)) request(spec.healthCheckNodePort, 'spec.healthCheckNodePort');
    } else {
      spec.healthCheckNodePort = await pick('spec.healthCheckNodePort');
    }
  }
}

/**
 * What an update of a Service does before it is validated, as kube-apiserver does:
 * fields the new type no longer uses are dropped when the user left them as they were
 * (dropTypeDependentFields: `kubectl patch -p '{"spec":{"type":"ClusterIP"}}'` on a
 * NodePort Service works); allocated values the user omitted are kept
 * (patchAllocatedValues); a dual-stack Service set to SingleStack keeps its primary
 * address and family only (trimFieldsForDualStackDowngrade).
 */
export function prepareServiceUpdate(svc: Service, old: Service): void {
  dropTypeDependentFields(svc, old);
  carryOver(svc, old);
  const spec = (svc.spec ??= {});
  const wasDual = old.spec?.ipFamilyPolicy === 'RequireDualStack' || old.spec?.ipFamilyPolicy === 'PreferDualStack';
  if (wasDual && spec.ipFamilyPolicy === 'SingleStack') {
    if ((spec.clusterIPs?.length ?? 0) > 1) spec.clusterIPs = spec.clusterIPs!.slice(0, 1);
    if ((spec.ipFamilies?.length ?? 0) > 1) spec.ipFamilies = spec.ipFamilies!.slice(0, 1);
  }
}

const needsClusterIP = (s: Service) => s.spec?.type !== 'ExternalName';
const needsNodePorts = (s: Service) => s.spec?.type === 'NodePort' || s.spec?.type === 'LoadBalancer';
const needsHealthCheckPort = (s: Service) => s.spec?.type === 'LoadBalancer' && s.spec.externalTrafficPolicy === 'Local';
const externallyAccessible = (s: Service) => needsNodePorts(s) || (s.spec?.type === 'ClusterIP' && (s.spec.externalIPs?.length ?? 0) > 0);
const same = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

function dropTypeDependentFields(svc: Service, old: Service): void {
  const spec = (svc.spec ??= {});
  const o = old.spec ?? {};
  if (needsClusterIP(old) && !needsClusterIP(svc)) {
    if (same(spec.clusterIP, o.clusterIP) && same(spec.clusterIPs, o.clusterIPs)) {
      delete spec.clusterIP;
      delete spec.clusterIPs;
    }
    if (same(spec.ipFamilies, o.ipFamilies)) delete spec.ipFamilies;
    if (same(spec.ipFamilyPolicy, o.ipFamilyPolicy)) delete spec.ipFamilyPolicy;
  }
  if (needsNodePorts(old) && !needsNodePorts(svc)) {
    const nodePorts = (x: { ports?: ServicePort[] }) => (x.ports ?? []).map((p) => p.nodePort ?? 0);
    if (same(nodePorts(spec), nodePorts(o))) for (const p of spec.ports ?? []) delete p.nodePort;
  }
  if (needsHealthCheckPort(old) && !needsHealthCheckPort(svc) && spec.healthCheckNodePort === o.healthCheckNodePort) delete spec.healthCheckNodePort;
  if (o.type === 'LoadBalancer' && spec.type !== 'LoadBalancer') {
    if (spec.allocateLoadBalancerNodePorts !== undefined && spec.allocateLoadBalancerNodePorts === o.allocateLoadBalancerNodePorts) delete spec.allocateLoadBalancerNodePorts;
  }
  if (externallyAccessible(old) && !externallyAccessible(svc) && spec.externalTrafficPolicy === o.externalTrafficPolicy) delete spec.externalTrafficPolicy;
}

/** Fields a user may omit on update that keep their allocated value (kube's patchAllocatedValues). */
function carryOver(svc: Service, old: Service): void {
  const spec = (svc.spec ??= {});
  const o = old.spec ?? {};
  const sameKind = (spec.type === 'ExternalName') === (o.type === 'ExternalName');
  if (sameKind && spec.type !== 'ExternalName') {
    if (!spec.clusterIP && !spec.clusterIPs?.length) {
      if (o.clusterIP) spec.clusterIP = o.clusterIP;
      if (o.clusterIPs) spec.clusterIPs = [...o.clusterIPs];
      if (!spec.ipFamilies && o.ipFamilies) spec.ipFamilies = [...o.ipFamilies];
      if (!spec.ipFamilyPolicy && o.ipFamilyPolicy) spec.ipFamilyPolicy = o.ipFamilyPolicy;
    } else if (!spec.clusterIPs?.length && spec.clusterIP === o.clusterIP && o.clusterIPs) {
      spec.clusterIPs = [...o.clusterIPs];
      if (!spec.ipFamilies && o.ipFamilies) spec.ipFamilies = [...o.ipFamilies];
    }
  }
  const nodePortTypes = (t: string | undefined) => t === 'NodePort' || t === 'LoadBalancer';
  if (nodePortTypes(spec.type) && nodePortTypes(o.type)) {
    for (const p of spec.ports ?? []) {
      if (p.nodePort) continue;
      const match = (o.ports ?? []).find((q) => q.port === p.port && (q.protocol ?? 'TCP') === (p.protocol ?? 'TCP')) ?? (p.name ? (o.ports ?? []).find((q) => q.name === p.name) : undefined);
      if (match?.nodePort) p.nodePort = match.nodePort;
    }
    if (!spec.healthCheckNodePort && o.healthCheckNodePort && needsHealthCheckPort(svc) && needsHealthCheckPort(old)) spec.healthCheckNodePort = o.healthCheckNodePort;
  }
}

export function heldIPs(svc: Service): string[] {
  return (svc.spec?.clusterIPs ?? (svc.spec?.clusterIP ? [svc.spec.clusterIP] : [])).filter((ip) => ip && ip !== 'None');
}

export function heldPorts(svc: Service): number[] {
  const out = new Set<number>();
  for (const p of svc.spec?.ports ?? []) if (p.nodePort) out.add(p.nodePort);
  if (svc.spec?.healthCheckNodePort) out.add(svc.spec.healthCheckNodePort);
  return [...out];
}
