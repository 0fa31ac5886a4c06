import http2 from 'node:http2';
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { GrpcClient, GrpcClosedError, GrpcError, MessageDecoder, Status, decodeGrpcMessage, frame, frameMessage, parseEndpoint, statusFromHeaders, statusFromHttp, statusFromRstCode } from './grpc.js';
import type { GrpcClientOptions } from './grpc.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('framing', () => {
  it('frame fills the 5-byte prefix in place', () => {
    const b = Buffer.from([9, 9, 9, 9, 9, 1, 2, 3]);
    expect(frame(b)).toBe(b);
    expect([...b]).toEqual([0, 0, 0, 0, 3, 1, 2, 3]);
    expect([...frameMessage(Buffer.alloc(0))]).toEqual([0, 0, 0, 0, 0]);
    expect(() => frame(Buffer.alloc(4))).toThrow(RangeError);
  });

  const messages = [Buffer.from('a'), Buffer.alloc(0), Buffer.alloc(300, 7), Buffer.from('hello'), Buffer.alloc(70_000, 1)];
  const stream = Buffer.concat(messages.map((m) => frameMessage(m)));

  it('several messages in one chunk, each a view of it', () => {
    const got: Buffer[] = [];
    new MessageDecoder((m) => got.push(m)).push(stream);
    expect(got.map((m) => m.toString('hex'))).toEqual(messages.map((m) => m.toString('hex')));
    expect(got[2]!.buffer).toBe(stream.buffer);
  });

  it('messages split at every byte boundary', () => {
    for (let cut = 1; cut < 400; cut++) {
      const got: Buffer[] = [];
      const d = new MessageDecoder((m) => got.push(Buffer.from(m)));
      d.push(stream.subarray(0, cut));
      d.push(stream.subarray(cut));
      expect(got.map((m) => m.length)).toEqual(messages.map((m) => m.length));
      expect(d.partial).toBe(false);
    }
  });

  it('any cutting of the stream into chunks gives the same messages', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: stream.length - 1 }), { maxLength: 30 }), (cuts) => {
        const points = [...new Set(cuts)].sort((a, b) => a - b);
        const got: Buffer[] = [];
        const d = new MessageDecoder((m) => got.push(Buffer.from(m)));
        let prev = 0;
        for (const p of [...points, stream.length]) {
          d.push(stream.subarray(prev, p));
          prev = p;
        }
        expect(Buffer.concat(got).equals(Buffer.concat(messages))).toBe(true);
        expect(got.length).toBe(messages.length);
      }),
    );
  });

  it('byte by byte', () => {
    const got: Buffer[] = [];
    const d = new MessageDecoder((m) => got.push(Buffer.from(m)));
    for (let i = 0; i < stream.length; i++) {
      d.push(stream.subarray(i, i + 1));
      if (i === 2) expect(d.partial).toBe(true);
    }
    expect(got.map((m) => m.length)).toEqual(messages.map((m) => m.length));
  });

  it('refuses compressed messages and messages over the limit', () => {
    const compressed = frameMessage(Buffer.from('x'));
    compressed[0] = 1;
    expect(() => new MessageDecoder(() => undefined).push(compressed)).toThrow(/compressed/);
    expect(() => new MessageDecoder(() => undefined, 10).push(frameMessage(Buffer.alloc(11)))).toThrow(GrpcError);
  });
});

