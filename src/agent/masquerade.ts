/**
 * Egress masquerade: traffic from pods to destinations outside the cluster CIDR leaves
 * with the node's address (SNAT by masquerade on the way out); pod-to-pod traffic, and
 * multicast, never. A small ruleset in podnet's own nft table, one base chain
 * `egress-masquerade` at postrouting: planned here (pure), applied in one transaction.
 *
 *   table ip podnet {
 *     chain egress-masquerade {
 *       type nat hook postrouting priority srcnat; policy accept;
 *       ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade
 *     }
 *   }
 */
import { nftApply, nftListTables } from '../kernel/nft.js';
import type { Cidr } from '../util/ipnet.js';

export const NFT_TABLE = 'podnet';
export const MASQ_CHAIN = 'egress-masquerade';

/**
 * The nft script that makes the egress chain exactly this (or removes it when disabled).
 * `tables`: the nft tables there are (nftListTables); when given, a family without a masquerade
 * rule whose podnet table does not exist needs nothing, and has no line (so a disabled
 * masquerade on a kernel without nf_tables is an empty script: nothing to run).
 */
export function planMasquerade(clusterCIDRs: Cidr[], enabled: boolean, tables?: ReadonlySet<string>): string {
  const out: string[] = [];
  for (const fam of [4, 6] as const) {
    const t = fam === 4 ? 'ip' : 'ip6';
    const cidr = clusterCIDRs.find((c) => c.family === fam);
    const remove = !enabled || !cidr;
    if (remove && tables && !tables.has(`${t} ${NFT_TABLE}`)) continue;
    out.push(`add table ${t} ${NFT_TABLE}`);
    if (remove) {
      // "add" (a plain chain when missing: no NAT support needed) so that "delete" always finds it.
      out.push(`add chain ${t} ${NFT_TABLE} ${MASQ_CHAIN}`);
      out.push(`delete chain ${t} ${NFT_TABLE} ${MASQ_CHAIN}`);
      continue;
    }
    out.push(`add chain ${t} ${NFT_TABLE} ${MASQ_CHAIN} { type nat hook postrouting priority srcnat; policy accept; }`);
    out.push(`flush chain ${t} ${NFT_TABLE} ${MASQ_CHAIN}`);
    const mcast = fam === 4 ? '224.0.0.0/4' : 'ff00::/8';
    out.push(`add rule ${t} ${NFT_TABLE} ${MASQ_CHAIN} ${t} saddr ${cidr} ${t} daddr != ${cidr} ${t} daddr != ${mcast} masquerade comment "podnet: pod egress leaves with the node address"`);
  }
  return out.length ? out.join('\n') + '\n' : '';
}

/**
 * Applies planMasquerade. Removing (disabled, or a family without a cluster CIDR) only touches
 * podnet tables that exist, so `--no-masquerade` needs no nf_tables in the kernel at all.
 */
export async function applyMasquerade(clusterCIDRs: Cidr[], enabled: boolean): Promise<void> {
  const script = planMasquerade(clusterCIDRs, enabled, await nftListTables());
  if (script) await nftApply(script, enabled ? 'installing the egress masquerade rules' : 'removing the egress masquerade rules');
}
