/**
 * Value rules per resource, run after the structural check (./schemas.ts) and defaulting
 * (./defaults.ts). They see well-typed objects; they report every problem at once, each
 * naming its field, so one 422 tells the user everything that is wrong.
 */
import type { ResourceName } from '../../client/resources.js';
import type { Condition, CoreEvent, EndpointSlice, KubeObject, Lease, Namespace, Node, Pod, Service } from '../../client/types.js';
import { FieldErrors } from './fielderrors.js';
import * as f from './formats.js';

export interface RuleContext {
  op: 'create' | 'update';
  /** The stored object, for updates (immutability rules). */
  old?: KubeObject;
}

export function validate(resource: ResourceName, obj: KubeObject, ctx: RuleContext): FieldErrors {
  const e = new FieldErrors();
  metadata(e, resource, obj);
  switch (resource) {
    case 'namespaces':
      namespace(e, obj as Namespace);
      break;
    case 'nodes':
      node(e, obj as Node, ctx.old as Node | undefined);
      break;
    case 'pods':
      pod(e, obj as Pod, ctx.old as Pod | undefined);
      break;
    case 'services':
      service(e, obj as Service, ctx.old as Service | undefined);
      break;
    case 'endpointslices':
      endpointSlice(e, obj as EndpointSlice, ctx.old as EndpointSlice | undefined);
      break;
    case 'leases':
      lease(e, obj as Lease);
      break;
    case 'events':
      event(e, obj as CoreEvent, ctx.old as CoreEvent | undefined);
      break;
  }
  return e;
}

/** Name rules per resource, as kube-apiserver applies them. */
const NAME_RULE: Record<ResourceName, (e: FieldErrors, field: string, v: string) => boolean> = {
  namespaces: f.dns1123Label,
  nodes: f.dns1123Subdomain,
  pods: f.dns1123Subdomain,
  services: f.dns1035Label,
  endpointslices: f.dns1123Subdomain,
  leases: f.dns1123Subdomain,
  events: f.dns1123Subdomain,
};

function metadata(e: FieldErrors, resource: ResourceName, obj: KubeObject): void {
  const m = obj.metadata;
  if (!m.name) e.required('metadata.name', 'name or generateName is required');
  else NAME_RULE[resource](e, 'metadata.name', m.name);
  if (m.generateName) {
    // A prefix: it may end in '-' (kube-apiserver's maskTrailingDash, quirk included).
    const g = m.generateName;
    const masked = g.length > 1 && g.endsWith('-') ? `${g.slice(0, -2)}a` : g;
    if (!NAME_RULE[resource](new FieldErrors(), 'metadata.generateName', masked)) NAME_RULE[resource](e, 'metadata.generateName', g);
  }
  f.labels(e, 'metadata.labels', m.labels);
  f.annotations(e, 'metadata.annotations', m.annotations);
  for (const [i, fin] of (m.finalizers ?? []).entries()) f.qualifiedName(e, `metadata.finalizers[${i}]`, fin);
}

function conditions(e: FieldErrors, field: string, list: Condition[] | null | undefined): void {
  const seen = new Set<string>();
  for (const [i, c] of (list ?? []).entries()) {
    if (seen.has(c.type)) e.duplicate(`${field}[${i}].type`, c.type);
    seen.add(c.type);
    f.oneOf(e, `${field}[${i}].status`, c.status, ['False', 'True', 'Unknown']);
    f.timestamp(e, `${field}[${i}].lastTransitionTime`, c.lastTransitionTime);
    f.timestamp(e, `${field}[${i}].lastHeartbeatTime`, c.lastHeartbeatTime);
  }
}

/** podCIDRs / clusterIPs style: at most one per family, the first equal to the singular field. */
function dualStackList(e: FieldErrors, field: string, values: string[], parse: (field: string, v: string) => 4 | 6 | 0): void {
  if (values.length > 2) e.tooMany(field, 2);
  const fams = values.map((v, i) => parse(`${field}[${i}]`, v));
  if (fams.length === 2 && fams[0] && fams[0] === fams[1]) e.invalid(field, values, 'may specify no more than one IP for each IP family');
}

