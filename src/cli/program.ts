/**
 * The `podnet` program: subcommands register themselves in ./commands.ts; this module
 * parses, runs, and turns errors into one clear line and a non-zero exit status.
 */
import { Command, CommanderError } from 'commander';
import { formatError } from '../util/errors.js';
import { version } from '../util/version.js';
import { registerCommands } from './commands.js';

export function buildProgram(): Command {
  const program = new Command('podnet')
    .description('podnet: a Linux pod-networking data plane (pod sandboxes, VXLAN / host-gw / UDP transports, service VIPs, packet tracing)')
    .version(version, '-V, --version', 'print the podnet version')
    .showHelpAfterError('(run podnet --help for usage)')
    .exitOverride();
  registerCommands(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    // A command that sets its own status (podnet trace: by verdict) keeps it.
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    process.stderr.write(`podnet: ${formatError(e)}\n`);
    return 1;
  }
}
