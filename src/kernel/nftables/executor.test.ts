/**
 * The executor's protocol logic without root, over a fake NETLINK_NETFILTER socket that
 * answers like nfnetlink does: errors by seq for the messages it refuses, an ACK for the
 * one message that asks for it, NEWGEN for the GETGEN fence, dumps ending in DONE.
 */
import { describe, expect, it } from 'vitest';
import { ErrorCodes, PodnetError } from '../../util/errors.js';
import { NftExecutor } from './executor.js';
import type { NftSocket } from './executor.js';
import { NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END, NFTA_GEN_ID, NFTA_SET, NFT_MSG, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_MULTI, NlWriter, nftType, parseMessages } from './nfnl.js';
import type { NlMsg } from './nfnl.js';
import type { NftOp, NftTransaction } from './ops.js';

const ENOENT = -2;
const EPERM = -1;
const EEXIST = -17;

interface Sent {
  kind: 'batch' | 'request';
  msgs: NlMsg[];
}

/** nfnetlink in miniature. `refuse(msg, index)` says which batch messages fail (an errno < 0). */
class FakeNfnl implements NftSocket {
  sent: Sent[] = [];
  refuse: (m: NlMsg, index: number) => number = () => 0;
  /** Answers to the BATCH_BEGIN (an errno for the whole batch). */
  refuseBatch = 0;
  dropAck = false;
  silent = false;
  sets: Buffer[] = [];
  tableExists = true;
  private onMessage: ((b: Buffer, rinfo: { port: number }) => void) | undefined;
  private onError: ((e: Error & { code?: string }) => void) | undefined;
  closed = false;

  on(event: 'message' | 'error', listener: never): unknown {
    if (event === 'message') this.onMessage = listener;
    else this.onError = listener;
    return this;
  }

  close(): void {
    this.closed = true;
  }

  getSendBufferSize(): number {
    return 1 << 20;
  }

  getRecvBufferSize(): number {
    return 1 << 20;
  }

  emitError(code: string): void {
    this.onError?.(Object.assign(new Error(code), { code }));
  }

  private reply(bufs: Buffer[]): void {
    if (!bufs.length) return;
    const all = Buffer.concat(bufs);
    setImmediate(() => this.onMessage?.(all, { port: 0 }));
  }

  private error(of: NlMsg, errno: number): Buffer {
    const b = Buffer.alloc(16 + 4 + 16);
    b.writeUInt32LE(b.length, 0);
    b.writeUInt16LE(NLMSG_ERROR, 4);
    b.writeUInt32LE(of.seq, 8);
    b.writeInt32LE(errno, 16);
    b.writeUInt16LE(of.type, 24);
    b.writeUInt32LE(of.seq, 28);
    return b;
  }

  private msg(type: number, flags: number, seq: number, attrs: (w: NlWriter) => void): Buffer {
    const w = new NlWriter(256);
    const s = w.msgBegin(type, flags, seq, 2);
    attrs(w);
    w.msgEnd(s);
    return Buffer.from(w.buf.subarray(0, w.off));
  }

