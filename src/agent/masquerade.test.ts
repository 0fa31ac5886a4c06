import { describe, expect, it } from 'vitest';
import { Cidr } from '../util/ipnet.js';
import { MASQ_CHAIN, NFT_TABLE, planMasquerade } from './masquerade.js';

const v4 = Cidr.parse('10.244.0.0/16');
const v6 = Cidr.parse('fd00:10:244::/56');
const COMMENT = 'comment "podnet: pod egress leaves with the node address"';

describe('planMasquerade', () => {
  it('names its table and chain', () => {
    expect(NFT_TABLE).toBe('podnet');
    expect(MASQ_CHAIN).toBe('egress-masquerade');
  });

  it('IPv4 only: one rule for ip, the ip6 chain removed', () => {
    expect(planMasquerade([v4], true)).toBe(
      [
        'add table ip podnet',
        'add chain ip podnet egress-masquerade { type nat hook postrouting priority srcnat; policy accept; }',
        'flush chain ip podnet egress-masquerade',
        `add rule ip podnet egress-masquerade ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade ${COMMENT}`,
        // A family without a cluster CIDR: its chain is made (a plain one: no NAT support
        // needed) so that deleting it cannot fail on a fresh host, and deleted; an empty
        // `table ip6 podnet` stays.
        'add table ip6 podnet',
        'add chain ip6 podnet egress-masquerade',
        'delete chain ip6 podnet egress-masquerade',
        '',
      ].join('\n'),
    );
  });

  it('dual-stack: one rule per family, IPv4 first', () => {
    expect(planMasquerade([v4, v6], true)).toBe(
      [
        'add table ip podnet',
        'add chain ip podnet egress-masquerade { type nat hook postrouting priority srcnat; policy accept; }',
        'flush chain ip podnet egress-masquerade',
        `add rule ip podnet egress-masquerade ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade ${COMMENT}`,
        'add table ip6 podnet',
        'add chain ip6 podnet egress-masquerade { type nat hook postrouting priority srcnat; policy accept; }',
        'flush chain ip6 podnet egress-masquerade',
        `add rule ip6 podnet egress-masquerade ip6 saddr fd00:10:244::/56 ip6 daddr != fd00:10:244::/56 ip6 daddr != ff00::/8 masquerade ${COMMENT}`,
        '',
      ].join('\n'),
    );
  });

  it('is the same whatever order the CIDRs come in', () => {
    expect(planMasquerade([v6, v4], true)).toBe(planMasquerade([v4, v6], true));
  });

  it('IPv6 only: the ip chain removed, one rule for ip6', () => {
    const script = planMasquerade([v6], true);
    expect(script.split('\n').slice(0, 3)).toEqual([
      'add table ip podnet',
      'add chain ip podnet egress-masquerade',
      'delete chain ip podnet egress-masquerade',
    ]);
    expect(script).toContain(`add rule ip6 podnet egress-masquerade ip6 saddr fd00:10:244::/56 ip6 daddr != fd00:10:244::/56 ip6 daddr != ff00::/8 masquerade ${COMMENT}\n`);
    expect(script).not.toMatch(/add rule ip podnet/);
  });

  it('disabled: both chains deleted, no rule, whatever the CIDRs', () => {
    const expected = [
      'add table ip podnet',
      'add chain ip podnet egress-masquerade',
      'delete chain ip podnet egress-masquerade',
      'add table ip6 podnet',
      'add chain ip6 podnet egress-masquerade',
      'delete chain ip6 podnet egress-masquerade',
      '',
    ].join('\n');
    expect(planMasquerade([v4, v6], false)).toBe(expected);
    expect(planMasquerade([v4], false)).toBe(expected);
    expect(planMasquerade([], false)).toBe(expected);
  });

  it('removing touches only the podnet tables that exist (no nf_tables at all: nothing to run)', () => {
    expect(planMasquerade([v4, v6], false, new Set())).toBe('');
    expect(planMasquerade([v4, v6], false, new Set(['inet foreign', 'bridge x']))).toBe('');
    expect(planMasquerade([v4], false, new Set(['ip6 podnet']))).toBe(
      ['add table ip6 podnet', 'add chain ip6 podnet egress-masquerade', 'delete chain ip6 podnet egress-masquerade', ''].join('\n'),
    );
    expect(planMasquerade([v4, v6], false, new Set(['ip podnet', 'ip6 podnet']))).toBe(planMasquerade([v4, v6], false));
    // Enabled: the table is made whatever exists; only the family without a CIDR is skipped when absent.
    expect(planMasquerade([v4], true, new Set())).toBe(planMasquerade([v4], true).split('add table ip6')[0]);
  });

  it('with no cluster CIDR at all, enabled removes everything too', () => {
    expect(planMasquerade([], true)).toBe(planMasquerade([], false));
  });

  it('uses the first CIDR of a family and the network address, never a host address', () => {
    const script = planMasquerade([Cidr.parse('10.42.0.0/16'), Cidr.parse('10.43.0.0/16')], true);
    expect(script.match(/^add rule /gm)).toHaveLength(1);
    expect(script).toContain('ip saddr 10.42.0.0/16 ip daddr != 10.42.0.0/16 ');
    expect(script).not.toContain('10.43.0.0');
  });

  it('rule shape: saddr cluster, daddr not cluster, daddr not multicast, masquerade, comment — in that order', () => {
    const rule = planMasquerade([v4], true)
      .split('\n')
      .find((l) => l.startsWith('add rule '))!;
    const m = /^add rule ip podnet egress-masquerade ip saddr (\S+) ip daddr != (\S+) ip daddr != (\S+) masquerade comment "([^"]+)"$/.exec(rule);
    expect(m?.slice(1)).toEqual(['10.244.0.0/16', '10.244.0.0/16', '224.0.0.0/4', 'podnet: pod egress leaves with the node address']);
    // An nft comment is at most 128 bytes.
    expect(Buffer.byteLength(m![4]!)).toBeLessThanOrEqual(128);
  });

  it('flushes before it adds, so applying it twice leaves one rule', () => {
    const lines = planMasquerade([v4, v6], true).split('\n');
    for (const t of ['ip', 'ip6']) {
      const flush = lines.indexOf(`flush chain ${t} podnet egress-masquerade`);
      const add = lines.findIndex((l) => l.startsWith(`add rule ${t} podnet `));
      expect(flush).toBeGreaterThan(lines.indexOf(`add chain ${t} podnet egress-masquerade { type nat hook postrouting priority srcnat; policy accept; }`));
      expect(add).toBe(flush + 1);
    }
  });
});
