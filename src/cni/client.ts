/**
 * A TypeScript client for the agent's CNI socket: sends one request the way the
 * podnet-cni binary does. For tests and tools (the runtime path is the C binary).
 */
import { createConnection } from 'node:net';
import { FrameReader, FRAME_VERSION, decodeResponse, encodeFrame, type CniResponse } from './frame.js';
import type { CniRawRequest } from './protocol.js';

export interface CallOptions {
  /** Gives up (rejects) after this long. Default 90 s, as the binary. */
  timeoutMs?: number;
}

/** Sends `request` to the agent at `socketPath` and resolves with its response. */
export function callAgent(socketPath: string, request: CniRawRequest, opts: CallOptions = {}): Promise<CniResponse> {
  const timeoutMs = opts.timeoutMs ?? 90_000;
  return new Promise<CniResponse>((resolve, reject) => {
    const sock = createConnection(socketPath);
    const reader = new FrameReader();
    const finish = (err: Error | undefined, res?: CniResponse) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(res!);
    };
    const timer = setTimeout(() => finish(new Error(`no answer from ${socketPath} within ${timeoutMs} ms`)), timeoutMs);
    sock.once('connect', () => sock.write(encodeFrame({ v: FRAME_VERSION, env: request.env, stdin: request.stdin })));
    sock.on('data', (chunk: Buffer) => {
      try {
        const payload = reader.push(chunk);
        if (payload) finish(undefined, decodeResponse(payload));
      } catch (e) {
        finish(e as Error);
      }
    });
    sock.once('end', () => finish(new Error(`${socketPath} closed the connection without a complete answer`)));
    sock.once('error', (e) => finish(e));
  });
}
