import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { validateIfName, validateNetnsName } from '../util/validate.js';
import { DEFAULT_NETNS_PREFIX, cniOwnerId, hostVethName, podNetnsName, validateNetnsPrefix, validateOwnerId } from './names.js';
import { failure } from '../testing/errors.js';


// RFC 1123 names as Kubernetes has them: a namespace is a label (<= 63), a pod name a subdomain (<= 253).
const ALNUM = 'abcdefghijklmnopqrstuvwxyz0123456789';
const alnum = fc.constantFrom(...ALNUM);
// Half small, half spread up to the limits (fast-check's default sizes stay far below 64).
const label = (max: number) =>
  fc.oneof(
    alnum,
    ...(['small', 'max'] as const).map((size) =>
      fc.tuple(alnum, fc.string({ unit: fc.constantFrom(...`${ALNUM}-`), maxLength: max - 2, size }), alnum).map(([a, m, b]) => `${a}${m}${b}`),
    ),
  );
const namespaceArb = label(63);
const podNameArb = fc
  .array(label(63), { minLength: 1, maxLength: 6, size: 'max' })
  .map((ls) => ls.join('.'))
  .filter((s) => s.length <= 253);
const prefixArb = fc
  .tuple(fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'), fc.string({ unit: fc.constantFrom(...`${ALNUM}ABC_.-`), maxLength: 39 }))
  .map(([a, b]) => `${a}${b}`)
  .filter((p) => !p.includes('..'));

describe('podNetnsName', () => {
  it('is readable for short names', () => {
    expect(DEFAULT_NETNS_PREFIX).toBe('pn-');
    expect(podNetnsName('pn-', 'default', 'web')).toBe('pn-default.web');
    expect(podNetnsName('pnt-4242-node-1-', 'kube-system', 'coredns-5d78c9869d-abcde')).toBe('pnt-4242-node-1-kube-system.coredns-5d78c9869d-abcde');
  });

  it('keeps names up to 63 characters whole and hashes longer ones into exactly 64', () => {
    const at63 = podNetnsName('pn-', 'default', 'a'.repeat(63 - 'pn-default.'.length));
    expect(at63).toBe(`pn-default.${'a'.repeat(52)}`);
    const at64 = podNetnsName('pn-', 'default', 'a'.repeat(64 - 'pn-default.'.length));
    expect(at64).toHaveLength(64);
    expect(at64).toMatch(/^pn-default\.a{42}-[0-9a-f]{10}$/);
  });

  it('hashes long names, keeping a readable head', () => {
    const n = podNetnsName('pn-', 'team-payments-production', `checkout-api-${'x'.repeat(80)}.example`);
    expect(n).toHaveLength(64);
    expect(n.startsWith('pn-team-payments-production.checkout-api-')).toBe(true);
    expect(n).toMatch(/-[0-9a-f]{10}$/);
    expect(validateNetnsName(n)).toBe(n);
  });

  it('is distinct for long names that share their head', () => {
    const head = 'a'.repeat(100);
    const names = ['1', '2', 'x.y', 'x-y'].map((tail) => podNetnsName('pn-', 'default', `${head}${tail}`));
    expect(new Set(names).size).toBe(names.length);
    for (const n of names) expect(n.startsWith(`pn-default.${'a'.repeat(42)}-`)).toBe(true);
  });

  it('cannot be chosen by one pod to equal another pod\'s hashed name', () => {
    // A victim with a long name gets a hashed 64-character name; a readable name is at
    // most 63 characters, so a pod named after the victim's hashed name gets another one.
    const victim = podNetnsName('pn-', 'default', 'a'.repeat(70));
    const crafted = victim.slice('pn-default.'.length);
    expect(podNetnsName('pn-', 'default', crafted)).not.toBe(victim);
  });

  it('is stable', () => {
    expect(podNetnsName('pn-', 'default', 'b'.repeat(200))).toBe(podNetnsName('pn-', 'default', 'b'.repeat(200)));
  });

  it('is always a valid netns name of at most 64 characters, for any RFC 1123 namespace, name and valid prefix', () => {
    fc.assert(
      fc.property(prefixArb, namespaceArb, podNameArb, (prefix, ns, name) => {
        validateNetnsPrefix(prefix);
        const n = podNetnsName(prefix, ns, name);
        expect(n.length).toBeLessThanOrEqual(64);
        expect(validateNetnsName(n)).toBe(n);
        const full = `${prefix}${ns}.${name}`;
        if (full.length < 64) expect(n).toBe(full);
        else expect(n).toBe(`${full.slice(0, 53)}-${n.slice(-10)}`);
      }),
      { numRuns: 500 },
    );
  });

  it('gives different pods different names', () => {
    fc.assert(
      fc.property(namespaceArb, podNameArb, namespaceArb, podNameArb, (ns1, name1, ns2, name2) => {
        fc.pre(ns1 !== ns2 || name1 !== name2);
        expect(podNetnsName('pn-', ns1, name1)).not.toBe(podNetnsName('pn-', ns2, name2));
      }),
      { numRuns: 500 },
    );
  });
});

describe('hostVethName', () => {
  it('is pn + 11 hex, within IFNAMSIZ, and stable', () => {
    const n = hostVethName('6a1f0c2e-5b7d-4e8a-9c3f-0d1e2f3a4b5c');
    expect(n).toMatch(/^pn[0-9a-f]{11}$/);
    expect(n).toHaveLength(13);
    expect(validateIfName(n)).toBe(n);
    expect(hostVethName('6a1f0c2e-5b7d-4e8a-9c3f-0d1e2f3a4b5c')).toBe(n);
  });

  it('has the shape the garbage collector looks for, for any owner', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 300 }), (owner) => {
        const n = hostVethName(owner);
        expect(n).toMatch(/^pn[0-9a-f]{11}$/);
        expect(Buffer.byteLength(n)).toBeLessThanOrEqual(15);
      }),
    );
  });

  it('is distinct for distinct owners', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.uuid(), { minLength: 2, maxLength: 200 }), (uids) => {
        expect(new Set(uids.map(hostVethName)).size).toBe(uids.length);
      }),
      { numRuns: 50 },
    );
    const cni = ['eth0', 'eth1', 'net1'].map((ifname) => hostVethName(cniOwnerId('c0ffee', ifname)));
    expect(new Set(cni).size).toBe(3);
  });
});

