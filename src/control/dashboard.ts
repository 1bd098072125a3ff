import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Hono, type Context } from 'hono';

/**
 * The operator dashboard: static files from `src/dashboard/` (ES modules, no build step) and the
 * browser builds of its three libraries from `node_modules`, served by the control API at `/` and
 * `/dashboard/*`. Only listed extensions are served, from inside the dashboard directory, and the
 * vendor files by name from a fixed table, so no request reaches any other file.
 */

/** Content types by extension; anything else is not served. */
export const DASHBOARD_CONTENT_TYPES: Readonly<Record<string, string>> = Object.freeze({
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
});

/**
 * The vendor files the dashboard imports (through the import map of index.html), by the name they
 * are served under `/dashboard/vendor/`, with the module specifier Node resolves them from.
 */
export const DASHBOARD_VENDOR_FILES: Readonly<Record<string, string>> = Object.freeze({
  'preact.mjs': 'preact',
  'preact-hooks.mjs': 'preact/hooks',
  'htm.mjs': 'htm',
  'uPlot.esm.js': 'uplot/dist/uPlot.esm.js',
  'uPlot.min.css': 'uplot/dist/uPlot.min.css',
});

/** Finds `src/dashboard` from this module, whether it runs from `src/` (tsx) or `dist/src/` (built). */
export function defaultDashboardDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'src', 'dashboard');
    const parent = dirname(dir);
    if (parent === dir) return join(dirname(fileURLToPath(import.meta.url)), '..', 'dashboard');
    dir = parent;
  }
}

/** Options of {@link dashboardRoutes}. */
export interface DashboardOptions {
  /** Directory of the dashboard's files. Default: {@link defaultDashboardDir}. */
  readonly dir?: string;
}

const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
} as const;

/**
 * The Content-Security-Policy of the page: only our own scripts (and the page's inline import map,
 * by hash), styles and connections. The page holds no token (its session is an HttpOnly cookie), and
 * no foreign script runs.
 */
function contentSecurityPolicy(html: string): string {
  const hashes = [...html.matchAll(/<script type="importmap">([\s\S]*?)<\/script>/g)].map(
    (m) =>
      `'sha256-${createHash('sha256')
        .update(m[1] ?? '')
        .digest('base64')}'`,
  );
  return [
    "default-src 'self'",
    `script-src 'self' ${hashes.join(' ')}`.trim(),
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

/** Reads a file of `root` named by a URL path, or undefined when it is outside root or not servable. */
async function readInside(
  root: string,
  relative: string,
): Promise<{ body: Uint8Array<ArrayBuffer>; type: string } | undefined> {
  let decoded: string;
  try {
    decoded = decodeURIComponent(relative);
  } catch {
    return undefined;
  }
  const type = DASHBOARD_CONTENT_TYPES[extname(decoded).toLowerCase()];
  if (type === undefined || decoded.includes('\0')) return undefined;
  const path = resolve(root, `.${sep}${decoded}`);
  if (!path.startsWith(root + sep)) return undefined;
  try {
    return { body: new Uint8Array(await readFile(path)), type };
  } catch {
    return undefined;
  }
}

/**
 * Routes of the dashboard: `GET /` and `GET /dashboard/` (the page), `GET /dashboard/{path}` (its
 * modules and styles) and `GET /dashboard/vendor/{file}` (preact, htm, uPlot). None needs a token:
 * the page signs in itself (a one-time code, or a token typed once, traded for a session cookie).
 */
export function dashboardRoutes(options: DashboardOptions = {}): Hono {
  const root = resolve(options.dir ?? defaultDashboardDir());
  const app = new Hono();

  const page = async (c: Context): Promise<Response> => {
    const file = await readInside(root, 'index.html');
    if (!file) return c.text('dashboard files are missing', 404);
    const html = new TextDecoder().decode(file.body);
    return c.body(html, 200, {
      ...SECURITY_HEADERS,
      'content-type': file.type,
      'cache-control': 'no-cache',
      'content-security-policy': contentSecurityPolicy(html),
    });
  };
  const notFound = (c: Context): Response =>
    c.json({ error: { code: 'NOT_FOUND', message: `no dashboard file ${c.req.path}` } }, 404);

  app.get('/', page);
  app.get('/dashboard', (c) => c.redirect('/dashboard/', 301));
  app.get('/dashboard/vendor/:file', async (c) => {
    const specifier = DASHBOARD_VENDOR_FILES[c.req.param('file')];
    if (specifier === undefined) return notFound(c);
    const path = fileURLToPath(import.meta.resolve(specifier));
    const type = DASHBOARD_CONTENT_TYPES[extname(path)] ?? 'application/octet-stream';
    return c.body(new Uint8Array(await readFile(path)), 200, {
      ...SECURITY_HEADERS,
      'content-type': type,
      'cache-control': 'public, max-age=3600',
    });
  });
  app.get('/dashboard/*', async (c) => {
    const relative = c.req.path.slice('/dashboard/'.length);
    if (relative === '' || relative === 'index.html') return page(c);
    const file = await readInside(root, relative);
    if (!file) return notFound(c);
    return c.body(file.body, 200, { ...SECURITY_HEADERS, 'content-type': file.type, 'cache-control': 'no-cache' });
  });
  return app;
}
