// The host-gw transport (plain routes via the peers' node addresses, IPv4 and IPv6
// underlays) through the transport suite.
import t from 'tap';
import { insideOwnNetns, skipReason } from './lib/harness.js';
import { transportSuite } from './lib/transport-suite.js';

const skip = skipReason();
if (skip) t.test('host-gw transport', { skip }, async () => undefined);
else if (await insideOwnNetns(import.meta.url, 'tr-hostgw')) {
  await transportSuite(t, { backend: 'host-gw', ipv6: true, mtu: 1500 });
}
