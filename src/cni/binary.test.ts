/**
 * End to end with the real podnet-cni binary (native/build/Release/podnet-cni, built by
 * `node scripts/build-native.mjs`): the binary is run the way a runtime runs it (env +
 * stdin, argument arrays, no shell) against a CniServer with a fake handler, or against
 * raw sockets that misbehave on purpose.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PodnetError } from '../util/errors.js';
import { FrameReader, encodeFrame } from './frame.js';
import { encodeResult, formatResult } from './result.js';
import { CniServer } from './server.js';
import { CONTAINER_ID, FakeHandler, SAMPLE_RESULT, cniEnv, errorOf, ipamCode, netConf, repoRoot } from './testing.js';

/** PODNET_CNI_BINARY runs the suite against another build (e.g. one with sanitizers). */
const BIN = process.env.PODNET_CNI_BINARY ?? join(repoRoot(), 'native', 'build', 'Release', 'podnet-cni');
const HAVE_BIN = existsSync(BIN);
if (!HAVE_BIN) console.warn(`podnet-cni is not built (${BIN}): run node scripts/build-native.mjs; skipping the end-to-end tests`);

interface Run {
  exit: number;
  stdout: string;
  stderr: string;
  ms: number;
}

async function run(env: Record<string, string>, stdin: string | Buffer = ''): Promise<Run> {
  const t0 = performance.now();
  const r = await execa(BIN, [], { env, extendEnv: false, input: stdin, reject: false, stripFinalNewline: false, timeout: 20_000 });
  return { exit: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr, ms: performance.now() - t0 };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

let dir: string;
let sock: string;
let server: CniServer;
let handler: FakeHandler;

/** A config pointing at the test server. */
const conf = (extra: Record<string, unknown> = {}) => JSON.stringify(netConf({ socket: sock, ...extra }));

describe.skipIf(!HAVE_BIN)('podnet-cni binary', () => {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'podnet-cni-e2e-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  beforeEach(async () => {
    sock = join(dir, `agent-${Math.random().toString(36).slice(2, 8)}.sock`);
    handler = new FakeHandler();
    server = new CniServer({ socketPath: sock, handler });
    await server.listen();
  });
  afterEach(() => server.close());

  describe('VERSION (answered by the binary, no socket)', () => {
    it('echoes the requested cniVersion; median of 50 runs is well under 50 ms', async () => {
      await server.close();
      const times: number[] = [];
      for (let i = 0; i < 50; i++) {
        const r = await run({ CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.0.0"}');
        expect(r.exit).toBe(0);
        expect(JSON.parse(r.stdout)).toEqual({ cniVersion: '1.0.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
        times.push(r.ms);
      }
      const m = median(times);
      console.log(`podnet-cni VERSION: median ${m.toFixed(2)} ms of 50 runs (spawned from node via execa)`);
      expect(m).toBeLessThan(50);
    });

    it('answers 1.1.0 for empty, non-JSON or odd input', async () => {
      for (const stdin of ['', 'garbage', '{"cniVersion":"1.0"}', '{"cniVersion":"\\"1.0.0"}', '[]']) {
        const r = await run({ CNI_COMMAND: 'VERSION' }, stdin);
        expect(r.exit).toBe(0);
        expect(JSON.parse(r.stdout)).toMatchObject({ cniVersion: '1.1.0' });
      }
    });
  });

  describe('round trips through the agent socket', () => {
    it('ADD prints the handler result exactly as the agent formats it', async () => {
      const r = await run(cniEnv('ADD'), conf({ cniVersion: '1.1.0' }));
      expect(r).toMatchObject({ exit: 0, stderr: '' });
      expect(r.stdout).toBe(formatResult(SAMPLE_RESULT, '1.1.0'));
      expect(handler.calls[0]).toMatchObject({
        command: 'ADD',
        attachment: { containerId: CONTAINER_ID, ifname: 'eth0', netns: '/run/netns/netns-0b8c4f6e' },
        pod: { namespace: 'default', name: 'web-0' },
        path: ['/opt/cni/bin', '/usr/lib/cni'],
        config: { socket: sock, name: 'podnet' },
      });
    });

    it('ADD in a 0.3.1 configuration gets the 0.3.1 shape', async () => {
      const r = await run(cniEnv('ADD'), conf({ cniVersion: '0.3.1' }));
      expect(JSON.parse(r.stdout)).toEqual(encodeResult(SAMPLE_RESULT, '0.3.1'));
    });

    it('DEL (empty CNI_NETNS), CHECK, STATUS and GC exit 0 with no output', async () => {
      const prev = { cniVersion: '1.1.0', ...SAMPLE_RESULT };
      const runs: [Record<string, string>, string][] = [
        [cniEnv('DEL', { CNI_NETNS: '' }), conf({ cniVersion: '1.1.0', prevResult: prev })],
        [cniEnv('CHECK'), conf({ cniVersion: '1.1.0', prevResult: prev })],
        [{ CNI_COMMAND: 'STATUS', CNI_PATH: '/opt/cni/bin' }, conf({ cniVersion: '1.1.0' })],
        [{ CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin' }, conf({ cniVersion: '1.1.0', 'cni.dev/valid-attachments': [{ containerID: CONTAINER_ID, ifname: 'eth0' }] })],
      ];
      for (const [env, stdin] of runs) expect(await run(env, stdin)).toMatchObject({ exit: 0, stdout: '' });
      expect(handler.calls.map((c) => c.command)).toEqual(['DEL', 'CHECK', 'STATUS', 'GC']);
      expect(handler.calls[3]).toMatchObject({ validAttachments: [{ containerId: CONTAINER_ID, ifname: 'eth0' }] });
    });

    it('a handler failure is relayed as the CNI error object with exit 1', async () => {
      handler.error = new PodnetError(ipamCode('PODNET_IPAM_EXHAUSTED'), 'no free address in 10.244.1.0/24');
      const r = await run(cniEnv('ADD'), conf());
      expect(r.exit).toBe(1);
      expect(errorOf(r.stdout)).toMatchObject({ cniVersion: '1.0.0', code: 101, msg: 'no free address in 10.244.1.0/24' });
    });

    it('validation happens in the agent: a bad CNI_IFNAME is code 4, an unknown command too', async () => {
      const r = await run(cniEnv('ADD', { CNI_IFNAME: 'a-very-long-ifname' }), conf());
      expect(errorOf(r.stdout)).toMatchObject({ code: 4, msg: 'CNI_IFNAME "a-very-long-ifname" is longer than 15 bytes' });
      const u = await run(cniEnv('FROB'), conf());
      expect(errorOf(u.stdout)).toMatchObject({ code: 4, msg: expect.stringMatching(/CNI_COMMAND "FROB" is not one of/) });
    });

    it('ADD and DEL relay time (fake handler): median of 30 runs', async () => {
      const add: number[] = [];
      const del: number[] = [];
      for (let i = 0; i < 30; i++) {
        add.push((await run(cniEnv('ADD'), conf())).ms);
        del.push((await run(cniEnv('DEL'), conf())).ms);
      }
      console.log(`podnet-cni relay: ADD median ${median(add).toFixed(2)} ms, DEL median ${median(del).toFixed(2)} ms (30 runs, fake handler)`);
      expect(median(add)).toBeLessThan(50);
    });
  });

  describe('stdin handling', () => {
    it('stdin not JSON: the agent answers code 6 (socket from PODNET_CNI_SOCKET)', async () => {
      const r = await run(cniEnv('ADD', { PODNET_CNI_SOCKET: sock }), '{"cniVersion":"1.0.0",');
      expect(r.exit).toBe(1);
      expect(errorOf(r.stdout)).toMatchObject({ code: 6, msg: expect.stringMatching(/^cannot read the network configuration: stdin is not valid JSON/) });
    });

    it('stdin not JSON and no agent: the binary answers code 6 itself', async () => {
      const r = await run(cniEnv('ADD', { PODNET_CNI_SOCKET: join(dir, 'absent.sock') }), 'not json');
      expect(errorOf(r.stdout)).toMatchObject({ code: 6, msg: expect.stringMatching(/not valid JSON, and the podnet agent at .*absent\.sock cannot be reached/) });
    });

    it('stdin over 1 MiB is refused with code 6 before any connection', async () => {
      const big = conf({ pad: 'x'.repeat(1 << 20) });
      const r = await run(cniEnv('ADD'), big);
      expect(errorOf(r.stdout)).toEqual({ cniVersion: '1.1.0', code: 6, msg: 'the network configuration on stdin is larger than 1048576 bytes' });
      expect(handler.calls).toEqual([]);
    });

    it('stdin of exactly 1 MiB is forwarded (the agent then rejects the padding field: code 2)', async () => {
      const base = conf({ pad: '' });
      const exact = conf({ pad: 'x'.repeat((1 << 20) - Buffer.byteLength(base)) });
      expect(Buffer.byteLength(exact)).toBe(1 << 20);
      const r = await run(cniEnv('ADD'), exact);
      expect(errorOf(r.stdout)).toMatchObject({ code: 2, msg: expect.stringMatching(/^unsupported field pad = "xxx/) });
    });

    it('forwards only CNI_* variables and stdin byte for byte', async () => {
      const captured: Buffer[] = [];
      const raw = await rawAgent((s, payload) => {
        captured.push(payload);
        s.end(encodeFrame({ exit: 0, stdout: '' }));
      });
      try {
        const stdin = `{\t"socket" : "${raw.path}",\n "x":"é 😀 \\u0001 \\\\ \\" ", "ctl":"\u007f"}`;
        const env = { ...cniEnv('DEL'), CNI_NETNS_OVERRIDE: '1', HOME: '/root', PATH: '/usr/bin', PODNET_CNI_TIMEOUT_MS: '5000', NOT_CNI_X: 'y' };
        const r = await run(env, stdin);
        expect(r).toMatchObject({ exit: 0, stdout: '' });
        const req = JSON.parse(captured[0]!.toString('utf8')) as { v: number; env: Record<string, string>; stdin: string };
        expect(req.v).toBe(1);
        expect(req.stdin).toBe(stdin);
        expect(Object.keys(req.env).sort()).toEqual(['CNI_ARGS', 'CNI_COMMAND', 'CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_NETNS', 'CNI_NETNS_OVERRIDE', 'CNI_PATH']);
        expect(req.env.CNI_ARGS).toBe(cniEnv('DEL').CNI_ARGS);
      } finally {
        await raw.close();
      }
    });

    it('control characters and quotes in env values survive the frame', async () => {
      const captured: Buffer[] = [];
      const raw = await rawAgent((s, payload) => {
        captured.push(payload);
        s.end(encodeFrame({ exit: 0, stdout: '' }));
      });
      try {
        const weird = 'a"b\\c\td\x01e\nf';
        await run({ CNI_COMMAND: 'DEL', CNI_ARGS: weird, PODNET_CNI_SOCKET: raw.path }, '{}');
        expect((JSON.parse(captured[0]!.toString('utf8')) as { env: Record<string, string> }).env.CNI_ARGS).toBe(weird);
      } finally {
        await raw.close();
      }
    });
  });

  describe('the JSON scanner finds the top-level "socket"', () => {
    const esc = (p: string) => p.replace(/\//g, '\\/');
    const uesc = (p: string) => p.replace(/\//g, '\\u002f');
    const base = '"cniVersion":"1.0.0","name":"podnet","type":"podnet-cni"';
    const cases: [string, () => string][] = [
      ['nested "socket" before it (depth 2) is ignored', () => `{${base},"cni.dev/x":{"socket":"/nope/a.sock"},"socket":"${sock}"}`],
      ['nested "socket" after it is ignored', () => `{"socket":"${sock}",${base},"cni.dev/x":{"socket":"/nope/b.sock","y":[{"socket":"/nope/c"}]}}`],
      ['"socket" inside an array is ignored', () => `{${base},"cni.dev/l":[{"socket":"/nope"},["socket"]],"socket":"${sock}"}`],
      ['escaped quotes that spell "socket":"..." inside a string', () => `{${base},"cni.dev/s":"a\\"socket\\":\\"/nope/d.sock","socket":"${sock}"}`],
      ['a unicode-escaped key', () => `{${base},"\\u0073ocket":"${sock}"}`],
      ['escaped slashes in the value (\\/ and \\u002f)', () => `{${base},"socket":"${esc(sock.slice(0, 6))}${uesc(sock.slice(6))}"}`],
      ['duplicate keys: the last wins, as in JSON.parse', () => `{${base},"socket":"/nope/e.sock","socket":"${sock}"}`],
      ['"socket" as a value is not a key', () => `{${base},"cni.dev/v":"socket","socket":"${sock}"}`],
      ['surrogate pairs and escapes elsewhere', () => `{${base},"cni.dev/e":"\\ud83d\\ude00 \\n\\t\\\\","socket":"${sock}"}`],
      ['pretty-printed with tabs and CRLF', () => `{\r\n\t"cniVersion" : "1.0.0" ,\r\n\t"name":"podnet",\t"type":"podnet-cni",\r\n\t"socket"\t:\t"${sock}"\r\n}\r\n`],
      ['deep nesting before the key', () => `{${base},"cni.dev/d":${'['.repeat(200)}${']'.repeat(200)},"socket":"${sock}"}`],
      ['numbers, literals and empty containers around it', () => `{${base},"cni.dev/n":[-0.5e+10,0,1E3,true,false,null,{},[]],"socket":"${sock}"}`],
    ];
    it.each(cases)('%s', async (_name, text) => {
      const r = await run(cniEnv('ADD'), text());
      expect({ exit: r.exit, out: r.exit === 0 ? 'result' : r.stdout }).toEqual({ exit: 0, out: 'result' });
      expect(handler.calls).toHaveLength(1);
    });

    it('nesting deeper than 512 levels is refused with code 6 (the socket field cannot be trusted)', async () => {
      const deep = (n: number) => `{${base},"cni.dev/d":${'['.repeat(n)}${']'.repeat(n)},"socket":"${sock}"}`;
      const r = await run(cniEnv('ADD'), deep(600));
      expect(errorOf(r.stdout)).toEqual({ cniVersion: '1.1.0', code: 6, msg: 'the network configuration on stdin nests deeper than 512 levels' });
      expect((await run(cniEnv('ADD'), deep(510))).exit).toBe(0);
    });

    it('a different-case "Socket" is not it: PODNET_CNI_SOCKET is used', async () => {
      const absent = join(dir, 'from-env.sock');
      const r = await run(cniEnv('ADD', { PODNET_CNI_SOCKET: absent }), `{${base},"Socket":"${sock}"}`);
      expect(errorOf(r.stdout)).toMatchObject({ code: 11, msg: `cannot reach the podnet agent at ${absent}: No such file or directory` });
    });

    it('invalid JSON after a "socket" key: the key is not trusted', async () => {
      const absent = join(dir, 'from-env2.sock');
      const r = await run(cniEnv('ADD', { PODNET_CNI_SOCKET: absent }), `{${base},"socket":"${sock}",}`);
      expect(errorOf(r.stdout)).toMatchObject({ code: 6, msg: expect.stringContaining(absent) });
    });

    it.each([
      ['a number', '42', /socket must be a string/],
      ['a relative path', '"run/cni.sock"', /socket must be an absolute path/],
      ['a path with an escaped NUL', '"/run/a\\u0000b"', /socket must be an absolute path of at most 107 bytes without NUL bytes/],
      ['too long', `"/${'x'.repeat(120)}"`, /at most 107 bytes/],
    ])('socket that is %s: code 7 from the binary', async (_n, value, msg) => {
      const r = await run(cniEnv('ADD'), `{${base},"socket":${value}}`);
      expect(errorOf(r.stdout)).toMatchObject({ cniVersion: '1.0.0', code: 7, msg: expect.stringMatching(msg) });
    });
  });

  describe('the JSON scanner agrees with JSON.parse (property test)', () => {
    /** What the binary must say for `text` when no agent is listening anywhere. */
    function expected(text: string, envSocket: string): { code: number; path?: string } {
      let doc: unknown;
      try {
        doc = JSON.parse(text);
      } catch {
        return { code: 6, path: envSocket };
      }
      const top = typeof doc === 'object' && doc !== null && !Array.isArray(doc) ? (doc as Record<string, unknown>) : undefined;
      if (!top || !Object.hasOwn(top, 'socket')) return { code: 11, path: envSocket };
      const v = top.socket;
      if (typeof v !== 'string' || !v.startsWith('/') || v.includes('\0') || Buffer.byteLength(v) > 107) return { code: 7 };
      // A lone surrogate has no UTF-8 form: the binary (like Node's own encoder) uses U+FFFD.
      return { code: 11, path: v.replace(/[\ud800-\udfff]/gu, '\ufffd') };
    }

    const socketValue = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 12 }).map((s) => `/nonexistent-podnet/${s}`),
      fc.string({ maxLength: 8 }),
      fc.jsonValue({ maxDepth: 2 }),
    );
    const config = fc
      .record({
        before: fc.dictionary(fc.string({ unit: 'binary', maxLength: 6 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 }),
        socket: fc.option(socketValue, { nil: undefined }),
        nested: fc.jsonValue({ maxDepth: 3 }),
        after: fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
        pretty: fc.boolean(),
      })
      .map(({ before, socket, nested, after, pretty }) => {
        const o: Record<string, unknown> = { ...before, 'cni.dev/n': { socket: '/nested/ignored', deeper: [nested, { socket: 1 }] } };
        if (socket !== undefined) o.socket = socket;
        return JSON.stringify({ ...o, ...after }, null, pretty ? '\t' : undefined);
      });
    /** A valid document, or one with a character inserted, deleted or replaced. */
    const input = fc.oneof(
      config,
      fc.tuple(config, fc.nat(), fc.constantFrom('', '"', '\\', '{', '}', ',', ':', '[', ' ', 'u', '\\u12')).map(([t, i, c]) => {
        const at = t.length ? i % t.length : 0;
        return t.slice(0, at) + c + t.slice(at + (c === '' ? 1 : i % 2));
      }),
      fc.jsonValue().map((v) => JSON.stringify(v)),
    );

    it('finds the same top-level "socket" JSON.parse finds, and rejects what it rejects', async () => {
      await server.close();
      const envSocket = join(dir, 'env-default.sock');
      await fc.assert(
        fc.asyncProperty(input, async (text) => {
          const r = await run(cniEnv('ADD', { PODNET_CNI_SOCKET: envSocket }), text);
          const e = errorOf(r.stdout);
          const want = expected(text, envSocket);
          expect(r.stderr).toBe('');
          expect(e.code).toBe(want.code);
          if (want.path !== undefined) expect(e.msg).toContain(`podnet agent at ${want.path}`);
        }),
        { numRuns: 300 },
      );
    }, 120_000);
  });

  describe('when the agent is not there or misbehaves', () => {
    it('no socket file: code 11 naming the path and the errno text', async () => {
      const absent = join(dir, 'nobody.sock');
      const r = await run(cniEnv('ADD'), JSON.stringify(netConf({ socket: absent, cniVersion: '0.4.0' })));
      expect(r.exit).toBe(1);
      const e = errorOf(r.stdout);
      expect(e).toMatchObject({ cniVersion: '0.4.0', code: 11, msg: `cannot reach the podnet agent at ${absent}: No such file or directory` });
      expect(e.details).toMatch(/is the podnet agent running on this node\? The socket path is the "socket" field/);
    });

    it('a stale socket file: code 11 "Connection refused"; STATUS says 50', async () => {
      const stale = join(dir, 'stale.sock');
      await execa(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`], { reject: false });
      const r = await run(cniEnv('DEL'), JSON.stringify(netConf({ socket: stale })));
      expect(errorOf(r.stdout)).toMatchObject({ code: 11, msg: `cannot reach the podnet agent at ${stale}: Connection refused` });
      const s = await run({ CNI_COMMAND: 'STATUS' }, JSON.stringify(netConf({ socket: stale, cniVersion: '1.1.0' })));
      expect(errorOf(s.stdout)).toMatchObject({ cniVersion: '1.1.0', code: 50 });
    });

    it('an agent that never answers: code 11 after PODNET_CNI_TIMEOUT_MS', async () => {
      const raw = await rawAgent(() => undefined);
      try {
        const r = await run(cniEnv('ADD', { PODNET_CNI_TIMEOUT_MS: '200' }), JSON.stringify(netConf({ socket: raw.path })));
        expect(errorOf(r.stdout)).toMatchObject({ code: 11, msg: `the podnet agent at ${raw.path} did not answer ADD within 200 ms` });
        expect(r.ms).toBeLessThan(5000);
      } finally {
        await raw.close();
      }
    });

    it('an agent that closes without answering, or in the middle: code 11', async () => {
      const quiet = await rawAgent((s) => s.end());
      const half = await rawAgent((s) => s.end(encodeFrame({ exit: 0, stdout: 'x'.repeat(100) }).subarray(0, 20)));
      try {
        const a = await run(cniEnv('ADD'), JSON.stringify(netConf({ socket: quiet.path })));
        expect(errorOf(a.stdout)).toMatchObject({ code: 11, msg: `the podnet agent at ${quiet.path} closed the connection without answering ADD` });
        const b = await run(cniEnv('ADD'), JSON.stringify(netConf({ socket: half.path })));
        expect(errorOf(b.stdout)).toMatchObject({ code: 11, msg: `the podnet agent at ${half.path} closed the connection in the middle of its answer to ADD` });
      } finally {
        await quiet.close();
        await half.close();
      }
    });

    it('a malformed answer: code 999; an oversized one: code 999', async () => {
      const garbage = await rawAgent((s) => s.end(encodeFrame({ exit: 'zero', stdout: 1 })));
      const huge = await rawAgent((s) => {
        const h = Buffer.alloc(4);
        h.writeUInt32BE(0xffffffff);
        s.end(h);
      });
      try {
        const a = await run(cniEnv('ADD'), JSON.stringify(netConf({ socket: garbage.path })));
        expect(errorOf(a.stdout)).toMatchObject({ code: 999, msg: expect.stringMatching(/sent an answer that is not \{"exit":0\.\.255,"stdout":"\.\.\."\}/) });
        const b = await run(cniEnv('ADD'), JSON.stringify(netConf({ socket: huge.path })));
        expect(errorOf(b.stdout)).toMatchObject({ code: 999, msg: expect.stringMatching(/sent a 4294967295-byte answer/) });
      } finally {
        await garbage.close();
        await huge.close();
      }
    });

    it('the exit status and stdout of the answer are relayed as they are', async () => {
      const raw = await rawAgent((s) => s.end(encodeFrame({ exit: 3, stdout: 'héllo\n' })));
      try {
        const r = await run(cniEnv('CHECK'), JSON.stringify(netConf({ socket: raw.path })));
        expect(r).toMatchObject({ exit: 3, stdout: 'héllo\n' });
      } finally {
        await raw.close();
      }
    });
  });

  describe('local errors', () => {
    it('CNI_COMMAND unset: code 4 on stdout, an explanation on stderr', async () => {
      const r = await run({}, '');
      expect(r.exit).toBe(1);
      expect(errorOf(r.stdout)).toEqual({ cniVersion: '1.1.0', code: 4, msg: 'CNI_COMMAND is not set' });
      expect(r.stderr).toMatch(/podnet CNI plugin/);
    });

    it('PODNET_CNI_TIMEOUT_MS invalid, PODNET_CNI_SOCKET relative: code 4', async () => {
      const a = await run(cniEnv('ADD', { PODNET_CNI_TIMEOUT_MS: 'soon' }), conf());
      expect(errorOf(a.stdout)).toMatchObject({ code: 4, msg: expect.stringMatching(/PODNET_CNI_TIMEOUT_MS must be/) });
      const b = await run(cniEnv('ADD', { PODNET_CNI_SOCKET: 'cni.sock' }), '{}');
      expect(errorOf(b.stdout)).toMatchObject({ code: 4, msg: expect.stringMatching(/PODNET_CNI_SOCKET must be an absolute path/) });
    });
  });
});

/** A unix socket server that reads one frame and lets `onRequest` misbehave. */
async function rawAgent(onRequest: (s: Socket, payload: Buffer) => void): Promise<{ path: string; close: () => Promise<void> }> {
  const path = join(dir, `raw-${Math.random().toString(36).slice(2, 8)}.sock`);
  const conns = new Set<Socket>();
  const srv: Server = createServer({ allowHalfOpen: true }, (s) => {
    conns.add(s);
    s.on('close', () => conns.delete(s));
    s.on('error', () => undefined);
    const reader = new FrameReader();
    s.on('data', (c: Buffer) => {
      const p = reader.push(c);
      if (p) onRequest(s, p);
    });
  });
  await new Promise<void>((r) => srv.listen(path, r));
  return {
    path,
    close: () =>
      new Promise<void>((r) => {
        for (const c of conns) c.destroy();
        srv.close(() => r());
      }),
  };
}
