// The package itself, without a server: its TypeScript declarations (tsc
// and the names they declare against what the modules export), what
// `npm pack` puts in the tarball and that the tarball installs and imports,
// and the HTTPS example staying in step with the plain one.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'node:test';
import ts from 'typescript';
import { here, repo } from './lib.mjs';

const pkgDir = path.join(repo, 'clients/js');
const read = (f) => fs.readFileSync(path.join(pkgDir, f), 'utf8');

test('types: tsc --noEmit (strict) on a file using every declaration, misuses rejected', () => {
  const tsc = path.join(here, 'node_modules/typescript/bin/tsc');
  try {
    execFileSync(process.execPath, [tsc, '-p', here], { encoding: 'utf8', stdio: 'pipe' });
  } catch (e) {
    assert.fail('tsc failed:\n' + e.stdout + e.stderr);
  }
});

// Value exports (classes, functions) of a .d.ts and each class's members.
function declared(file) {
  const src = ts.createSourceFile(file, read(file), ts.ScriptTarget.Latest, true);
  const out = {};
  for (const st of src.statements) {
    const exported = ts.getModifiers(st)?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
    if (!exported || !st.name) continue;
    if (ts.isClassDeclaration(st)) {
      out[st.name.text] = st.members.filter((m) => m.name).map((m) => m.name.text).sort();
    } else if (ts.isFunctionDeclaration(st)) {
      out[st.name.text] = 'function';
    }
  }
  return out;
}

const exportedByRegex = (file) => [...read(file).matchAll(/^export (?:async )?(?:function|class) (\w+)/gm)].map((m) => m[1]).sort();

test('types: the declarations name exactly what the modules export, members included', async () => {
  const mod = await import('ssehub-client');
  const d = declared('index.d.ts');
  assert.deepEqual(Object.keys(mod).sort(), Object.keys(d).sort());
  const publicNames = (obj) => {
    const names = new Set(Object.keys(obj));
    Object.getOwnPropertyNames(Object.getPrototypeOf(obj)).forEach((n) => names.add(n));
    return [...names].filter((n) => !n.startsWith('_') && n !== 'constructor').sort();
  };
  assert.deepEqual(publicNames(new mod.SSEClient('http://hub.invalid/sse/stream', { transport: 'fetch' })), d.SSEClient);
  assert.deepEqual(publicNames(new mod.SSEParser(() => {})), d.SSEParser);
  const err = new mod.SSEHttpError(401, 'token_expired', 'm');
  assert.deepEqual(d.SSEHttpError, ['status', 'code'].sort());
  assert.equal(err.status, 401);
  assert.equal(err.code, 'token_expired');
  // react.js and vue.js import their framework: compare their source.
  for (const f of ['react', 'vue']) {
    assert.deepEqual(exportedByRegex(f + '.js'), Object.keys(declared(f + '.d.ts')).sort(), f);
  }
});

const EXPECTED_FILES = ['README.md', 'index.d.ts', 'index.js', 'package.json',
  'react.d.ts', 'react.js', 'vue.d.ts', 'vue.js'];

test('npm pack: the tarball holds only what a user needs', () => {
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: pkgDir, encoding: 'utf8' });
  const [info] = JSON.parse(out);
  assert.equal(info.name, 'ssehub-client');
  assert.deepEqual(info.files.map((f) => f.path).sort(), EXPECTED_FILES);
});

test('npm pack: the tarball installs (offline) and its entry points import', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ssehub-pack-'));
  try {
    const out = execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', tmp],
                             { cwd: pkgDir, encoding: 'utf8' });
    const tgz = path.join(tmp, JSON.parse(out)[0].filename);
    const app = path.join(tmp, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    execFileSync('npm', ['install', '--offline', '--ignore-scripts', '--no-audit', '--no-fund', tgz],
                 { cwd: app, encoding: 'utf8', stdio: 'pipe' });
    assert.deepEqual(fs.readdirSync(path.join(app, 'node_modules/ssehub-client')).sort(), EXPECTED_FILES);
    const probe = `import { SSEClient, SSEParser, SSEHttpError } from 'ssehub-client';
      import pkg from 'ssehub-client/package.json' with { type: 'json' };
      const c = new SSEClient('http://hub.invalid/sse/stream', { transport: 'fetch' });
      console.log(pkg.name, typeof SSEParser, typeof SSEHttpError, c.state);`;
    const res = execFileSync(process.execPath, ['--input-type=module', '-e', probe], { cwd: app, encoding: 'utf8' });
    assert.equal(res.trim(), 'ssehub-client function function closed');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

// The directives of a file's first server block, comments and line breaks
// gone, one statement (or brace) per entry.
function serverStatements(file) {
  const text = fs.readFileSync(file, 'utf8').split('\n').map((l) => l.replace(/(^|\s)#.*$/, '')).join('\n');
  const start = text.search(/^server\s*\{/m);
  assert.ok(start >= 0, 'no server block in ' + file);
  const out = [];
  let depth = 0;
  let cur = '';
  for (const ch of text.slice(start)) {
    if (ch === '{' || ch === '}' || ch === ';') {
      out.push((cur.trim().replace(/\s+/g, ' ') + ' ' + ch).trim());
      cur = '';
      depth += ch === '{' ? 1 : ch === '}' ? -1 : 0;
      if (depth === 0) break;
    } else {
      cur += ch;
    }
  }
  // What differs between HTTP and HTTPS by design.
  // (request_pool_size: HTTP/2 keeps a stream's header lines in its pool.)
  return out.filter((s) => !/^(listen|server_name|ssl_\w+|request_pool_size) /.test(s) && !s.includes('Strict-Transport-Security'));
}

test('nginx: ssehub-tls.conf has the same directives as ssehub.conf but for listen, TLS and HSTS', () => {
  const plain = serverStatements(path.join(repo, 'examples/nginx/ssehub.conf'));
  const tls = serverStatements(path.join(repo, 'examples/nginx/ssehub-tls.conf'));
  assert.ok(plain.length > 30, 'parsed ' + plain.length + ' statements');
  assert.deepEqual(tls, plain);
});