function namespace(e: FieldErrors, ns: Namespace): void {
  for (const [i, fin] of (ns.spec?.finalizers ?? []).entries()) f.qualifiedName(e, `spec.finalizers[${i}]`, fin);
  if (ns.status?.phase) f.oneOf(e, 'status.phase', ns.status.phase, ['Active', 'Terminating']);
  // As kube-apiserver: only a namespace being deleted (the server set its deletionTimestamp) terminates.
  if (ns.status?.phase === 'Terminating' && !ns.metadata.deletionTimestamp) e.invalid('status.phase', 'Terminating', 'a namespace may only be in active status if it does not have a deletion timestamp');
}

function node(e: FieldErrors, n: Node, old: Node | undefined): void {
  const spec = n.spec ?? {};
  const cidrs = spec.podCIDRs ?? [];
  // As kube-apiserver: pod subnets go from unset to set once, then never change (the
  // subnet's allocation record lives as long as the Node).
  const was = old?.spec?.podCIDRs?.length ? old.spec.podCIDRs : old?.spec?.podCIDR ? [old.spec.podCIDR] : [];
  const now = cidrs.length ? cidrs : spec.podCIDR ? [spec.podCIDR] : [];
  if (was.length && (now.length !== was.length || now.some((c, i) => c !== was[i]))) {
    e.forbidden('spec.podCIDRs', 'node updates may not change podCIDR except from "" to valid');
  }
  dualStackList(e, 'spec.podCIDRs', cidrs, (field, v) => f.cidr(e, field, v)?.family ?? 0);
  if (spec.podCIDR) {
    f.cidr(e, 'spec.podCIDR', spec.podCIDR);
    if (cidrs.length && cidrs[0] !== spec.podCIDR) e.invalid('spec.podCIDRs', cidrs, 'the first entry must match spec.podCIDR');
  }
  for (const [i, a] of (n.status?.addresses ?? []).entries()) {
    f.oneOf(e, `status.addresses[${i}].type`, a.type, ['ExternalDNS', 'ExternalIP', 'Hostname', 'InternalDNS', 'InternalIP']);
    if (a.type === 'InternalIP' || a.type === 'ExternalIP') f.ip(e, `status.addresses[${i}].address`, a.address);
  }
  conditions(e, 'status.conditions', n.status?.conditions);
  for (const [i, t] of (spec.taints ?? []).entries()) {
    f.qualifiedName(e, `spec.taints[${i}].key`, t.key);
    f.oneOf(e, `spec.taints[${i}].effect`, t.effect, ['NoExecute', 'NoSchedule', 'PreferNoSchedule']);
  }
}

function pod(e: FieldErrors, p: Pod, old: Pod | undefined): void {
  const spec = p.spec;
  if (!spec) {
    e.required('spec');
    return;
  }
  if (!spec.containers?.length) e.required('spec.containers');
  const names = new Set<string>();
  const all = [...(spec.initContainers ?? []).map((c, i) => [c, `spec.initContainers[${i}]`] as const), ...(spec.containers ?? []).map((c, i) => [c, `spec.containers[${i}]`] as const)];
  for (const [c, path] of all) {
    if (f.dns1123Label(e, `${path}.name`, c.name) && names.has(c.name)) e.duplicate(`${path}.name`, c.name);
    names.add(c.name);
    const portNames = new Set<string>();
    for (const [i, cp] of (c.ports ?? []).entries()) {
      const pp = `${path}.ports[${i}]`;
      f.port(e, `${pp}.containerPort`, cp.containerPort);
      f.protocol(e, `${pp}.protocol`, cp.protocol);
      if (cp.hostPort !== undefined && cp.hostPort !== null && cp.hostPort !== 0) f.port(e, `${pp}.hostPort`, cp.hostPort);
      if (cp.name) {
        if (f.ianaServiceName(e, `${pp}.name`, cp.name) && portNames.has(cp.name)) e.duplicate(`${pp}.name`, cp.name);
        portNames.add(cp.name);
      }
    }
  }
  if (spec.nodeName) f.dns1123Subdomain(e, 'spec.nodeName', spec.nodeName);
  if (spec.terminationGracePeriodSeconds !== undefined && spec.terminationGracePeriodSeconds !== null && spec.terminationGracePeriodSeconds < 0) {
    e.invalid('spec.terminationGracePeriodSeconds', spec.terminationGracePeriodSeconds, 'must be greater than or equal to 0');
  }
  if (spec.restartPolicy) f.oneOf(e, 'spec.restartPolicy', spec.restartPolicy, ['Always', 'Never', 'OnFailure']);
  if (old?.spec?.nodeName && spec.nodeName !== old.spec.nodeName) e.immutable('spec.nodeName', spec.nodeName);
  const st = p.status ?? {};
  if (st.phase) f.oneOf(e, 'status.phase', st.phase, ['Failed', 'Pending', 'Running', 'Succeeded', 'Unknown']);
  if (st.hostIP) f.ip(e, 'status.hostIP', st.hostIP);
  const podIPs = (st.podIPs ?? []).map((x) => x.ip);
  dualStackList(e, 'status.podIPs', podIPs, (field, v) => f.ip(e, field, v));
  if (st.podIP) {
    f.ip(e, 'status.podIP', st.podIP);
    if (podIPs.length && podIPs[0] !== st.podIP) e.invalid('status.podIPs', podIPs, 'the first entry must match status.podIP');
  }
  for (const [i, h] of (st.hostIPs ?? []).entries()) f.ip(e, `status.hostIPs[${i}].ip`, h.ip);
  conditions(e, 'status.conditions', st.conditions);
}

