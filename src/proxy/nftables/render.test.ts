import { describe, expect, it } from 'vitest';
import type { NftElement, NftSet, NftTable } from '../../kernel/nftables/ast.js';
import type { NftOp } from '../../kernel/nftables/ops.js';
import { nftAddr, renderDuration, renderOp, renderPriority, renderTable, renderTransaction, sortElements } from './render.js';

// Expected texts below are what nft 1.0.6 printed for these objects in a scratch namespace.

describe('nftAddr (inet_ntop)', () => {
  it.each([
    ['10.1.2.3', '10.1.2.3'],
    ['FD00:0:0:0:0:0:0:A', 'fd00::a'],
    ['fd00:10:96:0:0:0:1:a', 'fd00:10:96::1:a'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['1:0:2:3:4:5:6:7', '1:0:2:3:4:5:6:7'],
    ['1:0:2:0:0:0:0:0', '1:0:2::'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['::', '::'],
    ['::ffff:1.2.3.4', '::ffff:1.2.3.4'],
    ['fd00:10:244::/56', 'fd00:10:244::/56'],
    ['10.244.0.0/16', '10.244.0.0/16'],
  ])('%s -> %s', (a, b) => expect(nftAddr(a)).toBe(b));
});

describe('priorities and durations', () => {
  it.each([
    ['prerouting', -100, 'dstnat'],
    ['output', -100, '-100'],
    ['prerouting', -110, 'dstnat - 10'],
    ['prerouting', -111, '-111'],
    ['output', -110, '-110'],
    ['input', 0, 'filter'],
    ['input', 10, 'filter + 10'],
    ['input', 11, '11'],
    ['forward', -10, 'filter - 10'],
    ['forward', -150, 'mangle'],
    ['postrouting', 100, 'srcnat'],
    ['output', -89, '-89'],
  ] as const)('%s %d -> %s', (hook, prio, text) => expect(renderPriority(hook, prio)).toBe(text));
  it.each([
    [10800, '3h'],
    [90, '1m30s'],
    [86400, '1d'],
    [600, '10m'],
    [90061, '1d1h1m1s'],
  ])('%d s -> %s', (s, t) => expect(renderDuration(s)).toBe(t));
});

describe('element order (as nft lists it)', () => {
  const vip: NftSet = { name: 'm', key: ['ipv4_addr', 'inet_proto', 'inet_service'], data: 'verdict' };
  it('concatenations: raw key bytes read as a little-endian number', () => {
    const keys = [
      ['10.96.0.10', 'tcp', '80'],
      ['10.96.0.2', 'udp', '53'],
      ['10.96.0.10', 'sctp', '80'],
      ['10.96.0.10', 'tcp', '443'],
      ['10.96.0.1', 'tcp', '8080'],
      ['10.96.0.10', 'udp', '80'],
      ['10.96.0.10', 'tcp', '79'],
    ];
    const got = sortElements(vip, keys.map((key) => ({ key }))).map((e) => e.key.join(' . '));
    expect(got).toEqual(['10.96.0.2 . udp . 53', '10.96.0.10 . tcp . 79', '10.96.0.10 . tcp . 80', '10.96.0.10 . udp . 80', '10.96.0.10 . sctp . 80', '10.96.0.1 . tcp . 8080', '10.96.0.10 . tcp . 443']);
    const np = sortElements({ name: 'n', key: ['inet_proto', 'inet_service'] }, [{ key: ['tcp', '3000'] }, { key: ['udp', '30080'] }, { key: ['tcp', '30080'] }]).map((e) => e.key.join(' . '));
    expect(np).toEqual(['tcp . 30080', 'udp . 30080', 'tcp . 3000']);
    const v6 = sortElements({ name: 'v', key: ['ipv6_addr', 'inet_proto', 'inet_service'] }, [{ key: ['fd00:10:96::b', 'tcp', '80'] }, { key: ['fd00:10:96::1:a', 'tcp', '80'] }, { key: ['fd00:10:96::a', 'tcp', '80'] }]).map((e) => e.key[0]);
    expect(v6).toEqual(['fd00:10:96::a', 'fd00:10:96::1:a', 'fd00:10:96::b']);
  });
  it('single types: numerically', () => {
    expect(sortElements({ name: 's', key: ['ipv4_addr'] }, ['198.18.0.2', '10.0.0.2', '198.18.0.1', '10.0.0.1'].map((k) => ({ key: [k] }))).map((e) => e.key[0])).toEqual(['10.0.0.1', '10.0.0.2', '198.18.0.1', '198.18.0.2']);
    expect(sortElements({ name: 's', key: ['ipv6_addr'] }, ['fd00::10', 'fd00::2', '2001:db8::1', '::ffff:1.2.3.4'].map((k) => ({ key: [k] }))).map((e) => e.key[0])).toEqual(['::ffff:1.2.3.4', '2001:db8::1', 'fd00::2', 'fd00::10']);
  });
});

describe('renderTable', () => {
  it('prints sets (wrapped as nft does), maps with element comments, dynamic sets, base and regular chains', () => {
    const t: NftTable = {
      family: 'ip',
      name: 'podnet',
      sets: [
        { name: 'nodeport-ips', key: ['ipv4_addr'], comment: 'node addresses' },
        { name: 'no-endpoint-services', key: ['ipv4_addr', 'inet_proto', 'inet_service'], data: 'verdict' },
        { name: 'empty-map', key: ['inet_proto', 'inet_service'], data: 'verdict' },
        { name: 'aff2', key: ['ipv4_addr'], dynamic: true, timeoutSeconds: 90, comment: 'x' },
        { name: 'aff3', key: ['ipv4_addr'], dynamic: true, timeoutSeconds: 86400, size: 1000, comment: 'x' },
      ],
      elements: new Map<string, NftElement[]>([
        ['nodeport-ips', ['198.18.0.1', '198.18.0.2', '198.18.0.3', '10.0.0.1', '10.0.0.2'].map((ip) => ({ key: [ip] }))],
        [
          'no-endpoint-services',
          [
            { key: ['10.96.0.11', 'tcp', '80'], comment: 'a/b:', verdict: { kind: 'goto', chain: 'reject-chain' } },
            { key: ['10.96.0.12', 'udp', '53'], verdict: { kind: 'goto', chain: 'reject-chain' } },
          ],
        ],
      ]),
      chains: [
        {
          name: 'reject-chain',
          rules: [{ stmts: [{ kind: 'match', left: { kind: 'meta', key: 'l4proto' }, op: '==', value: 'tcp' }, { kind: 'reject', with: 'tcp-reset' }] }, { stmts: [{ kind: 'reject', with: 'icmp-port-unreachable' }] }],
        },
        { name: 'nat-prerouting', comment: 'hello', base: { type: 'nat', hook: 'prerouting', priority: -100 }, rules: [{ stmts: [{ kind: 'verdict', verdict: { kind: 'jump', chain: 'reject-chain' } }] }] },
        {
          name: 'filter-output',
          base: { type: 'filter', hook: 'output', priority: -110, policy: 'accept' },
          rules: [
            { stmts: [{ kind: 'match', left: { kind: 'ct', key: 'state' }, op: '==', value: 'new' }, { kind: 'vmap', key: { kind: 'concat', parts: [{ kind: 'payload', field: 'ip daddr' }, { kind: 'meta', key: 'l4proto' }, { kind: 'payload', field: 'th dport' }] }, map: 'no-endpoint-services' }], comment: 'c' },
            { stmts: [{ kind: 'match', left: { kind: 'ct', key: 'state' }, op: '!=', value: 'new' }, { kind: 'verdict', verdict: { kind: 'accept' } }] },
          ],
        },
        { name: 'empty', rules: [] },
      ],
    };
    expect(renderTable(t)).toBe(
      `table ip podnet {
	set nodeport-ips {
		type ipv4_addr
		comment "node addresses"
		elements = { 10.0.0.1, 10.0.0.2,
			     198.18.0.1, 198.18.0.2,
			     198.18.0.3 }
	}

	map no-endpoint-services {
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = { 10.96.0.12 . udp . 53 : goto reject-chain,
			     10.96.0.11 . tcp . 80 comment "a/b:" : goto reject-chain }
	}

	map empty-map {
		type inet_proto . inet_service : verdict
	}

	set aff2 {
		type ipv4_addr
		flags dynamic,timeout
		timeout 1m30s
		comment "x"
	}

	set aff3 {
		type ipv4_addr
		size 1000
		flags dynamic,timeout
		timeout 1d
		comment "x"
	}

	chain reject-chain {
		reject with tcp reset
		reject
	}

	chain nat-prerouting {
		comment "hello"
		type nat hook prerouting priority dstnat; policy accept;
		jump reject-chain
	}

	chain filter-output {
		type filter hook output priority -110; policy accept;
		ct state new ip daddr . meta l4proto . th dport vmap @no-endpoint-services comment "c"
		ct state != new accept
	}

	chain empty {
	}
}
`,
    );
    expect(renderTable({ family: 'ip6', name: 'podnet', sets: [], elements: new Map(), chains: [] })).toBe('table ip6 podnet {\n}\n');
  });
});

describe('renderOp / renderTransaction (nft -f input)', () => {
  it('every op', () => {
    const ops: NftOp[] = [
      { op: 'add-table' },
      { op: 'add-set', set: { name: 'service-ips', key: ['ipv4_addr', 'inet_proto', 'inet_service'], data: 'verdict', comment: 'c' } },
      { op: 'add-set', set: { name: 'affinity-X', key: ['ipv4_addr'], dynamic: true, timeoutSeconds: 10800, size: 65535 } },
      { op: 'add-chain', chain: { name: 'nat-output', base: { type: 'nat', hook: 'output', priority: -100, policy: 'accept' } } },
      { op: 'add-chain', chain: { name: 'x', comment: 'hi' } },
      { op: 'add-chain', chain: { name: 'y' } },
      { op: 'flush-chain', chain: 'x' },
      { op: 'flush-set', set: 'service-ips' },
      { op: 'flush-set', set: 'nodeport-ips' },
      { op: 'add-rule', chain: 'x', rule: { stmts: [{ kind: 'match', left: { kind: 'meta', key: 'l4proto' }, op: '==', value: 'tcp' }, { kind: 'reject', with: 'tcp-reset' }] } },
      { op: 'add-rule', chain: 'y', rule: { stmts: [{ kind: 'match', left: { kind: 'meta', key: 'l4proto' }, op: '==', value: 'tcp' }, { kind: 'dnat', addr: 'fd00::5', port: 80 }] } },
      { op: 'add-rule', chain: 'y', rule: { stmts: [{ kind: 'mark-test', mask: 0x4000, op: '==', value: 0 }, { kind: 'verdict', verdict: { kind: 'return' } }], comment: 'k' } },
      { op: 'add-elements', set: 'service-ips', elements: [{ key: ['10.96.0.1', 'tcp', '80'], verdict: { kind: 'goto', chain: 'x' } }, { key: ['10.96.0.2', 'udp', '53'], comment: 'n/s:', verdict: { kind: 'drop' } }] },
      { op: 'delete-elements', set: 'service-ips', keys: [['10.96.0.1', 'tcp', '80']] },
      { op: 'delete-chain', chain: 'y' },
      { op: 'delete-set', set: 'service-ips' },
      { op: 'delete-table' },
    ];
    expect(renderTransaction({ family: 'ip', table: 'podnet', ops })).toBe(
      `add table ip podnet
add map ip podnet service-ips { type ipv4_addr . inet_proto . inet_service : verdict; comment "c"; }
add set ip podnet affinity-X { type ipv4_addr; size 65535; flags dynamic,timeout; timeout 10800s; }
add chain ip podnet nat-output { type nat hook output priority -100; policy accept; }
add chain ip podnet x { comment "hi"; }
add chain ip podnet y
flush chain ip podnet x
flush map ip podnet service-ips
flush set ip podnet nodeport-ips
add rule ip podnet x meta l4proto tcp reject with tcp reset
add rule ip podnet y meta l4proto tcp dnat to [fd00::5]:80
add rule ip podnet y meta mark & 0x00004000 == 0x00000000 return comment "k"
add element ip podnet service-ips { 10.96.0.1 . tcp . 80 : goto x, 10.96.0.2 . udp . 53 comment "n/s:" : drop }
delete element ip podnet service-ips { 10.96.0.1 . tcp . 80 }
delete chain ip podnet y
delete map ip podnet service-ips
delete table ip podnet
`,
    );
    expect(renderOp({ op: 'flush-set', set: 'm' }, { family: 'ip6', table: 't', isMap: () => true })).toBe('flush map ip6 t m');
  });
});

describe('endpoint maps (layout v2; nft -f accepted these lines in a scratch namespace)', () => {
  const map: NftSet = { name: 'endpoints-X', key: ['integer'], data: ['ipv4_addr', 'inet_service'], interval: true, numgenTypeof: { mod: 65536, proto: 'udp' } };
  const els: NftElement[] = [
    { key: ['32768-65535'], data: ['10.244.2.5', '53'] },
    { key: ['0-32767'], data: ['10.244.1.5', '53'] },
  ];
  it('listing: typeof, interval keys in order, concatenated data, `dnat ip to … map` (ip) and `dnat ip6 to` (ip6)', () => {
    const t: NftTable = {
      family: 'ip',
      name: 'podnet',
      sets: [map],
      elements: new Map([[map.name, els]]),
      chains: [{ name: 'svc', rules: [{ stmts: [{ kind: 'match', left: { kind: 'meta', key: 'l4proto' }, op: '==', value: 'udp' }, { kind: 'dnat-map', key: { kind: 'numgen', mod: 65536 }, map: map.name }] }] }],
    };
    expect(renderTable(t)).toBe(
      'table ip podnet {\n\tmap endpoints-X {\n\t\ttypeof numgen random mod 65536 : ip daddr . udp dport\n\t\tflags interval\n\t\telements = { 0-32767 : 10.244.1.5 . 53, 32768-65535 : 10.244.2.5 . 53 }\n\t}\n\n\tchain svc {\n\t\tmeta l4proto udp dnat ip to numgen random mod 65536 map @endpoints-X\n\t}\n}\n',
    );
    expect(renderTable({ ...t, family: 'ip6', sets: [{ ...map, data: ['ipv6_addr', 'inet_service'] }], elements: new Map([[map.name, [{ key: ['0-65535'], data: ['fd00::5', '53'] }]]]) })).toContain(
      '\t\ttypeof numgen random mod 65536 : ip6 daddr . udp dport\n\t\tflags interval\n\t\telements = { 0-65535 : fd00::5 . 53 }\n\t}\n\n\tchain svc {\n\t\tmeta l4proto udp dnat ip6 to numgen random mod 65536 map @endpoints-X\n',
    );
  });
  it('nft -f input: `dnat ip addr . port to`, typeof in add map, data parts joined', () => {
    const ctx = { family: 'ip' as const, table: 'podnet', isMap: (n: string) => n === map.name };
    expect(renderOp({ op: 'add-set', set: map }, ctx)).toBe('add map ip podnet endpoints-X { typeof numgen random mod 65536 : ip daddr . udp dport; flags interval; }');
    expect(renderOp({ op: 'flush-set', set: map.name }, ctx)).toBe('flush map ip podnet endpoints-X');
    expect(renderOp({ op: 'add-elements', set: map.name, elements: els }, ctx)).toBe('add element ip podnet endpoints-X { 32768-65535 : 10.244.2.5 . 53, 0-32767 : 10.244.1.5 . 53 }');
    expect(renderOp({ op: 'add-rule', chain: 'svc', rule: { stmts: [{ kind: 'match', left: { kind: 'meta', key: 'l4proto' }, op: '==', value: 'udp' }, { kind: 'dnat-map', key: { kind: 'numgen', mod: 65536 }, map: map.name }] } }, ctx)).toBe(
      'add rule ip podnet svc meta l4proto udp dnat ip addr . port to numgen random mod 65536 map @endpoints-X',
    );
  });
});
