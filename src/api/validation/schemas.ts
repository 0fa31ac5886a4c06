/**
 * Structural schemas of the served resources (zod): field names and JSON types. They are
 * built twice from one definition — strict (unknown fields are errors, for
 * fieldValidation=Strict) and stripping (unknown fields are dropped, for Warn / Ignore),
 * like kube-apiserver's decoder. Value rules (name formats, IPs, port ranges, enums,
 * cross-field checks) live in ./rules.ts, where messages can carry the offending value.
 *
 * Where podnet does not interpret a subtree (probes, volumes, affinity...) the field name
 * is still declared, so a typo in a field name is caught, but its value is not modelled.
 */
import { z } from 'zod';
import type { ResourceName } from '../../client/resources.js';

type Shape = Record<string, z.ZodType>;
type ObjectFactory = (shape: Shape) => z.ZodType;

const str = z.string();
const int = z.int();
const bool = z.boolean();
const any = z.unknown().optional();
const strMap = z.record(z.string(), z.string());
const optional = (t: z.ZodType) => t.optional().nullable();
const list = (t: z.ZodType) => z.array(t).optional().nullable();

/** Declares field names whose values podnet stores but does not interpret. */
function opaque(names: string[]): Shape {
  return Object.fromEntries(names.map((n) => [n, any]));
}