describe('validateOwnerId', () => {
  it.each([
    '6a1f0c2e-5b7d-4e8a-9c3f-0d1e2f3a4b5c',
    'cni-0123456789abcdef-eth0-0a1b2c3d',
    'a',
    'A_b.c-d',
    '_x',
    'x'.repeat(200),
  ])('accepts %j', (id) => expect(validateOwnerId(id)).toBe(id));

  it.each([
    ['', 'empty'],
    ['.', '"."'],
    ['..', '".."'],
    ['.hidden', 'a leading "."'],
    ['/', '"/"'],
    ['a/b', 'a "/"'],
    ['../../etc/passwd', 'a path'],
    ['a b', 'a space'],
    ['a\0b', 'a NUL'],
    ['ä', 'a non-ASCII letter'],
    ['x'.repeat(201), 'over 200 characters'],
  ])('refuses %j (%s)', (id) => {
    const e = failure(() => validateOwnerId(id, 'pod uid'));
    expect(e.code).toBe('PODNET_INVALID_NAME');
    expect(e.message.startsWith('pod uid ')).toBe(true);
    expect(e.context.field).toBe('pod uid');
  });

  it.each([42, null, undefined, { id: 'x' }])('refuses the non-string %j', (id) => {
    expect(failure(() => validateOwnerId(id)).code).toBe('PODNET_INVALID_NAME');
  });
});

describe('cniOwnerId', () => {
  it('names a container\'s interface: readable, with a hash of the pair', () => {
    expect(cniOwnerId('0123456789abcdef', 'eth0')).toMatch(/^cni-0123456789abcdef-eth0-[0-9a-f]{8}$/);
    expect(cniOwnerId('a'.repeat(64), 'net1')).toMatch(new RegExp(`^cni-${'a'.repeat(64)}-net1-[0-9a-f]{8}$`));
    expect(cniOwnerId('c0ffee', 'eth0')).toBe(cniOwnerId('c0ffee', 'eth0'));
  });

  it('never gives two attachments one id, even when the parts contain the separator', () => {
    expect(cniOwnerId('a-b', 'c')).not.toBe(cniOwnerId('a', 'b-c'));
  });

  it.each([
    ['../../etc', 'eth0'],
    ['abc/def', 'eth0'],
    ['abc', 'eth/0'],
    ['abc def', 'eth0'],
    ['a'.repeat(200), 'eth0'],
  ])('refuses container %j interface %j', (containerId, ifname) => {
    const e = failure(() => cniOwnerId(containerId, ifname));
    expect(e.code).toBe('PODNET_INVALID_NAME');
    expect(e.message.startsWith('CNI attachment ')).toBe(true);
  });
});

describe('validateNetnsPrefix', () => {
  it.each(['pn-', 'pnt-4242-node-1-', 'A', 'a.b_c-', 'p'.repeat(40)])('accepts %j', (p) => expect(validateNetnsPrefix(p)).toBe(p));

  it.each([
    ['', 'empty'],
    ['.', '"."'],
    ['..', '".."'],
    ['/', '"/"'],
    ['pn/', 'a "/"'],
    ['../pn-', 'a path'],
    ['pn..', 'holding ".."'],
    ['a..b-', 'holding ".." inside'],
    ['-pn', 'a leading "-"'],
    ['_pn', 'a leading "_"'],
    ['.pn', 'a leading "."'],
    ['p n', 'a space'],
    ['p'.repeat(41), 'over 40 characters'],
  ])('refuses %j (%s)', (p) => {
    const e = failure(() => validateNetnsPrefix(p, '--netns-prefix'));
    expect(e.code).toBe('PODNET_INVALID_NAME');
    expect(e.message.startsWith('--netns-prefix ')).toBe(true);
  });

  it.each([undefined, null, 7])('refuses the non-string %j', (p) => expect(failure(() => validateNetnsPrefix(p)).code).toBe('PODNET_INVALID_NAME'));

  it('accepts only prefixes that give valid netns names', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(...'ab0_.-/'), minLength: 1, maxLength: 12 }), (p) => {
        let ok = true;
        try {
          validateNetnsPrefix(p);
        } catch {
          ok = false;
        }
        if (ok) expect(() => podNetnsName(p, 'default', 'web')).not.toThrow();
      }),
      { numRuns: 1000 },
    );
  });
});
