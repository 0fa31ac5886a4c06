/**
 * Label and field selectors, with the syntax of Kubernetes list/watch parameters:
 *   labelSelector=app=web,tier!=db,env in (prod,stage),release notin (canary),gpu,!legacy
 *   fieldSelector=metadata.name=web-0,spec.nodeName!=node-a
 * Parse errors are 400s that name the parameter and the offending part.
 */
import type { ResourceName } from '../../client/resources.js';
import type { CoreEvent, KubeObject } from '../../client/types.js';
import { errors } from '../server/status.js';

type Requirement =
  | { key: string; op: 'eq' | 'neq'; value: string }
  | { key: string; op: 'in' | 'notin'; values: string[] }
  | { key: string; op: 'exists' | 'notexists' };

export type LabelSelector = (labels: Record<string, string> | undefined) => boolean;

const KEY = /^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?\/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?$/;
const VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** Splits on commas that are not inside parentheses. */
function splitTop(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

export function parseLabelSelector(text: string | undefined | null): LabelSelector {
  if (!text || !text.trim()) return () => true;
  const reqs: Requirement[] = [];
  for (const raw of splitTop(text)) {
    const part = raw.trim();
    const bad = (why: string) => errors.badRequest(`unable to parse requirement: ${JSON.stringify(part)} in labelSelector: ${why}`);
    if (!part) throw bad('empty requirement');
    let m: RegExpExecArray | null;
    if ((m = /^(\S+?)\s+(in|notin)\s+\(([^)]*)\)$/.exec(part))) {
      const values = m[3]!.split(',').map((v) => v.trim());
      for (const v of values) if (!VALUE.test(v)) throw bad(`invalid label value ${JSON.stringify(v)}`);
      reqs.push({ key: m[1]!, op: m[2] as 'in' | 'notin', values });
    } else if ((m = /^(\S+?)\s*(==|!=|=)\s*(\S*)$/.exec(part))) {
      if (!VALUE.test(m[3]!)) throw bad(`invalid label value ${JSON.stringify(m[3])}`);
      reqs.push({ key: m[1]!, op: m[2] === '!=' ? 'neq' : 'eq', value: m[3]! });
    } else if ((m = /^!\s*(\S+)$/.exec(part))) {
      reqs.push({ key: m[1]!, op: 'notexists' });
    } else if (/^\S+$/.test(part)) {
      reqs.push({ key: part, op: 'exists' });
    } else {
      throw bad('expected KEY, !KEY, KEY=VALUE, KEY!=VALUE, KEY in (A,B) or KEY notin (A,B)');
    }
    const key = reqs[reqs.length - 1]!.key;
    if (!KEY.test(key)) throw bad(`invalid label key ${JSON.stringify(key)}`);
  }
  return (labels) => reqs.every((r) => matches(r, labels ?? {}));
}

function matches(r: Requirement, labels: Record<string, string>): boolean {
  const has = Object.prototype.hasOwnProperty.call(labels, r.key);
  const v = labels[r.key];
  switch (r.op) {
    case 'eq':
      return has && v === r.value;
    case 'neq':
      return !has || v !== r.value;
    case 'in':
      return has && r.values.includes(v!);
    case 'notin':
      return !has || !r.values.includes(v!);
    case 'exists':
      return has;
    case 'notexists':
      return !has;
  }
}

/** Matches a Service-style selector map (every key=value present). Empty map matches nothing. */
export function matchesSelectorMap(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  const entries = Object.entries(selector ?? {});
  if (!entries.length) return false;
  return entries.every(([k, v]) => labels?.[k] === v);
}

const FIELDS: Record<ResourceName, Record<string, (o: KubeObject) => string | undefined>> = {
  namespaces: { 'metadata.name': (o) => o.metadata.name, 'status.phase': (o) => (o as { status?: { phase?: string } }).status?.phase },
  nodes: { 'metadata.name': (o) => o.metadata.name, 'spec.unschedulable': (o) => String((o as { spec?: { unschedulable?: boolean } }).spec?.unschedulable ?? false) },
  pods: {
    'metadata.name': (o) => o.metadata.name,
    'metadata.namespace': (o) => o.metadata.namespace,
    'spec.nodeName': (o) => (o as { spec?: { nodeName?: string } }).spec?.nodeName ?? '',
    'status.phase': (o) => (o as { status?: { phase?: string } }).status?.phase ?? '',
    'status.podIP': (o) => (o as { status?: { podIP?: string } }).status?.podIP ?? '',
  },
  services: { 'metadata.name': (o) => o.metadata.name, 'metadata.namespace': (o) => o.metadata.namespace },
  endpointslices: { 'metadata.name': (o) => o.metadata.name, 'metadata.namespace': (o) => o.metadata.namespace },
  leases: { 'metadata.name': (o) => o.metadata.name, 'metadata.namespace': (o) => o.metadata.namespace },
  // kube-apiserver's event fields (what `kubectl describe` and `kubectl events --for` select on).
  events: {
    'metadata.name': (o) => o.metadata.name,
    'metadata.namespace': (o) => o.metadata.namespace,
    ...Object.fromEntries((['kind', 'namespace', 'name', 'uid', 'apiVersion', 'resourceVersion', 'fieldPath'] as const).map((k) => [`involvedObject.${k}`, (o: KubeObject) => (o as CoreEvent).involvedObject?.[k] ?? ''])),
    reason: (o) => (o as CoreEvent).reason ?? '',
    reportingComponent: (o) => (o as CoreEvent).reportingComponent ?? '',
    source: (o) => (o as CoreEvent).source?.component || (o as CoreEvent).reportingComponent || '',
    type: (o) => (o as CoreEvent).type ?? '',
  },
};

export type FieldSelector = ((obj: KubeObject) => boolean) & {
  /** Equality constraints usable to narrow a store scan (e.g. metadata.namespace). */
  equals: Record<string, string>;
};

export function parseFieldSelector(resource: ResourceName, text: string | undefined | null): FieldSelector {
  const equals: Record<string, string> = {};
  const reqs: { get: (o: KubeObject) => string | undefined; neq: boolean; value: string }[] = [];
  if (text && text.trim()) {
    for (const raw of text.split(',')) {
      const part = raw.trim();
      const m = /^([A-Za-z.]+)\s*(==|!=|=)\s*(.*)$/.exec(part);
      if (!m) throw errors.badRequest(`invalid selector: ${JSON.stringify(part)} in fieldSelector: expected FIELD=VALUE or FIELD!=VALUE`);
      const get = FIELDS[resource][m[1]!];
      if (!get) {
        throw errors.badRequest(`field label not supported: ${m[1]} (fieldSelector supports ${Object.keys(FIELDS[resource]).join(', ')} for ${resource})`);
      }
      const neq = m[2] === '!=';
      if (!neq) equals[m[1]!] = m[3]!;
      reqs.push({ get, neq, value: m[3]! });
    }
  }
  const fn = ((obj: KubeObject) => reqs.every((r) => (r.get(obj) === r.value) !== r.neq)) as FieldSelector;
  fn.equals = equals;
  return fn;
}
