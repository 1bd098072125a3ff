import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Which store implementations the tests run against: env `STORES`, a comma-separated list of
 * {@link KNOWN_STORES}. The default is every store this machine can run: `sqlite,postgres` when
 * PostgreSQL is installed (see {@link findPostgresBin}) or under CI (which installs it, so that a
 * missing PostgreSQL fails instead of skipping), else `sqlite`. Every store that does not run is
 * skipped with a reason.
 */
export const KNOWN_STORES = ['sqlite', 'postgres'] as const;
export type KnownStore = (typeof KNOWN_STORES)[number];

/**
 * The directory of PostgreSQL's `initdb` and `pg_ctl`: `INTERMISSION_PG_BIN`, else Debian's
 * `/usr/lib/postgresql/<newest>/bin`, else the PATH's; undefined when none is found.
 */
export function findPostgresBin(): string | undefined {
  const fromEnv = process.env.INTERMISSION_PG_BIN;
  if (fromEnv !== undefined && fromEnv !== '') return existsSync(join(fromEnv, 'initdb')) ? fromEnv : undefined;
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    const versions = readdirSync(debian)
      .filter((v) => /^\d+$/.test(v) && existsSync(join(debian, v, 'bin', 'initdb')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0] !== undefined) return join(debian, versions[0], 'bin');
  }
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir !== '' && existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl'))) return dir;
  }
  return undefined;
}

const defaultStores = process.env.CI || findPostgresBin() !== undefined ? 'sqlite,postgres' : 'sqlite';
const raw = process.env.STORES ?? defaultStores;
const selected = new Set(
  raw
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== ''),
);
const unknown = [...selected].filter((s) => !(KNOWN_STORES as readonly string[]).includes(s));
if (unknown.length > 0) {
  throw new Error(`STORES names unknown stores: ${unknown.join(', ')}; known: ${KNOWN_STORES.join(', ')}`);
}

/** The reason to skip `store`'s tests, or undefined when they run. `unavailable` is checked only if selected. */
export async function storeSkipReason(
  store: KnownStore,
  unavailable: () => Promise<string | undefined>,
): Promise<string | undefined> {
  if (!selected.has(store)) {
    // Left out of the default only because this machine cannot run it: say why.
    const why = process.env.STORES === undefined ? await unavailable() : undefined;
    return why ?? `not selected: STORES=${raw} (add ${store} to run it)`;
  }
  return unavailable();
}

/** Undefined when `specifier` imports, or why it does not (e.g. a native module built for another Node). */
export async function importFailure(specifier: string): Promise<string | undefined> {
  try {
    await import(specifier);
    return undefined;
  } catch (error) {
    return `${specifier} cannot be loaded: ${error instanceof Error ? error.message : String(error)}`;
  }
}
