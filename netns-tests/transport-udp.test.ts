// The udp transport (flannel's "udp" backend, done in podnet's native packet loop): a TUN
// device per node whose packets travel in UDP datagrams to the peer's agent (port 8285),
// IPv4 underlay carrying IPv4 and IPv6 pod traffic, through the transport suite.
import t from 'tap';
import { execa } from 'execa';
import { insideOwnNetns, skipReason } from './lib/harness.js';
import { transportSuite } from './lib/transport-suite.js';

const skip = skipReason();
if (skip) t.test('udp transport', { skip }, async () => undefined);
else if (await insideOwnNetns(import.meta.url, 'tr-udp')) {
  await transportSuite(t, {
    backend: 'udp',
    ipv6: true,
    mtu: 1472,
    // The loop's subnet -> peer table (from the agent's metrics) and the TUN device.
    extraState: async (node) => {
      const m = await execa('nsenter', ['--net=' + node.netns.path, '--', 'curl', '-s', '-H', 'Authorization: Bearer admin-token-0123456789', `http://${node.ip}:10260/metrics`]);
      const entries = Number(/^podnet_agent_udp_tunnel_peer_subnets (\d+)$/m.exec(m.stdout)?.[1] ?? 0);
      const link = JSON.parse((await execa('nsenter', ['--net=' + node.netns.path, '--', 'ip', '-j', 'link', 'show', 'podnet.udp'])).stdout) as { mtu: number; flags: string[] }[];
      return { entries, text: `${entries} peer subnets; ${link.map((l) => `podnet.udp mtu ${l.mtu} <${l.flags.join(',')}>`).join('')}` };
    },
  });
}
