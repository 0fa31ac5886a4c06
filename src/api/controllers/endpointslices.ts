/**
 * The EndpointSlice controller: for every Service with a selector, slices (at most 100
 * endpoints each, one address family per slice) listing the matching Pods that have an
 * IP, with ready / serving / terminating conditions, the node, and ports resolved from
 * each Service port's targetPort (a number, or a container port name looked up per pod —
 * pods resolving a name differently land in different slices). Level-triggered: any
 * change to a Service, a Pod or a managed slice re-syncs the Services concerned, and a
 * periodic resync repairs drift.
 */
import type { EndpointPort, EndpointSlice, Endpoint, IPFamily, Pod, Service } from '../../client/types.js';
import { familyOf } from '../../util/ipnet.js';
import type { Logger } from '../../util/log.js';
import { ApiStatusError } from '../server/status.js';
import type { Registry } from '../registry/registry.js';
import { matchesSelectorMap } from '../registry/selectors.js';
import { LocalInformer, WorkQueue, keyOf } from './informer.js';

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
export const MANAGED_BY_LABEL = 'endpointslice.kubernetes.io/managed-by';
export const MANAGED_BY = 'endpointslice-controller.k8s.io';
export const MAX_ENDPOINTS_PER_SLICE = 100;
/** When the change behind a slice's content happened (kube's EndpointSlice controller sets it; proxies measure network programming latency from it). */
export const TRIGGER_TIME_ANNOTATION = 'endpoints.kubernetes.io/last-change-trigger-time';

interface DesiredSlice {
  addressType: 'IPv4' | 'IPv6';
  ports: EndpointPort[];
  endpoints: Endpoint[];
}

export class EndpointSliceController {
  private readonly services: LocalInformer<Service>;
  private readonly pods: LocalInformer<Pod>;
  private readonly slices: LocalInformer<EndpointSlice>;
  private readonly queue: WorkQueue;
  private resyncTimer: NodeJS.Timeout | undefined;
  /** Service key -> when the oldest change not yet written to its slices was seen (a Service or Pod event). */
  private readonly triggers = new Map<string, number>();

  constructor(
    private readonly registry: Registry,
    private readonly log: Logger,
    private readonly opts: { resyncMs?: number } = {},
  ) {
    this.services = new LocalInformer(registry, 'services', log);
    this.pods = new LocalInformer(registry, 'pods', log);
    this.slices = new LocalInformer(registry, 'endpointslices', log);
    this.queue = new WorkQueue((k) => this.sync(k), log, 'endpointslices');
  }

  async start(): Promise<void> {
    this.services.on({ onAdd: (s) => this.changed(keyOf(s)), onUpdate: (_o, s) => this.changed(keyOf(s)), onDelete: (s) => this.changed(keyOf(s)) });
    this.pods.on({
      onAdd: (p) => this.podChanged(undefined, p),
      onUpdate: (o, p) => this.podChanged(o, p),
      onDelete: (p) => this.podChanged(p, undefined),
    });
    this.slices.on({
      onAdd: (s) => this.sliceChanged(s),
      onUpdate: (_o, s) => this.sliceChanged(s),
      onDelete: (s) => this.sliceChanged(s),
    });
    await Promise.all([this.services.start(), this.pods.start(), this.slices.start()]);
    for (const s of this.services.list()) this.queue.add(keyOf(s));
    const resync = () => {
      for (const s of this.services.list()) this.queue.add(keyOf(s));
      this.resyncTimer = setTimeout(resync, this.opts.resyncMs ?? 60_000);
      this.resyncTimer.unref();
    };
    this.resyncTimer = setTimeout(resync, this.opts.resyncMs ?? 60_000);
    this.resyncTimer.unref();
  }

  stop(): void {
    clearTimeout(this.resyncTimer);
    this.queue.stop();
    this.services.stop();
    this.pods.stop();
    this.slices.stop();
  }

  /** Resolves when queued work is done (tests). */
  idle(): Promise<void> {
    return this.queue.idle();
  }