  send(buf: Uint8Array, _o: undefined, cb: (error?: Error) => void): void {
    const msgs = parseMessages(Buffer.from(buf));
    cb();
    if (this.silent) return;
    const first = msgs[0]!;
    if (first.type === NFNL_MSG_BATCH_BEGIN) {
      this.sent.push({ kind: 'batch', msgs });
      expect(msgs.at(-1)!.type).toBe(NFNL_MSG_BATCH_END);
      if (this.refuseBatch) return this.reply([this.error(first, this.refuseBatch)]);
      const out: Buffer[] = [];
      msgs.slice(1, -1).forEach((m, i) => {
        const errno = this.refuse(m, i);
        if (errno) out.push(this.error(m, errno));
        else if (m.flags & NLM_F_ACK && !this.dropAck) out.push(this.error(m, 0));
      });
      return this.reply(out);
    }
    this.sent.push({ kind: 'request', msgs });
    const type = first.type & 0xff;
    if (type === NFT_MSG.GETGEN) return this.reply([this.msg(nftType(NFT_MSG.NEWGEN), 0, first.seq, (w) => w.u32(NFTA_GEN_ID, 42))]);
    if (type === NFT_MSG.GETTABLE) return this.reply(this.tableExists ? [this.msg(nftType(NFT_MSG.NEWTABLE), 0, first.seq, () => undefined), this.error(first, 0)] : [this.error(first, ENOENT)]);
    if (type === NFT_MSG.GETSET) return this.reply([...this.sets.map((s) => Buffer.concat([header(nftType(NFT_MSG.NEWSET), NLM_F_MULTI, first.seq, s.length), s])), this.msg(NLMSG_DONE, NLM_F_MULTI, first.seq, (w) => w.u32(0, 0))]);
    if (type === NFT_MSG.GETCHAIN) return this.reply([this.msg(NLMSG_DONE, NLM_F_MULTI, first.seq, () => undefined)]);
  }
}

function header(type: number, flags: number, seq: number, payload: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(16 + payload, 0);
  b.writeUInt16LE(type, 4);
  b.writeUInt16LE(flags, 6);
  b.writeUInt32LE(seq, 8);
  return b;
}

const rule = (chain: string, i: number): NftOp => ({ op: 'add-rule', chain, rule: { stmts: [{ kind: 'match', left: { kind: 'payload', field: 'ip saddr' }, op: '==', value: `10.244.0.${i % 250}` }, { kind: 'verdict', verdict: { kind: 'goto', chain: `ep-${i}` } }] } });
const tx = (ops: NftOp[]): NftTransaction => ({ family: 'ip', table: 'podnet', ops });
const basic = tx([{ op: 'add-table' }, { op: 'add-chain', chain: { name: 'svc' } }, rule('svc', 1), rule('svc', 2), rule('svc', 3)]);

const make = (opts = {}) => {
  const fake = new FakeNfnl();
  return { fake, nft: NftExecutor.fromSocket(fake, undefined, opts) };
};

const rejection = async (p: Promise<unknown>): Promise<PodnetError> => {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(PodnetError);
  return e as PodnetError;
};

