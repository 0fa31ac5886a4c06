// The vxlan transport (flannel's L3 model, IPv4 underlay carrying IPv4 and IPv6 pod
// traffic) through the transport suite.
import t from 'tap';
import { execa } from 'execa';
import { insideOwnNetns, skipReason } from './lib/harness.js';
import { transportSuite } from './lib/transport-suite.js';

const skip = skipReason();
if (skip) t.test('vxlan transport', { skip }, async () => undefined);
else if (await insideOwnNetns(import.meta.url, 'tr-vxlan')) {
  await transportSuite(t, {
    backend: 'vxlan',
    ipv6: true,
    mtu: 1450,
    extraState: async (node) => {
      const neigh = (await execa('nsenter', ['--net=' + node.netns.path, '--', 'ip', 'neigh', 'show', 'dev', 'podnet.1', 'nud', 'permanent'])).stdout;
      const fdb = (await execa('nsenter', ['--net=' + node.netns.path, '--', 'bridge', 'fdb', 'show', 'dev', 'podnet.1'])).stdout.split('\n').filter((l) => l.includes(' dst ')).join('\n');
      const lines = [neigh, fdb].join('\n').split('\n').filter(Boolean);
      return { entries: lines.length, text: lines.join('; ') };
    },
  });
}