export const SERVICE_TYPES = ['ClusterIP', 'ExternalName', 'LoadBalancer', 'NodePort'] as const;

function service(e: FieldErrors, s: Service, old: Service | undefined): void {
  const spec = s.spec;
  if (!spec) {
    e.required('spec');
    return;
  }
  const type = spec.type ?? 'ClusterIP';
  f.oneOf(e, 'spec.type', type, SERVICE_TYPES);
  const headless = spec.clusterIP === 'None';
  const ports = spec.ports ?? [];
  if (type === 'ExternalName') {
    if (!spec.externalName) e.required('spec.externalName');
    else f.dns1123Subdomain(e, 'spec.externalName', spec.externalName);
    if (spec.clusterIP && spec.clusterIP !== '') e.forbidden('spec.clusterIP', 'may not be set for ExternalName services');
  } else if (!ports.length && !headless) {
    e.required('spec.ports');
  }
  const portNames = new Set<string>();
  const portKeys = new Set<string>();
  for (const [i, p] of ports.entries()) {
    const pp = `spec.ports[${i}]`;
    if (ports.length > 1 && !p.name) e.required(`${pp}.name`, 'each port must be named when there is more than one');
    if (p.name) {
      if (f.dns1123Label(e, `${pp}.name`, p.name) && portNames.has(p.name)) e.duplicate(`${pp}.name`, p.name);
      portNames.add(p.name);
    }
    f.port(e, `${pp}.port`, p.port);
    f.protocol(e, `${pp}.protocol`, p.protocol);
    const key = `${p.port}/${p.protocol ?? 'TCP'}`;
    if (portKeys.has(key)) e.duplicate(pp, { port: p.port, protocol: p.protocol ?? 'TCP' });
    portKeys.add(key);
    if (typeof p.targetPort === 'number') f.port(e, `${pp}.targetPort`, p.targetPort);
    else if (typeof p.targetPort === 'string') f.ianaServiceName(e, `${pp}.targetPort`, p.targetPort);
    if (p.nodePort !== undefined && p.nodePort !== null && p.nodePort !== 0) {
      if (type !== 'NodePort' && type !== 'LoadBalancer') e.forbidden(`${pp}.nodePort`, 'may not be used when `type` is \'ClusterIP\'');
      else f.port(e, `${pp}.nodePort`, p.nodePort);
    }
  }
  const clusterIPs = spec.clusterIPs ?? [];
  if (spec.clusterIP && spec.clusterIP !== 'None' && spec.clusterIP !== '') f.ip(e, 'spec.clusterIP', spec.clusterIP);
  if (!headless) dualStackList(e, 'spec.clusterIPs', clusterIPs, (field, v) => f.ip(e, field, v));
  if (clusterIPs.length && spec.clusterIP !== undefined && spec.clusterIP !== '' && clusterIPs[0] !== spec.clusterIP) {
    e.invalid('spec.clusterIPs', clusterIPs, 'first value must match `clusterIP`');
  }
  const families = spec.ipFamilies ?? [];
  if (families.length > 2) e.tooMany('spec.ipFamilies', 2);
  for (const [i, fam] of families.entries()) f.oneOf(e, `spec.ipFamilies[${i}]`, fam, ['IPv4', 'IPv6']);
  if (families.length === 2 && families[0] === families[1]) e.duplicate('spec.ipFamilies[1]', families[1]);
  if (spec.ipFamilyPolicy) f.oneOf(e, 'spec.ipFamilyPolicy', spec.ipFamilyPolicy, ['PreferDualStack', 'RequireDualStack', 'SingleStack']);
  if (spec.ipFamilyPolicy === 'SingleStack' && (families.length > 1 || clusterIPs.length > 1)) e.invalid('spec.ipFamilyPolicy', spec.ipFamilyPolicy, 'must be RequireDualStack or PreferDualStack when multiple IP families are specified');
  for (const [i, x] of (spec.externalIPs ?? []).entries()) f.ip(e, `spec.externalIPs[${i}]`, x);
  if (spec.sessionAffinity) f.oneOf(e, 'spec.sessionAffinity', spec.sessionAffinity, ['ClientIP', 'None']);
  const timeout = spec.sessionAffinityConfig?.clientIP?.timeoutSeconds;
  if (timeout !== undefined && timeout !== null) {
    if (spec.sessionAffinity !== 'ClientIP') e.forbidden('spec.sessionAffinityConfig', 'must not be set when `sessionAffinity` is None');
    else if (timeout < 1 || timeout > 86400) e.invalid('spec.sessionAffinityConfig.clientIP.timeoutSeconds', timeout, 'must be greater than 0 and less than 86400');
  }
  const external = type === 'NodePort' || type === 'LoadBalancer' || (spec.externalIPs?.length ?? 0) > 0;
  if (spec.externalTrafficPolicy) {
    if (f.oneOf(e, 'spec.externalTrafficPolicy', spec.externalTrafficPolicy, ['Cluster', 'Local']) && !external) {
      e.invalid('spec.externalTrafficPolicy', spec.externalTrafficPolicy, 'may only be set for externally-accessible services');
    }
  }
  if (spec.internalTrafficPolicy) f.oneOf(e, 'spec.internalTrafficPolicy', spec.internalTrafficPolicy, ['Cluster', 'Local']);
  if (spec.healthCheckNodePort) {
    if (type !== 'LoadBalancer' || spec.externalTrafficPolicy !== 'Local') e.invalid('spec.healthCheckNodePort', spec.healthCheckNodePort, 'may only be set when `type` is \'LoadBalancer\' and `externalTrafficPolicy` is \'Local\'');
    else f.port(e, 'spec.healthCheckNodePort', spec.healthCheckNodePort);
  }
  f.labels(e, 'spec.selector', spec.selector);
  for (const [i, r] of (spec.loadBalancerSourceRanges ?? []).entries()) f.cidr(e, `spec.loadBalancerSourceRanges[${i}]`, r);
  for (const [i, ing] of (s.status?.loadBalancer?.ingress ?? []).entries()) {
    if (ing.ip) f.ip(e, `status.loadBalancer.ingress[${i}].ip`, ing.ip);
    if (!ing.ip && !ing.hostname) e.required(`status.loadBalancer.ingress[${i}]`, 'ip or hostname');
  }
  if (old?.spec) {
    const oldIPs = old.spec.clusterIPs ?? [];
    // The primary cluster IP is immutable; a secondary may be added (dual-stack upgrade).
    if (oldIPs[0] && clusterIPs[0] && oldIPs[0] !== clusterIPs[0] && type !== 'ExternalName' && old.spec.type !== 'ExternalName') {
      e.invalid('spec.clusterIPs[0]', clusterIPs[0], 'may not change once set');
    }
  }
}

