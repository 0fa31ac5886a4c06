// The iptables service proxy through the proxy suite (dual-stack cluster, vxlan between nodes).
import t from 'tap';
import { insideOwnNetns, skipReason } from './lib/harness.js';
import { proxySuite } from './lib/proxy-suite.js';

const skip = skipReason();
if (skip) t.test('iptables proxy', { skip }, async () => undefined);
else if (await insideOwnNetns(import.meta.url, 'px-iptables')) await proxySuite(t, { mode: 'iptables', ipv6: true });
