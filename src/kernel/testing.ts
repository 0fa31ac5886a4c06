/**
 * A fake netlink socket for the kernel room's unit tests (test-only): answers each request
 * with the next queued reply (messages, or an Error to throw), after `delayMs`, and records
 * what was sent and how many requests were in flight at once.
 */
import type { RawMessage, RequestSocket } from './netlink.js';

export type FakeReply = RawMessage[] | Error;

/** struct nlmsgerr: errno (0 = ACK) and the echoed request header. */
export function errorMsg(errno: number): RawMessage {
  const data = Buffer.alloc(20);
  data.writeInt32LE(errno, 0);
  data.writeUInt32LE(16, 4);
  return { type: 2, flags: 0x100, seq: 1, data };
}

export function fakeSocket(replies: FakeReply[], o: { delayMs?: number } = {}) {
  const sent: { type: number; flags: number; body: Buffer }[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const sock: RequestSocket = {
    async request(type: number, data: Uint8Array | Uint8Array[], options?: { flags?: number }) {
      sent.push({ type, flags: Number(options?.flags ?? 0), body: Buffer.concat((Array.isArray(data) ? data : [data]).map((d) => Buffer.from(d))) });
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      if (o.delayMs) await new Promise((r) => setTimeout(r, o.delayMs));
      inFlight--;
      const next = replies.shift();
      if (next === undefined) throw new Error('fake socket: no reply queued');
      if (next instanceof Error) throw next;
      return [next, { port: 0, groups: 0 }] as never;
    },
    close() {},
    on() {
      return undefined;
    },
    address() {
      return { port: 4242 };
    },
  };
  return { sock, sent, calls: sent, maxInFlight: () => maxInFlight };
}
