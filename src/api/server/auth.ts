/**
 * Authentication (bearer tokens from a kube-apiserver style CSV file) and authorization
 * (two roles). Admin: members of `system:masters`, or anonymous callers when the server
 * runs with --allow-anonymous-admin. Node: `system:node:<name>` in `system:nodes` — may
 * read everything, and write only its own Node (and status), its own Lease in
 * kube-node-lease, Pods bound to it (their status, and the final delete of a
 * terminating pod, as the kubelet's NodeRestriction allows), and Events (create, update,
 * patch: kube's system:node role) about its own Node or Pods bound to it.
 */
import { readFileSync } from 'node:fs';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { ResourceName } from '../../client/resources.js';
import type { CoreEvent, KubeObject, Pod } from '../../client/types.js';
import type { Verb } from './router.js';

export interface User {
  name: string;
  uid: string;
  groups: string[];
}

export const ANONYMOUS: User = { name: 'system:anonymous', uid: '', groups: ['system:unauthenticated'] };

export class TokenFileError extends Error {}

/** Parses one CSV line with optional double-quoted fields ("a,b" stays one field). */
function csvFields(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out.map((f) => f.trim());
}

export class TokenAuthenticator {
  private readonly byHash = new Map<string, User>();
  /** The same entries with the digests as bytes, for the per-request comparison. */
  private readonly digests: { digest: Buffer; user: User }[] = [];

  /** `token,user,uid[,"group1,group2"]` per line; # comments and blank lines ignored. */
  static parse(text: string, source = 'token file'): TokenAuthenticator {
    const a = new TokenAuthenticator();
    for (const [i, raw] of text.split('\n').entries()) {
      const line = raw.trim();
      if (!line || line.startsWith('#')) continue;
      const f = csvFields(line);
      if (f.length < 3 || !f[0] || !f[1]) throw new TokenFileError(`${source} line ${i + 1}: expected token,user,uid[,groups]`);
      const groups = (f[3] ?? '').split(',').map((g) => g.trim()).filter(Boolean);
      const hash = tokenHash(f[0]);
      if (a.byHash.has(hash)) throw new TokenFileError(`${source} line ${i + 1}: duplicate token`);
      const user = { name: f[1], uid: f[2] ?? '', groups: [...groups, 'system:authenticated'] };
      a.byHash.set(hash, user);
      a.digests.push({ digest: Buffer.from(hash, 'hex'), user });
    }
    return a;
  }