describe('NftExecutor.apply', () => {
  it('sends one batch and a GETGEN fence; the ACK of the last message confirms it', async () => {
    const { fake, nft } = make();
    await nft.apply(basic);
    expect(fake.sent.map((s) => s.kind)).toEqual(['batch', 'request']);
    const batch = fake.sent[0]!.msgs;
    expect(batch).toHaveLength(2 + 5);
    expect(batch.slice(1, -1).map((m) => m.flags & NLM_F_ACK)).toEqual([0, 0, 0, 0, NLM_F_ACK]);
    expect(fake.sent[1]!.msgs[0]!.type).toBe(nftType(NFT_MSG.GETGEN));
    expect(nft.lastApply).toMatchObject({ ops: 5, messages: 5, batches: 1, generation: 42 });
  });

  it('maps a refused message back to its op: nft syntax, errno, neighbours; PODNET_NFT', async () => {
    const { fake, nft } = make();
    fake.refuse = (_m, i) => (i === 3 ? ENOENT : 0);
    const e = await rejection(nft.apply(basic));
    expect(e.code).toBe(ErrorCodes.NFT);
    expect(e.errno).toBe('ENOENT');
    expect(e.message).toBe('nf_tables refused `add rule ip podnet svc ip saddr 10.244.0.2 goto ep-2`: no such file or directory (ENOENT); nothing was applied');
    expect(e.context).toMatchObject({ op: 3, table: 'podnet', family: 'ip', errors: 1 });
    expect(e.context.input).toBe(
      ['  [1] add chain ip podnet svc', '  [2] add rule ip podnet svc ip saddr 10.244.0.1 goto ep-1', '> [3] add rule ip podnet svc ip saddr 10.244.0.2 goto ep-2', '  [4] add rule ip podnet svc ip saddr 10.244.0.3 goto ep-3'].join('\n'),
    );
  });

  it('reports the first of several refused ops and how many more', async () => {
    const { fake, nft } = make();
    fake.refuse = (_m, i) => (i >= 2 ? EEXIST : 0);
    const e = await rejection(nft.apply(basic));
    expect(e.context.op).toBe(2);
    expect(e.message).toMatch(/2 more op\(s\) failed too/);
    expect(e.context.failedOps).toBe('2,3,4');
  });

  it('names the elements of a refused element message', async () => {
    const { fake, nft } = make();
    fake.refuse = (m) => ((m.type & 0xff) === NFT_MSG.NEWSETELEM ? EEXIST : 0);
    const e = await rejection(
      nft.apply(
        tx([
          { op: 'add-set', set: { name: 'svc', key: ['ipv4_addr', 'inet_proto', 'inet_service'], data: 'verdict' } },
          { op: 'add-elements', set: 'svc', elements: [{ key: ['10.96.0.1', 'tcp', '80'], verdict: { kind: 'accept' } }] },
        ]),
      ),
    );
    expect(e.message).toMatch(/^nf_tables refused `add element ip podnet svc \{ 10\.96\.0\.1 \. tcp \. 80 : accept \}`: file already exists \(EEXIST\)/);
    expect(e.context.elements).toBe('0-0');
  });

  it('an error on BATCH_BEGIN refuses the batch as a whole (EPERM: PODNET_PERMISSION)', async () => {
    const { fake, nft } = make();
    fake.refuseBatch = EPERM;
    const e = await rejection(nft.apply(basic));
    expect(e.code).toBe(ErrorCodes.PERMISSION);
    expect(e.message).toMatch(/podnet must run as root/);
  });

  it('no ACK for the last message: the outcome is unknown, said so', async () => {
    const { fake, nft } = make();
    fake.dropAck = true;
    const e = await rejection(nft.apply(basic));
    expect(e.code).toBe(ErrorCodes.NFT);
    expect(e.message).toMatch(/did not acknowledge batch 1 of 1/);
  });

  it('a transaction larger than a batch: consecutive batches; a failure in batch k says what stays applied', async () => {
    const { fake, nft } = make({ maxBatchBytes: 64 << 10 });
    const ops: NftOp[] = [{ op: 'add-table' }, { op: 'add-chain', chain: { name: 'svc' } }];
    for (let i = 0; i < 3000; i++) ops.push(rule('svc', i));
    await nft.apply(tx(ops));
    const batches = fake.sent.filter((s) => s.kind === 'batch');
    expect(batches.length).toBeGreaterThan(2);
    expect(nft.lastApply!.batches).toBe(batches.length);
    // every batch framed, ACK on its last message, answered before the next was sent
    expect(fake.sent.map((s) => s.kind)).toEqual(batches.flatMap(() => ['batch', 'request']));
    for (const b of batches) expect(b.msgs.at(-2)!.flags & NLM_F_ACK).toBe(NLM_F_ACK);

    fake.sent = [];
    let n = 0;
    fake.refuse = () => (++n === 1000 ? ENOENT : 0);
    const e = await rejection(nft.apply(tx(ops)));
    const sentBatches = fake.sent.filter((s) => s.kind === 'batch').length;
    expect(sentBatches).toBeGreaterThan(1);
    expect(sentBatches).toBeLessThan(batches.length); // stops at the failing batch
    expect(e.message).toMatch(new RegExp(`\\(batch ${sentBatches} of ${batches.length}\\)`));
    expect(e.message).toMatch(/earlier batches\) stay applied; this batch was not/);
    expect(Number(e.context.appliedOps)).toBeGreaterThan(0);
  });

  it('no answer: PODNET_NETLINK_TIMEOUT; a receive overflow (ENOBUFS): PODNET_NFT saying answers were lost', async () => {
    const a = make({ timeoutMs: 50 });
    a.fake.silent = true;
    expect((await rejection(a.nft.apply(basic))).code).toBe(ErrorCodes.NETLINK_TIMEOUT);
    const b = make();
    b.fake.silent = true;
    const p = b.nft.apply(basic);
    setTimeout(() => b.fake.emitError('ENOBUFS'), 5);
    const e = await rejection(p);
    expect(e.code).toBe(ErrorCodes.NFT);
    expect(e.errno).toBe('ENOBUFS');
    expect(e.message).toMatch(/receive buffer overflowed/);
  });

  it('applies one transaction at a time, in call order', async () => {
    const { fake, nft } = make();
    await Promise.all([nft.apply(basic), nft.apply(tx([{ op: 'delete-chain', chain: 'svc' }])), nft.apply(basic)]);
    expect(fake.sent.map((s) => `${s.kind}:${s.msgs.length}`)).toEqual(['batch:7', 'request:1', 'batch:3', 'request:1', 'batch:7', 'request:1']);
  });

  it('reads set definitions it does not know from the kernel once, then keeps them', async () => {
    const { fake, nft } = make();
    const w = new NlWriter(256);
    w.buf.fill(0, 0, 4);
    w.off = 4; // nfgenmsg
    w.bytes(NFTA_SET.TABLE, Buffer.from('podnet\0'));
    w.bytes(NFTA_SET.NAME, Buffer.from('svc\0'));
    w.u32(NFTA_SET.FLAGS, 8);
    w.u32(NFTA_SET.KEY_TYPE, (7 << 12) | (12 << 6) | 13);
    w.u32(NFTA_SET.KEY_LEN, 12);
    w.u32(NFTA_SET.DATA_TYPE, 0xffffff00);
    fake.sets = [Buffer.from(w.buf.subarray(0, w.off))];
    const del = tx([{ op: 'delete-elements', set: 'svc', keys: [['10.96.0.1', 'tcp', '80']] }]);
    await nft.apply(del);
    await nft.apply(del);
    const kinds = fake.sent.map((s) => (s.kind === 'batch' ? 'batch' : String(s.msgs[0]!.type & 0xff)));
    expect(kinds).toEqual([String(NFT_MSG.GETTABLE), String(NFT_MSG.GETCHAIN), String(NFT_MSG.GETSET), 'batch', String(NFT_MSG.GETGEN), 'batch', String(NFT_MSG.GETGEN)]);
    // a set nobody has: an error before anything is sent
    fake.sent = [];
    const e = await rejection(nft.apply(tx([{ op: 'add-elements', set: 'nope', elements: [{ key: ['1.2.3.4'] }] }])));
    expect(e.code).toBe(ErrorCodes.NFT);
    expect(e.message).toMatch(/set "nope" does not exist in table ip podnet/);
    expect(fake.sent.some((s) => s.kind === 'batch')).toBe(false);
  });
});

describe('NftExecutor.listTable / deleteTable', () => {
  it('listTable: undefined when the table does not exist', async () => {
    const { fake, nft } = make();
    fake.tableExists = false;
    expect(await nft.listTable('ip', 'podnet')).toBeUndefined();
  });

  it('deleteTable: true when deleted, false when it was not there (ENOENT), errors otherwise', async () => {
    const { fake, nft } = make();
    expect(await nft.deleteTable('ip', 'podnet')).toBe(true);
    fake.refuse = () => ENOENT;
    expect(await nft.deleteTable('ip', 'podnet')).toBe(false);
    fake.refuse = () => -16; // EBUSY
    expect((await rejection(nft.deleteTable('ip', 'podnet'))).errno).toBe('EBUSY');
  });

  it('close() fails what is in flight and later calls', async () => {
    const { fake, nft } = make();
    fake.silent = true;
    const p = nft.apply(basic);
    await new Promise((r) => setImmediate(r));
    nft.close();
    expect((await rejection(p)).message).toMatch(/closed/);
    expect((await rejection(nft.apply(basic))).message).toMatch(/closed/);
    expect(fake.closed).toBe(true);
  });
});
