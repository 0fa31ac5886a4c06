import { describe, expect, it } from 'vitest';
import { isPodnetError } from '../util/errors.js';
import type { PodnetError } from '../util/errors.js';
import { IpamAllocator } from './allocator.js';
import { MemStore } from './memstore.js';
import type { Owner } from './state.js';

const V4 = '10.244.1.0/24';
const V6 = 'fd00:10:244:1::/64';

async function rejection(p: Promise<unknown>): Promise<PodnetError> {
  try {
    await p;
  } catch (e) {
    if (isPodnetError(e)) return e;
    throw e;
  }
  throw new Error('expected a PodnetError, the call succeeded');
}

const ips = (a: { addresses: { ip: string }[] }) => a.addresses.map((x) => x.ip);
const pod = (id: string, extra: Partial<Owner> = {}): Owner => ({ id, namespace: 'default', name: `pod-${id}`, ifname: 'eth0', ...extra });

describe('IpamAllocator: order and skipping', () => {
  it('skips network, gateway and broadcast; fills the subnet in order', async () => {
    const a = await IpamAllocator.open(new MemStore(), { subnets: ['10.244.1.0/29'] });
    const got: string[] = [];
    for (let i = 0; i < 5; i++) got.push(...ips(await a.allocate(pod(`p${i}`))));
    expect(got).toEqual(['10.244.1.2', '10.244.1.3', '10.244.1.4', '10.244.1.5', '10.244.1.6']);
    const e = await rejection(a.allocate(pod('p5')));
    expect(e.code).toBe('PODNET_IPAM_EXHAUSTED');
    expect(e.context).toMatchObject({ subnet: '10.244.1.0/29', family: 4, capacity: 5, owner: 'p5' });
    expect(e.message).toMatch(/10\.244\.1\.0\/29/);
  });

  it('returns what the pod interface needs', async () => {
    const a = await IpamAllocator.open(new MemStore(), { subnets: [V6, V4] });
    const r = await a.allocate(pod('c1', { netns: '/var/run/netns/cni-1' }));
    expect(r).toEqual({
      owner: { id: 'c1', namespace: 'default', name: 'pod-c1', ifname: 'eth0', netns: '/var/run/netns/cni-1' },
      addresses: [
        { family: 4, ip: '10.244.1.2', prefix: 24, gateway: '10.244.1.1', subnet: V4 },
        { family: 6, ip: 'fd00:10:244:1::2', prefix: 64, gateway: 'fd00:10:244:1::1', subnet: V6 },
      ],
    });
    expect(a.subnets).toEqual([V4, V6]);
  });

  it('IPv6 uses the last address of the subnet (no broadcast)', async () => {
    const a = await IpamAllocator.open(new MemStore(), { subnets: ['fd00::/126'] });
    expect(ips(await a.allocate(pod('a')))).toEqual(['fd00::2']);
    expect(ips(await a.allocate(pod('b')))).toEqual(['fd00::3']);
    expect((await rejection(a.allocate(pod('c')))).code).toBe('PODNET_IPAM_EXHAUSTED');
  });

  it('round-robin: a released address is not reused until the subnet wraps', async () => {
    const a = await IpamAllocator.open(new MemStore(), { subnets: ['10.244.1.0/29'] });
    for (const id of ['a', 'b', 'c']) await a.allocate(pod(id));
    expect(ips((await a.release('b'))!)).toEqual(['10.244.1.3']);
    expect(ips(await a.allocate(pod('d')))).toEqual(['10.244.1.5']);
    expect(ips(await a.allocate(pod('e')))).toEqual(['10.244.1.6']);
    expect(ips(await a.allocate(pod('f')))).toEqual(['10.244.1.3']); // wrapped: .2 is a's
    expect((await rejection(a.allocate(pod('g')))).code).toBe('PODNET_IPAM_EXHAUSTED');
  });

  it('keeps the round-robin position across reopen', async () => {
    const s = new MemStore();
    const a = await IpamAllocator.open(s, { subnets: [V4] });
    for (const id of ['a', 'b', 'c']) await a.allocate(pod(id));
    await a.release('c');
    const b = await IpamAllocator.open(new MemStore(s.state()), { subnets: [V4] });
    expect(b.list().map(ips)).toEqual([['10.244.1.2'], ['10.244.1.3']]);
    expect(ips(await b.allocate(pod('d')))).toEqual(['10.244.1.5']);
  });
});