  private podChanged(old: Pod | undefined, pod: Pod | undefined): void {
    const ns = (pod ?? old)!.metadata.namespace!;
    for (const svc of this.services.inNamespace(ns)) {
      const sel = svc.spec?.selector;
      if (matchesSelectorMap(sel, pod?.metadata.labels) || matchesSelectorMap(sel, old?.metadata.labels)) this.changed(keyOf(svc));
    }
  }

  /** A Service or one of its pods changed: remember when (the trigger time), and sync it. */
  private changed(key: string): void {
    if (!this.triggers.has(key)) this.triggers.set(key, Date.now());
    this.queue.add(key);
  }

  private sliceChanged(s: EndpointSlice): void {
    if (s.metadata.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY) return;
    const svc = s.metadata.labels?.[SERVICE_NAME_LABEL];
    if (svc) this.queue.add(`${s.metadata.namespace}/${svc}`);
  }

  /** Brings the slices of one Service to the desired state. */
  private async sync(key: string): Promise<void> {
    const [ns, name] = key.split('/') as [string, string];
    const svc = this.services.get(key);
    const existing = this.slices
      .inNamespace(ns)
      .filter((s) => s.metadata.labels?.[SERVICE_NAME_LABEL] === name && s.metadata.labels?.[MANAGED_BY_LABEL] === MANAGED_BY);
    const desired = svc && svc.spec?.selector && Object.keys(svc.spec.selector).length && svc.spec.type !== 'ExternalName' ? desiredSlices(svc, this.pods.inNamespace(ns)) : [];
    // Pair desired slices with existing ones of the same address type and ports, in order.
    const pool = [...existing].sort((a, b) => (a.metadata.name! < b.metadata.name! ? -1 : 1));
    const trigger = this.triggers.get(key);
    this.triggers.delete(key);
    const stamp = (meta: EndpointSlice['metadata']): EndpointSlice['metadata'] =>
      trigger === undefined ? meta : { ...meta, annotations: { ...meta.annotations, [TRIGGER_TIME_ANNOTATION]: new Date(trigger).toISOString() } };
    const writes: Promise<unknown>[] = [];
    for (const d of desired) {
      const i = pool.findIndex((s) => s.addressType === d.addressType && portsKey(s.ports ?? []) === portsKey(d.ports));
      const match = i >= 0 ? pool.splice(i, 1)[0] : undefined;
      if (match) {
        if (JSON.stringify(match.endpoints ?? []) !== JSON.stringify(d.endpoints) || JSON.stringify(match.ports ?? []) !== JSON.stringify(d.ports)) {
          writes.push(this.registry.update('endpointslices', ns, match.metadata.name!, { ...match, metadata: stamp(match.metadata), endpoints: d.endpoints, ports: d.ports }));
        }
      } else {
        const obj = sliceObject(svc!, d);
        writes.push(this.registry.create('endpointslices', ns, { ...obj, metadata: stamp(obj.metadata) }));
      }
    }
    for (const leftover of pool) {
      writes.push(this.registry.delete('endpointslices', ns, leftover.metadata.name!).catch((e: unknown) => {
        if (!(e instanceof ApiStatusError && e.reason === 'NotFound')) throw e;
      }));
    }
    const results = await Promise.allSettled(writes);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      // Retried: the trigger time still dates from the first change.
      if (trigger !== undefined && !this.triggers.has(key)) this.triggers.set(key, trigger);
      throw failed.reason;
    }
    if (writes.length) this.log.debug({ service: key, slices: desired.length, writes: writes.length }, 'endpoint slices synced');
  }
}

const portsKey = (ports: EndpointPort[]) => JSON.stringify(ports.map((p) => [p.name ?? '', p.protocol ?? 'TCP', p.port ?? null]));

