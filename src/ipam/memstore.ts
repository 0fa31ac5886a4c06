/**
 * An in-memory IpamStore for tests: the same semantics as FileStore (ordered appends,
 * all-or-none per call, resolved after a turn of the event loop), plus a log of every
 * append and failure injection.
 */
import { ErrorCodes, PodnetError } from '../util/errors.js';
import { applyOp, cloneState, emptyState } from './state.js';
import type { IpamOp, IpamState, IpamStore } from './state.js';

export class MemStore implements IpamStore {
  /** Every append call that succeeded, in order. */
  readonly appended: IpamOp[][] = [];
  private readonly st: IpamState;
  private closed = false;
  private failNext: PodnetError | undefined;
  private tail: Promise<void> = Promise.resolve();

  /** Starts from a copy of `initial` (empty by default). */
  constructor(initial?: IpamState) {
    this.st = initial ? cloneState(initial) : emptyState();
  }

  state(): IpamState {
    return cloneState(this.st);
  }

  append(ops: readonly IpamOp[]): Promise<void> {
    if (this.closed) return Promise.reject(new PodnetError(ErrorCodes.IPAM_CLOSED, 'the IPAM memory store is closed', {}));
    const copy = ops.map((op) => structuredClone(op));
    const run = this.tail.then(
      () =>
        new Promise<void>((resolve, reject) =>
          setImmediate(() => {
            const fail = this.failNext;
            this.failNext = undefined;
            if (fail) return reject(fail);
            for (const op of copy) applyOp(this.st, op);
            this.appended.push(copy);
            resolve();
          }),
        ),
    );
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** The next append fails with `error` (PODNET_IPAM_IO by default) and changes nothing. */
  failNextAppend(error = new PodnetError(ErrorCodes.IPAM_IO, 'injected write failure', {})): void {
    this.failNext = error;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.tail;
  }
}
