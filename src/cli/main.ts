#!/usr/bin/env node
/** Entry point of the `podnet` command (see ./program.ts). */
import { formatError } from '../util/errors.js';
import { main } from './program.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`podnet: ${formatError(e)}\n`);
    process.exitCode = 1;
  },
);