  static fromFile(path: string): TokenAuthenticator {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      throw new TokenFileError(`--token-auth-file ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
    return TokenAuthenticator.parse(text, `--token-auth-file ${path}`);
  }

  /** The user of `Authorization: Bearer <token>`, undefined if the token is unknown. */
  authenticate(token: string): User | undefined {
    // Compare hashes (constant length) to keep timing independent of the token.
    const h = createHash('sha256').update(token).digest();
    for (const e of this.digests) {
      if (timingSafeEqual(e.digest, h)) return e.user;
    }
    return undefined;
  }

  get size(): number {
    return this.byHash.size;
  }
}

function tokenHash(t: string): string {
  return createHash('sha256').update(t).digest('hex');
}

export function isAdmin(u: User): boolean {
  return u.groups.includes('system:masters');
}

/** The node name of a node identity, or undefined. */
export function nodeNameOf(u: User): string | undefined {
  if (!u.groups.includes('system:nodes') || !u.name.startsWith('system:node:')) return undefined;
  return u.name.slice('system:node:'.length) || undefined;
}

export interface AuthzRequest {
  verb: Verb;
  resource: ResourceName;
  namespace: string | undefined;
  name: string | undefined;
  subresource: string | undefined;
}

export interface ObjectCheck {
  allowed: boolean;
  reason: string;
}

/** Reads a stored object for a decision that depends on another object (undefined: not there). */
export type ObjectLookup = (resource: ResourceName, namespace: string | undefined, name: string) => Promise<KubeObject | undefined>;

/**
 * `needs-object`: the decision depends on the posted object (create) or the stored one
 * (update, patch, delete); `lookup` reads the objects it refers to (an Event's Pod).
 */
export type AuthzDecision =
  | { allowed: true }
  | { allowed: false; reason: string }
  | { allowed: 'needs-object'; check: (obj: { spec?: { nodeName?: string } } | undefined, lookup?: ObjectLookup) => ObjectCheck | Promise<ObjectCheck> };

const READS: Verb[] = ['get', 'list', 'watch'];

export function authorize(u: User, r: AuthzRequest): AuthzDecision {
  if (isAdmin(u)) return { allowed: true };
  const node = nodeNameOf(u);
  if (!node) return { allowed: false, reason: 'only cluster admins (group system:masters) and nodes (system:node:<name> in system:nodes) have access' };
  if (READS.includes(r.verb)) return { allowed: true };
  const writes: Verb[] = ['create', 'update', 'patch'];
  switch (r.resource) {
    case 'nodes':
      if (r.verb === 'create') return r.name === undefined ? { allowed: 'needs-object', check: (o) => ownName(o, node) } : deny(node);
      if (writes.includes(r.verb) && r.name === node) return { allowed: true };
      return { allowed: false, reason: `node "${node}" may only change its own Node object` };
    case 'leases':
      if (r.namespace !== 'kube-node-lease') return { allowed: false, reason: `node "${node}" may only write Leases in the kube-node-lease namespace` };
      if (r.verb === 'create') return { allowed: 'needs-object', check: (o) => ownName(o, node) };
      if ((writes.includes(r.verb) || r.verb === 'delete') && r.name === node) return { allowed: true };
      return { allowed: false, reason: `node "${node}" may only write its own Lease (kube-node-lease/${node})` };
    case 'pods':
      if ((r.subresource === 'status' && (r.verb === 'update' || r.verb === 'patch')) || (r.verb === 'delete' && !r.subresource)) {
        return {
          allowed: 'needs-object',
          check: (o) => (o?.spec?.nodeName === node ? { allowed: true, reason: '' } : { allowed: false, reason: `node "${node}" can only ${r.verb === 'delete' ? 'delete pods' : 'update the status of pods'} bound to it (spec.nodeName is ${JSON.stringify(o?.spec?.nodeName ?? '')})` }),
        };
      }
      return { allowed: false, reason: `node "${node}" may only update the status of pods bound to it` };
    case 'events':
      // kube's system:node role: create, update, patch. The object: the posted Event for a
      // create, the stored one otherwise (an update cannot change involvedObject).
      if (writes.includes(r.verb)) return { allowed: 'needs-object', check: (o, lookup) => eventAbout(o, node, lookup) };
      return { allowed: false, reason: `node "${node}" may only create, update and patch Events` };
    default:
      return { allowed: false, reason: `nodes may not ${r.verb} ${r.resource}` };
  }
}

/** Whether an Event is about `node`'s own Node or a Pod bound to it. */
async function eventAbout(o: unknown, node: string, lookup: ObjectLookup | undefined): Promise<ObjectCheck> {
  const io = (o as Partial<CoreEvent> | undefined)?.involvedObject;
  const coreV1 = !io?.apiVersion || io.apiVersion === 'v1';
  const ok: ObjectCheck = { allowed: true, reason: '' };
  const no = (what: string): ObjectCheck => ({ allowed: false, reason: `node "${node}" may only write Events about its own Node or pods bound to it (involvedObject is ${what})` });
  // An update or patch of an Event that is not stored: let it answer 404, as kube-apiserver
  // does (nodes read every Event anyway), so a recorder whose Event went (the TTL) creates it anew.
  if (o === undefined) return ok;
  if (!io) return no('missing');
  if (coreV1 && io.kind === 'Node') return io.name === node ? ok : no(`Node ${JSON.stringify(io.name ?? '')}`);
  if (coreV1 && io.kind === 'Pod' && io.name && io.namespace) {
    const pod = (await lookup?.('pods', io.namespace, io.name)) as Pod | undefined;
    const boundTo = pod?.spec?.nodeName ?? '';
    return pod && boundTo === node ? ok : no(`Pod "${io.namespace}/${io.name}", ${pod ? `bound to ${JSON.stringify(boundTo)}` : 'which does not exist'}`);
  }
  return no(`${io.kind || 'an object without a kind'} ${JSON.stringify(io.namespace ? `${io.namespace}/${io.name ?? ''}` : (io.name ?? ''))}`);
}

function deny(node: string): AuthzDecision {
  return { allowed: false, reason: `node "${node}" may only change its own Node object` };
}

function ownName(o: unknown, node: string): { allowed: boolean; reason: string } {
  const name = (o as { metadata?: { name?: string } } | undefined)?.metadata?.name;
  return name === node ? { allowed: true, reason: '' } : { allowed: false, reason: `node "${node}" may only create objects named "${node}" (got ${JSON.stringify(name ?? '')})` };
}
