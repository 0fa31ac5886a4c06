import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { failure } from '../../testing/errors.js';
import { packageRoot } from '../../kernel/native.js';
import { NftTrace, dscpValue, groupByTraceId, parseFields, parseTraceLine, traceMatch, traceRuleset, validateTraceOptions } from './nftrace.js';
import type { TraceEvent } from './nftrace.js';

// Fixtures are real `nft monitor trace` output (nftables 1.0.6, kernel 6.18), recorded in
// scratch namespaces; the first line of each file says what was set up and sent.
const testdata = join(packageRoot, 'src', 'trace', 'live', 'testdata'); // also when run from dist/
const fixture = (name: string) => readFileSync(join(testdata, name), 'utf8').split('\n');
const traceLines = (name: string) => fixture(name).filter((l) => l.startsWith('trace id '));
const parseAll = (name: string) => traceLines(name).map((l) => parseTraceLine(l) as TraceEvent);

describe('parseTraceLine on recorded output', () => {
  const files = readdirSync(testdata).filter((f) => /^nftrace-.*\.txt$/.test(f));

  it('has fixtures', () => expect(files.length).toBeGreaterThanOrEqual(4));

  it.each(files)('%s: every trace line parses, keeping the raw text', (f) => {
    const lines = traceLines(f);
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) {
      const e = parseTraceLine(l);
      expect(e, l).toBeDefined();
      expect(e?.raw).toBe(l.trimEnd());
      expect(e?.id).toMatch(/^[0-9a-f]{8}$/);
    }
  });

  it('packet: header fields, quoted interface, dscp by name, tcp flags without the operator', () => {
    const e = parseTraceLine(traceLines('nftrace-dnat.txt')[0] as string);
    expect(e).toMatchObject({ id: '6434bf4f', family: 'ip', table: 'podnet-trace-t1', chain: 'pre', kind: 'packet' });
    expect(e?.fields).toEqual({
      iif: 'eth0',
      'ether saddr': '9a:60:72:2a:b7:30',
      'ether daddr': 'ea:bf:72:4f:23:99',
      'ip saddr': '198.18.0.1',
      'ip daddr': '198.18.0.2',
      'ip dscp': 'af11',
      'ip ecn': 'not-ect',
      'ip ttl': '64',
      'ip id': '64972',
      'ip length': '60',
      'tcp sport': '40000',
      'tcp dport': '80',
      'tcp flags': 'syn',
      'tcp window': '64240',
    });
    expect(dscpValue(e?.fields?.['ip dscp'])).toBe(10);
  });

  it('rule: jump, vmap goto and dnat, as the recorded service path', () => {
    const events = parseAll('nftrace-dnat.txt').filter((e) => e.table === 'podnet' && e.id === '6434bf4f').slice(0, 6);
    expect(events.map((e) => [e.chain, e.kind, e.rule, e.verdict])).toEqual([
      ['nat-prerouting', 'packet', undefined, undefined],
      ['nat-prerouting', 'rule', 'jump services', 'jump services'],
      ['services', 'rule', 'ip daddr . meta l4proto . th dport vmap @service-ips', 'goto service-abc'],
      ['service-abc', 'rule', 'meta l4proto tcp dnat to 198.18.0.2:8080', 'accept'],
      ['filter-in', 'packet', undefined, undefined],
      ['filter-in', 'policy', undefined, 'accept'],
    ]);
    expect(events[4]?.fields?.['tcp dport']).toBe('8080'); // after DNAT
  });

  it('rule: drop and reject, return, explicit continue', () => {
    const all = [...parseAll('nftrace-dnat.txt'), ...parseAll('nftrace-forward.txt')];
    const find = (rule: string) => all.find((e) => e.kind === 'rule' && e.rule === rule);
    expect(find('udp dport 54 drop')?.verdict).toBe('drop');
    expect(find('tcp dport 81 reject with tcp reset')?.verdict).toBe('drop');
    expect(find('udp dport 9 return')?.verdict).toBe('return');
    expect(find('tcp dport 7 continue')?.verdict).toBe('continue');
    expect(find('meta mark set 0x00004000 counter packets 0 bytes 0')?.verdict).toBe('continue');
  });

  it('policy: the verdict, and the packet mark when it has one', () => {
    const forward = parseAll('nftrace-forward.txt');
    const marked = forward.find((e) => e.kind === 'policy' && e.chain === 'filter-forward');
    expect(marked).toMatchObject({ family: 'inet', table: 'podnet', verdict: 'accept', fields: { 'meta mark': '0x00004000' } });
    const plain = parseAll('nftrace-dnat.txt').find((e) => e.kind === 'policy');
    expect(plain?.verdict).toBe('accept');
    expect(plain?.fields).toBeUndefined();
    const drop = parseAll('nftrace-goto.txt').find((e) => e.kind === 'policy' && e.verdict === 'drop');
    expect(drop).toMatchObject({ chain: 'input', fields: { 'meta mark': '0x00000007' } });
  });

  it('packet: forwarded (iif and oif), IPv6, dscp in hex, raw payload', () => {
    const forward = parseAll('nftrace-forward.txt');
    const fwd = forward.find((e) => e.kind === 'packet' && e.chain === 'filter-forward');
    expect(fwd?.fields).toMatchObject({ iif: 'a0', oif: 'b0', 'ip protocol': 'udp', 'ip ttl': '63', 'udp dport': '7', '@th,64,8': '0x78' });
    const v6 = forward.find((e) => e.kind === 'packet' && e.family === 'ip6');
    expect(v6?.fields).toMatchObject({ 'ip6 saddr': 'fd00:198:1::2', 'ip6 daddr': 'fd00:198:2::2', 'ip6 dscp': '0x05', 'ip6 hoplimit': '64' });
    expect(dscpValue(v6?.fields?.['ip6 dscp'])).toBe(5);
    expect(dscpValue(forward[0]?.fields?.['ip dscp'])).toBe(46); // "ef"
  });

  it('packet: ICMP echo and its reply leaving on output (oif only)', () => {
    const out = parseAll('nftrace-dnat.txt').find((e) => e.kind === 'packet' && e.chain === 'out' && e.family === 'ip');
    expect(out?.fields).toMatchObject({ oif: 'eth0', 'icmp type': 'echo-reply', 'icmp id': '16826', 'icmp sequence': '1' });
    expect(out?.fields?.iif).toBeUndefined();
  });

  it('rule: a rule nft monitor did not know (added after it started)', () => {
    const e = parseAll('nftrace-unknown-rule.txt').find((x) => x.table === 'later' && x.kind === 'rule');
    expect(e).toMatchObject({ kind: 'rule', handle: 2, verdict: 'continue', chain: 'out' });
    expect(e?.rule).toBeUndefined();
  });

  it('verdict: the end-of-chain form nft prints for NFT_TRACETYPE_RETURN', () => {
    // Not emitted by kernel 6.18 in any recording; the format is nftables' own printer
    // (trace_print_hdr + "verdict " + verdict + optional mark), as older kernels send it.
    expect(parseTraceLine('trace id 3b2f6c1a ip podnet nat-prerouting verdict continue ')).toEqual({
      id: '3b2f6c1a',
      family: 'ip',
      table: 'podnet',
      chain: 'nat-prerouting',
      kind: 'verdict',
      verdict: 'continue',
      raw: 'trace id 3b2f6c1a ip podnet nat-prerouting verdict continue',
    });
    expect(parseTraceLine('trace id 3b2f6c1a ip podnet services verdict continue meta mark 0x00004000')).toMatchObject({
      kind: 'verdict',
      verdict: 'continue',
      fields: { 'meta mark': '0x00004000' },
    });
    expect(parseTraceLine('trace id 3b2f6c1a ip podnet services verdict jump other')?.verdict).toBe('jump other');
  });

  it('anything else is not an event', () => {
    for (const l of ['', '# comment', 'trace id', 'Error: syntax error', 'trace id zz ip podnet x packet: ip saddr 1.2.3.4', 'trace id 3b2f6c1a ip podnet chain something-new']) {
      expect(parseTraceLine(l), l).toBeUndefined();
    }
  });
});

