// The IPVS service proxy through the proxy suite (netns-tests/lib/proxy-suite.ts), in the UML
// guest: a 3-node cluster of namespaces, vxlan between nodes, dual-stack (the guest's IPVS,
// ip6tables and ipsets do IPv6). The guest kernel has no nf_tables for ip / ip6 / inet, so the
// agents run with --no-masquerade and no foreign nft table is planted (`nftables: false`).
import t from 'tap';
import { insideOwnNetns } from '../netns-tests/lib/harness.js';
import { proxySuite } from '../netns-tests/lib/proxy-suite.js';
import { vmSkipReason } from './lib.js';

const skip = await vmSkipReason();
if (skip) t.test('ipvs proxy', { skip }, async () => undefined);
else if (await insideOwnNetns(import.meta.url, 'px-ipvs')) await proxySuite(t, { mode: 'ipvs', ipv6: true, nftables: false, slowdown: 3 });
