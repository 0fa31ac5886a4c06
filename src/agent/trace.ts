/**
 * The agent's part of `podnet trace`: POST /trace/explain (and /trace/live) on the agent
 * endpoint, for callers the API authenticates. Each request gets a NodeEnv over this node's
 * kernel — the host netlink handle, the sandbox records, and the proxy mode's interpreter
 * reading only what the packet touches — and answers with this node's NodeStep.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { NetNS, Netlink } from '../kernel/index.js';
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
import { createIpvsInterpreter, kernelIpvsView } from '../trace/ipvs.js';
import { createIptablesInterpreter, kernelIptablesView } from '../trace/iptables.js';
import { kernelNftView, recogniseRule } from '../trace/nftables-kernel.js';
import { execa } from 'execa';
import { describeRule } from '../kernel/nftables/decode.js';
import { NFTA_RULE, attrU64, parseAttrs } from '../kernel/nftables/nfnl.js';
import { TABLE_NAME } from '../proxy/nftables/plan.js';
import { renderRule } from '../proxy/nftables/render.js';
import { traceNode } from '../trace/node.js';
import type { NodeEnv } from '../trace/node.js';
import { parseNodeRequest } from '../trace/request.js';
import { LiveTracer } from '../trace/live/agent.js';
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
}

/** An interpreter over this node's kernel for one family's snapshot. */
export type InterpreterFactory = (snapshot: ProxySnapshot, o: { masquerade: boolean }) => LbInterpreter;

/** What the agent keeps open for traces (the nf_tables socket), closed with the agent. */
class Readers {
  private nft: NftExecutor | undefined;
  get executor(): NftExecutor {
    return (this.nft ??= NftExecutor.open());
  }
  readonly factories = new Map<string, InterpreterFactory>([
    ['nftables', (snapshot, o) => createNftablesInterpreter(kernelNftView({ reader: (this.nft ??= NftExecutor.open()), snapshot, egress: o.masquerade }))],
    ['iptables', (snapshot) => createIptablesInterpreter(kernelIptablesView({ family: snapshot.family }), { family: snapshot.family, ...(snapshot.node.clusterCIDR ? { clusterCIDR: snapshot.node.clusterCIDR } : {}), nodeIPs: snapshot.node.nodeIPs })],
    ['ipvs', (snapshot) => createIpvsInterpreter(kernelIpvsView({ family: snapshot.family, snapshot }), { family: snapshot.family, ...(snapshot.node.clusterCIDR ? { clusterCIDR: snapshot.node.clusterCIDR } : {}), nodeIPs: snapshot.node.nodeIPs })],
  ]);
  close(): void {
    this.nft?.close();
    this.nft = undefined;
  }
}