function endpointSlice(e: FieldErrors, s: EndpointSlice, old: EndpointSlice | undefined): void {
  const t = s.addressType;
  f.oneOf(e, 'addressType', t, ['FQDN', 'IPv4', 'IPv6']);
  if (old && old.addressType !== t) e.immutable('addressType', t);
  const eps = s.endpoints ?? [];
  if (eps.length > 1000) e.tooMany('endpoints', 1000);
  for (const [i, ep] of eps.entries()) {
    const p = `endpoints[${i}]`;
    if (!ep.addresses.length) e.required(`${p}.addresses`);
    if (ep.addresses.length > 100) e.tooMany(`${p}.addresses`, 100);
    for (const [j, a] of ep.addresses.entries()) {
      if (t === 'FQDN') f.dns1123Subdomain(e, `${p}.addresses[${j}]`, a);
      else {
        const fam = f.ip(e, `${p}.addresses[${j}]`, a);
        if (fam && `IPv${fam}` !== t) e.invalid(`${p}.addresses[${j}]`, a, `must be an ${t} address`);
      }
    }
    if (ep.nodeName) f.dns1123Subdomain(e, `${p}.nodeName`, ep.nodeName);
    if (ep.hostname) f.dns1123Label(e, `${p}.hostname`, ep.hostname);
  }
  const ports = s.ports ?? [];
  if (ports.length > 100) e.tooMany('ports', 100);
  const names = new Set<string>();
  for (const [i, p] of ports.entries()) {
    const name = p.name ?? '';
    if (name && f.dns1123Label(e, `ports[${i}].name`, name) === false) continue;
    if (names.has(name)) e.duplicate(`ports[${i}].name`, name);
    names.add(name);
    if (p.port !== undefined && p.port !== null) f.port(e, `ports[${i}].port`, p.port);
    f.protocol(e, `ports[${i}].protocol`, p.protocol);
  }
}