describe('status mapping', () => {
  it('grpc-message is percent-decoded UTF-8; malformed kept as is', () => {
    expect(decodeGrpcMessage('etcdserver%3A no leader')).toBe('etcdserver: no leader');
    expect(decodeGrpcMessage('%E2%9C%93 ok')).toBe('✓ ok');
    expect(decodeGrpcMessage('100%')).toBe('100%');
    expect(decodeGrpcMessage(undefined)).toBe('');
  });

  it('statuses from headers, HTTP statuses and stream resets', () => {
    expect(statusFromHeaders({ 'grpc-status': '11', 'grpc-message': 'mvcc%3A required revision has been compacted' })).toEqual({ code: 11, details: 'mvcc: required revision has been compacted' });
    expect(statusFromHeaders({})).toBeUndefined();
    expect(statusFromHeaders({ 'grpc-status': 'x' })!.code).toBe(Status.UNKNOWN);
    expect([400, 401, 403, 404, 429, 502, 503, 504, 500].map(statusFromHttp)).toEqual([13, 16, 7, 12, 14, 14, 14, 14, 2]);
    const c = http2.constants;
    expect([c.NGHTTP2_REFUSED_STREAM, c.NGHTTP2_CANCEL, c.NGHTTP2_ENHANCE_YOUR_CALM, c.NGHTTP2_INADEQUATE_SECURITY, c.NGHTTP2_PROTOCOL_ERROR].map(statusFromRstCode)).toEqual([14, 1, 8, 7, 13]);
  });

  it('errors read like grpc-js\'s', () => {
    expect(new GrpcError(14, 'etcdserver: no leader').message).toBe('14 UNAVAILABLE: etcdserver: no leader');
  });
});

// ---- the client against a node:http2 server on a unix socket ------------------------------

type StreamHandler = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** An h2c server on a unix socket; `endpoint` is the name clients use for it. */
async function server(handler: StreamHandler) {
  const dir = mkdtempSync(join(tmpdir(), 'podnet-grpc-'));
  const path = join(dir, 's.sock');
  const srv = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  srv.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  srv.on('stream', (stream, headers) => {
    stream.on('error', () => undefined); // resets the tests provoke
    handler(stream, headers);
  });
  await new Promise<void>((r) => srv.listen(path, r));
  const close = async () => {
    for (const s of sessions) s.destroy();
    await new Promise<void>((r) => srv.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  };
  cleanups.push(close);
  return { path, sessions, close };
}

/** A client whose endpoint `http://NAME:1` connects to sockets[NAME]. */
function client(sockets: Record<string, string>, opts: Partial<GrpcClientOptions> = {}) {
  const c = new GrpcClient({
    endpoints: Object.keys(sockets).map((n) => `http://${n}:1`),
    createConnection: (u) => connect(sockets[u.hostname] ?? '/nonexistent/socket'),
    ...opts,
  });
  cleanups.push(() => c.close());
  return c;
}

/** Answers a unary call: `body` framed, then trailers with `status`. */
function reply(stream: ServerHttp2Stream, body: Buffer[], status = '0', message?: string) {
  stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
  stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': status, ...(message ? { 'grpc-message': message } : {}) }));
  stream.end(Buffer.concat(body));
}

function readAll(stream: ServerHttp2Stream): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
  });
}

const deadline = (ms = 2000) => ({ deadline: Date.now() + ms });

