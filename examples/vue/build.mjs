// Bundles src/main.js with esbuild into dist/app.js (Vue's runtime-only
// build: the components use render functions, so no template compiler and
// no eval under the page's Content-Security-Policy), with index.html.
// `npm run build`; serve dist/ (scripts/demo.sh does, at /vue/).
import * as esbuild from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, 'dist');
fs.rmSync(dist, { recursive: true, force: true });
fs.mkdirSync(dist);

await esbuild.build({
  absWorkingDir: here,
  entryPoints: ['src/main.js'],
  outfile: path.join(dist, 'app.js'),
  bundle: true,
  format: 'esm',
  target: 'es2020',
  minify: true,
  // node_modules/ssehub-client links to clients/js: resolve its imports
  // (vue) from here, so the page has one Vue.
  preserveSymlinks: true,
  define: {
    'process.env.NODE_ENV': '"production"',
    __VUE_OPTIONS_API__: 'true',
    __VUE_PROD_DEVTOOLS__: 'false',
    __VUE_PROD_HYDRATION_MISMATCH_DETAILS__: 'false',
  },
  logLevel: 'warning',
});
fs.copyFileSync(path.join(here, 'index.html'), path.join(dist, 'index.html'));