function build(obj: ObjectFactory) {
  const o = (shape: Shape) => optional(obj(shape));

  const meta = obj({
    name: optional(str),
    generateName: optional(str),
    namespace: optional(str),
    selfLink: optional(str),
    uid: optional(str),
    resourceVersion: optional(str),
    generation: optional(int),
    creationTimestamp: optional(str),
    deletionTimestamp: optional(str),
    deletionGracePeriodSeconds: optional(int),
    labels: optional(strMap),
    annotations: optional(strMap),
    ownerReferences: list(obj({ apiVersion: str, kind: str, name: str, uid: str, controller: optional(bool), blockOwnerDeletion: optional(bool) })),
    finalizers: list(str),
    managedFields: list(any),
  });

  const typeMeta = { apiVersion: optional(str), kind: optional(str) };

  const condition = obj({
    type: str,
    status: str,
    reason: optional(str),
    message: optional(str),
    lastTransitionTime: optional(str),
    lastHeartbeatTime: optional(str),
    lastProbeTime: optional(str),
    lastUpdateTime: optional(str),
    observedGeneration: optional(int),
  });

  const containerPort = obj({ name: optional(str), containerPort: int, protocol: optional(str), hostPort: optional(int), hostIP: optional(str) });
  const container = obj({
    name: str,
    image: optional(str),
    command: list(str),
    args: list(str),
    workingDir: optional(str),
    ports: list(containerPort),
    env: list(obj({ name: str, value: optional(str), valueFrom: optional(any) })),
    ...opaque(['envFrom', 'resources', 'resizePolicy', 'restartPolicy', 'volumeMounts', 'volumeDevices', 'livenessProbe', 'readinessProbe', 'startupProbe', 'lifecycle', 'terminationMessagePath', 'terminationMessagePolicy', 'imagePullPolicy', 'securityContext', 'stdin', 'stdinOnce', 'tty']),
  });

  const podSpec = obj({
    containers: z.array(container),
    initContainers: list(container),
    nodeName: optional(str),
    hostNetwork: optional(bool),
    hostname: optional(str),
    subdomain: optional(str),
    restartPolicy: optional(str),
    terminationGracePeriodSeconds: optional(int),
    ...opaque([
      'volumes', 'ephemeralContainers', 'activeDeadlineSeconds', 'dnsPolicy', 'nodeSelector', 'serviceAccountName', 'serviceAccount', 'automountServiceAccountToken',
      'hostPID', 'hostIPC', 'shareProcessNamespace', 'securityContext', 'imagePullSecrets', 'affinity', 'schedulerName', 'tolerations', 'hostAliases',
      'priorityClassName', 'priority', 'dnsConfig', 'readinessGates', 'runtimeClassName', 'enableServiceLinks', 'preemptionPolicy', 'overhead',
      'topologySpreadConstraints', 'setHostnameAsFQDN', 'os', 'hostUsers', 'schedulingGates', 'resourceClaims', 'resources',
    ]),
  });
  const podIP = obj({ ip: str });
  const podStatus = obj({
    phase: optional(str),
    conditions: list(condition),
    message: optional(str),
    reason: optional(str),
    nominatedNodeName: optional(str),
    hostIP: optional(str),
    hostIPs: list(podIP),
    podIP: optional(str),
    podIPs: list(podIP),
    startTime: optional(str),
    qosClass: optional(str),
    ...opaque(['initContainerStatuses', 'containerStatuses', 'ephemeralContainerStatuses', 'resize', 'resourceClaimStatuses', 'observedGeneration']),
  });

  const servicePort = obj({
    name: optional(str),
    protocol: optional(str),
    appProtocol: optional(str),
    port: int,
    targetPort: optional(z.union([int, str])),
    nodePort: optional(int),
  });
  const serviceSpec = obj({
    type: optional(str),
    selector: optional(strMap),
    ports: list(servicePort),
    clusterIP: optional(str),
    clusterIPs: list(str),
    ipFamilies: list(str),
    ipFamilyPolicy: optional(str),
    externalIPs: list(str),
    externalName: optional(str),
    sessionAffinity: optional(str),
    sessionAffinityConfig: o({ clientIP: o({ timeoutSeconds: optional(int) }) }),
    externalTrafficPolicy: optional(str),
    internalTrafficPolicy: optional(str),
    healthCheckNodePort: optional(int),
    loadBalancerIP: optional(str),
    loadBalancerSourceRanges: list(str),
    loadBalancerClass: optional(str),
    publishNotReadyAddresses: optional(bool),
    allocateLoadBalancerNodePorts: optional(bool),
    trafficDistribution: optional(str),
  });
  const serviceStatus = obj({
    loadBalancer: o({ ingress: list(obj({ ip: optional(str), hostname: optional(str), ipMode: optional(str), ports: list(any) })) }),
    conditions: list(condition),
  });

  const nodeSpec = obj({
    podCIDR: optional(str),
    podCIDRs: list(str),
    providerID: optional(str),
    unschedulable: optional(bool),
    taints: list(obj({ key: str, value: optional(str), effect: str, timeAdded: optional(str) })),
    ...opaque(['configSource', 'externalID']),
  });
  const nodeStatus = obj({
    addresses: list(obj({ type: str, address: str })),
    conditions: list(condition),
    capacity: optional(strMap),
    allocatable: optional(strMap),
    nodeInfo: optional(strMap),
    daemonEndpoints: o({ kubeletEndpoint: o({ Port: int }) }),
    ...opaque(['phase', 'images', 'volumesInUse', 'volumesAttached', 'config', 'runtimeHandlers', 'features']),
  });

  const endpoint = obj({
    addresses: z.array(str),
    conditions: o({ ready: optional(bool), serving: optional(bool), terminating: optional(bool) }),
    hostname: optional(str),
    nodeName: optional(str),
    zone: optional(str),
    targetRef: o({ kind: optional(str), namespace: optional(str), name: optional(str), uid: optional(str), apiVersion: optional(str), resourceVersion: optional(str), fieldPath: optional(str) }),
    ...opaque(['deprecatedTopology', 'hints']),
  });

  const objectReference = obj({ kind: optional(str), namespace: optional(str), name: optional(str), uid: optional(str), apiVersion: optional(str), resourceVersion: optional(str), fieldPath: optional(str) });

  return {
    namespaces: obj({ ...typeMeta, metadata: meta, spec: o({ finalizers: list(str) }), status: o({ phase: optional(str), conditions: list(condition) }) }),
    nodes: obj({ ...typeMeta, metadata: meta, spec: optional(nodeSpec), status: optional(nodeStatus) }),
    pods: obj({ ...typeMeta, metadata: meta, spec: optional(podSpec), status: optional(podStatus) }),
    services: obj({ ...typeMeta, metadata: meta, spec: optional(serviceSpec), status: optional(serviceStatus) }),
    endpointslices: obj({
      ...typeMeta,
      metadata: meta,
      addressType: str,
      endpoints: z.array(endpoint).nullable(),
      ports: list(obj({ name: optional(str), protocol: optional(str), port: optional(int), appProtocol: optional(str) })),
    }),
    leases: obj({
      ...typeMeta,
      metadata: meta,
      spec: o({
        holderIdentity: optional(str),
        leaseDurationSeconds: optional(int),
        acquireTime: optional(str),
        renewTime: optional(str),
        leaseTransitions: optional(int),
        strategy: optional(str),
        preferredHolder: optional(str),
      }),
    }),
    // core/v1 Event. involvedObject is optional here so that its absence is a 422 naming
    // involvedObject.kind / .name (./rules.ts), not a structural 400.
    events: obj({
      ...typeMeta,
      metadata: meta,
      involvedObject: optional(objectReference),
      reason: optional(str),
      message: optional(str),
      source: o({ component: optional(str), host: optional(str) }),
      firstTimestamp: optional(str),
      lastTimestamp: optional(str),
      count: optional(int),
      type: optional(str),
      eventTime: optional(str),
      series: o({ count: optional(int), lastObservedTime: optional(str) }),
      action: optional(str),
      related: optional(objectReference),
      reportingComponent: optional(str),
      reportingInstance: optional(str),
    }),
  } satisfies Record<ResourceName, z.ZodType>;
}

