// Build the web client into server/omokage/web/ (committed, so `pip install omokage` serves a working
// page without Node.js).
//
//   node build.mjs            build into ../server/omokage/web
//   node build.mjs --out DIR  build into DIR
//   node build.mjs --check    build into a temporary folder and fail if it differs from the committed build
//
// Output: index.html, app.css, app.js (the page) and xr.js (three.js and the VR scene, loaded by a
// dynamic import only when the user enters VR).

import { mkdtemp, readdir, readFile, rm, mkdir, copyFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const committed = path.resolve(here, '../server/omokage/web');

export async function build(outdir) {
  await rm(outdir, { recursive: true, force: true });
  await mkdir(outdir, { recursive: true });
  await esbuild.build({
    absWorkingDir: here,
    entryPoints: { app: 'src/main.js' },
    bundle: true,
    splitting: true,
    format: 'esm',
    minify: true,
    target: ['chrome100', 'firefox100', 'safari15'],
    entryNames: '[name]',
    chunkNames: '[name]',
    legalComments: 'eof',
    charset: 'utf8',
    outdir,
    logLevel: 'warning',
  });
  await esbuild.build({
    absWorkingDir: here,
    entryPoints: { app: 'src/app.css' },
    bundle: true,
    minify: true,
    target: ['chrome100', 'firefox100', 'safari15'],
    charset: 'utf8',
    outdir,
    logLevel: 'warning',
  });
  await copyFile(path.join(here, 'src/index.html'), path.join(outdir, 'index.html'));
  return sizes(outdir);
}

async function sizes(dir) {
  const out = {};
  for (const f of (await readdir(dir)).sort()) out[f] = (await stat(path.join(dir, f))).size;
  return out;
}

async function same(a, b) {
  const fa = (await readdir(a)).sort();
  const fb = (await readdir(b)).sort();
  const problems = [];
  for (const f of new Set([...fa, ...fb])) {
    if (!fa.includes(f)) problems.push(`${f}: in the committed build only (stale)`);
    else if (!fb.includes(f)) problems.push(`${f}: missing from the committed build`);
    else if (!(await readFile(path.join(a, f))).equals(await readFile(path.join(b, f)))) problems.push(`${f}: differs`);
  }
  return problems;
}

function report(s) {
  const page = (s['index.html'] || 0) + (s['app.js'] || 0) + (s['app.css'] || 0);
  const lazy = Object.entries(s).filter(([f]) => f.endsWith('.js') && f !== 'app.js');
  console.log(Object.entries(s).map(([f, n]) => `  ${f.padEnd(12)} ${String(n).padStart(8)} B`).join('\n'));
  console.log(`  page load (html+js+css): ${page} B; loaded on entering VR: ${lazy.map(([f, n]) => `${f} ${n} B`).join(', ')}`);
}

const args = process.argv.slice(2);
if (args.includes('--check')) {
  const tmp = await mkdtemp(path.join(tmpdir(), 'omokage-web-'));
  try {
    const s = await build(tmp);
    report(s);
    const problems = await same(tmp, committed);
    if (problems.length) {
      console.error(`server/omokage/web is stale: run \`npm run build\` in web_client and commit it\n  ${problems.join('\n  ')}`);
      process.exitCode = 1;
    } else {
      console.log('server/omokage/web matches the sources');
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
} else {
  const i = args.indexOf('--out');
  const outdir = i >= 0 ? path.resolve(args[i + 1]) : committed;
  report(await build(outdir));
  console.log(`built into ${outdir}`);
}
