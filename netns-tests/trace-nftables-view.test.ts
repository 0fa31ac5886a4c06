// The trace's kernel view of the nftables table agrees with the planner: every shape of the
// planner's fixtures is installed in a scratch namespace by the proxy's own executor, and for
// each traced packet the interpreter reading the kernel (only the chains and elements the
// packet touches) gives the same outcomes as the interpreter over the planned table. A rule
// added by hand to a Service chain is reported as foreign (Unknown), and a chain removed by
// hand as missing.
import t from 'tap';
import { NftExecutor } from '../src/kernel/nftables/executor.js';
import { planTable, planTransaction } from '../src/proxy/nftables/plan.js';
import { snapshot4, snapshot6 } from '../src/proxy/nftables/testdata/fixtures.js';
import { createNftablesInterpreter, tableView } from '../src/trace/nftables.js';
import type { NftView } from '../src/trace/nftables.js';
import { kernelNftView } from '../src/trace/nftables-kernel.js';
import type { Packet } from '../src/trace/types.js';
import { Scope, sh, skipReason } from './lib/harness.js';

const skip = skipReason();
if (skip) t.test('trace: nftables kernel view', { skip }, async () => undefined);
else {
  const scope = new Scope('tracenft');
  t.teardown(() => scope.cleanup());
  const node = await scope.netns('node');
  const exec = NftExecutor.open(node);
  t.teardown(() => exec.close());
  const snap4 = snapshot4();
  const snap6 = snapshot6();
  const plan4 = planTable(snap4);
  const plan6 = planTable(snap6);
  await exec.apply(planTransaction(undefined, plan4, undefined));
  await exec.apply(planTransaction(undefined, plan6, undefined));

  const local = new Set(['198.18.0.1', 'fd00:198:18::1']);
  const summary = async (view: NftView, pkt: Packet, hook: 'prerouting' | 'output') => {
    const outs = await createNftablesInterpreter(view).dnat(pkt, { node: 'n1', hook, isLocal: (ip) => local.has(ip) });
    return outs
      .map((o) => ({ p: Math.round(o.probability * 1e9) / 1e9, ep: o.endpoint ? `${o.endpoint.ip}:${o.endpoint.port}` : '-', v: o.verdict?.kind ?? 'pass', at: o.verdict?.at ?? '', masq: o.masqueradeMark, obs: o.observations.map((x) => `${x.action} ${x.rule}`) }))
      .sort((a, b) => a.ep.localeCompare(b.ep));
  };
  const pk = (src: string, dst: string, dport: number, proto: Packet['proto'] = 'tcp'): Packet => ({ family: src.includes(':') ? 6 : 4, proto, src, sport: 40000, dst, dport, size: 60 });
  const cases: [string, Packet, 'prerouting' | 'output'][] = [
    ['ClusterIP, two endpoints', pk('10.244.1.3', '10.96.0.10', 80), 'prerouting'],
    ['ClusterIP from off-cluster', pk('198.18.0.200', '10.96.0.10', 80), 'prerouting'],
    ['ClusterIP from the node', pk('198.18.0.1', '10.96.0.10', 80), 'output'],
    ['named targetPort', pk('10.244.1.3', '10.96.0.11', 443), 'prerouting'],
    ['no endpoints → reject', pk('10.244.1.3', '10.96.0.12', 80), 'prerouting'],
    ['terminating fallback', pk('10.244.1.3', '10.96.0.13', 80), 'prerouting'],
    ['NodePort, 3 endpoints', pk('198.18.0.200', '198.18.0.1', 30080), 'prerouting'],
    ['externalIP', pk('198.18.0.200', '203.0.113.10', 80), 'prerouting'],
    ['LB IP', pk('198.18.0.200', '203.0.113.20', 80), 'prerouting'],
    ['eTP Local from outside', pk('198.18.0.200', '198.18.0.1', 30082), 'prerouting'],
    ['eTP Local from the node', pk('198.18.0.1', '203.0.113.11', 80), 'output'],
    ['eTP Local without local endpoints → drop', pk('198.18.0.200', '198.18.0.1', 30083), 'prerouting'],
    ['iTP Local', pk('10.244.1.3', '10.96.0.18', 80), 'prerouting'],
    ['iTP Local without local endpoints → drop', pk('10.244.1.3', '10.96.0.19', 80), 'prerouting'],
    ['ClientIP affinity', pk('10.244.1.3', '10.96.0.20', 80), 'prerouting'],
    ['UDP DNS', pk('10.244.1.3', '10.96.0.53', 53, 'udp'), 'prerouting'],
    ['SCTP', pk('10.244.1.3', '10.96.0.21', 9999, 'sctp'), 'prerouting'],
    ['NodePort without endpoints → reject', pk('198.18.0.200', '198.18.0.1', 30084), 'prerouting'],
    ['not a Service', pk('10.244.1.3', '10.244.2.3', 8080), 'prerouting'],
    ['IPv6 ClusterIP', pk('fd00:10:244:1::3', 'fd00:10:96::a', 80), 'prerouting'],
    ['IPv6 NodePort with affinity', pk('2001:db8::99', 'fd00:198:18::1', 30080), 'prerouting'],
    ['IPv6 no endpoints', pk('fd00:10:244:1::3', 'fd00:10:96::c', 53, 'udp'), 'prerouting'],
  ];
  t.test('the kernel view interprets like the planned table, for every shape', async (t) => {
    for (const [name, pkt, hook] of cases) {
      const snap = pkt.family === 4 ? snap4 : snap6;
      const plan = pkt.family === 4 ? plan4 : plan6;
      const kernel = await summary(kernelNftView({ reader: exec, snapshot: snap, egress: false }), pkt, hook);
      const planned = await summary(tableView(plan.table), pkt, hook);
      t.same(kernel, planned, name);
      t.notOk(kernel.some((k) => k.v === 'Unknown'), `${name}: every rule on the path recognised`);
    }
  });

  t.test('a rule added by hand to a Service chain is foreign; a deleted chain is missing', async (t) => {
    const chain = plan4.table.chains.find((c) => c.name.startsWith('service-') && c.name.endsWith('default/web/tcp/http'))!.name;
    await sh(node, 'nft', ['insert', 'rule', 'ip', 'podnet', chain, 'ip', 'saddr', '10.244.1.99', 'drop']);
    const view = kernelNftView({ reader: exec, snapshot: snap4, egress: false });
    const outs = await createNftablesInterpreter(view).dnat(pk('10.244.1.3', '10.96.0.10', 80), { node: 'n1', hook: 'prerouting', isLocal: () => false });
    t.equal(outs.length, 1);
    t.equal(outs[0]!.verdict?.kind, 'Unknown');
    t.match(outs[0]!.verdict?.at ?? '', /payload load 4b @ network header \+ 12 => reg 1/, 'the foreign rule is shown as the kernel has it');
    t.ok(outs[0]!.observations.at(-1)?.foreign);
    await sh(node, 'nft', ['flush', 'chain', 'ip', 'podnet', chain]);
    const outs2 = await createNftablesInterpreter(kernelNftView({ reader: exec, snapshot: snap4, egress: false })).dnat(pk('10.244.1.3', '10.96.0.10', 80), { node: 'n1', hook: 'prerouting', isLocal: () => false });
    t.equal(outs2[0]!.verdict?.kind, 'Unknown');
    t.match(outs2[0]!.verdict?.reason ?? '', /missing/);
  });
}
