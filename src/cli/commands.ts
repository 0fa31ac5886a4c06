/**
 * Subcommand registry. Each room that has a command adds it here.
 */
import type { Command } from 'commander';

export function registerCommands(program: Command): void {
  program.addHelpText(
    'after',
    `
Examples:
  podnet --version
  podnet --help

Quick start and every command: see README.md.`,
  );
}
