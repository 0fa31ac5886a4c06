/**
 * The configuration reference (docs/flags.md) generated from the command definitions, so it
 * lists every flag of every command with its default, and cannot drift: a test compares the
 * file with this output (UPDATE_DOCS=1 rewrites it).
 */
import type { Command } from 'commander';

const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

function commandSection(cmd: Command, path: string[]): string[] {
  const name = [...path, cmd.name()].join(' ');
  const out: string[] = [];
  const opts = cmd.options.filter((o) => !o.hidden);
  const args = cmd.registeredArguments.map((a) => (a.required ? `<${a.name()}>` : `[${a.name()}]`)).join(' ');
  if (path.length) {
    out.push(`## \`${name}${args ? ` ${args}` : ''}\``, '', cmd.description(), '');
    if (opts.length) {
      out.push('| flag | meaning | default |', '|---|---|---|');
      for (const o of opts) {
        // The log level's default comes from $PODNET_LOG_LEVEL: document the rule, not this shell's value.
        const def = o.long === '--log-level' ? '`$PODNET_LOG_LEVEL`, else `info`' : o.defaultValue === undefined || o.defaultValue === false || o.defaultValue === '' ? '' : `\`${String(o.defaultValue)}\``;
        const choices = o.argChoices ? ` (one of: ${o.argChoices.join(', ')})` : '';
        out.push(`| \`${cell(o.flags)}\` | ${cell(o.description)}${choices}${o.mandatory ? ' **(required)**' : ''} | ${def} |`);
      }
      out.push('');
    }
  }
  for (const sub of cmd.commands) out.push(...commandSection(sub, [...path, cmd.name()]));
  return out;
}

export function flagsMarkdown(program: Command): string {
  return [
    '# Configuration reference: every command and flag',
    '',
    'Generated from the command definitions (`src/cli/flags-doc.ts`; a unit test keeps this file in step with them).',
    '`podnet agent --config FILE` and `podnet api --config FILE` (when available) take the same options in YAML or JSON; flags win over the file.',
    '',
    ...commandSection(program, []),
  ].join('\n');
}
