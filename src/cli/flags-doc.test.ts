import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { flagsMarkdown } from './flags-doc.js';
import { buildProgram } from './program.js';

const file = fileURLToPath(new URL('../../docs/flags.md', import.meta.url));

describe('docs/flags.md', () => {
  it('lists every command and flag as the commands define them', () => {
    const text = flagsMarkdown(buildProgram());
    if (process.env.UPDATE_DOCS) writeFileSync(file, text);
    expect(readFileSync(file, 'utf8')).toBe(text);
  });
  it('covers the commands an operator uses', () => {
    const text = flagsMarkdown(buildProgram());
    for (const c of ['podnet api', 'podnet agent', 'podnet cleanup', 'podnet trace', 'podnet demo', 'podnet demo down']) expect(text).toContain(`## \`${c}`);
    expect(text).toContain('`--proxy-mode <mode>`');
  });
});
