// Bundles src/main.jsx with esbuild into dist/: app.js (production React,
// StrictMode does nothing) and app.dev.js (development React: StrictMode
// mounts every component twice, as during development), with index.html and
// dev.html loading them. `npm run build`; serve dist/ (scripts/demo.sh does,
// at /react/).
import * as esbuild from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, 'dist');
fs.rmSync(dist, { recursive: true, force: true });
fs.mkdirSync(dist);

const common = {
  absWorkingDir: here,
  entryPoints: ['src/main.jsx'],
  bundle: true,
  format: 'esm',
  target: 'es2020',
  jsx: 'automatic',
  // node_modules/ssehub-client links to clients/js: resolve its imports
  // (react) from here, so the page has one React.
  preserveSymlinks: true,
  logLevel: 'warning',
};
for (const [out, mode] of [['app.js', 'production'], ['app.dev.js', 'development']]) {
  await esbuild.build(Object.assign({}, common, {
    outfile: path.join(dist, out),
    minify: mode === 'production',
    define: { 'process.env.NODE_ENV': JSON.stringify(mode) },
  }));
}
const html = fs.readFileSync(path.join(here, 'index.html'), 'utf8');
fs.writeFileSync(path.join(dist, 'index.html'), html);
fs.writeFileSync(path.join(dist, 'dev.html'),
  html.replace('src="app.js"', 'src="app.dev.js"').replace('<title>', '<title>(development) '));
