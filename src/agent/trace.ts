/**
 * The agent's part of `podnet trace`: POST /trace/explain (and /trace/live) on the agent
 * endpoint, for callers the API authenticates. Each request gets a NodeEnv over this node's
 * kernel — the host netlink handle, the sandbox records, and the proxy mode's interpreter
 * reading only what the packet touches — and answers with this node's NodeStep.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Netlink } from '../kernel/index.js';
import { NftExecutor } from '../kernel/nftables/executor.js';
import type { SandboxRecords } from '../pods/records.js';
import type { Proxier } from '../proxy/proxier.js';
import type { ProxyModeName, ProxySnapshot } from '../proxy/types.js';
import { UDP_DEV, UDP_PORT, VXLAN_DEV, VXLAN_VNI } from '../transport/plan.js';
import { VXLAN_DEFAULT_PORT } from '../kernel/links.js';
import { ErrorCodes, PodnetError, formatError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import type { LbInterpreter } from '../trace/lb.js';
import { createNftablesInterpreter } from '../trace/nftables.js';
import { kernelNftView } from '../trace/nftables-kernel.js';
import { traceNode } from '../trace/node.js';
import type { Directory, NodeEnv } from '../trace/node.js';
import { parseNodeRequest } from '../trace/request.js';
import type { Route } from './server.js';

export interface AgentTraceOptions {
  nodeName: string;
  backend: 'vxlan' | 'udp' | 'host-gw';
  proxyMode: ProxyModeName | 'none';
  host: Netlink;
  records: SandboxRecords;
  bridge: string;
  proxier: () => Proxier | undefined;
  masquerade: boolean;
  log: Logger;
  /** Live mode (probe + nftrace); undefined: /trace/live answers 501. */
  live?: (env: NodeEnv, body: unknown) => Promise<unknown>;
}

/** Interpreters per proxy mode (iptables / ipvs are registered by their modules). */
export type InterpreterFactory = (snapshot: ProxySnapshot, o: { masquerade: boolean }) => LbInterpreter;
const factories = new Map<string, InterpreterFactory>();

export function registerInterpreter(mode: ProxyModeName, f: InterpreterFactory): void {
  factories.set(mode, f);
}

let nft: NftExecutor | undefined;
registerInterpreter('nftables', (snapshot, o) => {
  nft ??= NftExecutor.open();
  return createNftablesInterpreter(kernelNftView({ reader: nft, snapshot, egress: o.masquerade }));
});

/** The NodeEnv of this node for one trace request. */
export function nodeEnv(o: AgentTraceOptions): NodeEnv {
  const snapshots = o.proxier()?.snapshots() ?? [];
  const lbs = new Map<number, LbInterpreter | undefined>();
  const links = new Map<string | number, Promise<Awaited<ReturnType<Netlink['links']['get']>>>>();
  return {
    node: o.nodeName,
    backend: o.backend,
    proxyMode: o.proxyMode,
    lb(family) {
      if (!lbs.has(family)) {
        const snap = snapshots.find((s) => s.family === family);
        const f = factories.get(o.proxyMode);
        lbs.set(family, snap && f ? f(snap, { masquerade: o.masquerade }) : undefined);
      }
      return lbs.get(family);
    },
    async localAddresses() {
      return (await o.host.addrs.list()).map((a) => a.ip);
    },
    async route(dst, opts) {
      const route = await o.host.routes.get(dst, opts).catch(() => o.host.routes.get(dst));
      if (!route) return undefined;
      const entry = await o.host.routes.get(dst, { fibMatch: true }).catch(() => undefined);
      return { route, entry };
    },
    link(index) {
      let p = links.get(index);
      if (!p) links.set(index, (p = o.host.links.get(index)));
      return p;
    },
    async neighbours(dev) {
      return o.host.neigh.list({ dev });
    },
    async fdb(dev) {
      return o.host.fdb.list({ dev });
    },
    async localPods() {
      return o.records
        .list()
        .filter((r) => r.kind === 'pod' && r.namespace && r.name)
        .map((r) => ({ namespace: r.namespace!, name: r.name!, hostVeth: r.hostVeth, addresses: r.addresses.map((a) => a.split('/')[0]!), mtu: r.mtu }));
    },
    vxlan: { vni: VXLAN_VNI, port: VXLAN_DEFAULT_PORT, device: VXLAN_DEV },
    udp: { port: UDP_PORT, device: UDP_DEV },
    bridge: o.bridge,
  };
}

const MAX_BODY = 8 << 20;

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_BODY) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `request body larger than ${MAX_BODY} bytes`);
    chunks.push(c);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch (e) {
    throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `request body is not JSON: ${formatError(e)}`);
  }
}

function send(res: ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
}

/** The /trace/* routes for the agent server. */
export function traceRoutes(o: AgentTraceOptions): Map<string, Route> {
  const log = o.log.child({ component: 'trace' });
  const handle = (live: boolean): Route => async (req, res, caller) => {
    if (req.method !== 'POST') return send(res, 405, { error: 'POST a trace request' });
    let body: unknown;
    let parsed: ReturnType<typeof parseNodeRequest>;
    try {
      body = await readJson(req);
      parsed = parseNodeRequest(body);
    } catch (e) {
      return send(res, 400, { error: formatError(e) });
    }
    const env = nodeEnv(o);
    try {
      if (live) {
        if (!o.live) return send(res, 501, { error: 'live tracing is not available on this node' });
        return send(res, 200, await o.live(env, parsed));
      }
      const stepResult = await traceNode(env, parsed as typeof parsed & { directory: Directory });
      log.info({ caller: caller.username, packet: parsed.packet, ingress: parsed.ingress.kind, outcomes: stepResult.outcomes.length, tookMs: stepResult.tookMs }, 'trace explain');
      return send(res, 200, stepResult);
    } catch (e) {
      log.warn({ err: formatError(e) }, 'trace failed');
      return send(res, 500, { error: formatError(e) });
    }
  };
  return new Map([
    ['/trace/explain', handle(false)],
    ['/trace/live', handle(true)],
  ]);
}

/** Live tracing (probe + nftrace); filled in by src/agent/trace-live.ts. */
export function liveTrace(): Pick<AgentTraceOptions, 'live'> {
  return {};
}