function podReady(p: Pod): boolean {
  return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/** The slices a Service should have, given the pods of its namespace. Pure. */
export function desiredSlices(svc: Service, pods: Pod[]): DesiredSlice[] {
  const spec = svc.spec ?? {};
  const families: IPFamily[] = spec.ipFamilies?.length ? spec.ipFamilies : ['IPv4'];
  const groups = new Map<string, { addressType: 'IPv4' | 'IPv6'; ports: EndpointPort[]; endpoints: Endpoint[] }>();
  const selected = pods
    .filter((p) => matchesSelectorMap(spec.selector, p.metadata.labels))
    .filter((p) => p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed')
    .sort((a, b) => (a.metadata.name! < b.metadata.name! ? -1 : 1));
  for (const pod of selected) {
    const ips = pod.status?.podIPs?.length ? pod.status.podIPs.map((x) => x.ip) : pod.status?.podIP ? [pod.status.podIP] : [];
    if (!ips.length) continue;
    const ports = resolvePorts(svc, pod);
    // As kube's podToEndpoint: serving is the pod's readiness; ready is that unless terminating,
    // or true whatever the pod says when the Service publishes not-ready addresses.
    const serving = podReady(pod);
    const terminating = !!pod.metadata.deletionTimestamp;
    const ready = !!spec.publishNotReadyAddresses || (serving && !terminating);
    // The DNS hostname belongs to the Service the pod names as its subdomain (ShouldSetHostname).
    const hostname = pod.spec?.hostname && pod.spec.subdomain === svc.metadata.name ? pod.spec.hostname : undefined;
    for (const fam of families) {
      const ip = ips.find((x) => (familyOf(x) === 4 ? 'IPv4' : 'IPv6') === fam);
      if (!ip) continue;
      const key = `${fam}|${portsKey(ports)}`;
      let g = groups.get(key);
      if (!g) groups.set(key, (g = { addressType: fam, ports, endpoints: [] }));
      g.endpoints.push({
        addresses: [ip],
        conditions: { ready, serving, terminating },
        ...(pod.spec?.nodeName ? { nodeName: pod.spec.nodeName } : {}),
        ...(hostname ? { hostname } : {}),
        targetRef: { kind: 'Pod', namespace: pod.metadata.namespace!, name: pod.metadata.name!, uid: pod.metadata.uid! },
      });
    }
  }
  const out: DesiredSlice[] = [];
  for (const g of groups.values()) {
    for (let i = 0; i < g.endpoints.length; i += MAX_ENDPOINTS_PER_SLICE) {
      out.push({ addressType: g.addressType, ports: g.ports, endpoints: g.endpoints.slice(i, i + MAX_ENDPOINTS_PER_SLICE) });
    }
  }
  return out;
}

/** Service ports with targetPort resolved for this pod (named ports via its containers). */
export function resolvePorts(svc: Service, pod: Pod): EndpointPort[] {
  const out: EndpointPort[] = [];
  for (const sp of svc.spec?.ports ?? []) {
    const protocol = sp.protocol ?? 'TCP';
    let port: number | undefined;
    if (typeof sp.targetPort === 'number') port = sp.targetPort;
    else if (typeof sp.targetPort === 'string' && sp.targetPort !== '') {
      for (const c of [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])]) {
        const cp = (c.ports ?? []).find((p) => p.name === sp.targetPort && (p.protocol ?? 'TCP') === protocol);
        if (cp) {
          port = cp.containerPort;
          break;
        }
      }
      if (port === undefined) continue; // this pod does not expose the named port
    } else port = sp.port;
    out.push({ ...(sp.name !== undefined ? { name: sp.name } : { name: '' }), protocol, port, ...(sp.appProtocol ? { appProtocol: sp.appProtocol } : {}) });
  }
  return out;
}

function sliceObject(svc: Service, d: DesiredSlice): EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      generateName: `${svc.metadata.name!.slice(0, 57)}-`,
      namespace: svc.metadata.namespace!,
      labels: { [SERVICE_NAME_LABEL]: svc.metadata.name!, [MANAGED_BY_LABEL]: MANAGED_BY },
      ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: svc.metadata.name!, uid: svc.metadata.uid!, controller: true, blockOwnerDeletion: true }],
    },
    addressType: d.addressType,
    endpoints: d.endpoints,
    ports: d.ports,
  };
}