describe('GrpcClient', () => {
  it('a unary call: request headers, framed request, response message', async () => {
    let seen: IncomingHttpHeaders | undefined;
    const s = await server(async (stream, headers) => {
      seen = headers;
      const req = await readAll(stream);
      reply(stream, [frameMessage(Buffer.concat([Buffer.from('echo:'), req.subarray(5)]))]);
    });
    const c = client({ a: s.path }, { metadata: { hasleader: 'true' } });
    const res = await c.unary('/etcdserverpb.KV/Range', frameMessage(Buffer.from('ping')), deadline(5000));
    expect(res.toString()).toBe('echo:ping');
    expect(seen).toMatchObject({ ':method': 'POST', ':path': '/etcdserverpb.KV/Range', 'content-type': 'application/grpc', te: 'trailers', hasleader: 'true' });
    expect(Number(/^(\d+)m$/.exec(String(seen!['grpc-timeout']))![1])).toBeGreaterThan(4000);
    // The session is kept: a second call reuses it.
    await c.unary('/x', frameMessage(Buffer.from('2')), deadline());
    expect(s.sessions.size).toBe(1);
  });

  it('a response split over many DATA frames', async () => {
    const msg = Buffer.alloc(100_000, 3);
    const framed = frameMessage(msg);
    const s = await server(async (stream) => {
      await readAll(stream);
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      // The prefix byte by byte, then the body in uneven pieces, each on its own tick.
      for (let i = 0; i < 5; i++) {
        stream.write(framed.subarray(i, i + 1));
        await new Promise((r) => setImmediate(r));
      }
      for (let p = 5; p < framed.length; p += 7777) {
        stream.write(framed.subarray(p, Math.min(framed.length, p + 7777)));
        await new Promise((r) => setImmediate(r));
      }
      stream.end();
    });
    const c = client({ a: s.path });
    expect((await c.unary('/x', frameMessage(Buffer.from('q')), deadline())).equals(msg)).toBe(true);
  });

  it('trailers-only errors: status and percent-encoded message from the headers', async () => {
    const s = await server((stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '14', 'grpc-message': 'etcdserver%3A no leader' }, { endStream: true });
    });
    const c = client({ a: s.path });
    const e = (await c.unary('/x', frameMessage(Buffer.from('q')), deadline()).catch((x: unknown) => x)) as GrpcError;
    expect(e).toBeInstanceOf(GrpcError);
    expect([e.code, e.details, e.notSent, e.message]).toEqual([14, 'etcdserver: no leader', false, '14 UNAVAILABLE: etcdserver: no leader']);
  });

  it('an error status in trailers wins over a message sent before it', async () => {
    const s = await server(async (stream) => {
      await readAll(stream);
      reply(stream, [frameMessage(Buffer.from('partial'))], '11', 'etcdserver%3A mvcc%3A required revision has been compacted');
    });
    const c = client({ a: s.path });
    await expect(c.unary('/x', frameMessage(Buffer.from('q')), deadline())).rejects.toMatchObject({ code: 11, details: 'etcdserver: mvcc: required revision has been compacted' });
  });

  it('not a gRPC answer: HTTP status, content-type, no status, no message, two messages', async () => {
    let mode = '';
    const s = await server(async (stream) => {
      await readAll(stream);
      if (mode === 'http503') stream.respond({ ':status': 503 }, { endStream: true });
      else if (mode === 'html') {
        stream.respond({ ':status': 200, 'content-type': 'text/html' });
        stream.end('<html>');
      } else if (mode === 'nostatus') {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
        stream.end(frameMessage(Buffer.from('x')));
      } else if (mode === 'nomessage') reply(stream, []);
      else if (mode === 'two') reply(stream, [frameMessage(Buffer.from('1')), frameMessage(Buffer.from('2'))]);
      else if (mode === 'truncated') reply(stream, [frameMessage(Buffer.from('12345')).subarray(0, 7)]);
    });
    const c = client({ a: s.path });
    const call = async (m: string) => {
      mode = m;
      return (await c.unary('/x', frameMessage(Buffer.from('q')), deadline()).catch((e: unknown) => e)) as GrpcError;
    };
    expect((await call('http503')).code).toBe(Status.UNAVAILABLE);
    expect((await call('html')).code).toBe(Status.UNKNOWN);
    expect((await call('nostatus')).code).toBe(Status.UNAVAILABLE);
    expect((await call('nomessage')).code).toBe(Status.INTERNAL);
    expect((await call('two')).code).toBe(Status.UNIMPLEMENTED);
    expect((await call('truncated')).details).toMatch(/truncated/);
  });

  it('deadline: the call fails with DEADLINE_EXCEEDED and the stream is cancelled on the server', async () => {
    let serverSide: ServerHttp2Stream | undefined;
    const closed = new Promise<number>((resolve) => {
      void server((stream) => {
        serverSide = stream;
        stream.on('close', () => resolve(stream.rstCode));
      }).then((s) => {
        const c = client({ a: s.path });
        void c.unary('/x', frameMessage(Buffer.from('q')), deadline(150)).then(
          () => expect.fail('the call succeeded'),
          (e: unknown) => {
            expect(e).toMatchObject({ code: Status.DEADLINE_EXCEEDED, notSent: false });
          },
        );
      });
    });
    expect(await closed).toBe(http2.constants.NGHTTP2_CANCEL);
    expect(serverSide).toBeDefined();
  });

  it('a refused stream is known not to have been sent', async () => {
    const s = await server((stream) => stream.close(http2.constants.NGHTTP2_REFUSED_STREAM));
    const c = client({ a: s.path });
    await expect(c.unary('/x', frameMessage(Buffer.from('q')), deadline())).rejects.toMatchObject({ code: Status.UNAVAILABLE, notSent: true });
  });

  it('a connection lost mid-call: UNAVAILABLE, and the request may have been seen', async () => {
    const s = await server((stream) => {
      stream.on('data', () => stream.session?.destroy());
    });
    const c = client({ a: s.path });
    const e = (await c.unary('/x', frameMessage(Buffer.from('q')), deadline()).catch((x: unknown) => x)) as GrpcError;
    expect([e.code, e.notSent]).toEqual([Status.UNAVAILABLE, false]);
  });

  it('no server: UNAVAILABLE, not sent; calls fail over to the next endpoint', async () => {
    const s = await server(async (stream) => {
      await readAll(stream);
      reply(stream, [frameMessage(Buffer.from('from b'))]);
    });
    const lone = client({ dead: '/nonexistent/socket' });
    await expect(lone.unary('/x', frameMessage(Buffer.from('q')), deadline())).rejects.toMatchObject({ code: Status.UNAVAILABLE, notSent: true, message: /No connection established/ });
    const c = client({ dead: '/nonexistent/socket', b: s.path });
    for (let i = 0; i < 4; i++) expect((await c.unary('/x', frameMessage(Buffer.from('q')), deadline())).toString()).toBe('from b');
  });

  it('a failing endpoint is left out of the rotation, probed in the background, and taken back once it answers', async () => {
    const answer = (name: string) => async (stream: ServerHttp2Stream) => {
      await readAll(stream);
      reply(stream, [frameMessage(Buffer.from(name))]);
    };
    const b = await server(answer('b'));
    const dir = mkdtempSync(join(tmpdir(), 'podnet-grpc-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const aPath = join(dir, 'a.sock');
    const attempts: string[] = [];
    const c = new GrpcClient({
      endpoints: ['http://a:1', 'http://b:1'],
      createConnection: (u) => {
        attempts.push(u.hostname);
        return connect(u.hostname === 'a' ? aPath : b.path);
      },
    });
    cleanups.push(() => c.close());
    const seen: string[] = [];
    for (let i = 0; i < 10; i++) seen.push((await c.unary('/x', frameMessage(Buffer.from('q')), deadline())).toString());
    expect(new Set(seen)).toEqual(new Set(['b']));
    // One failed attempt, then at most a background probe or two (each after a backoff).
    expect(attempts.filter((x) => x === 'a').length).toBeGreaterThanOrEqual(1);
    expect(attempts.filter((x) => x === 'a').length).toBeLessThanOrEqual(3);
    // a comes up: after its backoff a probe connects, and the rotation includes it again.
    const srv = http2.createServer();
    srv.on('session', (sess) => cleanups.push(() => sess.destroy()));
    srv.on('stream', (stream) => void answer('a')(stream));
    await new Promise<void>((r) => srv.listen(aPath, r));
    cleanups.push(() => new Promise<void>((r) => srv.close(() => r())));
    const from = new Set<string>();
    for (let i = 0; i < 100 && !from.has('a'); i++) {
      from.add((await c.unary('/x', frameMessage(Buffer.from('q')), deadline())).toString());
      await sleep(10);
    }
    expect(from.has('a')).toBe(true);
    c.close();
  });

  it('close(): calls in flight and later calls fail with GrpcClosedError', async () => {
    const s = await server(() => undefined);
    const c = client({ a: s.path });
    const pending = c.unary('/x', frameMessage(Buffer.from('q')), deadline());
    await sleep(50);
    c.close();
    await expect(pending).rejects.toBeInstanceOf(GrpcClosedError);
    await expect(c.unary('/x', frameMessage(Buffer.from('q')), deadline())).rejects.toBeInstanceOf(GrpcClosedError);
  });

  it('a bidirectional stream: queued writes, several messages per DATA frame, status OK at the end', async () => {
    const s = await server((stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      const d = new MessageDecoder((m) => {
        const text = m.toString();
        // Three answers in one write: one DATA frame.
        if (text === 'end') stream.end();
        else stream.write(Buffer.concat([frameMessage(Buffer.from(`${text}-1`)), frameMessage(Buffer.from(`${text}-2`)), frameMessage(Buffer.from(`${text}-3`))]));
      });
      stream.on('data', (c: Buffer) => d.push(c));
    });
    const c = client({ a: s.path });
    const got: string[] = [];
    const ended = new Promise<GrpcError | undefined>((resolve) => {
      const st = c.stream('/etcdserverpb.Watch/Watch', {
        onMessage: (m) => {
          got.push(m.toString());
          if (got.length === 6) st.write(frameMessage(Buffer.from('end')));
        },
        onEnd: resolve,
      });
      // Written before the connection exists: queued.
      st.write(frameMessage(Buffer.from('a')));
      st.write(frameMessage(Buffer.from('b')));
    });
    expect(await ended).toBeUndefined();
    expect(got).toEqual(['a-1', 'a-2', 'a-3', 'b-1', 'b-2', 'b-3']);
  });

  it('a bidirectional stream ended with an error status, and one cancelled by the client', async () => {
    let cancelled: Promise<number> | undefined;
    const s = await server((stream, headers) => {
      if (headers[':path'] === '/fail') {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '14', 'grpc-message': 'etcdserver%3A no leader' }));
        stream.write(frameMessage(Buffer.from('x')));
        setTimeout(() => stream.end(), 20);
        return;
      }
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
      stream.write(frameMessage(Buffer.from('hello')));
      cancelled = new Promise((r) => stream.on('close', () => r(stream.rstCode)));
    });
    const c = client({ a: s.path });
    const err = await new Promise<GrpcError | undefined>((resolve) => c.stream('/fail', { onMessage: () => undefined, onEnd: resolve }));
    expect(err).toMatchObject({ code: 14, details: 'etcdserver: no leader' });
    let ends = 0;
    await new Promise<void>((resolve) => {
      const st = c.stream('/ok', {
        onMessage: () => {
          st.close();
          resolve();
        },
        onEnd: () => ends++,
      });
    });
    expect(await cancelled).toBe(http2.constants.NGHTTP2_CANCEL);
    await sleep(20);
    expect(ends).toBe(0);
  });

  it('keepalive: pings while a stream is open, none without one', async () => {
    let pings = 0;
    const s = await server((stream) => stream.respond({ ':status': 200, 'content-type': 'application/grpc' }));
    const c = client({ a: s.path }, { keepaliveTimeMs: 30 });
    await c.unary('/x', frameMessage(Buffer.from('q')), deadline(100)).catch(() => undefined);
    for (const sess of s.sessions) sess.on('ping', () => pings++);
    await sleep(150);
    expect(pings).toBe(0);
    const st = c.stream('/w', { onMessage: () => undefined, onEnd: () => undefined });
    await sleep(200);
    expect(pings).toBeGreaterThanOrEqual(3);
    st.close();
    await sleep(50);
    const after = pings;
    await sleep(150);
    expect(pings).toBe(after);
  });

  it('a stream on a client closed later ends with CANCELLED', async () => {
    const s = await server((stream) => stream.respond({ ':status': 200, 'content-type': 'application/grpc' }));
    const c = client({ a: s.path });
    const ended = new Promise<GrpcError | undefined>((resolve) => c.stream('/w', { onMessage: () => undefined, onEnd: resolve }));
    await sleep(50);
    c.close();
    expect(await ended).toMatchObject({ code: Status.CANCELLED });
  });

  it('endpoint forms: host:port, default port, TLS forced by tls options', () => {
    expect(parseEndpoint('10.0.0.1:2379', false).href).toBe('http://10.0.0.1:2379/');
    expect(parseEndpoint('http://h', false).href).toBe('http://h:2379/');
    expect(parseEndpoint('https://[fd00::1]:2', false).href).toBe('https://[fd00::1]:2/');
    expect(parseEndpoint('10.0.0.1:2379', true).href).toBe('https://10.0.0.1:2379/');
    expect(parseEndpoint('http://h:5', true).href).toBe('https://h:5/');
    expect(() => parseEndpoint('unix:///x', false)).toThrow(/only http/);
    expect(() => new GrpcClient({ endpoints: [] })).toThrow(/no endpoints/);
  });
});