describe('parseFields', () => {
  it('joins flag sets and skips comparison operators', () => {
    expect(parseFields('tcp flags == syn | ack tcp window 5')).toEqual({ 'tcp flags': 'syn | ack', 'tcp window': '5' });
    expect(parseFields('iif "eth 0" meta mark 0x1')).toEqual({ iif: 'eth 0', 'meta mark': '0x1' });
    expect(parseFields('')).toEqual({});
  });
});

describe('groupByTraceId', () => {
  it('groups one packet per group, interleaved ids apart, and splits a reused id', () => {
    const events = parseAll('nftrace-dnat.txt');
    const groups = groupByTraceId(events);
    // 6434bf4f is the SYN (through DNAT) and, later, the connection's third data packet.
    const reused = groups.filter((g) => g.id === '6434bf4f');
    expect(reused).toHaveLength(2);
    expect(reused[0]?.events.map((e) => `${e.table}/${e.chain}/${e.kind}`)).toEqual([
      'podnet-trace-t1/pre/packet',
      'podnet-trace-t1/pre/rule',
      'podnet-trace-t1/pre/policy',
      'podnet/nat-prerouting/packet',
      'podnet/nat-prerouting/rule',
      'podnet/services/rule',
      'podnet/service-abc/rule',
      'podnet/filter-in/packet',
      'podnet/filter-in/policy',
    ]);
    expect(reused[1]?.events[0]?.fields?.['tcp flags']).toBe('0x18');
    expect(groups.reduce((n, g) => n + g.events.length, 0)).toBe(events.length);
    expect(new Set(groups.map((g) => g.events[0]?.kind))).toEqual(new Set(['packet']));
  });
});

describe('dscpValue', () => {
  it.each([
    ['cs0', 0],
    ['af11', 10],
    ['AF41', 34],
    ['ef', 46],
    ['va', 44],
    ['lephb', 1],
    ['0x05', 5],
    ['0x3f', 63],
    ['10', 10],
  ])('%s → %d', (t, v) => expect(dscpValue(t)).toBe(v));
  it.each(['', 'x', '0x40', '64', '-1', undefined])('%j → undefined', (t) => expect(dscpValue(t)).toBeUndefined());
});

