// The nf_tables netlink executor against the real kernel: tables with base chains, rules
// using every statement kind, sets and maps, applied over netlink in one batch, then
// checked with `nft list` (against render.ts's renderTable) for ip and ip6; idempotent
// adds; element / chain / set removal; an error that names the op and changes nothing;
// consecutive batches; DNAT and reject with real packets between two namespaces; and a
// 10,000-chain / 100,000-rule / 10,000-element load.
//
// Everything happens in namespaces the harness makes (the test itself runs in its own,
// see insideOwnNetns). Servers are socat processes started detached and killed by process
// group (socat forks outlive their parent).
import t from 'tap';
import { execa } from 'execa';
import { readFileSync } from 'node:fs';
import type { NftChain, NftElement, NftExpr, NftRule, NftSet, NftStmt, NftTable } from '../src/kernel/nftables/ast.js';
import { NftExecutor } from '../src/kernel/nftables/executor.js';
import type { NftOp, NftTransaction } from '../src/kernel/nftables/ops.js';
import type { NetNS } from '../src/kernel/index.js';
import { renderTable } from '../src/proxy/nftables/render.js';
import { ErrorCodes, PodnetError } from '../src/util/errors.js';
import { Scope, insideOwnNetns, sh, skipReason, waitFor } from './lib/harness.js';