/** The NodeEnv of this node for one trace request. */
export function nodeEnv(o: AgentTraceOptions, factories: ReadonlyMap<string, InterpreterFactory>): NodeEnv {
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
        .map((r) => ({ namespace: r.namespace!, name: r.name!, hostVeth: r.hostVeth, addresses: r.addresses.map((a) => a.split('/')[0]!), mtu: r.mtu, ifname: r.ifname }));
    },
    async podMtu(pod) {
      const rec = o.records.list().find((r) => r.kind === 'pod' && r.namespace === pod.namespace && r.name === pod.name);
      if (!rec) return undefined;
      const ns = NetNS.open(rec.netnsPath);
      try {
        const nl = Netlink.open(ns);
        try {
          return (await nl.links.get(rec.ifname))?.mtu;
        } finally {
          nl.close();
        }
      } finally {
        ns.close();
      }
    },
    serviceFor(pkt) {
      const snap = snapshots.find((x) => x.family === pkt.family);
      const proto = pkt.proto.toUpperCase();
      for (const sp of snap?.services.values() ?? []) {
        if (sp.protocol !== proto) continue;
        const vip = sp.port === pkt.dport && (sp.clusterIP === pkt.dst || sp.externalIPs.includes(pkt.dst) || sp.loadBalancerIPs.includes(pkt.dst));
        const np = sp.nodePort !== 0 && sp.nodePort === pkt.dport && (snap!.node.nodeIPs.includes(pkt.dst) || snap!.node.nodeIPs.length === 0);
        if (vip || np) return [{ kind: 'Service', namespace: sp.namespace, name: sp.name }];
      }
      return undefined;
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

export interface AgentTrace {
  routes: Map<string, Route>;
  /** Removes trace tables of an earlier (crashed) agent. */
  sweep(): Promise<void>;
  close(): Promise<void>;
}

/** The /trace/* routes for the agent server, and what they hold open. */
export function createAgentTrace(o: AgentTraceOptions): AgentTrace {
  const log = o.log.child({ component: 'trace' });
  const readers = new Readers();
  const ifnames = new Map<number, string>();
  const live = new LiveTracer({
    log,
    podNetns: (namespace, name) => o.records.list().find((r) => r.kind === 'pod' && r.namespace === namespace && r.name === name)?.netnsPath,
    ifname: (index) => ifnames.get(index),
    describe: (family, table, chain, handle) => describeTraced(o, readers, family, table, chain, handle),
  });
  const explain: Route = async (req, res, caller) => {
    if (req.method !== 'POST') return send(res, 405, { error: 'POST a trace request' });
    let parsed: ReturnType<typeof parseNodeRequest>;
    try {
      parsed = parseNodeRequest(await readJson(req));
    } catch (e) {
      return send(res, 400, { error: formatError(e) });
    }
    try {
      const stepResult = await traceNode(nodeEnv(o, readers.factories), parsed);
      log.info({ caller: caller.username, packet: parsed.packet, ingress: parsed.ingress.kind, outcomes: stepResult.outcomes.length, tookMs: stepResult.tookMs }, 'trace explain');
      return send(res, 200, stepResult);
    } catch (e) {
      log.warn({ err: formatError(e) }, 'trace failed');
      return send(res, 500, { error: formatError(e) });
    }
  };
  const liveRoute: Route = async (req, res, caller) => {
    if (req.method !== 'POST') return send(res, 405, { error: 'POST a live trace request' });
    let parsed: ReturnType<LiveTracer['parse']>;
    try {
      parsed = live.parse(await readJson(req));
    } catch (e) {
      return send(res, 400, { error: formatError(e) });
    }
    try {
      if (parsed.phase === 'start') for (const l of await o.host.links.list()) ifnames.set(l.index, l.name);
      const answer = await live.handle(parsed);
      log.info({ caller: caller.username, phase: parsed.phase, id: parsed.id }, 'trace live');
      return send(res, 200, answer);
    } catch (e) {
      log.warn({ err: formatError(e), phase: parsed.phase }, 'live trace failed');
      return send(res, e instanceof PodnetError && e.code === ErrorCodes.INVALID_ARGUMENT ? 400 : 500, { error: formatError(e) });
    }
  };
  return {
    routes: new Map([
      ['/trace/explain', explain],
      ['/trace/live', liveRoute],
    ]),
    sweep: () => live.sweep(),
    async close() {
      await live.close();
      readers.close();
    },
  };
}

/**
 * The rule a live trace event names, by handle: for podnet's own table the nft syntax of the
 * planned rule it is (recognised like the explain view does), for iptables-nft's tables the
 * `iptables -S` line at the same position, otherwise the kernel's expressions.
 */
async function describeTraced(o: AgentTraceOptions, readers: Readers, family: string, table: string, chain: string, handle: number): Promise<string | undefined> {
  if (family !== 'ip' && family !== 'ip6') return undefined;
  const payloads = await readers.executor.chainRules(family, table, chain);
  const idx = payloads.findIndex((p) => attrU64(parseAttrs(p, 4).get(NFTA_RULE.HANDLE)) === handle);
  if (idx < 0) return undefined;
  const payload = payloads[idx]!;
  if (table === TABLE_NAME) {
    const snap = o.proxier()?.snapshots().find((x) => x.family === (family === 'ip' ? 4 : 6));
    const rule = snap ? recogniseRule({ reader: readers.executor, snapshot: snap, egress: o.masquerade }, chain, payload) : undefined;
    if (rule) return renderRule(rule, true, family);
  } else if (['nat', 'filter', 'mangle', 'raw'].includes(table)) {
    const r = await execa(family === 'ip' ? 'iptables' : 'ip6tables', ['-w', '5', '-t', table, '-S', chain], { reject: false, timeout: 10_000 });
    const lines = String(r.stdout).split('\n').filter((l) => l.startsWith('-A '));
    if (r.exitCode === 0 && lines.length === payloads.length && lines[idx]) return lines[idx];
  }
  const d = describeRule(payload);
  return `${d.exprs.join(' ')}${d.comment ? ` comment "${d.comment}"` : ''}`;
}
