/**
 * What the api does to a Service's networking fields on create, update and delete:
 * IP families and policy, ClusterIPs (requested or random), NodePorts and the health
 * check NodePort — allocating what is new, keeping what was already allocated, and
 * releasing what is no longer used only after the Service write succeeded.
 */
import type { IPFamily, Service, ServicePort } from '../../client/types.js';
import { familyOf } from '../../util/ipnet.js';
import type { Family } from '../../util/ipnet.js';
import { AllocationError, ClusterIPAllocator, PortAllocator } from './allocators.js';
import type { Owner } from './allocators.js';

export interface ServiceNetwork {
  /** Allocators per family; the first configured service CIDR's family is primary. */
  clusterIPs: Partial<Record<Family, ClusterIPAllocator>>;
  primary: Family;
  nodePorts: PortAllocator;
}

/** Undo / finish for one operation's allocations. */
export interface AllocationTxn {
  /** The Service write failed: free what this operation allocated. */
  rollback(): Promise<void>;
  /** The Service write succeeded: free what the old object held and the new one does not. */
  commit(): Promise<void>;
}

const famName = (f: Family): IPFamily => (f === 4 ? 'IPv4' : 'IPv6');
const famNum = (f: IPFamily): Family => (f === 'IPv4' ? 4 : 6);

export class ServiceAllocations {
  constructor(private readonly net: ServiceNetwork) {}

  async onCreate(svc: Service, owner: Owner): Promise<AllocationTxn> {
    return this.reconcile(svc, undefined, owner);
  }

  async onUpdate(svc: Service, old: Service, owner: Owner): Promise<AllocationTxn> {
    carryOver(svc, old);
    return this.reconcile(svc, old, owner);
  }

  /** Frees everything the Service holds (after it was deleted). */
  async onDelete(svc: Service, owner: Owner): Promise<void> {
    for (const ip of heldIPs(svc)) await this.allocatorFor(ip)?.release(ip, owner);
    for (const p of heldPorts(svc)) await this.net.nodePorts.release(p, owner);
  }

  private allocatorFor(ip: string): ClusterIPAllocator | undefined {
    return this.net.clusterIPs[familyOf(ip)];
  }

  private async reconcile(svc: Service, old: Service | undefined, owner: Owner): Promise<AllocationTxn> {
    const spec = (svc.spec ??= {});
    const made: { ips: string[]; ports: number[] } = { ips: [], ports: [] };
    const rollback = async () => {
      for (const ip of made.ips) await this.allocatorFor(ip)?.release(ip, owner);
      for (const p of made.ports) await this.net.nodePorts.release(p, owner);
    };
    try {
      await this.assignIPs(spec, old, owner, made);
      await this.assignPorts(spec, old, owner, made);
    } catch (e) {
      await rollback();
      throw e;
    }
    return {
      rollback,
      commit: async () => {
        if (!old) return;
        const keepIPs = new Set(heldIPs(svc));
        const keepPorts = new Set(heldPorts(svc));
        for (const ip of heldIPs(old)) if (!keepIPs.has(ip)) await this.allocatorFor(ip)?.release(ip, owner);
        for (const p of heldPorts(old)) if (!keepPorts.has(p)) await this.net.nodePorts.release(p, owner);
      },
    };
  }

  private async assignIPs(spec: NonNullable<Service['spec']>, old: Service | undefined, owner: Owner, made: { ips: string[] }): Promise<void> {
    if (spec.type === 'ExternalName') {
      delete spec.clusterIP;
      delete spec.clusterIPs;
      delete spec.ipFamilies;
      delete spec.ipFamilyPolicy;
      return;
    }
    const configured = ([4, 6] as const).filter((f) => this.net.clusterIPs[f]);
    const dualStackCluster = configured.length === 2;
    const requested = (spec.clusterIPs?.length ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : []).filter((x) => x !== '');
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
      if (want !== undefined) {
        if (familyOf(want) !== f) throw new AllocationError(`spec.clusterIPs[${i}]`, want, `expected an ${famName(f)} address (ipFamilies[${i}] is ${famName(f)})`);
        const held = old ? heldIPs(old).includes(want) : false;
        if (!held) {
          await alloc.claim(want, owner, `spec.clusterIPs[${i}]`);
          made.ips.push(want);
        }
        ips.push(want);
      } else {
        const ip = await alloc.allocate(owner, `spec.clusterIPs[${i}]`);
        made.ips.push(ip);
        ips.push(ip);
      }
    }
    spec.clusterIPs = ips;
    spec.clusterIP = ips[0];
  }

  private async assignPorts(spec: NonNullable<Service['spec']>, old: Service | undefined, owner: Owner, made: { ports: number[] }): Promise<void> {
    const wantsNodePorts = spec.type === 'NodePort' || (spec.type === 'LoadBalancer' && spec.allocateLoadBalancerNodePorts !== false);
    const oldHeld = new Set(old ? heldPorts(old) : []);
    const usedHere = new Map<number, ServicePort>();
    for (const [i, p] of (spec.ports ?? []).entries()) {
      if (!wantsNodePorts) {
        if (spec.type !== 'LoadBalancer') delete p.nodePort;
        continue;
      }
      if (p.nodePort) {
        const dup = usedHere.get(p.nodePort);
        // The same nodePort may serve two ports of this Service only for different protocols.
        if (dup && (dup.protocol ?? 'TCP') === (p.protocol ?? 'TCP')) throw new AllocationError(`spec.ports[${i}].nodePort`, p.nodePort, 'provided port is already allocated');
        if (!dup && !oldHeld.has(p.nodePort)) {
          await this.net.nodePorts.claim(p.nodePort, owner, `spec.ports[${i}].nodePort`);
          made.ports.push(p.nodePort);
        }
      } else {
        p.nodePort = await this.net.nodePorts.allocate(owner, `spec.ports[${i}].nodePort`);
        made.ports.push(p.nodePort);
      }
      usedHere.set(p.nodePort, p);
    }
    const wantsHealthCheck = spec.type === 'LoadBalancer' && spec.externalTrafficPolicy === 'Local';
    if (!wantsHealthCheck) {
      delete spec.healthCheckNodePort;
    } else if (spec.healthCheckNodePort) {
      if (!oldHeld.has(spec.healthCheckNodePort)) {
        await this.net.nodePorts.claim(spec.healthCheckNodePort, owner, 'spec.healthCheckNodePort');
        made.ports.push(spec.healthCheckNodePort);
      }
    } else {
      spec.healthCheckNodePort = await this.net.nodePorts.allocate(owner, 'spec.healthCheckNodePort');
      made.ports.push(spec.healthCheckNodePort);
    }
  }
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
    if (!spec.healthCheckNodePort && o.healthCheckNodePort) spec.healthCheckNodePort = o.healthCheckNodePort;
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
