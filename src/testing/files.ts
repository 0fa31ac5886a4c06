/**
 * Config files for unit tests (test-only): `file(text, ext)` writes text to a new file in
 * `dir`, a temp dir of its own, removed after the test file's tests.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

export function tempFiles(prefix: string): { dir: string; file: (text: string, ext?: string) => string } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  let n = 0;
  const file = (text: string, ext = 'yaml'): string => {
    const p = join(dir, `c${n++}.${ext}`);
    writeFileSync(p, text);
    return p;
  };
  return { dir, file };
}
