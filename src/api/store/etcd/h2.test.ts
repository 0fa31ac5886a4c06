import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import type { ServerHttp2Stream, Settings } from 'node:http2';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { H2Code, H2Session } from './h2.js';
import type { StreamEnd } from './h2.js';
import { encodeHeaders } from './hpack.js';
import type { HeaderList } from './hpack.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function socketPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'podnet-h2-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 's.sock');
}

/** A node:http2 (nghttp2) server on a unix socket. */
async function server(handler: (stream: ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void, settings: Settings = {}) {
  const path = socketPath();
  const srv = http2.createServer({ settings });
  const sessions = new Set<http2.ServerHttp2Session>();
  srv.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  srv.on('stream', (stream, headers) => {
    stream.on('error', () => undefined);
    handler(stream, headers);
  });
  await new Promise<void>((r) => srv.listen(path, r));
  cleanups.push(async () => {
    for (const s of sessions) s.destroy();
    await new Promise<void>((r) => srv.close(() => r()));
  });
  return { path, sessions };
}

/** A connected H2Session to `path`. */
async function session(path: string): Promise<{ h2: H2Session; goaways: () => number; closed: Promise<Error | undefined> }> {
  let goaways = 0;
  let onClose!: (e: Error | undefined) => void;
  const closed = new Promise<Error | undefined>((r) => (onClose = r));
  let h2!: H2Session;
  await new Promise<void>((ready, fail) => {
    h2 = new H2Session(connect(path), {
      streamWindow: 1 << 20,
      sessionWindow: 4 << 20,
      onReady: ready,
      onGoaway: () => goaways++,
      onClose: (e) => {
        onClose(e);
        fail(e ?? new Error('closed'));
      },
    });
  });
  cleanups.push(() => h2.destroy(undefined));
  return { h2, goaways: () => goaways, closed };
}

const request = (path: string) =>
  encodeHeaders([[':method', 'POST'], [':scheme', 'http'], [':path', path], [':authority', 'test'], ['content-type', 'application/grpc']]);

interface Exchange {
  headers: HeaderList[];
  body: Buffer;
  end: StreamEnd;
}

/** Runs one request on `h2` and collects what came back. */
function exchange(h2: H2Session, path: string, body: Buffer): Promise<Exchange> {
  return new Promise((resolve) => {
    const headers: HeaderList[] = [];
    const chunks: Buffer[] = [];
    const st = h2.open(request(path), {
      onHeaders: (f) => headers.push(f),
      onData: (c) => chunks.push(Buffer.from(c)),
      onClose: (end) => resolve({ headers, body: Buffer.concat(chunks), end }),
    });
    st.write(body, true);
  });
}

const readAll = (stream: ServerHttp2Stream) =>
  new Promise<Buffer>((resolve) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
  });

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('H2Session against nghttp2 (node:http2 server)', () => {
  it('header blocks from a real HPACK encoder (Huffman, dynamic table, eviction) arrive exactly', async () => {
    const value = fc.array(fc.integer({ min: 0x20, max: 0xff }).filter((c) => c !== 0x7f), { maxLength: 120 }).map((cs) => Buffer.from(cs).toString('latin1').trim());
    const samples = fc.sample(fc.array(fc.tuple(fc.stringMatching(/^x-[a-z0-9-]{1,30}$/), value), { minLength: 1, maxLength: 12 }), 150);
    let i = 0;
    const s = await server(async (stream) => {
      await readAll(stream);
      const fields = samples[i++]!;
      const trailers = Object.fromEntries(fields.slice(0, 3).map(([k, v]) => [`${k}-t`, v]));
      stream.respond({ ':status': 200, ...Object.fromEntries(fields) }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers(trailers));
      stream.end('ok');
    });
    const { h2 } = await session(s.path);
    for (const fields of samples) {
      const ex = await exchange(h2, '/h', Buffer.alloc(0));
      const want = new Map(fields);
      const got = new Map(ex.headers[0]!.filter(([k]) => k.startsWith('x-')));
      expect(got).toEqual(want);
      expect(ex.headers[0]!.find(([k]) => k === ':status')).toEqual([':status', '200']);
      expect(new Map(ex.headers[1])).toEqual(new Map(fields.slice(0, 3).map(([k, v]) => [`${k}-t`, v])));
      expect(ex.body.toString()).toBe('ok');
      expect(ex.end).toEqual({ kind: 'ended' });
    }
  });

  it('flow control both ways: a 3 MiB request into a 64 KiB window, a 12 MiB response past ours', async () => {
    const big = Buffer.alloc(12 << 20);
    for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff;
    const s = await server(async (stream, headers) => {
      const req = await readAll(stream);
      stream.respond({ ':status': 200 });
      stream.end(headers[':path'] === '/up' ? sha(req) : big);
    });
    const { h2 } = await session(s.path);
    const up = Buffer.alloc(3 << 20, 7);
    const [a, b] = await Promise.all([exchange(h2, '/up', up), exchange(h2, '/down', Buffer.alloc(0))]);
    expect(a.body.toString()).toBe(sha(up));
    expect(b.body.length).toBe(big.length);
    expect(sha(b.body)).toBe(sha(big));
  });

  it("the server's concurrency limit: streams over it wait, none is refused", async () => {
    let open = 0;
    let most = 0;
    const s = await server(
      async (stream) => {
        most = Math.max(most, ++open);
        await readAll(stream);
        setTimeout(() => {
          open--;
          stream.respond({ ':status': 200 });
          stream.end('done');
        }, 5);
      },
      { maxConcurrentStreams: 2 },
    );
    const { h2 } = await session(s.path);
    const all = await Promise.all(Array.from({ length: 12 }, () => exchange(h2, '/c', Buffer.from('x'))));
    expect(all.map((x) => x.body.toString())).toEqual(Array(12).fill('done'));
    expect(most).toBe(2);
  });

  it('GOAWAY: streams above its last id are refused (never processed), those below finish', async () => {
    const pending: ServerHttp2Stream[] = [];
    const s = await server((stream) => pending.push(stream));
    const { h2, goaways } = await session(s.path);
    const calls = [1, 2, 3].map(() => exchange(h2, '/g', Buffer.from('q')));
    while (pending.length < 3) await new Promise((r) => setTimeout(r, 5));
    // Stream ids 1, 3, 5: the server goes away after the first.
    const sess = [...s.sessions][0]!;
    sess.goaway(http2.constants.NGHTTP2_NO_ERROR, 1);
    await new Promise((r) => setTimeout(r, 20));
    expect(h2.usable).toBe(false);
    expect(goaways()).toBe(1);
    expect(() => h2.open(request('/late'), { onHeaders: () => undefined, onData: () => undefined, onClose: () => undefined })).toThrow(/no new streams/);
    pending[0]!.respond({ ':status': 200 });
    pending[0]!.end('first');
    const [a, b, c] = await Promise.all(calls);
    expect(a!.body.toString()).toBe('first');
    expect(b!.end).toMatchObject({ kind: 'lost', refused: true });
    expect(c!.end).toMatchObject({ kind: 'lost', refused: true });
  });

  it('a reset from the server, our cancel, and a ping', async () => {
    const resets: number[] = [];
    const s = await server((stream, headers) => {
      if (headers[':path'] === '/rst') stream.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
      else stream.on('close', () => resets.push(stream.rstCode));
    });
    const { h2 } = await session(s.path);
    expect((await exchange(h2, '/rst', Buffer.from('q'))).end).toEqual({ kind: 'reset', code: H2Code.ENHANCE_YOUR_CALM, refused: false });
    let end: StreamEnd | undefined;
    const st = h2.open(request('/hang'), { onHeaders: () => undefined, onData: () => undefined, onClose: (e) => (end = e) });
    st.write(Buffer.from('q'));
    await new Promise((r) => setTimeout(r, 20));
    st.cancel();
    expect(end).toEqual({ kind: 'cancelled' });
    await new Promise((r) => setTimeout(r, 30));
    expect(resets).toEqual([http2.constants.NGHTTP2_CANCEL]);
    await new Promise<void>((resolve, reject) => h2.ping((e) => (e ? reject(e) : resolve())));
    expect(h2.active).toBe(0);
  });

  it('a stream callback that throws ends the connection with that reason, not a crash', async () => {
    const s = await server((stream) => {
      stream.respond({ ':status': 200 });
      stream.end('boom');
    });
    const { h2, closed } = await session(s.path);
    let end: StreamEnd | undefined;
    const st = h2.open(request('/t'), {
      onHeaders: () => undefined,
      onData: () => {
        throw new Error('handler bug');
      },
      onClose: (e) => (end = e),
    });
    st.write(Buffer.alloc(0), true);
    expect((await closed)?.message).toBe('a stream callback threw: handler bug');
    expect(end).toMatchObject({ kind: 'lost', refused: false });
  });

  it('the connection lost: open streams end lost (sent), the session reports the error', async () => {
    const s = await server((stream) => stream.on('data', () => stream.session?.destroy()));
    const { h2, closed } = await session(s.path);
    const ex = await exchange(h2, '/x', Buffer.from('q'));
    expect(ex.end).toMatchObject({ kind: 'lost', refused: false });
    expect(await closed).toBeInstanceOf(Error);
    expect(h2.destroyed).toBe(true);
  });
});

describe('H2Session against a server that is not HTTP/2', () => {
  it('an HTTP/1.1 answer ends the connection with a clear error', async () => {
    const path = socketPath();
    const srv = createServer((sock) => {
      sock.once('data', () => sock.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n'));
    });
    await new Promise<void>((r) => srv.listen(path, r));
    cleanups.push(() => new Promise<void>((r) => srv.close(() => r())));
    const err = await new Promise<Error | undefined>((resolve) => {
      new H2Session(connect(path), { streamWindow: 65_535, sessionWindow: 65_535, onReady: () => resolve(undefined), onGoaway: () => undefined, onClose: resolve });
    });
    expect(err?.message).toMatch(/not an HTTP\/2 server/);
  });
});
