/**
 * Module hooks that let a plain `node` child process import podnet's TypeScript
 * sources directly (no build step): `./x.js` resolves to `./x.ts` when only the .ts
 * exists, and .ts files are transpiled with the project's own TypeScript compiler.
 * Registered by ./register-ts.mjs; used by the crash tests' children (the store's writer,
 * the IPAM allocator), which are killed with SIGKILL and must run the sources under test.
 */
import { readFile } from 'node:fs/promises';
import ts from 'typescript';

export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (e) {
    if (e?.code === 'ERR_MODULE_NOT_FOUND' && /^(\.|\/|file:)/.test(specifier) && specifier.endsWith('.js')) {
      return next(specifier.slice(0, -3) + '.ts', context);
    }
    throw e;
  }
}

export async function load(url, context, next) {
  if (!url.endsWith('.ts')) return next(url, context);
  const source = await readFile(new URL(url), 'utf8');
  const out = ts.transpileModule(source, {
    fileName: url,
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, sourceMap: false },
  });
  return { format: 'module', source: out.outputText, shortCircuit: true };
}
