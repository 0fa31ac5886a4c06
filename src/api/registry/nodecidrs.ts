/**
 * A Node's pod subnets (`spec.podCIDR(s)`) as allocation records, like a Service's
 * ClusterIPs: claiming a subnet writes `/registry/ranges/podcidrs/<cidr>` in the same
 * store transaction as the Node update, so two agents racing for one subnet cannot both
 * get it — one transaction fails with KeyExists and its agent chooses again (flannel's
 * subnet lease, made atomic by the store). Records are released when the Node is
 * deleted, which frees its subnet. Once set, podCIDRs do not change (validation refuses
 * it, as kube-apiserver does), so a record lives exactly as long as its Node.
 *
 * Keys are the canonical CIDR text: agents choose subnets from one grid (the cluster
 * CIDR cut into subnets of one size), where the same cell is always the same key.
 */
import type { KubeObject, Node } from '../../client/types.js';
import { Cidr } from '../../util/ipnet.js';
import type { Store } from '../store/types.js';
import { isStoreError } from '../store/types.js';
import { AllocationError, RANGES } from './allocators.js';
import type { Owner } from './allocators.js';
import type { AllocationPlan, ObjectAllocations, PlanState } from './serviceips.js';

export const PODCIDR_RECORDS = `${RANGES}podcidrs/`;

/** The subnets a Node holds, canonical. Invalid entries are left to validation. */
export function heldCIDRs(node: Node): string[] {
  const spec = node.spec ?? {};
  const list = spec.podCIDRs?.length ? spec.podCIDRs : spec.podCIDR ? [spec.podCIDR] : [];
  const out: string[] = [];
  for (const c of list) {
    try {
      out.push(Cidr.parse(c).toString());
    } catch {
      /* validation reports it */
    }
  }
  return [...new Set(out)];
}

export class NodeCIDRAllocations implements ObjectAllocations {
  constructor(private readonly store: Store) {}

  key(cidr: string): string {
    return PODCIDR_RECORDS + cidr;
  }

  async plan(obj: KubeObject, old: KubeObject | undefined, owner: Owner, state: PlanState): Promise<AllocationPlan> {
    const node = obj as Node;
    const held = new Set(old ? heldCIDRs(old as Node) : []);
    const plan: AllocationPlan = {
      ops: [],
      keys: new Map(),
      releaseUnused: async () => {
        const keep = new Set(heldCIDRs(node));
        for (const c of held) if (!keep.has(c)) await this.release(c, owner);
      },
    };
    for (const [i, cidr] of heldCIDRs(node).entries()) {
      if (held.has(cidr)) continue;
      const key = this.key(cidr);
      plan.keys.set(key, { value: cidr, field: `spec.podCIDRs[${i}]`, requested: true });
      if (!state.ours.has(key)) plan.ops.push({ kind: 'create', key, value: JSON.stringify({ ...owner, at: new Date().toISOString() }) });
    }
    return plan;
  }

  async onKeyExists(plan: AllocationPlan, key: string, owner: Owner, state: PlanState): Promise<boolean> {
    const k = plan.keys.get(key);
    if (!k) return false;
    const kv = await this.store.get(key);
    if (!kv) return true; // freed meanwhile
    const holder = JSON.parse(kv.value) as Owner;
    if (holder.uid === owner.uid) {
      state.ours.add(key);
      return true;
    }
    throw new AllocationError(k.field, k.value, `is already allocated to node ${holder.name}`);
  }

  async onDelete(obj: KubeObject, owner: Owner): Promise<void> {
    for (const c of heldCIDRs(obj as Node)) await this.release(c, owner);
  }

  private async release(cidr: string, owner: Owner): Promise<void> {
    const kv = await this.store.get(this.key(cidr));
    if (!kv || (JSON.parse(kv.value) as Owner).uid !== owner.uid) return;
    try {
      await this.store.delete(kv.key, kv.modRevision);
    } catch (e) {
      if (!isStoreError(e, 'NotFound') && !isStoreError(e, 'Conflict')) throw e;
    }
  }
}
