/**
 * The nf_tables executor: one NETLINK_NETFILTER socket bound, at open, to one network
 * namespace (created inside it, like NetlinkHandle), that applies NftTransactions as
 * nfnetlink batches (see encode.ts) and reads tables back for startup and cleanup.
 *
 *   const nft = NftExecutor.open(hostNs);
 *   await nft.apply({ family: 'ip', table: 'podnet', ops });   // one kernel transaction
 *   const t = await nft.listTable('ip', 'podnet');             // chains and sets, or undefined
 *   await nft.deleteTable('ip', 'podnet');                     // false when it was not there
 *
 * How a batch goes: one sendmsg() carries BATCH_BEGIN, the messages, BATCH_END; the kernel
 * processes it inside that call and queues its answers: an error for each message that
 * failed (by seq), and one ACK for the last message, which alone carries NLM_F_ACK. Per-message
 * ACKs would not scale: every ACK is an skb of ~1 KiB truesize, so 200,000 of them overflow
 * any receive buffer (nft does not ask for them either). A GETGEN request sent right after
 * the batch is the fence: its answer comes after everything the batch produced, so when it
 * arrives the batch's outcome is complete. Replies are matched to ops through the seq →
 * op table the encoder returns: O(1) per reply.
 *
 * Size: one sendmsg is at most the socket's send buffer (SO_SNDBUF, capped by the kernel at
 * 2 × net.core.wmem_max: 425,984 bytes with Debian's default wmem_max, less than a full sync
 * of 1,000 Services). Like nft, the executor raises it with SO_SNDBUFFORCE (and the receive
 * buffer with SO_RCVBUFFORCE; CAP_NET_ADMIN, which the agent has) and sets NETLINK_CAP_ACK, so
 * that an error answer does not echo its message: then a transaction of up to
 * 2 × FORCED_SOCKET_BUFFER bytes is one batch, one atomic kernel transaction — a full resync's
 * flushes and the rules and elements that refill them commit together. node-netlink has no
 * setter for these nor gives its fd: `open` finds it among the fds that appeared while it
 * opened the socket (native tuneNetlinkSocket). Where that fails (no CAP_NET_ADMIN), or a
 * transaction is larger still, it is sent as consecutive batches, cut between messages:
 * each batch is atomic, the transaction as a whole is not. When batch k fails, batches before
 * it stay applied and the error says so (context: batch, appliedOps). `maxBatchBytes` reports
 * the limit in force, `atomicBuffers` whether the forced sizes took.
 */
