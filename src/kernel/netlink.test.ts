/**
 * The netlink handle without a kernel: a fake socket answers requests, so error mapping,
 * the dump-interruption retry and request ordering are checked without root.
 */
import { describe, expect, it, vi } from 'vitest';
import { MAX_IN_FLIGHT, NetlinkHandle, NLM_F } from './netlink.js';
import type { RawMessage } from './netlink.js';
import { errorMsg, fakeSocket as fakeNetlink } from './testing.js';
import type { FakeReply } from './testing.js';
import { PodnetError } from '../util/errors.js';

const fakeSocket = (replies: FakeReply[]) => fakeNetlink(replies, { delayMs: 1 });

const linkMsg = (flags: number = NLM_F.MULTI): RawMessage => ({ type: 16, flags, seq: 1, data: Buffer.alloc(16) });

describe('NetlinkHandle', () => {
  it('turns NLMSG_ERROR into a PODNET_NETLINK error with the errno name and context', async () => {
    const { sock } = fakeSocket([[errorMsg(-17)]]);
    const h = NetlinkHandle.fromSocket(sock);
    const err = await h.request(16, [], NLM_F.CREATE | NLM_F.EXCL, { what: 'creating bridge link br0', context: { link: 'br0' } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PodnetError);
    expect(err).toMatchObject({ code: 'PODNET_NETLINK', errno: 'EEXIST', context: { netns: 'host', link: 'br0' } });
    expect(String(err)).toBe('PODNET_NETLINK: creating bridge link br0: file already exists (netns=host, link=br0)');
  });

  it('maps EPERM to PODNET_PERMISSION with a hint', async () => {
    const { sock } = fakeSocket([[errorMsg(-1)]]);
    const err = await NetlinkHandle.fromSocket(sock).request(16, [], 0, { what: 'x' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'PODNET_PERMISSION', errno: 'EPERM' });
    expect(String(err)).toMatch(/must run as root/);
  });

  it('an ACK (errno 0) resolves with no messages; replies pass through', async () => {
    const { sock, calls } = fakeSocket([[errorMsg(0)], [linkMsg(0)]]);
    const h = NetlinkHandle.fromSocket(sock);
    expect(await h.request(16, [], 0, { what: 'x' })).toEqual([]);
    expect(await h.request(18, [], 0, { what: 'y' })).toHaveLength(1);
    expect(calls.map((c) => c.type)).toEqual([16, 18]);
  });

  it('retries a dump while the kernel marks it interrupted, then returns the clean one', async () => {
    const { sock, calls } = fakeSocket([[linkMsg(), linkMsg(NLM_F.MULTI | NLM_F.DUMP_INTR)], [linkMsg(NLM_F.MULTI | NLM_F.DUMP_INTR)], [linkMsg(), linkMsg(), linkMsg()]]);
    const msgs = await NetlinkHandle.fromSocket(sock).dump(18, [], { what: 'listing links' });
    expect(msgs).toHaveLength(3);
    expect(calls).toHaveLength(3);
    expect(calls.every((c) => (c.flags & NLM_F.DUMP) === NLM_F.DUMP)).toBe(true);
  });

  it('gives up after repeated interruptions with PODNET_DUMP_INTERRUPTED', async () => {
    const { sock, calls } = fakeSocket(Array.from({ length: 20 }, () => [linkMsg(NLM_F.MULTI | NLM_F.DUMP_INTR)]));
    const err = await NetlinkHandle.fromSocket(sock).dump(18, [], { what: 'listing links' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'PODNET_DUMP_INTERRUPTED' });
    expect(calls).toHaveLength(8);
  });

  it('reports a timeout as PODNET_NETLINK_TIMEOUT', async () => {
    const { sock } = fakeSocket([new Error('Timeout has been reached')]);
    const err = await NetlinkHandle.fromSocket(sock).request(16, [], 0, { what: 'creating link x' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'PODNET_NETLINK_TIMEOUT' });
  });

  it('a kernel that never answers: PODNET_NETLINK_TIMEOUT after timeoutMs (not the socket backstop, 4x later)', async () => {
    const sock = { ...fakeNetlink([]).sock, request: () => new Promise<never>(() => undefined) };
    const h = NetlinkHandle.fromSocket(sock);
    h.timeoutMs = 30;
    const t0 = Date.now();
    const err = await h.request(16, [], 0, { what: 'creating link x' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'PODNET_NETLINK_TIMEOUT', message: 'creating link x: no answer from the kernel in 30 ms' });
    expect(Date.now() - t0).toBeLessThan(30 * 4);
  });

  it('a reply that arrived while the event loop was blocked past the deadline is taken, not a timeout', async () => {
    // After a long synchronous stretch the expired timer runs before the poll phase hands
    // over a reply that arrived meanwhile: here the timer fires (fake clock), then the
    // reply is delivered (as the poll phase would), and only then does the loop turn.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      let deliver: ((v: never) => void) | undefined;
      const sock = { ...fakeNetlink([]).sock, request: () => new Promise<never>((resolve) => (deliver = resolve)) };
      const h = NetlinkHandle.fromSocket(sock);
      h.timeoutMs = 20;
      const result = h.request(16, [], 0, { what: 'creating link x' }).then(
        () => 'answered',
        (e: unknown) => e,
      );
      await Promise.resolve();
      vi.advanceTimersByTime(25);
      deliver!([[errorMsg(0)], { port: 0, groups: 0 }] as never);
      expect(await result).toBe('answered');
    } finally {
      vi.useRealTimers();
    }
  });

  it('pipelines requests in call order; a dump waits for them and later requests wait for the dump', async () => {
    const { sock, calls, maxInFlight } = fakeSocket([[errorMsg(0)], [errorMsg(-19)], [errorMsg(0)], [linkMsg()], [errorMsg(0)]]);
    const h = NetlinkHandle.fromSocket(sock);
    const sentBeforeDump: number[] = [];
    const results = await Promise.allSettled([
      h.request(1, [], 0, { what: 'a' }),
      h.request(2, [], 0, { what: 'b' }),
      h.request(3, [], 0, { what: 'c' }),
      h.dump(4, [], { what: 'd' }).then((r) => {
        sentBeforeDump.push(calls.length);
        return r;
      }),
      h.request(5, [], 0, { what: 'e' }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled']);
    expect(calls.map((c) => c.type)).toEqual([1, 2, 3, 4, 5]);
    expect(maxInFlight()).toBe(3); // the three requests were in flight together, the dump alone
    expect(sentBeforeDump).toEqual([4]); // request 5 was not sent before the dump completed
  });

  it('refuses requests after close', async () => {
    const { sock } = fakeSocket([]);
    const h = NetlinkHandle.fromSocket(sock);
    h.close();
    await expect(h.request(16, [], 0, { what: 'x' })).rejects.toThrow(/handle is closed/);
  });

  it(`keeps at most ${MAX_IN_FLIGHT} requests in flight, the rest queued in call order`, async () => {
    const n = MAX_IN_FLIGHT * 3;
    const { sock, calls, maxInFlight } = fakeSocket(Array.from({ length: n }, () => []));
    const h = NetlinkHandle.fromSocket(sock);
    const done = await Promise.all(Array.from({ length: n }, (_, i) => h.request(100 + i, [], 0, { what: `request ${i}` })));
    expect(done).toHaveLength(n);
    expect(maxInFlight()).toBe(MAX_IN_FLIGHT);
    expect(calls.map((c) => c.type)).toEqual(Array.from({ length: n }, (_, i) => 100 + i));
  });
});
