import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { timeScale } from '../../src/domain/index.js';
import { httpUrl } from '../../src/service/address.js';
import { loadFleetFile } from '../../src/service/fleet-file.js';
import { startMetadataRuntime, type MetadataRuntime } from '../../src/service/metadata-runtime.js';
import { startSimHosts } from '../../src/service/sim-hosts.js';

/** Debian's chromium (no browser download works on these machines); override with CHROMIUM_PATH. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** The flags chromium needs here: headless as root, and no network of its own (see the project notes). */
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
] as const;

/** Where screenshots go (git-ignored). */
export const RESULTS_DIR = join(process.cwd(), 'test-results', 'dashboard');

const inCi = (): boolean => !!process.env.CI && process.env.CI !== 'false' && process.env.CI !== '0';

/**
 * The skip reason of the browser suites: none when chromium is there; outside CI, a reason; in CI
 * a missing browser is a failure, so no skip (the suite's `before` then fails with what to install).
 */
export function browserSkip(): string | false {
  if (existsSync(CHROMIUM)) return false;
  if (inCi()) return false;
  return `no chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH); CI=true makes this a failure`;
}

/** The embedded runtime and a browser pointed at it. */
export interface ConsoleWorld {
  readonly runtime: MetadataRuntime;
  /** The control API, e.g. http://127.0.0.1:41051 */
  readonly base: string;
  readonly token: string;
  readonly context: BrowserContext;
  readonly page: Page;
  /** Console errors and uncaught exceptions of the page (CSP violations show here too). */
  readonly pageErrors: string[];
  /** Calls the control API as the operator. */
  api<T>(path: string, init?: { method?: string; body?: unknown }): Promise<T>;
  /** Screenshot of the page (full) or an element, saved under {@link RESULTS_DIR}; returns its path. */
  shot(name: string, target?: { selector: string }): Promise<string>;
  close(): Promise<void>;
}

/**
 * Starts the embedded default in this process (demo fleet, simulated hosts, controller, control API
 * on port 0, time scale 60, a temp state dir) with a metadata listener for `metadataVm`, and launches
 * chromium with a new user-data-dir.
 */
export async function startConsoleWorld(options: { metadataVm: string }): Promise<ConsoleWorld> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no chromium at ${CHROMIUM}: CI runs the browser tests, install it (apt-get install chromium)`);
  }
  const fleet = await loadFleetFile(join(process.cwd(), 'examples', 'demo-fleet.yaml'));
  const stateDir = await mkdtemp(join(tmpdir(), 'intermission-console-'));
  const profile = await mkdtemp(join(tmpdir(), 'intermission-chromium-'));
  await mkdir(RESULTS_DIR, { recursive: true });
  const runtime = await startMetadataRuntime({
    fleet,
    stateDir,
    hosts: (ctx) => startSimHosts({ fleet, stateDir: ctx.stateDir }),
    bindings: [{ vm: options.metadataVm, address: { host: '127.0.0.1', port: 0 } }],
    control: { host: '127.0.0.1', port: 0 },
    timing: { scale: timeScale(60) },
  });
  let context: BrowserContext | undefined;
  try {
    const { token } = JSON.parse(await readFile(runtime.controlFile, 'utf8')) as { token: string };
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [...CHROMIUM_FLAGS],
      viewport: { width: 1440, height: 900 },
      deviceScaleFactor: 1,
    });
    const page = context.pages()[0] ?? (await context.newPage());
    const pageErrors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => pageErrors.push(`pageerror: ${e.message}`));
    const base = httpUrl(runtime.control);
    const ctx = context;
    return {
      runtime,
      base,
      token,
      context: ctx,
      page,
      pageErrors,
      api: async <T>(path: string, init: { method?: string; body?: unknown } = {}): Promise<T> => {
        const res = await fetch(`${base}${path}`, {
          method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
        });
        if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
        return (await res.json()) as T;
      },
      shot: async (name, target) => {
        const path = join(RESULTS_DIR, `${name}.png`);
        // Finite CSS transitions (a chip fading to its new state's colour) are fast-forwarded to
        // their end: a screenshot shows the state the page is in, not a moment of the fade.
        if (target) await page.locator(target.selector).first().screenshot({ path, animations: 'disabled' });
        else await page.screenshot({ path, fullPage: true, animations: 'disabled' });
        return path;
      },
      close: async () => {
        await ctx.close().catch(() => undefined);
        await runtime.close();
        await rm(stateDir, { recursive: true, force: true });
        await rm(profile, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await context?.close().catch(() => undefined);
    await runtime.close();
    await rm(stateDir, { recursive: true, force: true });
    await rm(profile, { recursive: true, force: true });
    throw error;
  }
}