import { closeSync, openSync, readdirSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { getSystemErrorMap } from 'node:util';
import { RawNetlinkSocket } from 'netlink';
import { ErrorCodes, PodnetError } from '../../util/errors.js';
import type { ErrorContext } from '../../util/errors.js';
import { native, nativeCall } from '../native.js';
import type { NetNS } from '../netns.js';
import type { NftBaseChain, NftFamily, NftSet } from './ast.js';
import { decodeChain, decodeSet } from './decode.js';
import { encodeRequest, encodeTransaction, nameBuf } from './encode.js';
import type { EncodedTransaction, SetInfo } from './encode.js';
import { formatOp } from './format.js';
import {
  NETLINK_NETFILTER,
  NFTA_CHAIN,
  NFTA_DATA,
  NFTA_LIST_ELEM,
  NFTA_RULE,
  NFTA_SET_ELEM,
  NFTA_SET_ELEM_LIST,
  NFTA_GEN_ID,
  NFTA_SET,
  NFTA_TABLE,
  NFT_MSG,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_DUMP_INTR,
  NLM_F_REQUEST,
  attrU32,
  nftType,
  parseAttrs,
  parseMessages,
} from './nfnl.js';
import type { NlMsg, NlWriter } from './nfnl.js';
import type { NftTransaction } from './ops.js';

export const DEFAULT_NFT_TIMEOUT_MS = 30_000;
/** What we ask SO_SNDBUF / SO_RCVBUF for; the kernel caps it at 2 × wmem_max / rmem_max. */
export const DEFAULT_SOCKET_BUFFER = 64 << 20;
/**
 * What SO_SNDBUFFORCE / SO_RCVBUFFORCE ask for (the kernel doubles it): a limit, not an
 * allocation — the kernel allocates a batch's skb when it is sent, and receive memory only
 * while answers wait. 256 MiB of batch; answers to ~250,000 failed messages.
 */
export const FORCED_SOCKET_BUFFER = 128 << 20;
const DUMP_RETRIES = 8;

export interface NftExecutorOptions {
  timeoutMs?: number;
  sendBufferBytes?: number;
  recvBufferBytes?: number;
  /** Cut batches at this size (default: what the send buffer allows). */
  maxBatchBytes?: number;
}

/** Socket settings `open` made past the sysctl limits (see the file comment). */
interface ForcedBuffers {
  sndbuf: number;
  rcvbuf: number;
}

/** What the last apply() did. */
export interface NftApplyStats {
  ops: number;
  messages: number;
  batches: number;
  bytes: number;
  /** Encoding (and validation) time. */
  encodeMs: number;
  /** From the first sendmsg to the last fence answer (the kernel works inside sendmsg). */
  kernelMs: number;
  totalMs: number;
  /** nf_tables generation after the transaction. */
  generation?: number;
}

export interface NftTableInfo {
  chains: { name: string; base?: NftBaseChain; comment?: string }[];
  /** Sets and maps (key types, data, flags). Sets of types podnet does not use have key []. */
  sets: NftSet[];
}

/** The part of node-netlink's RawNetlinkSocket the executor uses (a fake one in unit tests). */
export interface NftSocket {
  send(msg: Uint8Array, options: undefined, callback: (error?: Error) => void): void;
  on(event: 'message', listener: (msg: Buffer, rinfo: { port: number }) => void): unknown;
  on(event: 'error', listener: (e: Error & { code?: string }) => void): unknown;
  close(): void;
  setSendBufferSize?(size: number): unknown;
  setRecvBufferSize?(size: number): unknown;
  getSendBufferSize?(): number;
  getRecvBufferSize?(): number;
}

const errnoMap = getSystemErrorMap();
const errnoName = (errno: number) => errnoMap.get(-Math.abs(errno))?.[0] ?? `errno ${Math.abs(errno)}`;
const errnoText = (errno: number) => errnoMap.get(-Math.abs(errno))?.[1] ?? `errno ${Math.abs(errno)}`;

interface Exchange {
  lo: number;
  n: number;
  /** Returns true when the exchange is complete. */
  onMsg(m: NlMsg): boolean;
  resolve(): void;
  reject(e: unknown): void;
}

interface KernelError {
  seq: number;
  errno: number;
}

const cacheKey = (family: NftFamily, table: string) => `${family} ${table}`;

/**
 * The fds open before a socket is opened, less the one it will most likely get: the lowest
 * free fd (a listing of /proc/self/fd holds that very number open while it reads).
 */
function fdsBefore(): Set<number> | undefined {
  try {
    const fds = new Set(readdirSync('/proc/self/fd').map(Number));
    const next = openSync('/dev/null', 'r');
    closeSync(next);
    fds.delete(next);
    return fds;
  } catch {
    return undefined;
  }
}

/**
 * SO_SNDBUFFORCE / SO_RCVBUFFORCE / NETLINK_CAP_ACK on the socket just opened (see the file
 * comment), found among the fds that appeared while it was opened as the NETLINK_NETFILTER
 * socket bound to its port (ports are not unique across namespaces: the first socket of a
 * process in each namespace gets the pid). Undefined when that cannot be done (no
 * CAP_NET_ADMIN, no native addon, not exactly one match, sizes given by the caller).
 */
function forceBuffers(sock: RawNetlinkSocket, before: Set<number> | undefined, opts: NftExecutorOptions): ForcedBuffers | undefined {
  if (!before || opts.sendBufferBytes !== undefined || opts.recvBufferBytes !== undefined) return undefined;
  try {
    const fresh = readdirSync('/proc/self/fd').map(Number).filter((fd) => !before.has(fd));
    const r = native().tuneNetlinkSocket(fresh, NETLINK_NETFILTER, sock.address().port, FORCED_SOCKET_BUFFER, FORCED_SOCKET_BUFFER, true);
    return r ? { sndbuf: r.sndbuf, rcvbuf: r.rcvbuf } : undefined;
  } catch {
    // EPERM without CAP_NET_ADMIN: the sysctl-limited sizes and multi-batch transactions
    return undefined;
  }
}

export class NftExecutor {
  /** The namespace the socket lives in; undefined = the namespace the process started in. */
  readonly netns: NetNS | undefined;
  /** The largest batch one sendmsg can carry here. */
  readonly maxBatchBytes: number;
  /** Receive buffer space the answers to one batch may take (see encode.ts replyCost). */
  readonly replyBudget: number;
  /** True when the socket's buffers were forced past the sysctl limits and errors come without the echoed message (NETLINK_CAP_ACK). */
  readonly atomicBuffers: boolean;
  timeoutMs: number;
  lastApply: NftApplyStats | undefined;
  private readonly sock: NftSocket;
  private seq = 1;
  private current: Exchange | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private closedFlag = false;
  /** Set definitions per table (`family table`): what add-elements / delete-elements need to encode keys. */
  private readonly sets = new Map<string, Map<string, SetInfo>>();

  private constructor(sock: NftSocket, netns: NetNS | undefined, opts: NftExecutorOptions, forced?: ForcedBuffers) {
    this.sock = sock;
    this.netns = netns;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_NFT_TIMEOUT_MS;
    this.atomicBuffers = !!forced;
    if (!forced) {
      // (SO_SNDBUF / SO_RCVBUF after a forced size would cap it at the sysctl limit again)
      sock.setSendBufferSize?.(opts.sendBufferBytes ?? DEFAULT_SOCKET_BUFFER);
      sock.setRecvBufferSize?.(opts.recvBufferBytes ?? DEFAULT_SOCKET_BUFFER);
    }
    // netlink_sendmsg refuses len > sk_sndbuf - 32; keep a little more room.
    const sndbuf = forced?.sndbuf ?? sock.getSendBufferSize?.() ?? Infinity;
    this.maxBatchBytes = Math.max(64 << 10, Math.min(opts.maxBatchBytes ?? Infinity, sndbuf - 256));
    // Room for the answers if every message of a batch failed, less what the last message's
    // ACK and the fence's answer need: an overflow would lose answers, and node-netlink
    // aborts the process on the socket error that follows (PollHandler, ErrnoException(NULL)).
    const rcvbuf = forced?.rcvbuf ?? sock.getRecvBufferSize?.() ?? Infinity;
    this.replyBudget = Math.max(64 << 10, rcvbuf - (32 << 10));
    this.seq = (Math.floor(Math.random() * 0x7fffffff) + 1) >>> 0;
    sock.on('message', (buf) => this.onBuffer(buf));
    sock.on('error', (e) => this.onSocketError(e));
  }

  /** Opens a NETLINK_NETFILTER socket inside `netns` (or in the current namespace). */
  static open(netns?: NetNS, opts: NftExecutorOptions = {}): NftExecutor {
    const make = () => new RawNetlinkSocket(NETLINK_NETFILTER);
    const before = fdsBefore();
    const sock = netns ? nativeCall('opening an nf_tables netlink socket', { netns: netns.label }, () => netns.run(make)) : make();
    const forced = forceBuffers(sock, before, opts);
    return new NftExecutor(sock as unknown as NftSocket, netns, opts, forced);
  }

  /** An executor over an already-open socket (tests use a fake one). */
  static fromSocket(sock: NftSocket, netns?: NetNS, opts: NftExecutorOptions = {}): NftExecutor {
    return new NftExecutor(sock, netns, opts);
  }

  get label(): string {
    return this.netns?.label ?? 'host';
  }

  close(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.current?.reject(new PodnetError(ErrorCodes.NFT, 'the nf_tables socket was closed', { netns: this.label }));
    this.current = undefined;
    this.sock.close();
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /**
   * Applies a transaction: every op, in order, as one nf_tables batch (several consecutive
   * batches when it is larger than one sendmsg can carry; see the file comment). Throws
   * PODNET_INVALID_ARGUMENT for bad input (nothing sent) and PODNET_NFT when the kernel
   * refuses an op: the message names the op in nft syntax and the errno; the context has
   * the neighbouring ops. Equivalent to `nft -f` of the same commands.
   */
  apply(tx: NftTransaction): Promise<void> {
    return this.exclusive(() => this.applyNow(tx));
  }

  /**
   * The table's chains and sets, or undefined when it does not exist. Also refreshes the set
   * cache. Equivalent to `nft list table FAMILY NAME` without the rules.
   */
  listTable(family: NftFamily, name: string): Promise<NftTableInfo | undefined> {
    return this.exclusive(async () => {
      const info = await this.listNow(family, name);
      if (info) this.sets.set(cacheKey(family, name), new Map(info.sets.filter((s) => s.key.length).map((s) => [s.name, s])));
      else this.sets.delete(cacheKey(family, name));
      return info;
    });
  }

  /** Deletes a table; false when it did not exist. Equivalent to `nft delete table FAMILY NAME`, but idempotent. */
  async deleteTable(family: NftFamily, name: string): Promise<boolean> {
    try {
      await this.apply({ family, table: name, ops: [{ op: 'delete-table' }] });
      return true;
    } catch (e) {
      if (e instanceof PodnetError && e.errno === 'ENOENT') {
        this.sets.delete(cacheKey(family, name));
        return false;
      }
      throw e;
    }
  }

  /**
   * The rules of one chain as the kernel sends them (NFT_MSG_NEWRULE payloads, in order; decode
   * with describeRule); [] for an empty or missing chain. Equivalent to `nft list chain FAMILY
   * TABLE CHAIN` without reading any other chain or set: a dump filtered by table and chain.
   */
  chainRules(family: NftFamily, table: string, chain: string): Promise<Buffer[]> {
    const context: ErrorContext = { netns: this.label, family, table, chain };
    const chainName = nameBuf(chain, 'chain', context);
    return this.exclusive(() =>
      this.dump(NFT_MSG.GETRULE, family, NFTA_RULE.TABLE, nameBuf(table, 'table', context), `listing the rules of nft chain ${family} ${table} ${chain}`, context, (w) => w.bytes(NFTA_RULE.CHAIN, chainName), NFT_MSG.NEWRULE),
    );
  }

  /**
   * Every element of one set or map (NFT_MSG_NEWSETELEM payloads; decode with decodeElements).
   * Equivalent to `nft list set FAMILY TABLE SET` (or `list map`).
   */
  setElements(family: NftFamily, table: string, set: string): Promise<Buffer[]> {
    const context: ErrorContext = { netns: this.label, family, table, set };
    const setName = nameBuf(set, 'set', context);
    return this.exclusive(() =>
      this.dump(NFT_MSG.GETSETELEM, family, NFTA_SET_ELEM_LIST.TABLE, nameBuf(table, 'table', context), `listing the elements of nft set ${family} ${table} ${set}`, context, (w) => w.bytes(NFTA_SET_ELEM_LIST.SET, setName), NFT_MSG.NEWSETELEM),
    );
  }

  /**
   * The element of a set that holds `key` (encoded key bytes, see encodeElementKey), or
   * undefined when it has none. Equivalent to `nft get element FAMILY TABLE SET { KEY }`.
   */
  async getElement(family: NftFamily, table: string, set: string, key: Buffer): Promise<Buffer | undefined> {
    const context: ErrorContext = { netns: this.label, family, table, set };
    const setName = nameBuf(set, 'set', context);
    try {
      const out = await this.exclusive(() =>
        this.dump(
          NFT_MSG.GETSETELEM,
          family,
          NFTA_SET_ELEM_LIST.TABLE,
          nameBuf(table, 'table', context),
          `reading an element of nft set ${family} ${table} ${set}`,
          context,
          (w) => {
            w.bytes(NFTA_SET_ELEM_LIST.SET, setName);
            const list = w.nestBegin(NFTA_SET_ELEM_LIST.ELEMENTS);
            const e = w.nestBegin(NFTA_LIST_ELEM);
            const k = w.nestBegin(NFTA_SET_ELEM.KEY);
            w.bytes(NFTA_DATA.VALUE, key);
            w.nestEnd(k);
            w.nestEnd(e);
            w.nestEnd(list);
          },
          NFT_MSG.NEWSETELEM,
          NLM_F_REQUEST | NLM_F_ACK,
        ),
      );
      return out[0];
    } catch (e) {
      if (e instanceof PodnetError && e.errno === 'ENOENT') return undefined;
      throw e;
    }
  }

  // ---- internals ---------------------------------------------------------------------

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.tail.then(fn, fn);
    this.tail = p.catch(() => undefined);
    return p;
  }

  private takeSeqs(n: number): number {
    const s = this.seq;
    this.seq = (this.seq + n) >>> 0;
    if (this.seq === 0) this.seq = 1;
    return s;
  }

  private onBuffer(buf: Buffer): void {
    const ex = this.current;
    if (!ex) return;
    let msgs: NlMsg[];
    try {
      msgs = parseMessages(buf);
    } catch {
      return;
    }
    for (const m of msgs) {
      if (this.current !== ex) return;
      if (((m.seq - ex.lo) >>> 0) >= ex.n) continue; // a late answer to an earlier exchange
      let done = false;
      try {
        done = ex.onMsg(m);
      } catch (e) {
        this.current = undefined;
        ex.reject(e);
        return;
      }
      if (done) {
        this.current = undefined;
        ex.resolve();
        return;
      }
    }
  }

  private onSocketError(e: Error & { code?: string }): void {
    const ex = this.current;
    if (!ex) return;
    this.current = undefined;
    const lost = e.code === 'ENOBUFS';
    ex.reject(
      new PodnetError(
        ErrorCodes.NFT,
        lost ? 'nf_tables answers were lost: the socket receive buffer overflowed (many errors at once)' : `nf_tables socket error: ${e.message}`,
        { netns: this.label },
        { cause: e, ...(e.code ? { errno: e.code } : {}) },
      ),
    );
  }

  /** Sends `bufs` and feeds answers with seq in [lo, lo+n) to onMsg until it returns true. */
  private exchange(bufs: Buffer[], lo: number, n: number, what: string, context: ErrorContext, onMsg: (m: NlMsg) => boolean): Promise<void> {
    if (this.closedFlag) return Promise.reject(new PodnetError(ErrorCodes.NFT, `${what}: the nf_tables socket is closed`, { netns: this.label, ...context }));
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.current === ex) this.current = undefined;
        reject(new PodnetError(ErrorCodes.NETLINK_TIMEOUT, `${what}: no answer from nf_tables in ${this.timeoutMs} ms`, { netns: this.label, ...context }));
      }, this.timeoutMs);
      const ex: Exchange = {
        lo,
        n,
        onMsg,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.current = ex;
      for (const b of bufs) {
        this.sock.send(b, undefined, (err?: Error & { code?: string }) => {
          if (!err || this.current !== ex) return;
          this.current = undefined;
          const errno = err.code;
          const hint = errno === 'EMSGSIZE' ? ` (${b.length} bytes is more than the socket send buffer allows)` : '';
          ex.reject(new PodnetError(errno === 'EPERM' || errno === 'EACCES' ? ErrorCodes.PERMISSION : ErrorCodes.NFT, `${what}: sendmsg failed: ${err.message}${hint}`, { netns: this.label, ...context }, { cause: err, ...(errno ? { errno } : {}) }));
        });
      }
    });
  }

  /** Set definitions for the table, fetched when the transaction refers to a set the cache does not know. */
  private async setsFor(tx: NftTransaction): Promise<Map<string, SetInfo>> {
    const key = cacheKey(tx.family, tx.table);
    let known = this.sets.get(key);
    const added = new Set<string>();
    let needs = false;
    const ref = (name: string) => {
      if (!needs && !added.has(name) && !known?.has(name)) needs = true;
    };
    for (const op of tx.ops ?? []) {
      switch (op?.op) {
        case 'add-set':
          added.add(op.set?.name);
          break;
        case 'delete-table':
          return known ?? new Map();
        case 'add-elements':
        case 'delete-elements':
          ref(op.set);
          break;
        case 'add-rule':
          for (const st of op.rule?.stmts ?? []) {
            if (st?.kind === 'lookup' || st?.kind === 'set-update') ref(st.set);
            else if (st?.kind === 'vmap' || st?.kind === 'dnat-map') ref(st.map);
          }
          break;
        default:
      }
      if (needs) break;
    }
    if (needs) {
      const info = await this.listNow(tx.family, tx.table);
      known = new Map((info?.sets ?? []).filter((s) => s.key.length).map((s) => [s.name, s]));
      this.sets.set(key, known);
    }
    return known ?? new Map();
  }

  private async applyNow(tx: NftTransaction): Promise<void> {
    const t0 = performance.now();
    const context: ErrorContext = { netns: this.label, family: tx?.family, table: tx?.table };
    const key = cacheKey(tx.family, tx.table);
    const sets = await this.setsFor(tx);
    const firstSeq = this.seq;
    let enc: EncodedTransaction;
    try {
      enc = encodeTransaction(tx, { sets, firstSeq, maxBatchBytes: this.maxBatchBytes, replyBudget: this.replyBudget, capAck: this.atomicBuffers });
    } catch (e) {
      if (e instanceof PodnetError) Object.assign(e.context, { netns: this.label });
      throw e;
    }
    const nb = enc.batches.length;
    this.takeSeqs(enc.count + nb);
    const t1 = performance.now();
    let generation: number | undefined;
    let applied = 0;
    for (let k = 0; k < nb; k++) {
      const batch = enc.batches[k]!;
      const fence = (firstSeq + enc.count + k) >>> 0;
      const errors: KernelError[] = [];
      let confirmed = false;
      const getgen = encodeRequest(NFT_MSG.GETGEN, NLM_F_REQUEST, 'unspec', fence, () => undefined);
      try {
        await this.exchange([batch.buf, getgen], firstSeq, enc.count + nb, `applying nft table ${tx.family} ${tx.table}`, { ...context, batch: `${k + 1}/${nb}` }, (m) => {
          if (m.seq === fence) {
            if (m.type === NLMSG_ERROR) errors.push({ seq: m.seq, errno: m.data.readInt32LE(0) });
            else generation = attrU32(parseAttrs(m.data, 4).get(NFTA_GEN_ID));
            return true;
          }
          if (m.type === NLMSG_ERROR) {
            const errno = m.data.readInt32LE(0);
            if (errno !== 0) errors.push({ seq: m.seq, errno });
            else if (m.seq === batch.lastSeq) confirmed = true;
          }
          return false;
        });
      } catch (e) {
        this.sets.delete(key);
        if (e instanceof PodnetError && k > 0) Object.assign(e.context, { appliedOps: applied, note: 'earlier batches of this transaction were applied' });
        throw e;
      }
      if (errors.length) {
        this.sets.delete(key);
        throw this.kernelError(tx, enc, k, errors, applied);
      }
      if (!confirmed) {
        this.sets.delete(key);
        throw new PodnetError(ErrorCodes.NFT, `applying nft table ${tx.family} ${tx.table}: nf_tables did not acknowledge batch ${k + 1} of ${nb} (the transaction's state is unknown)`, { ...context, batch: `${k + 1}/${nb}`, appliedOps: applied });
      }
      applied = batch.lastOp + 1;
    }
    this.sets.set(key, enc.sets);
    const t2 = performance.now();
    this.lastApply = {
      ops: tx.ops.length,
      messages: enc.count - 2 * nb,
      batches: nb,
      bytes: enc.bytes,
      encodeMs: t1 - t0,
      kernelMs: t2 - t1,
      totalMs: t2 - t0,
      ...(generation !== undefined ? { generation } : {}),
    };
  }

  /** The PODNET_NFT error for a batch the kernel refused: the first failing op in nft syntax, its neighbours in the context. */
  private kernelError(tx: NftTransaction, enc: EncodedTransaction, k: number, errors: KernelError[], applied: number): PodnetError {
    const nb = enc.batches.length;
    const idx = (seq: number) => (seq - enc.firstSeq) >>> 0;
    errors.sort((a, b) => idx(a.seq) - idx(b.seq));
    const ops = errors.map((e) => (idx(e.seq) < enc.count ? enc.msgOp[idx(e.seq)]! : -1));
    const first = errors[0]!;
    const opIndex = ops[0]!;
    const name = errnoName(first.errno);
    const where = nb > 1 ? ` (batch ${k + 1} of ${nb})` : '';
    const outcome = k === 0 ? 'nothing was applied' : `ops 0-${applied - 1} (earlier batches) stay applied; this batch was not`;
    const more = errors.length > 1 ? `; ${errors.length - 1} more op(s) failed too` : '';
    const context: ErrorContext = { netns: this.label, family: tx.family, table: tx.table, errors: errors.length, ...(nb > 1 ? { batch: `${k + 1}/${nb}`, appliedOps: applied } : {}) };
    if (opIndex < 0) {
      // An error on BATCH_BEGIN: the kernel refused the batch as a whole (permissions, memory, commit).
      const code = name === 'EPERM' || name === 'EACCES' ? ErrorCodes.PERMISSION : ErrorCodes.NFT;
      const why = code === ErrorCodes.PERMISSION ? 'operation not permitted (podnet must run as root)' : errnoText(first.errno);
      return new PodnetError(code, `nf_tables refused the transaction on table ${tx.family} ${tx.table}${where}: ${why} (${name}); ${outcome}`, context, { errno: name });
    }
    const op = tx.ops[opIndex]!;
    const i = idx(first.seq);
    const elem = enc.msgElem[i]!;
    const text = formatOp(tx, op, elem >= 0 ? { elements: [elem, enc.msgElemCount[i]!] } : {});
    const lines: string[] = [];
    for (let j = Math.max(0, opIndex - 2); j <= Math.min(tx.ops.length - 1, opIndex + 2); j++) {
      lines.push(`${j === opIndex ? '>' : ' '} [${j}] ${j === opIndex ? text : formatOp(tx, tx.ops[j]!)}`);
    }
    const failing = [...new Set(ops.filter((o) => o >= 0))];
    return new PodnetError(ErrorCodes.NFT, `nf_tables refused \`${text}\`${where}: ${errnoText(first.errno)} (${name}); ${outcome}${more}`, { ...context, op: opIndex, input: lines.join('\n'), ...(failing.length > 1 ? { failedOps: failing.slice(0, 10).join(',') } : {}), ...(elem >= 0 ? { elements: `${elem}-${elem + enc.msgElemCount[i]! - 1}` } : {}) }, { errno: name });
  }

  private async listNow(family: NftFamily, name: string): Promise<NftTableInfo | undefined> {
    const context: ErrorContext = { netns: this.label, family, table: name };
    const tableName = nameBuf(name, 'table', context);
    // Does the table exist? (A dump of chains / sets of a missing table is just empty.)
    const seq = this.takeSeqs(1);
    let missing = false;
    await this.exchange([encodeRequest(NFT_MSG.GETTABLE, NLM_F_REQUEST | NLM_F_ACK, family, seq, (w) => w.bytes(NFTA_TABLE.NAME, tableName))], seq, 1, `reading nft table ${family} ${name}`, context, (m) => {
      if (m.type !== NLMSG_ERROR) return false;
      const errno = m.data.readInt32LE(0);
      if (errno === 0) return true;
      if (errnoName(errno) === 'ENOENT') {
        missing = true;
        return true;
      }
      throw new PodnetError(ErrorCodes.NFT, `reading nft table ${family} ${name}: ${errnoText(errno)} (${errnoName(errno)})`, context, { errno: errnoName(errno) });
    });
    if (missing) return undefined;
    const chains = (await this.dump(NFT_MSG.GETCHAIN, family, NFTA_CHAIN.TABLE, tableName, `listing the chains of nft table ${family} ${name}`, context))
      .map(decodeChain)
      .filter((c) => c.table === name)
      .map((c) => ({ name: c.name, ...(c.base ? { base: c.base } : {}), ...(c.comment !== undefined ? { comment: c.comment } : {}) }));
    const sets = (await this.dump(NFT_MSG.GETSET, family, NFTA_SET.TABLE, tableName, `listing the sets of nft table ${family} ${name}`, context))
      .map(decodeSet)
      .filter((s) => s.table === name)
      .map((s) => s.set);
    return { chains, sets };
  }

  /** A dump request, retried while the kernel marks it as interrupted; returns the payloads. */
  private async dump(msg: number, family: NftFamily, tableAttr: number, tableName: Buffer, what: string, context: ErrorContext, more?: (w: NlWriter) => void, reply?: number, flags = NLM_F_REQUEST | NLM_F_DUMP): Promise<Buffer[]> {
    for (let attempt = 1; ; attempt++) {
      const seq = this.takeSeqs(1);
      const out: Buffer[] = [];
      let intr = false;
      await this.exchange([encodeRequest(msg, flags, family, seq, (w) => {
        w.bytes(tableAttr, tableName);
        more?.(w);
      })], seq, 1, what, context, (m) => {
        if (m.flags & NLM_F_DUMP_INTR) intr = true;
        if (m.type === NLMSG_DONE) {
          const errno = m.data.length >= 4 ? m.data.readInt32LE(0) : 0;
          if (errno < 0) throw new PodnetError(ErrorCodes.NFT, `${what}: ${errnoText(errno)} (${errnoName(errno)})`, context, { errno: errnoName(errno) });
          return true;
        }
        if (m.type === NLMSG_ERROR) {
          const errno = m.data.readInt32LE(0);
          if (errno === 0) return true;
          throw new PodnetError(ErrorCodes.NFT, `${what}: ${errnoText(errno)} (${errnoName(errno)})`, context, { errno: errnoName(errno) });
        }
        if (m.type === nftType(reply ?? (msg === NFT_MSG.GETCHAIN ? NFT_MSG.NEWCHAIN : NFT_MSG.NEWSET))) {
          out.push(m.data);
          // A get (not a dump) is answered by the object alone (and the ack, if asked).
          if (!(flags & NLM_F_DUMP)) return true;
        }
        return false;
      });
      if (!intr) return out;
      if (attempt >= DUMP_RETRIES) throw new PodnetError(ErrorCodes.DUMP_INTERRUPTED, `${what}: the dump was interrupted ${attempt} times by concurrent changes`, context);
    }
  }
}
