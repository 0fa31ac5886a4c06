/**
 * The wire format between the podnet-cni binary and the agent (README.md, "Frame
 * format"): one request frame and one response frame per unix-socket connection.
 *
 *   frame    = 4-byte big-endian unsigned length N, then N bytes of UTF-8 JSON
 *   request  = {"v":1,"env":{"CNI_COMMAND":"ADD",...},"stdin":"<raw stdin text>"}
 *   response = {"exit":0,"stdout":"<text the binary prints>"}
 */
import { CniError, CniErrorCode } from './errors.js';
import { isObject } from './fields.js';
import type { CniRawRequest } from './protocol.js';

/** Bytes of the length prefix. */
export const FRAME_HEADER_BYTES = 4;

/** Largest payload either side accepts (native/src/podnet-cni.c has the same limit). */
export const MAX_FRAME_BYTES = 8 * 1024 * 1024;

/** The request format version ("v"). A request without "v" is version 1. */
export const FRAME_VERSION = 1;

/** What the binary prints on stdout and the status it exits with. */
export interface CniResponse {
  /** Exit status, 0..255: 0 on success, 1 when stdout holds a CNI error object. */
  exit: number;
  stdout: string;
}

/** One frame holding `value` as JSON. */
export function encodeFrame(value: unknown): Buffer {
  const payload = Buffer.from(JSON.stringify(value), 'utf8');
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  frame.writeUInt32BE(payload.length, 0);
  payload.copy(frame, FRAME_HEADER_BYTES);
  return frame;
}

/** Thrown by FrameReader when a frame announces more than its limit. */
export class FrameTooLargeError extends Error {
  constructor(
    readonly length: number,
    readonly limit: number,
  ) {
    super(`the frame announces ${length} bytes; the limit is ${limit}`);
    this.name = 'FrameTooLargeError';
  }
}

/** Collects stream chunks until one whole frame has arrived. */
export class FrameReader {
  private chunks: Buffer[] = [];
  private received = 0;
  private expected: number | undefined;

  constructor(private readonly limit: number = MAX_FRAME_BYTES) {}

  /** Bytes received so far (header included). */
  get bytes(): number {
    return this.received;
  }

  /**
   * Adds a chunk. Returns the payload once the frame is complete (bytes after it are
   * ignored: one frame per connection). Throws FrameTooLargeError as soon as the header
   * announces more than the limit.
   */
  push(chunk: Buffer): Buffer | undefined {
    this.chunks.push(chunk);
    this.received += chunk.length;
    if (this.expected === undefined) {
      if (this.received < FRAME_HEADER_BYTES) return undefined;
      const head = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
      this.chunks = [head];
      this.expected = head.readUInt32BE(0);
      if (this.expected > this.limit) throw new FrameTooLargeError(this.expected, this.limit);
    }
    if (this.received < FRAME_HEADER_BYTES + this.expected) return undefined;
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    return all.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + this.expected);
  }
}

/** Decodes a request payload. Throws CniError 6 when it is not a valid request. */
export function decodeRequest(payload: Buffer): CniRawRequest {
  const bad = (why: string) => new CniError(CniErrorCode.DECODING_FAILURE, `malformed request frame from the podnet-cni binary: ${why}`);
  let doc: unknown;
  try {
    doc = JSON.parse(payload.toString('utf8'));
  } catch (e) {
    throw bad(`not JSON (${(e as Error).message})`);
  }
  if (!isObject(doc)) throw bad('not a JSON object');
  if (doc.v !== undefined && doc.v !== FRAME_VERSION) {
    throw bad(`format version ${JSON.stringify(doc.v)}, this agent speaks ${FRAME_VERSION} (are the binary and the agent from different podnet releases?)`);
  }
  if (!isObject(doc.env)) throw bad('"env" is not an object');
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(doc.env)) {
    if (typeof v !== 'string') throw bad(`env.${k} is not a string`);
    env[k] = v;
  }
  if (typeof doc.stdin !== 'string') throw bad('"stdin" is not a string');
  return { env, stdin: doc.stdin };
}

/** Decodes a response payload; throws an Error when it is not a valid response. */
export function decodeResponse(payload: Buffer): CniResponse {
  const doc: unknown = JSON.parse(payload.toString('utf8'));
  if (!isObject(doc) || typeof doc.stdout !== 'string' || !Number.isInteger(doc.exit) || (doc.exit as number) < 0 || (doc.exit as number) > 255) {
    throw new Error('malformed response frame: expected {"exit":0..255,"stdout":"..."}');
  }
  return { exit: doc.exit as number, stdout: doc.stdout };
}
