/**
 * `podnet trace`: where does a packet go, and why does it not arrive? Resolves the source
 * and destination through the API, asks each node's agent for its part (explain: read and
 * interpret the node's state; --live: a real marked probe with kernel trace events), and
 * prints the observations per node and the verdict. Exit status 0 only for Delivered.
 */
import { writeFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { request } from 'undici';
import { KubeClient, RESOURCES, configFromFlags, loadKubeconfig } from '../client/index.js';
import type { ClientConfig } from '../client/index.js';
import { isNotFound } from '../client/errors.js';
import { defaultKubeconfigPath } from '../client/kubeconfig.js';
import type { EndpointSlice, Node, Pod, Service } from '../client/types.js';
import { ErrorCodes, PodnetError, formatError } from '../util/errors.js';
import { renderSvg } from '../trace/render/svg.js';
import { renderText } from '../trace/render/text.js';
import { runTrace } from '../trace/run.js';
import type { TraceDeps } from '../trace/run.js';
import type { NodeStep } from '../trace/types.js';

/** Exit status per verdict: 0 Delivered, 1 Dropped / Rejected / ForwardedOutOfCluster / Unknown, 2 bad input. */
export const TRACE_EXIT = { Delivered: 0, Dropped: 1, Rejected: 1, ForwardedOutOfCluster: 1, Unknown: 1 } as const;

export function traceCommand(): Command {
  return new Command('trace')
    .description('trace a packet through the cluster: every hop on every node, the rules and routes that decided it, and the verdict')
    .requiredOption('--from <source>', 'NAMESPACE/NAME (a pod), node/NAME, or an IP (a pod, a node, or an outside client of a NodePort)')
    .requiredOption('--to <target>', 'ClusterIP:PORT, NodeIP:NODEPORT, PodIP:PORT or svc/NAMESPACE/NAME:PORT, then /tcp (default), /udp, /sctp or /icmp')
    .option('--live', 'send a real probe (marked with a DSCP value) and collect the kernel trace events on every node involved')
    .option('--json', 'print the result as JSON (schema podnet.trace/v1, see docs/trace.md)')
    .option('--svg <file>', 'also write a picture of the hops across nodes')
    .option('--src-port <n>', 'source port of the packet (default: random ephemeral; ICMP: the echo id)')
    .option('--size <bytes>', 'IP packet size in bytes, checked against every hop MTU (default: headers only)')
    .option('--timeout <ms>', 'live: how long the probe waits for an answer (default 1000)')
    .option('--kubeconfig <file>', 'kubeconfig for the podnet api (or a kube-apiserver)')
    .option('--server <url>', 'API server URL (instead of --kubeconfig)')
    .option('--token <token>', 'bearer token for --server (also sent to the agents)')
    .option('--token-file <file>', 'file holding the bearer token')
    .option('--ca-file <file>', 'CA certificate of the API server')
    .option('--insecure-skip-tls-verify', 'do not verify the API server certificate (tests only)')
    .addOption(new Option('--color <when>', 'colour the text output').choices(['auto', 'always', 'never']).default('auto'))
    .action(async (o: Record<string, string | boolean | undefined>) => {
      const num = (flag: string, v: unknown): number | undefined => {
        if (v === undefined) return undefined;
        if (typeof v !== 'string' || !/^\d+$/.test(v)) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `${flag}: ${JSON.stringify(v)} is not a number`, { field: flag });
        return Number(v);
      };
      let code: number;
      try {
        const cfg: ClientConfig = typeof o.kubeconfig === 'string' ? await loadKubeconfig({ path: o.kubeconfig }) : typeof o.server === 'string' ? await configFromFlags({ server: o.server, ...(typeof o.token === 'string' ? { token: o.token } : {}), ...(typeof o.tokenFile === 'string' ? { tokenFile: o.tokenFile } : {}), ...(typeof o.caFile === 'string' ? { caFile: o.caFile } : {}), ...(o.insecureSkipTlsVerify ? { insecure: true } : {}) }) : await loadKubeconfig({ path: defaultKubeconfigPath() });
        const client = new KubeClient(cfg);
        try {
          const result = await runTrace(
            { from: String(o.from), to: String(o.to), live: o.live === true, ...opt('srcPort', num('--src-port', o.srcPort)), ...opt('size', num('--size', o.size)), ...opt('timeoutMs', num('--timeout', o.timeout)) },
            clientDeps(client, cfg.token),
          );
          if (typeof o.svg === 'string') writeFileSync(o.svg, renderSvg(result));
          const color = o.color === 'always' || (o.color === 'auto' && process.stdout.isTTY && !process.env.NO_COLOR);
          process.stdout.write(o.json ? JSON.stringify(result, null, 2) + '\n' : renderText(result, { color }));
          code = TRACE_EXIT[result.verdict.kind];
        } finally {
          client.close();
        }
      } catch (e) {
        process.stderr.write(`podnet trace: ${formatError(e)}\n`);
        code = e instanceof PodnetError && e.code === ErrorCodes.INVALID_ARGUMENT ? 2 : 1;
      }
      process.exitCode = code;
    });
}

const opt = <K extends string, V>(k: K, v: V | undefined): Partial<Record<K, V>> => (v === undefined ? {} : ({ [k]: v } as Record<K, V>));

/** The API through the client; agents over HTTP with the same bearer token. */
export function clientDeps(client: KubeClient, token: string | undefined): TraceDeps {
  return {
    nodes: async () => (await client.resource<Node>(RESOURCES.nodes).list()).items,
    pods: async () => (await client.resource<Pod>(RESOURCES.pods).list()).items,
    services: async () => (await client.resource<Service>(RESOURCES.services).list()).items,
    slices: async (namespace, service) => (await client.resource<EndpointSlice>(RESOURCES.endpointslices).list({ namespace, labelSelector: `kubernetes.io/service-name=${service}` })).items,
    async service(namespace, name) {
      try {
        return await client.resource<Service>(RESOURCES.services).get(namespace, name);
      } catch (e) {
        if (isNotFound(e)) return undefined;
        throw e;
      }
    },
    ask: (node, path, body) => post(node, path, body) as Promise<NodeStep>,
    live: (node, body) => post(node, '/trace/live', body),
    onInterrupt(stop) {
      // Ctrl-C in a live trace: stop it on every node (removes the trace rules), then exit 130.
      const handler = () => void stop().finally(() => process.exit(130));
      process.once('SIGINT', handler);
      process.once('SIGTERM', handler);
      return () => {
        process.off('SIGINT', handler);
        process.off('SIGTERM', handler);
      };
    },
  };
  async function post(node: { name: string; url: string }, path: string, body: unknown): Promise<unknown> {
    const r = await request(`${node.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
      headersTimeout: 30_000,
      bodyTimeout: 30_000,
    });
    const text = await r.body.text();
    if (r.statusCode !== 200) throw new Error(`agent ${node.name} (${node.url}${path}) answered ${r.statusCode}: ${text.slice(0, 500)}`);
    return JSON.parse(text) as unknown;
  }
}
