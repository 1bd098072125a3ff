import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DASHBOARD_VENDOR_FILES, dashboardRoutes, defaultDashboardDir } from '../../src/control/dashboard.js';

const app = dashboardRoutes();
const dir = defaultDashboardDir();

/** Every module a dashboard module imports, as written (`./x.js`, `preact/hooks`, …). */
function importsOf(source: string): string[] {
  return [...source.matchAll(/^\s*import\s+(?:[^'";]+\s+from\s+)?['"]([^'"]+)['"]/gm)].map((m) => m[1] ?? '');
}

describe('the dashboard files', () => {
  it('serve the page at / and /dashboard/ with a CSP that admits its import map by hash', async () => {
    for (const path of ['/', '/dashboard/', '/dashboard/index.html']) {
      const res = await app.request(path);
      assert.equal(res.status, 200, path);
      assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8');
      const html = await res.text();
      assert.match(html, /<script type="module" src="\/dashboard\/app\.js"><\/script>/);
      const map = /<script type="importmap">([\s\S]*?)<\/script>/.exec(html)?.[1] ?? '';
      const hash = createHash('sha256').update(map).digest('base64');
      const csp = res.headers.get('content-security-policy') ?? '';
      assert.match(csp, /default-src 'self'/);
      assert.ok(csp.includes(`'sha256-${hash}'`), 'the inline import map is allowed by its hash, nothing else inline');
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    }
    const redirect = await app.request('/dashboard');
    assert.equal(redirect.status, 301);
    assert.equal(redirect.headers.get('location'), '/dashboard/');
  });

  it('serve the vendor builds of preact, htm and uPlot from node_modules with their content types', async () => {
    for (const file of Object.keys(DASHBOARD_VENDOR_FILES)) {
      const res = await app.request(`/dashboard/vendor/${file}`);
      assert.equal(res.status, 200, file);
      const type = res.headers.get('content-type') ?? '';
      assert.equal(type, file.endsWith('.css') ? 'text/css; charset=utf-8' : 'text/javascript; charset=utf-8');
      const body = await res.text();
      if (!file.endsWith('.css')) assert.match(body, /\bexport\b/, `${file} is an ES module`);
    }
    assert.equal((await app.request('/dashboard/vendor/react.js')).status, 404);
  });

  it('resolve every import of every module through the import map or a served file', async () => {
    const html = await (await app.request('/')).text();
    const map = JSON.parse(/<script type="importmap">([\s\S]*?)<\/script>/.exec(html)?.[1] ?? '{}') as {
      imports: Record<string, string>;
    };
    const modules = [
      ...(await readdir(dir)).filter((f) => f.endsWith('.js')),
      ...(await readdir(join(dir, 'views'))).filter((f) => f.endsWith('.js')).map((f) => `views/${f}`),
    ];
    assert.ok(modules.includes('app.js') && modules.length >= 8);
    for (const module of modules) {
      const res = await app.request(`/dashboard/${module}`);
      assert.equal(res.status, 200, module);
      assert.equal(res.headers.get('content-type'), 'text/javascript; charset=utf-8');
      for (const spec of importsOf(await readFile(join(dir, module), 'utf8'))) {
        const url = spec.startsWith('.') ? new URL(spec, `http://x/dashboard/${module}`).pathname : map.imports[spec];
        assert.ok(url, `${module} imports ${spec}, which the import map does not name`);
        assert.equal((await app.request(url)).status, 200, `${module} → ${spec} (${url})`);
      }
    }
    for (const css of ['/dashboard/styles.css', '/dashboard/favicon.svg']) {
      assert.equal((await app.request(css)).status, 200, css);
    }
  });

  it('serve nothing outside the directory or of another kind', async () => {
    for (const path of [
      '/dashboard/../package.json',
      '/dashboard/%2e%2e/package.json',
      '/dashboard/%2e%2e/control/app.ts',
      '/dashboard/tsconfig.json',
      '/dashboard/types.d.ts',
      '/dashboard/nope.js',
      '/dashboard/%00.js',
    ]) {
      const res = await app.request(path);
      assert.equal(res.status, 404, path);
    }
  });
});