const skip = skipReason();
if (skip) t.test('nftables executor', { skip }, async () => undefined);
else if (await insideOwnNetns(import.meta.url, 'nftexec')) {
  const scope = new Scope('nftexec');
  t.teardown(() => scope.cleanup());

  const nftList = async (ns: NetNS, ...what: string[]) => String((await sh(ns, 'nft', ['list', ...what])).stdout);
  const norm = (s: string) => s.replace(/\s+/g, ' ').trim();
  const open = (ns: NetNS, opts = {}) => {
    const nft = NftExecutor.open(ns, opts);
    scope.defer(() => nft.close());
    return nft;
  };

  // ---- building blocks ----
  const p = (field: 'ip saddr' | 'ip daddr' | 'ip6 saddr' | 'ip6 daddr' | 'th dport' | 'th sport'): NftExpr => ({ kind: 'payload', field });
  const l4: NftExpr = { kind: 'meta', key: 'l4proto' };
  const mt = (left: NftExpr, value: string, op: '==' | '!=' = '=='): NftStmt => ({ kind: 'match', left, op, value });
  const verdict = (v: NftStmt & { kind: 'verdict' } extends { verdict: infer V } ? V : never): NftStmt => ({ kind: 'verdict', verdict: v });
  const jump = (chain: string) => verdict({ kind: 'jump', chain });
  const goto = (chain: string) => verdict({ kind: 'goto', chain });
  const r = (stmts: NftStmt[], comment?: string): NftRule => (comment === undefined ? { stmts } : { stmts, comment });

  /** The ops that create `table` from nothing: table, sets, chains, elements, rules (the kernel lists in creation order). */
  const tableOps = (table: NftTable): NftOp[] => [
    { op: 'add-table' },
    ...table.sets.map((set): NftOp => ({ op: 'add-set', set })),
    ...table.chains.map(({ rules: _rules, ...chain }): NftOp => ({ op: 'add-chain', chain })),
    ...[...table.elements].map(([set, elements]): NftOp => ({ op: 'add-elements', set, elements })),
    ...table.chains.flatMap((c) => c.rules.map((rule): NftOp => ({ op: 'add-rule', chain: c.name, rule }))),
  ];
  const txOf = (table: NftTable, ops: NftOp[]): NftTransaction => ({ family: table.family, table: table.name, ops });

  // A table using every statement kind (the shapes the planner emits, and the rest).
  const ipSets: NftSet[] = [
    { name: 'service-ips', key: ['ipv4_addr', 'inet_proto', 'inet_service'], data: 'verdict', comment: 'ClusterIP ports' },
    { name: 'nodeport-ips', key: ['ipv4_addr'] },
    { name: 'cluster-cidrs', key: ['ipv4_addr'], interval: true },
    { name: 'affinity-web', key: ['ipv4_addr'], size: 65535, dynamic: true, timeoutSeconds: 10800 },
    { name: 'mark-map', key: ['mark'], data: 'verdict' },
    { name: 'endpoints-web', key: ['integer'], data: ['ipv4_addr', 'inet_service'], interval: true, numgenTypeof: { mod: 65536, proto: 'tcp' } },
  ];
  const ipChains: NftChain[] = [
    {
      name: 'filter-forward',
      base: { type: 'filter', hook: 'forward', priority: 0, policy: 'accept' },
      rules: [
        r([mt({ kind: 'ct', key: 'state' }, 'invalid'), verdict({ kind: 'drop' })]),
        r([mt({ kind: 'ct', key: 'state' }, 'established,related'), verdict({ kind: 'accept' })]),
        r([mt({ kind: 'ct', key: 'state' }, 'new', '!='), verdict({ kind: 'accept' })]),
        r([mt(p('ip daddr'), '10.96.0.99'), mt(p('th dport'), '80'), mt(l4, 'tcp'), { kind: 'reject', with: 'tcp-reset' }]),
        r([mt(p('ip daddr'), '10.96.0.99'), { kind: 'reject', with: 'icmp-port-unreachable' }]),
        r([{ kind: 'vmap', key: { kind: 'meta', key: 'mark' }, map: 'mark-map' }]),
      ],
    },
    { name: 'nat-prerouting', base: { type: 'nat', hook: 'prerouting', priority: -100, policy: 'accept' }, rules: [r([jump('services')])] },
    { name: 'nat-output', base: { type: 'nat', hook: 'output', priority: -100 }, rules: [r([jump('services')])] },
    { name: 'nat-postrouting', base: { type: 'nat', hook: 'postrouting', priority: 100 }, rules: [r([jump('masquerading')])] },
    {
      name: 'masquerading',
      rules: [
        r([{ kind: 'mark-test', mask: 0x4000, op: '==', value: 0 }, verdict({ kind: 'return' })]),
        r([{ kind: 'mark-xor', value: 0x4000 }]),
        r([{ kind: 'masquerade', fullyRandom: true }]),
        r([mt(p('ip saddr'), '10.244.0.0/20'), { kind: 'masquerade', fullyRandom: false }]),
      ],
    },
    { name: 'mark-for-masquerade', rules: [r([{ kind: 'mark-or', value: 0x4000 }])] },
    {
      name: 'services',
      rules: [
        r([{ kind: 'vmap', key: { kind: 'concat', parts: [p('ip daddr'), l4, p('th dport')] }, map: 'service-ips' }]),
        r([mt({ kind: 'fib', what: 'daddr type' }, 'local'), { kind: 'lookup', left: p('ip daddr'), set: 'nodeport-ips' }, jump('nodeports')]),
        r([{ kind: 'lookup', left: p('ip saddr'), set: 'cluster-cidrs', op: '!=' }, { kind: 'counter' }]),
      ],
    },
    { name: 'nodeports', rules: [r([mt(p('th dport'), '30080'), goto('service-web')]), r([mt(p('th sport'), '53', '!='), verdict({ kind: 'continue' })])] },
    {
      name: 'service-web',
      comment: 'default/web:http',
      rules: [
        r([mt(p('ip daddr'), '10.96.0.10'), mt(p('ip saddr'), '10.244.0.0/16', '!='), jump('mark-for-masquerade')]),
        r([{ kind: 'lookup', left: p('ip saddr'), set: 'affinity-web' }, goto('endpoint-a')]),
        r([mt({ kind: 'numgen', mod: 2 }, '0'), goto('endpoint-a')]),
        r([goto('endpoint-b')]),
      ],
    },
    { name: 'service-dns', rules: [r([goto('endpoint-b')])] },
    { name: 'service-web-map', rules: [r([mt(l4, 'tcp'), { kind: 'dnat-map', key: { kind: 'numgen', mod: 65536 }, map: 'endpoints-web' }])] },
    {
      name: 'endpoint-a',
      rules: [
        r([mt(p('ip saddr'), '10.244.1.5'), jump('mark-for-masquerade')]),
        r([{ kind: 'set-update', set: 'affinity-web', key: p('ip saddr') }]),
        r([mt(l4, 'tcp'), { kind: 'dnat', addr: '10.244.1.5', port: 8080 }], 'default/web:http -> 10.244.1.5:8080'),
      ],
    },
    {
      name: 'endpoint-b',
      rules: [
        r([mt(p('ip saddr'), '10.244.2.6'), jump('mark-for-masquerade')]),
        r([mt({ kind: 'meta', key: 'mark' }, '0x4000'), mt(l4, 'tcp'), { kind: 'counter' }, { kind: 'dnat', addr: '10.244.2.6', port: 8080 }]),
        r([mt({ kind: 'fib', what: 'saddr type' }, 'local'), verdict({ kind: 'return' })]),
      ],
    },
  ];
  const ipElements = new Map<string, NftElement[]>([
    [
      'service-ips',
      [
        { key: ['10.96.0.10', 'tcp', '80'], verdict: { kind: 'goto', chain: 'service-web' } },
        { key: ['10.96.0.11', 'udp', '53'], verdict: { kind: 'goto', chain: 'service-dns' }, comment: 'kube-system/dns:dns' },
      ],
    ],
    ['nodeport-ips', [{ key: ['198.18.0.1'] }, { key: ['198.18.0.2'] }]],
    ['cluster-cidrs', [{ key: ['10.96.0.0/12'] }, { key: ['10.244.0.0/16'] }]],
    ['mark-map', [{ key: ['0x1'], verdict: { kind: 'drop' } }]],
    [
      'endpoints-web',
      [
        { key: ['0-32767'], data: ['10.244.1.5', '8080'] },
        { key: ['32768-65535'], data: ['10.244.2.6', '8080'] },
      ],
    ],
  ]);
  const ipTable: NftTable = { family: 'ip', name: 'pnx', sets: ipSets, elements: ipElements, chains: ipChains };

  const ip6Table: NftTable = {
    family: 'ip6',
    name: 'pnx6',
    sets: [
      { name: 'service-ips', key: ['ipv6_addr', 'inet_proto', 'inet_service'], data: 'verdict' },
      { name: 'nets6', key: ['ipv6_addr'], interval: true, comment: 'pod networks' },
    ],
    elements: new Map<string, NftElement[]>([
      ['service-ips', [{ key: ['fd00:10:96::a', 'tcp', '80'], verdict: { kind: 'goto', chain: 'service-web' } }]],
      ['nets6', [{ key: ['fd00:10:244::/56'] }]],
    ]),
    chains: [
      { name: 'filter-input', base: { type: 'filter', hook: 'input', priority: 0 }, rules: [r([mt(p('ip6 saddr'), 'fd00:10:244::/56'), mt(p('th dport'), '22'), verdict({ kind: 'accept' })]), r([mt(p('ip6 daddr'), 'fd00:10:96::99'), { kind: 'reject', with: 'icmp-port-unreachable' }]), r([mt(p('ip6 saddr'), 'fd00:10:245::/60'), verdict({ kind: 'drop' })]), r([{ kind: 'lookup', left: p('ip6 saddr'), set: 'nets6' }, { kind: 'counter' }])] },
      { name: 'nat-output', base: { type: 'nat', hook: 'output', priority: -100 }, rules: [r([jump('services')])] },
      { name: 'services', rules: [r([{ kind: 'vmap', key: { kind: 'concat', parts: [p('ip6 daddr'), l4, p('th dport')] }, map: 'service-ips' }])] },
      { name: 'service-web', rules: [r([mt(p('ip6 saddr'), 'fd00:10:244:1::5'), { kind: 'mark-or', value: 0x4000 }]), r([mt(l4, 'tcp'), { kind: 'dnat', addr: 'fd00:10:244:1::5', port: 8080 }])] },
    ],
  };

  const ns = await scope.netns('tables');
  const nft = open(ns);

  for (const table of [ipTable, ip6Table]) {
    await t.test(`${table.family}: one apply makes the table nft lists as render.ts renders it`, async (t) => {
      await nft.apply(txOf(table, tableOps(table)));
      const s = nft.lastApply!;
      t.equal(s.batches, 1, 'one batch');
      t.comment(`${s.ops} ops, ${s.bytes} bytes, encode ${s.encodeMs.toFixed(1)} ms, kernel ${s.kernelMs.toFixed(1)} ms, generation ${s.generation}`);
      const listed = await nftList(ns, 'table', table.family, table.name);
      let want: string;
      try {
        want = renderTable(table);
      } catch (e) {
        t.fail(`renderTable threw (src/proxy/nftables/render.ts): ${String(e)}`);
        t.comment(`nft list:\n${listed}`);
        return;
      }
      if (norm(listed) !== norm(want)) t.comment(`nft list:\n${listed}\nrenderTable:\n${want}`);
      t.equal(norm(listed), norm(want), 'nft list table == renderTable (whitespace normalised)');
    });
  }

  await t.test('key lines of the listing (independent of render.ts)', async (t) => {
    const listed = await nftList(ns, 'table', 'ip', 'pnx');
    for (const line of [
      'type ipv4_addr . inet_proto . inet_service : verdict',
      'comment "ClusterIP ports"',
      '10.96.0.11 . udp . 53 comment "kube-system/dns:dns" : goto service-dns',
      'elements = { 10.96.0.0/12, 10.244.0.0/16 }',
      'flags dynamic,timeout',
      'timeout 3h',
      'elements = { 0x00000001 : drop }',
      'type nat hook prerouting priority dstnat; policy accept;',
      'type filter hook forward priority filter; policy accept;',
      'ct state established,related accept',
      'ct state != new accept',
      'ip daddr 10.96.0.99 th dport 80 reject with tcp reset',
      'ip daddr 10.96.0.99 reject',
      'meta mark vmap @mark-map',
      'meta mark & 0x00004000 == 0x00000000 return',
      'meta mark set meta mark ^ 0x00004000',
      'masquerade fully-random',
      'ip saddr 10.244.0.0/20 masquerade',
      'meta mark set meta mark | 0x00004000',
      'ip daddr . meta l4proto . th dport vmap @service-ips',
      'fib daddr type local ip daddr @nodeport-ips jump nodeports',
      'ip saddr != @cluster-cidrs counter packets 0 bytes 0',
      'th sport != 53 continue',
      'comment "default/web:http"',
      'ip daddr 10.96.0.10 ip saddr != 10.244.0.0/16 jump mark-for-masquerade',
      'ip saddr @affinity-web goto endpoint-a',
      'numgen random mod 2 0 goto endpoint-a',
      'update @affinity-web { ip saddr }',
      'meta l4proto tcp dnat to 10.244.1.5:8080 comment "default/web:http -> 10.244.1.5:8080"',
      'meta mark 0x00004000 meta l4proto tcp counter packets 0 bytes 0 dnat to 10.244.2.6:8080',
      'fib saddr type local return',
      'typeof numgen random mod 65536 : ip daddr . tcp dport',
      'elements = { 0-32767 : 10.244.1.5 . 8080, 32768-65535 : 10.244.2.6 . 8080 }',
      'meta l4proto tcp dnat ip to numgen random mod 65536 map @endpoints-web',
    ]) {
      t.ok(listed.includes(line), line);
    }
    const listed6 = await nftList(ns, 'table', 'ip6', 'pnx6');
    for (const line of ['ip6 saddr fd00:10:244::/56 th dport 22 accept', 'ip6 daddr fd00:10:96::99 reject', 'ip6 saddr fd00:10:245::/60 drop', 'meta l4proto tcp dnat to [fd00:10:244:1::5]:8080', 'elements = { fd00:10:244::/56 }', 'ip6 daddr . meta l4proto . th dport vmap @service-ips']) {
      t.ok(listed6.includes(line), line);
    }
    // Interval semantics (the kernel's lookup, through nft get element).
    t.equal((await sh(ns, 'nft', ['get', 'element', 'ip', 'pnx', 'cluster-cidrs', '{ 10.244.3.4 }'], { reject: false })).exitCode, 0, '10.244.3.4 is in 10.244.0.0/16');
    t.not((await sh(ns, 'nft', ['get', 'element', 'ip', 'pnx', 'cluster-cidrs', '{ 10.245.0.1 }'], { reject: false })).exitCode, 0, '10.245.0.1 is not');
    t.not((await sh(ns, 'nft', ['get', 'element', 'ip', 'pnx', 'cluster-cidrs', '{ 10.0.0.1 }'], { reject: false })).exitCode, 0, '10.0.0.1 (below every interval) is not');
  });

  await t.test('idempotent: add-table, add-chain and add-set again (twice) change nothing', async (t) => {
    for (const table of [ipTable, ip6Table]) {
      const before = await nftList(ns, 'table', table.family, table.name);
      const adds = tableOps(table).filter((o) => o.op === 'add-table' || o.op === 'add-chain' || o.op === 'add-set');
      await nft.apply(txOf(table, [...adds, ...adds]));
      await nft.apply(txOf(table, adds));
      t.equal(await nftList(ns, 'table', table.family, table.name), before, `${table.family} ${table.name} unchanged`);
    }
    // Equal elements again are fine too.
    await nft.apply(txOf(ipTable, [{ op: 'add-elements', set: 'service-ips', elements: ipElements.get('service-ips')! }]));
  });

  await t.test('listTable: chains with their base, sets with key types and data; undefined for a missing table', async (t) => {
    const info = await nft.listTable('ip', 'pnx');
    t.ok(info);
    t.same(
      info!.chains.map((c) => c.name),
      ipChains.map((c) => c.name),
    );
    t.same(info!.chains.find((c) => c.name === 'nat-prerouting')?.base, { type: 'nat', hook: 'prerouting', priority: -100, policy: 'accept' });
    t.same(info!.chains.find((c) => c.name === 'service-web')?.comment, 'default/web:http');
    t.same(info!.sets.find((s) => s.name === 'service-ips'), { name: 'service-ips', key: ['ipv4_addr', 'inet_proto', 'inet_service'], data: 'verdict', comment: 'ClusterIP ports' });
    t.same(info!.sets.find((s) => s.name === 'affinity-web'), { name: 'affinity-web', key: ['ipv4_addr'], size: 65535, dynamic: true, timeoutSeconds: 10800 });
    t.same(info!.sets.find((s) => s.name === 'cluster-cidrs'), { name: 'cluster-cidrs', key: ['ipv4_addr'], interval: true });
    t.same(info!.sets.find((s) => s.name === 'endpoints-web'), ipSets.at(-1), 'a numgen typeof map reads back as it was defined');
    t.equal(await nft.listTable('ip', 'no-such-table'), undefined);
    // A fresh executor (empty set cache) can still delete elements: it reads the definitions.
    const other = open(ns);
    await other.apply(txOf(ipTable, [{ op: 'add-elements', set: 'service-ips', elements: [{ key: ['10.96.0.12', 'tcp', '443'], verdict: { kind: 'goto', chain: 'service-web' } }] }]));
    await other.apply(txOf(ipTable, [{ op: 'delete-elements', set: 'service-ips', keys: [['10.96.0.12', 'tcp', '443']] }]));
    t.notMatch(await nftList(ns, 'map', 'ip', 'pnx', 'service-ips'), /443/, 'added and deleted through a fresh executor');
  });

  await t.test('delete-elements, flush-chain, delete-chain, flush-set, delete-set', async (t) => {
    await nft.apply(
      txOf(ipTable, [
        { op: 'delete-elements', set: 'service-ips', keys: [['10.96.0.11', 'udp', '53']] },
        { op: 'delete-elements', set: 'cluster-cidrs', keys: [['10.96.0.0/12']] },
        { op: 'delete-chain', chain: 'service-dns' },
        { op: 'flush-chain', chain: 'services' },
        { op: 'flush-set', set: 'nodeport-ips' },
        { op: 'delete-set', set: 'nodeport-ips' },
      ]),
    );
    const listed = await nftList(ns, 'table', 'ip', 'pnx');
    t.notMatch(listed, /10\.96\.0\.11/, 'the dns element is gone');
    t.match(listed, /10\.96\.0\.10 \. tcp \. 80 : goto service-web/, 'the web element stays');
    t.match(listed, /elements = \{ 10\.244\.0\.0\/16 \}/, 'one interval left');
    t.notMatch(listed, /chain service-dns/, 'chain deleted');
    t.match(listed, /chain services \{\s*\}/, 'services flushed');
    t.notMatch(listed, /nodeport-ips/, 'set deleted');
    t.notOk((await nft.listTable('ip', 'pnx'))!.sets.some((s) => s.name === 'nodeport-ips'));
  });

  await t.test('a refused op: PODNET_NFT naming it in nft syntax with errno and neighbours; nothing applied', async (t) => {
    const before = await nftList(ns, 'table', 'ip', 'pnx');
    const tx = txOf(ipTable, [{ op: 'add-chain', chain: { name: 'fresh' } }, { op: 'add-rule', chain: 'fresh', rule: r([mt(p('th dport'), '80'), goto('nowhere')]) }, { op: 'add-rule', chain: 'services', rule: r([verdict({ kind: 'accept' })]) }]);
    const e = await nft.apply(tx).then(
      () => undefined,
      (x: unknown) => x,
    );
    t.ok(e instanceof PodnetError, 'a PodnetError');
    const pe = e as PodnetError;
    t.equal(pe.code, ErrorCodes.NFT);
    t.equal(pe.errno, 'ENOENT');
    t.match(pe.message, /`add rule ip pnx fresh th dport 80 goto nowhere`/, `names the op: ${pe.message}`);
    t.match(pe.message, /nothing was applied/);
    t.equal(pe.context.op, 1, 'context.op is its index');
    t.match(String(pe.context.input), /\[0\] add chain ip pnx fresh\n> \[1\] add rule ip pnx fresh th dport 80 goto nowhere\n {2}\[2\] add rule ip pnx services accept/, 'the neighbouring ops');
    t.equal(await nftList(ns, 'table', 'ip', 'pnx'), before, 'the transaction was atomic: no chain fresh, no rule in services');

    // An element that exists with another verdict: the kernel refuses, the message names it.
    const e2 = (await nft.apply(txOf(ipTable, [{ op: 'add-elements', set: 'service-ips', elements: [{ key: ['10.96.0.10', 'tcp', '80'], verdict: { kind: 'goto', chain: 'endpoint-b' } }] }])).catch((x: unknown) => x)) as PodnetError;
    t.equal(e2?.code, ErrorCodes.NFT);
    t.match(e2.message, /add element ip pnx service-ips \{ 10\.96\.0\.10 \. tcp \. 80 : goto endpoint-b \}/, e2.message);
    t.ok(e2.errno, `errno ${e2.errno}`);
    // Bad input never reaches the kernel.
    const e3 = (await nft.apply(txOf(ipTable, [{ op: 'add-rule', chain: 'services', rule: r([mt(p('ip daddr'), '10.96.0.300')]) }])).catch((x: unknown) => x)) as PodnetError;
    t.equal(e3?.code, ErrorCodes.INVALID_ARGUMENT);
    t.match(e3.message, /rule\.stmts\[0\]\.value: "10\.96\.0\.300" is not an ipv4_addr/);
  });

  await t.test('a transaction larger than a batch: consecutive batches, each atomic', async (t) => {
    const small = open(ns, { maxBatchBytes: 64 << 10 });
    const ops: NftOp[] = [{ op: 'add-table' }];
    for (let c = 0; c < 100; c++) {
      ops.push({ op: 'add-chain', chain: { name: `c${c}` } });
      for (let i = 0; i < 30; i++) ops.push({ op: 'add-rule', chain: `c${c}`, rule: r([mt(p('ip saddr'), `10.244.${c}.${i}`), mt(l4, 'tcp'), { kind: 'counter' }, { kind: 'dnat', addr: `10.244.${c}.${i}`, port: 8080 }]) });
    }
    await small.apply({ family: 'ip', table: 'pnbatch', ops });
    t.ok(small.lastApply!.batches > 1, `${small.lastApply!.batches} batches of at most 64 KiB`);
    t.equal((await small.listTable('ip', 'pnbatch'))!.chains.length, 100);
    t.equal((await nftList(ns, 'chain', 'ip', 'pnbatch', 'c99')).match(/dnat to/g)?.length, 30, 'the last chain has all its rules');
    // A failure in a later batch: the earlier ones stay, and the error says so.
    const more: NftOp[] = [];
    for (let c = 100; c < 160; c++) {
      more.push({ op: 'add-chain', chain: { name: `c${c}` } });
      for (let i = 0; i < 30; i++) more.push({ op: 'add-rule', chain: `c${c}`, rule: r([mt(p('ip saddr'), `10.245.${c}.${i}`), { kind: 'counter' }]) });
    }
    more.push({ op: 'add-rule', chain: 'c159', rule: r([goto('nowhere')]) });
    const e = (await small.apply({ family: 'ip', table: 'pnbatch', ops: more }).catch((x: unknown) => x)) as PodnetError;
    t.equal(e?.code, ErrorCodes.NFT);
    t.match(e.message, /\(batch (\d+) of \1\)/, e.message);
    t.match(e.message, /earlier batches\) stay applied/);
    t.ok(Number(e.context.appliedOps) > 0, `appliedOps ${e.context.appliedOps}`);
    t.ok((await small.listTable('ip', 'pnbatch'))!.chains.some((c) => c.name === 'c100'), 'chains of the first batches exist');
    t.equal(await small.deleteTable('ip', 'pnbatch'), true);

    // Every message refused: 20,000 errors, each echoing its message. Batches are sized so
    // that even then the answers fit in the receive buffer (an overflow would lose them, and
    // node-netlink aborts the process on the socket error that follows).
    const doomed: NftOp[] = [{ op: 'add-table' }, { op: 'add-chain', chain: { name: 'c' } }];
    for (let i = 0; i < 20_000; i++) doomed.push({ op: 'add-rule', chain: 'c', rule: r([mt(p('ip saddr'), `10.244.${i >> 8}.${i & 255}`), { kind: 'counter' }, goto('nowhere')]) });
    const e2 = (await nft.apply({ family: 'ip', table: 'pndoomed', ops: doomed }).catch((x: unknown) => x)) as PodnetError;
    t.equal(e2?.code, ErrorCodes.NFT, 'a PODNET_NFT error, and the process is alive');
    t.equal(e2.context.op, 2, 'the first failing op');
    t.ok(Number(e2.context.errors) > 1000, `${e2.context.errors} errors received in batch 1 (${e2.context.batch ?? '1/1'})`);
    t.equal(await nft.listTable('ip', 'pndoomed'), undefined, 'nothing applied');
  });

  await t.test('deleteTable is idempotent', async (t) => {
    t.equal(await nft.deleteTable('ip6', 'pnx6'), true);
    t.equal(await nft.deleteTable('ip6', 'pnx6'), false, 'already gone: false, no error');
    t.equal(await nft.listTable('ip6', 'pnx6'), undefined);
    t.notMatch(await nftList(ns, 'tables'), /pnx6/);
  });

  await t.test('real packets: DNAT of a VIP, TCP reset and ICMP unreachable', async (t) => {
    const cli = await scope.netns('cli');
    const srv = await scope.netns('srv');
    const c = scope.netlink(cli);
    const s = scope.netlink(srv);
    await c.links.ensure({ kind: 'veth', name: 'pnv0', up: true, peer: { name: 'pnv1', netns: srv } });
    await s.links.setUp('pnv1');
    await c.addrs.ensure('pnv0', '198.18.0.1/24');
    await s.addrs.ensure('pnv1', '198.18.0.2/24');
    await c.routes.ensure({ dst: '10.96.0.0/12', dev: 'pnv0' });

    const serve = async (args: string[], listen: RegExp, what: string) => {
      const child = execa('nsenter', ['--net=' + srv.path, '--', 'socat', ...args], { detached: true, reject: false, stdio: 'ignore' });
      const pid = child.pid!;
      scope.defer(() => {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      });
      await waitFor(async () => listen.test(String((await sh(srv, 'ss', ['-Htuln'])).stdout)), 5000, what);
    };
    await serve(['TCP-LISTEN:8080,reuseaddr,fork', 'EXEC:/bin/cat'], /:8080\b/, 'echo on 8080');
    await serve(['TCP-LISTEN:9999,reuseaddr,fork', 'EXEC:/bin/cat'], /:9999\b/, 'echo on 9999');
    await serve(['UDP-LISTEN:9998,reuseaddr,fork', 'EXEC:/bin/cat'], /:9998\b/, 'udp echo on 9998');
    const talk = (target: string, input: string) => sh(cli, 'socat', ['-T', '3', '-', target], { input, reject: false, timeout: 10_000 });

    t.not((await talk('TCP:10.96.0.10:80', 'hi\n')).exitCode, 0, 'without the table the VIP does not answer');
    t.equal(String((await talk('TCP:198.18.0.2:9999', 'direct\n')).stdout), 'direct', 'port 9999 answers before the reject rule');
    t.equal(String((await talk('UDP:198.18.0.2:9998', 'udp\n')).stdout), 'udp', 'udp 9998 answers before the reject rule');

    const cnft = open(cli);
    await cnft.apply({
      family: 'ip',
      table: 'pnx',
      ops: [
        { op: 'add-table' },
        { op: 'add-chain', chain: { name: 'nat-output', base: { type: 'nat', hook: 'output', priority: -100 } } },
        { op: 'add-rule', chain: 'nat-output', rule: r([mt(p('ip daddr'), '10.96.0.10'), mt(p('th dport'), '80'), mt(l4, 'tcp'), { kind: 'counter' }, { kind: 'dnat', addr: '198.18.0.2', port: 8080 }]) },
      ],
    });
    await cnft.apply({
      family: 'ip',
      table: 'pnx',
      ops: [
        { op: 'add-set', set: { name: 'eps', key: ['integer'], data: ['ipv4_addr', 'inet_service'], interval: true, numgenTypeof: { mod: 65536, proto: 'tcp' } } },
        { op: 'add-elements', set: 'eps', elements: [{ key: ['0-65535'], data: ['198.18.0.2', '8080'] }] },
        { op: 'add-rule', chain: 'nat-output', rule: r([mt(p('ip daddr'), '10.96.0.11'), mt(p('th dport'), '80'), mt(l4, 'tcp'), { kind: 'dnat-map', key: { kind: 'numgen', mod: 65536 }, map: 'eps' }]) },
      ],
    });
    const viaMap = await talk('TCP:10.96.0.11:80', 'through the map\n');
    t.equal(String(viaMap.stdout), 'through the map', `10.96.0.11:80 is DNATed through numgen … map @eps ${viaMap.stderr}`);
    const viaVip = await talk('TCP:10.96.0.10:80', 'through the VIP\n');
    t.equal(String(viaVip.stdout), 'through the VIP', `10.96.0.10:80 is DNATed to 198.18.0.2:8080 ${viaVip.stderr}`);
    t.match(await nftList(cli, 'chain', 'ip', 'pnx', 'nat-output'), /counter packets [1-9]/, 'the rule counted it');

    const snft = open(srv);
    await snft.apply({
      family: 'ip',
      table: 'pnx',
      ops: [
        { op: 'add-table' },
        { op: 'add-chain', chain: { name: 'filter-input', base: { type: 'filter', hook: 'input', priority: 0 } } },
        { op: 'add-rule', chain: 'filter-input', rule: r([mt(p('th dport'), '9999'), { kind: 'counter' }, mt(l4, 'tcp'), { kind: 'reject', with: 'tcp-reset' }]) },
        { op: 'add-rule', chain: 'filter-input', rule: r([mt(p('th dport'), '9998'), mt(l4, 'udp'), { kind: 'counter' }, { kind: 'reject', with: 'icmp-port-unreachable' }]) },
      ],
    });
    const tcp = await talk('TCP:198.18.0.2:9999', 'again\n');
    t.not(tcp.exitCode, 0, 'TCP 9999 is now refused');
    t.match(String(tcp.stderr), /Connection refused/, `a TCP reset: ${String(tcp.stderr).trim()}`);
    const udp = await talk('UDP:198.18.0.2:9998', 'again\n');
    t.match(String(udp.stderr), /Connection refused/, `an ICMP port unreachable: ${String(udp.stderr).trim()}`);
    const listed = await nftList(srv, 'chain', 'ip', 'pnx', 'filter-input');
    t.match(listed, /th dport 9999 counter packets [1-9]\d* bytes \d+ reject with tcp reset/, 'the reset rule counted');
    t.match(listed, /th dport 9998 meta l4proto udp counter packets [1-9]\d* bytes \d+ reject/, 'the unreachable rule counted');
  });

  await t.test('scale: 10,000 chains, 100,000 rules and a 10,000-element verdict map in one apply', async (t) => {
    const big = await scope.netns('big');
    const bnft = open(big);
    const ops: NftOp[] = [{ op: 'add-table' }, { op: 'add-set', set: { name: 'service-ips', key: ['ipv4_addr', 'inet_proto', 'inet_service'], data: 'verdict' } }];
    const elements: NftElement[] = [];
    const rules: NftOp[] = [];
    for (let c = 0; c < 10_000; c++) {
      const chain = `service-${c.toString(36).padStart(8, '0')}-ns${c % 97}/svc${c}/tcp/p80`;
      ops.push({ op: 'add-chain', chain: { name: chain } });
      for (let i = 0; i < 10; i++) {
        const ep = `10.${244 + (c >> 14)}.${(c >> 6) & 255}.${((c & 63) << 2) + (i & 3)}`;
        rules.push({ op: 'add-rule', chain, rule: r([mt(p('ip saddr'), ep), { kind: 'mark-or', value: 0x4000 }, mt(l4, 'tcp'), { kind: 'counter' }, { kind: 'dnat', addr: ep, port: 8080 + i }], `ns${c % 97}/svc${c}:p80 -> ${ep}:${8080 + i}`) });
      }
      elements.push({ key: [`10.96.${c >> 8}.${c & 255}`, 'tcp', '80'], verdict: { kind: 'goto', chain } });
    }
    ops.push(...rules, { op: 'add-elements', set: 'service-ips', elements });
    const t0 = performance.now();
    await bnft.apply({ family: 'ip', table: 'pnbig', ops });
    const ms = performance.now() - t0;
    const s = bnft.lastApply!;
    t.comment(`load: ${ops.length} ops → ${s.messages} messages, ${(s.bytes / 1e6).toFixed(1)} MB in ${s.batches} batch(es) of ≤ ${(bnft.maxBatchBytes / 1048576).toFixed(1)} MiB; encode ${s.encodeMs.toFixed(0)} ms, kernel ${s.kernelMs.toFixed(0)} ms, total ${ms.toFixed(0)} ms`);
    t.ok(ms < 20_000, `under 20 s (${ms.toFixed(0)} ms)`);

    const info = await bnft.listTable('ip', 'pnbig');
    t.equal(info!.chains.length, 10_000, '10,000 chains');
    const last = await nftList(big, 'chain', 'ip', 'pnbig', (rules.at(-1) as NftOp & { op: 'add-rule' }).chain);
    t.equal(last.match(/dnat to/g)?.length, 10, 'the last chain has its 10 rules');
    const map = await nftList(big, 'map', 'ip', 'pnbig', 'service-ips');
    t.equal(map.match(/: goto /g)?.length, 10_000, '10,000 map elements');

    // A full resync of the same state: flush every chain and the map, add everything again.
    const resync: NftOp[] = [{ op: 'add-table' }, ops[1]!, ...ops.filter((o) => o.op === 'add-chain'), ...ops.filter((o) => o.op === 'add-chain').map((o): NftOp => ({ op: 'flush-chain', chain: (o as { chain: { name: string } }).chain.name })), { op: 'flush-set', set: 'service-ips' }, ...rules, { op: 'add-elements', set: 'service-ips', elements }];
    const t1 = performance.now();
    await bnft.apply({ family: 'ip', table: 'pnbig', ops: resync });
    const s2 = bnft.lastApply!;
    t.comment(`full resync: ${resync.length} ops, ${(s2.bytes / 1e6).toFixed(1)} MB in ${s2.batches} batch(es); encode ${s2.encodeMs.toFixed(0)} ms, kernel ${s2.kernelMs.toFixed(0)} ms, total ${(performance.now() - t1).toFixed(0)} ms`);
    t.equal((await nftList(big, 'map', 'ip', 'pnbig', 'service-ips')).match(/: goto /g)?.length, 10_000, 'still 10,000 elements');

    // One kernel transaction, although it is larger than SO_SNDBUF allows without
    // SO_SNDBUFFORCE (2 x net.core.wmem_max): the flushes and the refill commit together.
    const wmemMax = Number(readFileSync('/proc/sys/net/core/wmem_max', 'utf8'));
    t.ok(bnft.atomicBuffers, 'the socket buffers were forced past the sysctl limits');
    // Another socket of this process in a namespace with one already (ports repeat across namespaces).
    const again = open(big);
    t.ok(again.atomicBuffers, 'so were those of a second socket in the same namespace');
    again.close();
    t.ok(s2.bytes > 2 * wmemMax, `the resync (${(s2.bytes / 1e6).toFixed(1)} MB) is larger than 2 x net.core.wmem_max (${wmemMax})`);
    t.equal(s2.batches, 1, 'the resync went in one batch');
    // So a resync that fails at its last op changes nothing: not a chain flushed, not an element gone.
    const bad: NftOp[] = [...resync, { op: 'add-rule', chain: (rules.at(-1) as NftOp & { op: 'add-rule' }).chain, rule: r([goto('nowhere')]) }];
    const e = (await bnft.apply({ family: 'ip', table: 'pnbig', ops: bad }).catch((x: unknown) => x)) as PodnetError;
    t.equal(e?.code, ErrorCodes.NFT, `refused: ${e?.message}`);
    t.match(e.message, /nothing was applied/);
    t.equal(e.context.op, bad.length - 1, 'the failing op is the last one');
    t.equal((await nftList(big, 'chain', 'ip', 'pnbig', (rules.at(-1) as NftOp & { op: 'add-rule' }).chain)).match(/dnat to/g)?.length, 10, 'the last chain still has its 10 rules');
    t.equal((await nftList(big, 'map', 'ip', 'pnbig', 'service-ips')).match(/: goto /g)?.length, 10_000, 'and the map its 10,000 elements');

    const t2 = performance.now();
    t.equal(await bnft.deleteTable('ip', 'pnbig'), true);
    t.comment(`delete table: ${(performance.now() - t2).toFixed(0)} ms`);
  });
}
