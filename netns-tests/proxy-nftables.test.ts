// The nftables service proxy through the proxy suite (dual-stack cluster, vxlan between nodes).
import t from 'tap';
import { insideOwnNetns, skipReason } from './lib/harness.js';
import { proxySuite } from './lib/proxy-suite.js';

const skip = skipReason();
if (skip) t.test('nftables proxy', { skip }, async () => undefined);
else if (await insideOwnNetns(import.meta.url, 'px-nftables')) await proxySuite(t, { mode: 'nftables', ipv6: true });