export const strictSchemas = build((shape) => z.strictObject(shape));
export const strippingSchemas = build((shape) => z.object(shape));

export interface StructuralIssue {
  /** Kubernetes-style path: spec.ports[0].port */
  field: string;
  message: string;
  unknownField: boolean;
}

/** Renders a zod path the way Kubernetes names fields. */
export function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out;
}

/**
 * Checks the JSON types and field names of `obj`. Returns the cleaned object (unknown
 * fields dropped unless strict) or the issues found.
 */
export function checkStructure(resource: ResourceName, obj: unknown, strict: boolean): { ok: true; value: Record<string, unknown>; unknown: string[] } | { ok: false; issues: StructuralIssue[] } {
  const shape = shapeIssues(obj);
  if (shape.length) return { ok: false, issues: shape };
  // One strict parse answers the common case of either mode: no unknown field, nothing wrong
  // (the stripping schema would give the same value).
  const first = strictSchemas[resource].safeParse(obj);
  if (first.success) return { ok: true, value: first.data as Record<string, unknown>, unknown: [] };
  const unknown = strict ? [] : unknownOf(first.error.issues);
  const r = strict ? first : strippingSchemas[resource].safeParse(obj);
  if (r.success) return { ok: true, value: r.data as Record<string, unknown>, unknown };
  const issues: StructuralIssue[] = [];
  for (const i of r.error.issues) {
    if (i.code === 'unrecognized_keys') {
      for (const k of i.keys) issues.push({ field: fieldPath([...i.path, k]), message: `unknown field "${fieldPath([...i.path, k])}"`, unknownField: true });
    } else {
      issues.push({ field: fieldPath(i.path), message: describeIssue(i, valueAt(obj, i.path)), unknownField: false });
    }
  }
  return { ok: false, issues };
}

/**
 * Deepest nesting of objects and arrays an object may have. The served kinds need about a
 * dozen levels; opaque subtrees (volumes, probes...) could otherwise be grown without
 * bound, one JSON patch at a time, until copying or encoding the object overflows the stack.
 */
export const MAX_OBJECT_DEPTH = 100;

/**
 * What no schema can say, found in one iterative walk: nesting deeper than
 * MAX_OBJECT_DEPTH, and own `__proto__` keys (JSON.parse makes them plain properties; zod
 * drops them from records silently, so a label or annotation would vanish without an
 * error, and plain assignment of one sets a prototype).
 */
function shapeIssues(obj: unknown): StructuralIssue[] {
  const out: StructuralIssue[] = [];
  const stack: [unknown, PropertyKey[]][] = [[obj, []]];
  while (stack.length) {
    const [v, path] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (path.length >= MAX_OBJECT_DEPTH) {
      out.push({ field: fieldPath(path), message: `nests objects and arrays deeper than ${MAX_OBJECT_DEPTH} levels`, unknownField: false });
      break;
    }
    if (Array.isArray(v)) v.forEach((x, i) => stack.push([x, [...path, i]]));
    else {
      if (Object.hasOwn(v, '__proto__')) out.push({ field: fieldPath([...path, '__proto__']), message: 'the field name "__proto__" is not allowed', unknownField: false });
      for (const [k, x] of Object.entries(v)) if (k !== '__proto__') stack.push([x, [...path, k]]);
    }
  }
  return out;
}

/** The input value at a zod issue path (zod 4 issues do not carry it). */
function valueAt(obj: unknown, path: readonly PropertyKey[]): { found: boolean; value: unknown } {
  let cur = obj;
  for (const k of path) {
    if (typeof cur !== 'object' || cur === null || !Object.hasOwn(cur, k)) return { found: false, value: undefined };
    cur = (cur as Record<PropertyKey, unknown>)[k];
  }
  return { found: true, value: cur };
}

/** Unknown field names in a strict parse's issues (for the Warning header of fieldValidation=Warn). */
function unknownOf(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.flatMap((i) => (i.code === 'unrecognized_keys' ? i.keys.map((k) => fieldPath([...i.path, k])) : []));
}

function describeIssue(i: z.core.$ZodIssue, at: { found: boolean; value: unknown }): string {
  if (i.code === 'invalid_type') {
    const v = at.value;
    const expected = i.expected === 'int' ? 'an integer' : /^[aeiou]/.test(i.expected) ? `an ${i.expected}` : `a ${i.expected}`;
    if (!at.found || v === undefined) return `Required value: expected ${expected}`;
    const got = Array.isArray(v) ? 'an array' : v === null ? 'null' : typeof v === 'number' ? `the number ${v}` : typeof v === 'object' ? 'an object' : `a ${typeof v}`;
    return `expected ${expected}, got ${got}`;
  }
  if (i.code === 'invalid_union') return 'expected an integer or a string';
  return i.message;
}
