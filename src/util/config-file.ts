/**
 * Reading a command's `--config` file (`podnet agent`, `podnet api`): YAML or JSON holding
 * one mapping of options. Each command checks the keys itself.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { ErrorCodes, PodnetError } from './errors.js';

const invalid = (reason: string) => new PodnetError(ErrorCodes.INVALID_ARGUMENT, `--config ${reason}`, { field: '--config' });

/** The file's mapping (an empty file is an empty mapping); errors name `--config` and the file. */
export function readConfigMapping(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw invalid(`${JSON.stringify(path)} cannot be read: ${(e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text, { maxAliasCount: 10 });
  } catch (e) {
    throw invalid(`${JSON.stringify(path)} is not YAML or JSON: ${(e as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw invalid(`${JSON.stringify(path)} must hold a mapping of options`);
  return doc as Record<string, unknown>;
}
