/**
 * Subcommand registry. Each room that has a command adds it here.
 */
import type { Command } from 'commander';
import { apiCommand } from './api.js';
import { agentCommand, cleanupCommand, podCommand } from './agent.js';
import { traceCommand } from './trace.js';
import { demoCommand } from './demo.js';

export function registerCommands(program: Command): void {
  program.addCommand(apiCommand());
  program.addCommand(agentCommand());
  program.addCommand(cleanupCommand());
  program.addCommand(podCommand());
  program.addCommand(traceCommand());
  program.addCommand(demoCommand());
  program.addHelpText(
    'after',
    `
Examples:
  podnet demo                 # a 3-node cluster in namespaces, shown working; podnet demo down removes it
  podnet api --data-dir /var/lib/podnet/api --token-auth-file /etc/podnet/tokens.csv --listen 0.0.0.0:6443
  podnet agent --kubeconfig /etc/podnet/node.kubeconfig --node-name n1 --node-ip 198.18.0.1 --cluster-cidr 10.244.0.0/16 --state-dir /var/lib/podnet/agent
  ip netns exec $(podnet pod netns default/web) ip addr
  podnet trace --kubeconfig admin.kubeconfig --from default/client --to svc/default/web:80
  podnet cleanup --node-name n1 --state-dir /var/lib/podnet/agent
  podnet --version

Quick start and every command: see README.md.`,
  );
}
