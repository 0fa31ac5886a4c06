/**
 * Subcommand registry. Each room that has a command adds it here.
 */
import type { Command } from 'commander';
import { apiCommand } from './api.js';

export function registerCommands(program: Command): void {
  program.addCommand(apiCommand());
  program.addHelpText(
    'after',
    `
Examples:
  podnet api --data-dir /var/lib/podnet/api --token-auth-file /etc/podnet/tokens.csv --listen 0.0.0.0:6443
  podnet --version

Quick start and every command: see README.md.`,
  );
}
