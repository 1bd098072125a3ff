/**
 * The crash tests' build of the CLI: they spawn `node bin/intermission.js`, which runs `dist/`.
 * {@link ensureBuilt} builds it when it is missing or older than any source file (the CI's `npm ci`
 * builds it through `prepare`, so there it only checks), under a lock so that test files running
 * side by side never build over each other.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readdir, rmdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The CLI's entry point. */
export const BIN = join(ROOT, 'bin', 'intermission.js');
const DIST_ENTRY = join(ROOT, 'dist', 'cli', 'main.js');

async function newestMtime(path: string): Promise<number> {
  const info = await stat(path);
  if (!info.isDirectory()) return path.endsWith('.ts') || path.endsWith('.json') ? info.mtimeMs : 0;
  let newest = 0;
  for (const name of await readdir(path)) newest = Math.max(newest, await newestMtime(join(path, name)));
  return newest;
}

async function distIsFresh(): Promise<boolean> {
  const built = await stat(DIST_ENTRY).then(
    (s) => s.mtimeMs,
    () => undefined,
  );
  if (built === undefined) return false;
  const sources = Math.max(
    await newestMtime(join(ROOT, 'src')),
    await newestMtime(join(ROOT, 'tsconfig.json')),
    await newestMtime(join(ROOT, 'tsconfig.build.json')),
  );
  return built >= sources;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Makes sure `dist/` holds a build of the current sources: checks modification times and, when
 * something is newer than `dist/cli/main.js`, runs the build (`tsc -p tsconfig.build.json`, what
 * `npm run build` runs). Type errors do not stop the build from emitting, and they are the type
 * check's business, not a crash test's: they come back as `diagnostics`, and only a build that
 * leaves no fresh entry point fails.
 */
export async function ensureBuilt(): Promise<{ built: boolean; diagnostics: string }> {
  const lock = join(
    tmpdir(),
    `intermission-build-${createHash('sha256').update(ROOT).digest('hex').slice(0, 12)}.lock`,
  );
  const deadline = Date.now() + 300_000;
  for (;;) {
    try {
      await mkdir(lock);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const age =
        Date.now() -
        (await stat(lock).then(
          (s) => s.mtimeMs,
          () => Date.now(),
        ));
      if (age > 300_000) await rmdir(lock).catch(() => undefined); // left by a killed run
      if (Date.now() > deadline) throw new Error(`build lock ${lock} held for too long`);
      await sleep(250);
    }
  }
  try {
    if (await distIsFresh()) return { built: false, diagnostics: '' };
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const started = Date.now();
    const result = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 280_000,
    });
    const diagnostics = `${result.stdout}${result.stderr}`.trim();
    // Written by this build (sources edited while it ran do not make it a failure).
    const written = await stat(DIST_ENTRY).then(
      (s) => s.mtimeMs >= started - 1000,
      () => false,
    );
    if (!written) throw new Error(`build of dist/ failed (exit ${result.status}):\n${diagnostics}`);
    return { built: true, diagnostics };
  } finally {
    await rmdir(lock).catch(() => undefined);
  }
}
