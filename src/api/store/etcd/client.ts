/**
 * The etcd v3 calls the etcd store makes — KV.Range, KV.Txn, KV.Compact and the Watch
 * stream — as typed functions over ./grpc.ts and ./proto.ts. Nothing more: no retries, no
 * key prefixes (the store does both).
 */
import { FRAME_HEADER, GrpcClient, GrpcError, Status, frame } from './grpc.js';
import type { GrpcClientOptions, StreamHandlers } from './grpc.js';
import {
  ProtoError,
  decodeCompactionResponse,
  decodeRangeResponse,
  decodeTxnResponse,
  decodeWatchResponse,
  encodeCompactionRequest,
  encodeRangeRequest,
  encodeTxnRequest,
  encodeWatchRequest,
} from './proto.js';
import type { CompactionRequest, CompactionResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse, WatchRequest, WatchResponse } from './proto.js';

const RANGE = '/etcdserverpb.KV/Range';
const TXN = '/etcdserverpb.KV/Txn';
const COMPACT = '/etcdserverpb.KV/Compact';
const WATCH = '/etcdserverpb.Watch/Watch';

/** A response etcd sent that does not decode: treated like a broken connection (INTERNAL). */
function decoded<T>(decode: (b: Buffer) => T): (b: Buffer) => T {
  return (b) => {
    try {
      return decode(b);
    } catch (e) {
      if (e instanceof ProtoError) throw new GrpcError(Status.INTERNAL, `undecodable response: ${e.message}`, { cause: e });
      throw e;
    }
  };
}

const rangeResponse = decoded(decodeRangeResponse);
const txnResponse = decoded(decodeTxnResponse);
const compactionResponse = decoded(decodeCompactionResponse);

export interface WatchStreamHandlers {
  onResponse(res: WatchResponse): void;
  /** As StreamHandlers.onEnd: undefined when etcd ended the stream with status OK. */
  onEnd(err: GrpcError | undefined): void;
}

export interface WatchStream {
  send(req: WatchRequest): void;
  /** Cancels the call: etcd drops every watcher of the stream. */
  close(): void;
}

export class EtcdClient {
  private readonly grpc: GrpcClient;

  constructor(opts: GrpcClientOptions) {
    this.grpc = new GrpcClient(opts);
  }

  get isClosed(): boolean {
    return this.grpc.isClosed;
  }

  /** KV.Range. `deadline`: absolute, ms since the epoch. */
  range(req: RangeRequest, deadline: number): Promise<RangeResponse> {
    return this.grpc.unary(RANGE, frame(encodeRangeRequest(req, FRAME_HEADER)), { deadline }).then(rangeResponse);
  }

  /** KV.Txn. */
  txn(req: TxnRequest, deadline: number): Promise<TxnResponse> {
    return this.grpc.unary(TXN, frame(encodeTxnRequest(req, FRAME_HEADER)), { deadline }).then(txnResponse);
  }

  /** KV.Compact. */
  compact(req: CompactionRequest, deadline: number): Promise<CompactionResponse> {
    return this.grpc.unary(COMPACT, frame(encodeCompactionRequest(req, FRAME_HEADER)), { deadline }).then(compactionResponse);
  }

  /** A Watch stream on some member. Requests sent before it is open are queued. */
  watch(handlers: WatchStreamHandlers): WatchStream {
    let ended = false;
    const h: StreamHandlers = {
      onMessage(msg) {
        if (ended) return;
        let res: WatchResponse;
        try {
          res = decodeWatchResponse(msg);
        } catch (e) {
          ended = true;
          stream.close();
          handlers.onEnd(new GrpcError(Status.INTERNAL, `undecodable watch response: ${(e as Error).message}`, { cause: e }));
          return;
        }
        handlers.onResponse(res);
      },
      onEnd(err) {
        if (ended) return;
        ended = true;
        handlers.onEnd(err);
      },
    };
    const stream = this.grpc.stream(WATCH, h);
    return {
      send: (req) => stream.write(frame(encodeWatchRequest(req, FRAME_HEADER))),
      close: () => {
        ended = true;
        stream.close();
      },
    };
  }

  close(): void {
    this.grpc.close();
  }
}
