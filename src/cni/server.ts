/**
 * The agent's end of the podnet-cni socket: a unix stream server that reads one request
 * frame per connection, runs `dispatch` with the agent's CniHandler and writes one
 * response frame back.
 *
 * The socket is a root-only control channel (whoever can connect can add and delete pod
 * networking): its directory is created 0700 and must not be writable by others, the
 * socket file is 0600. A stale socket file left by a crashed agent is removed on
 * listen(); a live one (another agent answers) or a non-socket file at the path is an
 * error, never deleted.
 */
import { chmodSync, lstatSync, mkdirSync, statSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { ErrorCodes, PodnetError, errnoOf } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/log.js';
import { CniError, CniErrorCode } from './errors.js';
import { FrameReader, FrameTooLargeError, MAX_FRAME_BYTES, decodeRequest, encodeFrame, type CniResponse } from './frame.js';
import { dispatch, errorResponse, type CniHandler } from './handler.js';
import { peekCniVersion } from './protocol.js';

/** Where the agent listens unless configured otherwise (the binary's default too). */
export const DEFAULT_SOCKET_PATH = '/run/podnet/cni.sock';

export interface CniServerOptions {
  /** Socket path. Default DEFAULT_SOCKET_PATH. */
  socketPath?: string;
  handler: CniHandler;
  log?: Logger;
  /** Largest request payload accepted. Default 8 MiB (the binary's limit). */
  maxFrameBytes?: number;
  /** The whole request must arrive within this time after connecting. Default 10 s. */
  requestTimeoutMs?: number;
  /**
   * A handler still running after this long is answered with code 11 (it may still
   * finish; the runtime follows a failed ADD with DEL). Default 60 s, below the binary's
   * 90 s so the clearer message wins.
   */
  handlerTimeoutMs?: number;
  /** Connections served at once; more are closed at once (the binary reports 11). Default 1024. */
  maxConnections?: number;
}

/** Serves dispatch(handler) on a unix socket. Constructing it does nothing; call listen(). */
export class CniServer {
  readonly socketPath: string;
  private readonly handler: CniHandler;
  private readonly log: Logger;
  private readonly maxFrameBytes: number;
  private readonly requestTimeoutMs: number;
  private readonly handlerTimeoutMs: number;
  private readonly maxConnections: number;
  private server: Server | undefined;
  /** Connections still sending their request: dropped on close(). */
  private readonly reading = new Set<Socket>();
  /** Requests being handled: close() waits for them. */
  private readonly inFlight = new Set<Promise<void>>();

  constructor(opts: CniServerOptions) {
    this.socketPath = opts.socketPath ?? DEFAULT_SOCKET_PATH;
    this.handler = opts.handler;
    this.log = opts.log ?? silentLogger();
    this.maxFrameBytes = opts.maxFrameBytes ?? MAX_FRAME_BYTES;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 10_000;
    this.handlerTimeoutMs = opts.handlerTimeoutMs ?? 60_000;
    this.maxConnections = opts.maxConnections ?? 1024;
  }

  get listening(): boolean {
    return this.server?.listening ?? false;
  }

  /**
   * Prepares the directory, removes a stale socket and starts accepting connections.
   * Throws PodnetError PERMISSION (unsafe directory), INVALID_ARGUMENT (path in use or
   * not a socket) or the listen error.
   */
  async listen(): Promise<void> {
    if (this.server) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `the CNI server on ${this.socketPath} is already listening`, { socket: this.socketPath });
    if (Buffer.byteLength(this.socketPath) > 107 || !this.socketPath.startsWith('/')) {
      throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `CNI socket path ${this.socketPath} must be absolute and at most 107 bytes`, { socket: this.socketPath });
    }
    this.prepareDirectory();
    await this.removeStaleSocket();
    const server = createServer({ allowHalfOpen: true }, (sock) => this.onConnection(sock));
    server.maxConnections = this.maxConnections;
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error) => reject(new PodnetError(ErrorCodes.INVALID_ARGUMENT, `cannot listen on ${this.socketPath}: ${e.message}`, { socket: this.socketPath }, { cause: e, errno: errnoOf(e) }));
      server.once('error', onError);
      server.listen(this.socketPath, () => {
        server.off('error', onError);
        resolve();
      });
    });
    server.on('error', (e) => this.log.error({ err: e.message, socket: this.socketPath }, 'cni server error'));
    try {
      chmodSync(this.socketPath, 0o600);
    } catch (e) {
      server.close();
      throw new PodnetError(ErrorCodes.PERMISSION, `cannot make ${this.socketPath} private (chmod 0600)`, { socket: this.socketPath }, { cause: e, errno: errnoOf(e) });
    }
    this.server = server;
    this.log.info({ socket: this.socketPath }, 'cni server listening');
  }

  /**
   * Stops accepting, drops connections still sending a request, waits for requests being
   * handled (each bounded by handlerTimeoutMs) and removes the socket file.
   */
  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const sock of this.reading) sock.destroy();
    await Promise.allSettled([...this.inFlight]);
    await closed;
    // Node removes the socket file when the server closes; make sure of it.
    await unlink(this.socketPath).catch(() => undefined);
    this.log.info({ socket: this.socketPath }, 'cni server closed');
  }

  private prepareDirectory(): void {
    const dir = dirname(this.socketPath);
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw new PodnetError(ErrorCodes.PERMISSION, `cannot create the CNI socket directory ${dir}`, { dir }, { cause: e, errno: errnoOf(e) });
    }
    const st = statSync(dir);
    if (!st.isDirectory()) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `${dir} is not a directory`, { dir });
    const uid = process.getuid?.() ?? 0;
    if ((st.mode & 0o022) !== 0 || (st.uid !== uid && st.uid !== 0)) {
      throw new PodnetError(
        ErrorCodes.PERMISSION,
        `the CNI socket directory ${dir} is writable by others or owned by another user (mode ${(st.mode & 0o7777).toString(8)}, uid ${st.uid}); use a private directory`,
        { dir },
      );
    }
  }

  private async removeStaleSocket(): Promise<void> {
    let st;
    try {
      st = lstatSync(this.socketPath);
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return;
      throw e;
    }
    if (!st.isSocket()) {
      throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `${this.socketPath} exists and is not a socket; not removing it`, { socket: this.socketPath });
    }
    const live = await new Promise<boolean>((resolve) => {
      const c = createConnection(this.socketPath);
      const timer = setTimeout(() => {
        c.destroy();
        resolve(true); // accepted but silent: someone is there
      }, 1000);
      c.once('connect', () => {
        clearTimeout(timer);
        c.destroy();
        resolve(true);
      });
      c.once('error', () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (live) {
      throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `another process is already serving ${this.socketPath}`, { socket: this.socketPath });
    }
    await unlink(this.socketPath).catch((e: unknown) => {
      if (errnoOf(e) !== 'ENOENT') throw e;
    });
    this.log.info({ socket: this.socketPath }, 'removed a stale cni socket');
  }

  private onConnection(sock: Socket): void {
    this.reading.add(sock);
    const reader = new FrameReader(this.maxFrameBytes);
    const timer = setTimeout(() => {
      this.log.warn({ bytes: reader.bytes, ms: this.requestTimeoutMs }, 'cni request did not arrive in time; closing');
      sock.destroy();
    }, this.requestTimeoutMs);
    const done = () => {
      clearTimeout(timer);
      this.reading.delete(sock);
      sock.off('data', onData);
    };
    const onData = (chunk: Buffer) => {
      let payload: Buffer | undefined;
      try {
        payload = reader.push(chunk);
      } catch (e) {
        done();
        const msg = e instanceof FrameTooLargeError ? `the request is ${e.length} bytes; the limit is ${e.limit}` : String(e);
        this.reply(sock, errorResponse(new CniError(CniErrorCode.IO_FAILURE, msg)));
        return;
      }
      if (payload === undefined) return;
      done();
      sock.pause();
      this.track(this.serve(sock, payload));
    };
    sock.on('data', onData);
    sock.on('end', () => {
      if (this.reading.has(sock)) {
        done();
        sock.destroy(); // closed before a whole request arrived: nobody to answer
      }
    });
    sock.on('error', (e) => {
      done();
      this.log.debug({ err: e.message }, 'cni connection error');
      sock.destroy();
    });
    sock.on('close', done);
  }

  private async serve(sock: Socket, payload: Buffer): Promise<void> {
    let response: CniResponse;
    try {
      const raw = decodeRequest(payload);
      response = await this.withTimeout(dispatch(raw, this.handler, { log: this.log }), raw.env.CNI_COMMAND ?? 'the request', peekCniVersion(raw.stdin));
    } catch (e) {
      response = errorResponse(e instanceof CniError ? e : new CniError(CniErrorCode.INTERNAL, String(e)));
    }
    this.reply(sock, response);
  }

  private withTimeout(work: Promise<CniResponse>, command: string, cniVersion: string | undefined): Promise<CniResponse> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<CniResponse>((resolve) => {
      timer = setTimeout(() => {
        this.log.warn({ command, ms: this.handlerTimeoutMs }, 'cni handler timed out');
        const err = new CniError(
          CniErrorCode.TRY_AGAIN_LATER,
          `the podnet agent did not finish ${command} within ${this.handlerTimeoutMs} ms`,
          'the operation may still complete; a runtime follows a failed ADD with DEL',
        );
        resolve(errorResponse(err, cniVersion));
      }, this.handlerTimeoutMs);
    });
    return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
  }

  private reply(sock: Socket, response: CniResponse): void {
    if (sock.destroyed) return;
    // Once the frame is flushed the peer has it (a unix socket queues it on its side),
    // so the connection can go even if the peer never closes its end.
    sock.end(encodeFrame(response), () => sock.destroy());
  }

  private track(p: Promise<void>): void {
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }
}
