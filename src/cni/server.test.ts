import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync, readFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isPodnetError } from '../util/errors.js';
import { callAgent } from './client.js';
import { FrameReader, decodeResponse, type CniResponse } from './frame.js';
import { CniServer, type CniServerOptions } from './server.js';
import { FakeHandler, SAMPLE_RESULT, errorOf, netConf, rawRequest } from './testing.js';
import { encodeResult } from './result.js';

let dir: string;
const servers: CniServer[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'podnet-cni-'));
});
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
  rmSync(dir, { recursive: true, force: true });
});

async function start(opts: Partial<CniServerOptions> = {}, handler = new FakeHandler()): Promise<{ server: CniServer; handler: FakeHandler; path: string }> {
  const path = opts.socketPath ?? join(dir, 'cni.sock');
  const server = new CniServer({ handler, ...opts, socketPath: path });
  servers.push(server);
  await server.listen();
  return { server, handler, path };
}

/** Sends raw bytes and collects the answer frame (undefined if the server just closes). */
function rawExchange(path: string, bytes: Buffer, opts: { end?: boolean } = {}): Promise<CniResponse | undefined> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    const reader = new FrameReader();
    let answered = false;
    sock.on('connect', () => (opts.end ? sock.end(bytes) : sock.write(bytes)));
    sock.on('data', (c: Buffer) => {
      const p = reader.push(c);
      if (p && !answered) {
        answered = true;
        resolve(decodeResponse(p));
      }
    });
    sock.on('close', () => {
      if (!answered) resolve(undefined);
    });
    sock.on('error', (e) => {
      if (!answered) reject(e);
    });
  });
}

function podnetCode(e: unknown): string {
  return isPodnetError(e) ? e.code : String(e);
}