describe('IpamAllocator: idempotency and dual-stack', () => {
  it('asking again for the same owner returns the same addresses, without a write', async () => {
    const s = new MemStore();
    const a = await IpamAllocator.open(s, { subnets: [V4, V6] });
    const first = await a.allocate(pod('x'));
    const writes = s.appended.length;
    const again = await a.allocate(pod('x', { name: 'renamed' }));
    expect(again).toEqual(first); // the first call's metadata is kept
    expect(s.appended.length).toBe(writes);
  });

  it('concurrent calls for one owner share one allocation', async () => {
    const s = new MemStore();
    const a = await IpamAllocator.open(s, { subnets: [V4, V6] });
    const writes = s.appended.length;
    const all = await Promise.all([a.allocate(pod('x')), a.allocate(pod('x')), a.allocate(pod('x'))]);
    expect(new Set(all.map((r) => JSON.stringify(r))).size).toBe(1);
    expect(s.appended.length).toBe(writes + 1);
    expect(a.list()).toHaveLength(1);
  });

  it('one store op per dual-stack allocation; concurrent owners get distinct addresses', async () => {
    const s = new MemStore();
    const a = await IpamAllocator.open(s, { subnets: [V4, V6] });
    const n0 = s.appended.length;
    const all = await Promise.all(Array.from({ length: 200 }, (_, i) => a.allocate(pod(`p${i}`))));
    expect(s.appended.length - n0).toBe(200);
    expect(s.appended.slice(n0).every((ops) => ops.length === 1 && ops[0]!.op === 'alloc' && ops[0]!.ips.length === 2)).toBe(true);
    const v4 = all.map((r) => r.addresses[0]!.ip);
    const v6 = all.map((r) => r.addresses[1]!.ip);
    expect(new Set(v4).size).toBe(200);
    expect(new Set(v6).size).toBe(200);
  });

  it('all-or-none: when one family is exhausted, the other keeps its address', async () => {
    const a = await IpamAllocator.open(new MemStore(), { subnets: ['10.244.1.0/28', 'fd00::/126'] });
    await a.allocate(pod('a'));
    await a.allocate(pod('b'));
    const e = await rejection(a.allocate(pod('c')));
    expect(e.code).toBe('PODNET_IPAM_EXHAUSTED');
    expect(e.context.subnet).toBe('fd00::/126');
    expect(a.usage().map((u) => u.inUse)).toEqual([2, 2]);
    await a.release('a');
    // The failed attempt did not move the IPv4 cursor: the next address is .4.
    expect(ips(await a.allocate(pod('c')))).toEqual(['10.244.1.4', 'fd00::2']);
  });
});

describe('IpamAllocator: release and gc', () => {
  it('release is idempotent', async () => {
    const s = new MemStore();
    const a = await IpamAllocator.open(s, { subnets: [V4] });
    await a.allocate(pod('x'));
    const [r1, r2] = await Promise.all([a.release('x'), a.release('x')]);
    expect(ips(r1!)).toEqual(['10.244.1.2']);
    expect(r2).toEqual(r1); // the second call waited for the first
    expect(await a.release('x')).toBeUndefined();
    expect(await a.release('never-seen')).toBeUndefined();
    expect(s.appended.filter((ops) => ops[0]!.op === 'release')).toHaveLength(1);
    expect(a.list()).toEqual([]);
  });

  it('a release of an allocation still being written waits for it', async () => {
    const s = new MemStore();
    const a = await IpamAllocator.open(s, { subnets: [V4] });
    const alloc = a.allocate(pod('x'));
    const rel = a.release('x');
    expect(ips(await alloc)).toEqual(['10.244.1.2']);
    expect(ips((await rel)!)).toEqual(['10.244.1.2']);
    expect(s.state().allocations.size).toBe(0);
  });

  it('gc releases the allocations whose owner is gone, in one write', async () => {
    const s = new MemStore();
    const a = await IpamAllocator.open(s, { subnets: [V4, V6] });
    for (let i = 0; i < 6; i++) await a.allocate(pod(`p${i}`, { netns: `/run/netns/n${i}` }));
    const seen: Owner[] = [];
    const n0 = s.appended.length;
    const released = await a.gc(async (o) => {
      seen.push(o);
      await new Promise((r) => setTimeout(r, 1));
      return Number(o.id.slice(1)) % 2 === 0;
    });
    expect(seen.map((o) => o.netns)).toEqual(['/run/netns/n0', '/run/netns/n1', '/run/netns/n2', '/run/netns/n3', '/run/netns/n4', '/run/netns/n5']);
    expect(released.map((r) => r.owner.id)).toEqual(['p1', 'p3', 'p5']);
    expect(s.appended.length - n0).toBe(1);
    expect(a.list().map((r) => r.owner.id)).toEqual(['p0', 'p2', 'p4']);
    expect(await a.gc(() => true)).toEqual([]);
  });

  it('gc releases nothing when isAlive throws', async () => {
    const a = await IpamAllocator.open(new MemStore(), { subnets: [V4] });
    await a.allocate(pod('a'));
    await a.allocate(pod('b'));
    await expect(
      a.gc((o) => {
        if (o.id === 'b') throw new Error('cannot tell');
        return false;
      }),
    ).rejects.toThrow('cannot tell');
    expect(a.list()).toHaveLength(2);
  });

  it('gc ignores allocations still being written and ones released meanwhile', async () => {
    const a = await IpamAllocator.open(new MemStore(), { subnets: [V4] });
    await a.allocate(pod('a'));
    const pending = a.allocate(pod('b'));
    let release: Promise<unknown> | undefined;
    const released = await a.gc((o) => {
      release ??= a.release('a'); // released by someone else while gc asks
      return o.id === 'nobody';
    });
    await release;
    await pending;
    expect(released).toEqual([]);
    expect(a.list().map((r) => r.owner.id)).toEqual(['b']);
  });
});

