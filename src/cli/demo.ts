/**
 * `podnet demo` and `podnet demo down`: a 3-node podnet cluster in network namespaces on
 * this machine, with pods, a Service, kubectl output, curl through the ClusterIP and the
 * trace of that path; `down` removes all of it. See src/demo/demo.ts.
 */
import { Command, Option } from 'commander';
import { DEFAULTS, demoDown, demoUp, validatePrefix } from '../demo/demo.js';
import { ErrorCodes, PodnetError } from '../util/errors.js';

function port(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 65535) throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `--api-port: ${JSON.stringify(v)} is not a port (1-65535)`, { field: '--api-port' });
  return Number(v);
}

export function demoCommand(): Command {
  const demo = new Command('demo')
    .description('bring up a 3-node podnet cluster in network namespaces (api, agents, pods, a Service), show it working and trace a packet; `podnet demo down` removes it')
    .addOption(new Option('--backend <name>', 'transport between the nodes').choices(['vxlan', 'host-gw', 'udp']).default(DEFAULTS.backend))
    .addOption(new Option('--proxy-mode <mode>', 'service VIP mode').choices(['nftables', 'iptables', 'ipvs']).default(DEFAULTS.proxyMode))
    .option('--api-port <port>', 'loopback port of the demo api (kubectl)', String(DEFAULTS.apiPort))
    .option('--prefix <prefix>', 'prefix of the demo\'s namespaces and of its state dir /run/<prefix>', DEFAULTS.prefix)
    .action(async (o: { backend: 'vxlan' | 'host-gw' | 'udp'; proxyMode: 'nftables' | 'iptables' | 'ipvs'; apiPort: string; prefix: string }) => {
      const r = await demoUp({ ...DEFAULTS, backend: o.backend, proxyMode: o.proxyMode, apiPort: port(o.apiPort), prefix: validatePrefix(o.prefix) });
      process.exitCode = r.traceExit === 0 ? 0 : 1;
    });
  demo
    .command('down')
    .description('remove the demo: its processes, pod sandboxes, namespaces and state dir (safe to repeat; --prefix as given to podnet demo)')
    .action(async () => {
      // `podnet demo down --prefix P`: the option is demo's own (commander gives it to the parent).
      const prefix = String((demo.opts() as { prefix?: string }).prefix ?? DEFAULTS.prefix);
      await demoDown({ prefix: validatePrefix(prefix), out: DEFAULTS.out });
    });
  return demo;
}