describe('CniServer', () => {
  it('constructing does nothing; listen() creates a 0700 directory and a 0600 socket', async () => {
    const path = join(dir, 'run', 'podnet', 'cni.sock');
    const server = new CniServer({ socketPath: path, handler: new FakeHandler() });
    servers.push(server);
    expect(existsSync(join(dir, 'run'))).toBe(false);
    await server.listen();
    expect(server.listening).toBe(true);
    expect(statSync(join(dir, 'run', 'podnet')).mode & 0o777).toBe(0o700);
    const st = statSync(path);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
  });

  it('serves dispatch: ADD round trip through callAgent, then close() removes the socket', async () => {
    const { server, handler, path } = await start();
    const res = await callAgent(path, rawRequest('ADD', netConf({ cniVersion: '1.1.0' })));
    expect(res.exit).toBe(0);
    expect(JSON.parse(res.stdout)).toEqual(encodeResult(SAMPLE_RESULT, '1.1.0'));
    expect(handler.calls).toHaveLength(1);
    await server.close();
    expect(existsSync(path)).toBe(false);
    await server.close(); // twice is fine
  });

  it('answers many concurrent connections', async () => {
    const { path } = await start();
    const results = await Promise.all(Array.from({ length: 40 }, () => callAgent(path, rawRequest('DEL'))));
    expect(results.every((r) => r.exit === 0 && r.stdout === '')).toBe(true);
  });

  it('removes a stale socket left by a killed agent', async () => {
    const path = join(dir, 'cni.sock');
    const script = `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`;
    await execa(process.execPath, ['-e', script], { reject: false });
    expect(statSync(path).isSocket()).toBe(true);
    await start({ socketPath: path });
    expect((await callAgent(path, rawRequest('DEL'))).exit).toBe(0);
  });

  it('refuses a socket another process is serving, and leaves it alone', async () => {
    const path = join(dir, 'cni.sock');
    const other = createServer(() => undefined);
    await new Promise<void>((r) => other.listen(path, r));
    try {
      const err = await new CniServer({ socketPath: path, handler: new FakeHandler() }).listen().catch((e: unknown) => e);
      expect(podnetCode(err)).toBe('PODNET_INVALID_ARGUMENT');
      expect(String((err as Error).message)).toMatch(/another process is already serving/);
      expect(statSync(path).isSocket()).toBe(true);
    } finally {
      await new Promise<void>((r) => other.close(() => r()));
    }
  });

  it('refuses to delete a file that is not a socket', async () => {
    const path = join(dir, 'cni.sock');
    writeFileSync(path, 'precious');
    const err = await new CniServer({ socketPath: path, handler: new FakeHandler() }).listen().catch((e: unknown) => e);
    expect(String((err as Error).message)).toMatch(/exists and is not a socket; not removing it/);
    expect(readFileSync(path, 'utf8')).toBe('precious');
  });

  it('refuses a directory others can write to', async () => {
    const open = join(dir, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    const err = await new CniServer({ socketPath: join(open, 'cni.sock'), handler: new FakeHandler() }).listen().catch((e: unknown) => e);
    expect(podnetCode(err)).toBe('PODNET_PERMISSION');
    expect(String((err as Error).message)).toMatch(/writable by others/);
  });

  it('refuses a relative or too long path, and a second listen()', async () => {
    await expect(new CniServer({ socketPath: 'cni.sock', handler: new FakeHandler() }).listen()).rejects.toThrow(/must be absolute/);
    await expect(new CniServer({ socketPath: `/${'x'.repeat(120)}`, handler: new FakeHandler() }).listen()).rejects.toThrow(/at most 107 bytes/);
    const { server } = await start();
    await expect(server.listen()).rejects.toThrow(/already listening/);
  });

  it('answers an oversized frame with code 5 without reading it', async () => {
    const { path } = await start({ maxFrameBytes: 1024 });
    const head = Buffer.alloc(4);
    head.writeUInt32BE(4096);
    const res = await rawExchange(path, head);
    expect(res?.exit).toBe(1);
    expect(errorOf(res!.stdout)).toMatchObject({ code: 5, msg: 'the request is 4096 bytes; the limit is 1024' });
  });

  it('answers a malformed frame with code 6', async () => {
    const { path, handler } = await start();
    const payload = Buffer.from('{"env":"nope","stdin":""}');
    const head = Buffer.alloc(4);
    head.writeUInt32BE(payload.length);
    const res = await rawExchange(path, Buffer.concat([head, payload]));
    expect(errorOf(res!.stdout)).toMatchObject({ code: 6, msg: expect.stringMatching(/"env" is not an object/) });
    expect(handler.calls).toEqual([]);
  });

  it('closes a connection whose request does not arrive in time, or ends early', async () => {
    const { path } = await start({ requestTimeoutMs: 100 });
    const t0 = Date.now();
    expect(await rawExchange(path, Buffer.from([0, 0, 0, 50, 0x7b]))).toBeUndefined();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(90);
    expect(await rawExchange(path, Buffer.from([0, 0, 0, 50, 0x7b]), { end: true })).toBeUndefined();
  });

  it('answers code 11 when the handler takes too long, and keeps serving', async () => {
    const handler = new FakeHandler();
    let release!: () => void;
    handler.gate = new Promise<void>((r) => (release = r));
    const { path } = await start({ handlerTimeoutMs: 100 }, handler);
    const res = await callAgent(path, rawRequest('ADD', netConf({ cniVersion: '0.4.0' })));
    expect(errorOf(res.stdout)).toEqual({
      cniVersion: '0.4.0',
      code: 11,
      msg: 'the podnet agent did not finish ADD within 100 ms',
      details: 'the operation may still complete; a runtime follows a failed ADD with DEL',
    });
    release();
    handler.gate = undefined;
    expect((await callAgent(path, rawRequest('DEL'))).exit).toBe(0);
  });

  it('close() lets a request being handled finish', async () => {
    const handler = new FakeHandler();
    let release!: () => void;
    handler.gate = new Promise<void>((r) => (release = r));
    const { server, path } = await start({}, handler);
    const pending = callAgent(path, rawRequest('DEL'));
    while (handler.calls.length === 0) await new Promise((r) => setTimeout(r, 5));
    const closing = server.close();
    await expect(callAgent(path, rawRequest('DEL'))).rejects.toThrow(); // no new connections once closing
    setTimeout(release, 50);
    expect(await pending).toEqual({ exit: 0, stdout: '' });
    await closing;
  });
});