function lease(e: FieldErrors, l: Lease): void {
  const s = l.spec ?? {};
  if (s.leaseDurationSeconds !== undefined && s.leaseDurationSeconds !== null && s.leaseDurationSeconds <= 0) e.invalid('spec.leaseDurationSeconds', s.leaseDurationSeconds, 'must be greater than 0');
  if (s.leaseTransitions !== undefined && s.leaseTransitions !== null && s.leaseTransitions < 0) e.invalid('spec.leaseTransitions', s.leaseTransitions, 'must be greater than or equal to 0');
  f.timestamp(e, 'spec.acquireTime', s.acquireTime);
  f.timestamp(e, 'spec.renewTime', s.renewTime);
}

/** Longest Event reason, as kube-apiserver allows (bytes). */
export const EVENT_REASON_MAX_BYTES = 128;
/**
 * Longest Event message the server stores (bytes). Recorders truncate at 1024 (as
 * client-go does); the server refuses only what is far beyond that.
 */
export const EVENT_MESSAGE_MAX_BYTES = 4096;
export const EVENT_TYPES = ['Normal', 'Warning'] as const;
/** The fields that say which object an Event is about (immutable: see below). */
const OBJECT_IDENTITY = ['kind', 'namespace', 'name', 'uid', 'apiVersion'] as const;

function event(e: FieldErrors, ev: CoreEvent, old: CoreEvent | undefined): void {
  const io = ev.involvedObject ?? {};
  if (!io.kind) e.required('involvedObject.kind', 'the kind of the object the event is about (e.g. Node)');
  if (!io.name) e.required('involvedObject.name', 'the name of the object the event is about');
  // As kube-apiserver: an Event lives in the namespace of its object; one about a
  // cluster-scoped object (a Node) lives in "default".
  const ns = ev.metadata.namespace ?? '';
  if (io.namespace ? io.namespace !== ns : ns !== '' && ns !== 'default') e.invalid('involvedObject.namespace', io.namespace ?? '', `does not match the event's namespace ${JSON.stringify(ns)} (events about cluster-scoped objects live in "default")`);
  if (ev.reason !== undefined && Buffer.byteLength(ev.reason) > EVENT_REASON_MAX_BYTES) e.tooLong('reason', EVENT_REASON_MAX_BYTES);
  if (ev.message !== undefined && Buffer.byteLength(ev.message) > EVENT_MESSAGE_MAX_BYTES) e.tooLong('message', EVENT_MESSAGE_MAX_BYTES);
  if (ev.type === undefined || ev.type === null || (ev.type as string) === '') e.required('type', 'Normal or Warning');
  else f.oneOf(e, 'type', ev.type, EVENT_TYPES);
  if (ev.count !== undefined && ev.count !== null && ev.count < 0) e.invalid('count', ev.count, 'must be greater than or equal to 0');
  if (ev.series?.count !== undefined && ev.series.count !== null && ev.series.count < 0) e.invalid('series.count', ev.series.count, 'must be greater than or equal to 0');
  f.timestamp(e, 'firstTimestamp', ev.firstTimestamp);
  f.timestamp(e, 'lastTimestamp', ev.lastTimestamp);
  f.timestamp(e, 'eventTime', ev.eventTime);
  f.timestamp(e, 'series.lastObservedTime', ev.series?.lastObservedTime);
  // An update counts another occurrence of the same thing; it may not move the Event to
  // another object (as events.k8s.io/v1 has it — and node authorization checks the
  // stored object, so this is also what keeps a node's update about its own objects).
  if (old) {
    const was = old.involvedObject ?? {};
    for (const k of OBJECT_IDENTITY) if ((io[k] ?? '') !== (was[k] ?? '')) e.immutable(`involvedObject.${k}`, io[k] ?? '');
  }
}