describe('the trace table', () => {
  it('marks by dscp and the probe port, at prerouting and output, priority -350', () => {
    expect(traceRuleset({ id: 'abc123', family: 4, dscp: 10, sport: 40000, proto: 'tcp' })).toBe(
      [
        'create table ip podnet-trace-abc123',
        'table ip podnet-trace-abc123 {',
        '\tchain prerouting {',
        '\t\ttype filter hook prerouting priority -350; policy accept;',
        '\t\tip dscp 10 tcp sport 40000 meta nftrace set 1',
        '\t}',
        '\tchain output {',
        '\t\ttype filter hook output priority -350; policy accept;',
        '\t\tip dscp 10 tcp sport 40000 meta nftrace set 1',
        '\t}',
        '}',
        '',
      ].join('\n'),
    );
  });

  it.each([
    [{ family: 4, dscp: 10 }, 'ip dscp 10'],
    [{ family: 6, dscp: 63 }, 'ip6 dscp 63'],
    [{ family: 4, dscp: 10, sport: 40000 }, 'ip dscp 10 th sport 40000'],
    [{ family: 4, dscp: 10, proto: 'udp' }, 'ip dscp 10 meta l4proto udp'],
    [{ family: 6, dscp: 1, proto: 'sctp', sport: 5 }, 'ip6 dscp 1 sctp sport 5'],
    [{ family: 4, dscp: 10, proto: 'icmp', sport: 0 }, 'ip dscp 10 icmp id 0'],
    [{ family: 6, dscp: 10, proto: 'icmp', sport: 7 }, 'ip6 dscp 10 icmpv6 id 7'],
    [{ family: 4, dscp: 10, proto: 'icmp' }, 'ip dscp 10 meta l4proto icmp'],
    [{ family: 6, dscp: 10, proto: 'icmp' }, 'ip6 dscp 10 meta l4proto ipv6-icmp'],
  ] as const)('%j → %s', (o, match) => expect(traceMatch(o)).toBe(match));

  it('accepts good options', () => {
    expect(validateTraceOptions({ id: 'a', family: 4, dscp: 0 })).toMatchObject({ id: 'a', readyTimeoutMs: 5000 });
    expect(validateTraceOptions({ id: '0123456789abcdef', family: 6, dscp: 63, sport: 65535, proto: 'udp', netnsPath: '/run/netns/x' }).netnsPath).toBe('/run/netns/x');
  });

  it.each([
    [{ id: '', family: 4, dscp: 10 }, /trace id must be/],
    [{ id: 'ABC', family: 4, dscp: 10 }, /trace id must be/],
    [{ id: 'a-b', family: 4, dscp: 10 }, /trace id must be/],
    [{ id: 'x;flush ruleset', family: 4, dscp: 10 }, /trace id must be/],
    [{ id: '0123456789abcdefg', family: 4, dscp: 10 }, /trace id must be/],
    [{ id: 'a', family: 5, dscp: 10 }, /family must be 4 or 6/],
    [{ id: 'a', family: 4, dscp: 64 }, /dscp must be an integer between 0 and 63/],
    [{ id: 'a', family: 4, dscp: -1 }, /dscp/],
    [{ id: 'a', family: 4, dscp: 1.5 }, /dscp/],
    [{ id: 'a', family: 4, dscp: '10' }, /dscp/],
    [{ id: 'a', family: 4, dscp: 10, sport: 0, proto: 'tcp' }, /sport must be an integer between 1 and 65535/],
    [{ id: 'a', family: 4, dscp: 10, sport: 65536 }, /sport/],
    [{ id: 'a', family: 4, dscp: 10, sport: -1, proto: 'icmp' }, /sport must be an integer between 0 and 65535/],
    [{ id: 'a', family: 4, dscp: 10, proto: 'gre' }, /proto must be/],
    [{ id: 'a', family: 4, dscp: 10, netnsPath: 'run/netns/x' }, /netnsPath must be an absolute path/],
    [{ id: 'a', family: 4, dscp: 10, netnsPath: '/run/netns/x\nflush ruleset' }, /netnsPath/],
    [{ id: 'a', family: 4, dscp: 10, readyTimeoutMs: 0 }, /readyTimeoutMs/],
  ])('rejects %j', (o, why) => {
    expect(() => validateTraceOptions(o as never)).toThrowError(why);
    expect(failure(() => validateTraceOptions(o as never)).code).toBe('PODNET_INVALID_ARGUMENT');
  });

  it('NftTrace.start rejects bad options before running nft or hooking signals', async () => {
    const before = process.listenerCount('SIGINT');
    await expect(NftTrace.start({ id: 'Bad Id', family: 4, dscp: 10 })).rejects.toMatchObject({ code: 'PODNET_INVALID_ARGUMENT' });
    await expect(NftTrace.start({ id: 'ok', family: 4, dscp: 99 })).rejects.toMatchObject({ code: 'PODNET_INVALID_ARGUMENT' });
    expect(process.listenerCount('SIGINT')).toBe(before);
  });
});
