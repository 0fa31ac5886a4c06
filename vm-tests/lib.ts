/**
 * Helpers of the vm tier: tests that need IPVS, run inside the user-mode-linux guest by
 * scripts/uml/vm-tests.sh (through scripts/uml/run-in-vm.sh). They build everything in
 * network namespaces named with the per-run prefix (the netns harness's Scope), as the netns
 * tier does, so they would be just as safe on a host kernel that has IPVS.
 */
import { execa } from 'execa';
import { Ipvs } from '../src/kernel/ipvs.js';
import type { NetNS } from '../src/kernel/netns.js';
import { isPodnetError } from '../src/util/errors.js';
import { isRoot, nodeIn, sh } from '../netns-tests/lib/harness.js';
import type { Scope } from '../netns-tests/lib/harness.js';

/** Why the vm tests cannot run here (not root, no IPVS), or undefined. */
export async function vmSkipReason(): Promise<string | undefined> {
  if (!isRoot) return 'vm tests need root (they run as root inside the UML guest: scripts/uml/run-in-vm.sh)';
  try {
    (await Ipvs.open()).close();
  } catch (e) {
    if (isPodnetError(e)) return `no IPVS in this kernel (${e.message}); run them in the guest: scripts/uml/run-in-vm.sh node dist/vm-tests/<file>.js`;
    throw e;
  }
  return undefined;
}

/**
 * `ipvsadm -Ln` in `ns` without its three header lines, spaces collapsed, services sorted as
 * text and each one's real servers too (ipvsadm's own --sort orders addresses by their bytes
 * in host order, which reads oddly).
 */
export async function ipvsadm(ns: NetNS, ...args: string[]): Promise<string> {
  const r = await sh(ns, 'ipvsadm', ['-Ln', ...args]);
  const blocks: string[][] = [];
  for (const l of String(r.stdout).split('\n').slice(3)) {
    const line = l.trim().replace(/\s+/g, ' ');
    if (!line) continue;
    if (line.startsWith('->')) blocks[blocks.length - 1]?.push(line);
    else blocks.push([line]);
  }
  return blocks
    .map(([head, ...dests]) => [head!, ...dests.sort()].join('\n'))
    .sort()
    .join('\n');
}

/** An indented template literal as the lines it holds, trimmed (expected `ipvsadm` text). */
export function lines(s: string): string {
  return s
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .join('\n');
}

/**
 * A tiny server in `ns`: TCP on `port` and UDP on `udpPort` (both families), answering each
 * connection / datagram with `<name> <peer address>` -- the peer shows whether the traffic
 * was masqueraded. Owned by the scope (killed by PID at cleanup); resolves once listening.
 */
export async function startServer(scope: Scope, ns: NetNS, name: string, port = 8080, udpPort = 5353): Promise<number> {
  const code = `
    const net = require('node:net'); const dgram = require('node:dgram');
    const peer = (a) => a.replace(/^::ffff:/, '');
    let up = 0; const ready = () => { if (++up === 2) console.log('ready'); };
    net.createServer((s) => s.end(${JSON.stringify(name)} + ' ' + peer(s.remoteAddress) + '\\n')).listen({ port: ${port}, host: '::' }, ready);
    const u = dgram.createSocket({ type: 'udp6', ipv6Only: false });
    u.on('message', (m, r) => u.send(${JSON.stringify(name)} + ' ' + peer(r.address), r.port, r.address));
    u.bind(${udpPort}, '::', ready);`;
  const child = execa('nsenter', ['--net=' + ns.path, '--', process.execPath, '-e', code], { reject: false, buffer: false, stdin: 'ignore' });
  if (child.pid === undefined) throw new Error(`server ${name} did not start`);
  scope.own(child.pid);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`server ${name} not ready after 30 s: ${out}`)), 30_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += String(d);
      if (out.includes('ready')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.stderr!.on('data', (d: Buffer) => (out += String(d)));
    void child.then((r) => {
      clearTimeout(timer);
      reject(new Error(`server ${name} exited (${r.exitCode ?? r.signal}): ${out}`));
    });
  });
  return child.pid;
}

/**
 * `n` TCP connections, one after another, from `ns` to host:port; each gives the server's
 * answer (`s1 10.244.1.1`), or the error code (ECONNREFUSED...), or TIMEOUT.
 */
export async function connectMany(ns: NetNS, host: string, port: number, n: number, timeoutMs = 3000): Promise<string[]> {
  const r = await nodeIn(
    ns,
    async (a: { host: string; port: number; n: number; timeoutMs: number }) => {
      const net = await import('node:net');
      const out: string[] = [];
      for (let i = 0; i < a.n; i++) {
        out.push(
          await new Promise<string>((resolve) => {
            const s = net.connect({ host: a.host, port: a.port });
            let data = '';
            const t = setTimeout(() => {
              s.destroy();
              resolve('TIMEOUT');
            }, a.timeoutMs);
            s.on('data', (d) => (data += String(d)));
            s.on('end', () => {
              clearTimeout(t);
              resolve(data.trim());
            });
            s.on('error', (e: NodeJS.ErrnoException) => {
              clearTimeout(t);
              resolve(e.code ?? e.message);
            });
          }),
        );
      }
      return out;
    },
    { host, port, n, timeoutMs },
    { timeout: 120_000 },
  );
  return JSON.parse(String(r.stdout)) as string[];
}

/** One UDP datagram from `ns` to host:port; the answer, or TIMEOUT / an error code. */
export async function udpAsk(ns: NetNS, host: string, port: number, timeoutMs = 3000): Promise<string> {
  const r = await nodeIn(
    ns,
    async (a: { host: string; port: number; timeoutMs: number }) => {
      const dgram = await import('node:dgram');
      const s = dgram.createSocket(a.host.includes(':') ? 'udp6' : 'udp4');
      return await new Promise<string>((resolve) => {
        const t = setTimeout(() => {
          s.close();
          resolve('TIMEOUT');
        }, a.timeoutMs);
        s.on('message', (m) => {
          clearTimeout(t);
          s.close();
          resolve(String(m));
        });
        s.on('error', (e: NodeJS.ErrnoException) => {
          clearTimeout(t);
          s.close();
          resolve(e.code ?? e.message);
        });
        s.send('ping', a.port, a.host);
      });
    },
    { host, port, timeoutMs },
    { timeout: 60_000 },
  );
  return JSON.parse(String(r.stdout)) as string;
}

/** How many answers came from each server name. */
export function tally(answers: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const a of answers) {
    const k = a.split(' ')[0]!;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}