describe('IpamAllocator: store failures', () => {
  it('a failed write allocates nothing', async () => {
    const s = new MemStore();
    const a = await IpamAllocator.open(s, { subnets: ['10.244.1.0/30'] });
    s.failNextAppend();
    expect((await rejection(a.allocate(pod('a')))).code).toBe('PODNET_IPAM_IO');
    expect(a.list()).toEqual([]);
    expect(ips(await a.allocate(pod('b')))).toEqual(['10.244.1.2']); // the only address: it was given back
  });

  it('a failed release keeps the allocation', async () => {
    const s = new MemStore();
    const a = await IpamAllocator.open(s, { subnets: [V4] });
    await a.allocate(pod('a'));
    s.failNextAppend();
    expect((await rejection(a.release('a'))).code).toBe('PODNET_IPAM_IO');
    expect(a.list().map((r) => r.owner.id)).toEqual(['a']);
    expect(ips((await a.release('a'))!)).toEqual(['10.244.1.2']);
  });
});

describe('IpamAllocator: subnets', () => {
  it('refuses a state recorded for other subnets, naming both', async () => {
    const s = new MemStore();
    const a = await IpamAllocator.open(s, { subnets: [V4] });
    await a.allocate(pod('a'));
    const e = await rejection(IpamAllocator.open(s, { subnets: ['10.244.2.0/24'] }));
    expect(e.code).toBe('PODNET_IPAM_SUBNET_MISMATCH');
    expect(e.context).toEqual({ recorded: V4, configured: '10.244.2.0/24' });
    expect(e.message).toContain(V4);
    expect(e.message).toContain('10.244.2.0/24');
    // Adding a family is a change too.
    expect((await rejection(IpamAllocator.open(s, { subnets: [V4, V6] }))).code).toBe('PODNET_IPAM_SUBNET_MISMATCH');
    // The same subnets in another order or spelling are not.
    await IpamAllocator.open(s, { subnets: ['10.244.1.0/24'] });
  });

  it('reconfigure records the new subnets and releases what does not fit, in one op', async () => {
    const s = new MemStore();
    const a = await IpamAllocator.open(s, { subnets: [V4] });
    await a.allocate(pod('a'));
    await a.allocate(pod('b'));
    const n0 = s.appended.length;
    const { allocator, released } = await IpamAllocator.reconfigure(s, { subnets: ['10.244.2.0/24', V6] });
    expect(s.appended.length - n0).toBe(1);
    expect(released.map((r) => [r.owner.id, r.addresses[0]!.ip, r.addresses[0]!.subnet])).toEqual([
      ['a', '10.244.1.2', V4],
      ['b', '10.244.1.3', V4],
    ]);
    expect(allocator.list()).toEqual([]);
    expect(ips(await allocator.allocate(pod('c')))).toEqual(['10.244.2.2', 'fd00:10:244:1::2']);
    // Reconfiguring to the same subnets is a plain open.
    const same = await IpamAllocator.reconfigure(s, { subnets: ['10.244.2.0/24', V6] });
    expect(same.released).toEqual([]);
    expect(same.allocator.list()).toHaveLength(1);
  });

  it.each([
    [['10.244.1.0/31'], 'PODNET_INVALID_ARGUMENT', /at most 30/],
    [['fd00::/127'], 'PODNET_INVALID_ARGUMENT', /at most 126/],
    [['10.244.1.0/24', '10.244.2.0/24'], 'PODNET_INVALID_ARGUMENT', /both IPv4/],
    [[], 'PODNET_INVALID_ARGUMENT', /one node subnet/],
    [['10.244.1.1/24'], 'PODNET_INVALID_CIDR', /host bits/],
  ])('rejects subnets %j', async (subnets, code, msg) => {
    const e = await rejection(IpamAllocator.open(new MemStore(), { subnets }));
    expect(e.code).toBe(code);
    expect(e.message).toMatch(msg);
  });

  it('rejects bad owners naming the field', async () => {
    const a = await IpamAllocator.open(new MemStore(), { subnets: [V4] });
    const cases: [unknown, string][] = [
      [{ id: '' }, 'owner.id'],
      [{ id: 'a b' }, 'owner.id'],
      [{ id: 'x'.repeat(257) }, 'owner.id'],
      [{ id: 'ok', ifname: 'a/b' }, 'owner.ifname'],
      [{ id: 'ok', name: 'x\n' }, 'owner.name'],
      [null, 'owner'],
    ];
    for (const [owner, field] of cases) {
      const e = await rejection(a.allocate(owner as Owner));
      expect(e.context.field, JSON.stringify(owner)).toBe(field);
    }
    expect((await rejection(a.release('../x'))).context.field).toBe('ownerId');
    expect(a.list()).toEqual([]);
  });
});
