/**
 * Which store implementations the tests run against: env `STORES`, a comma-separated list of
 * {@link KNOWN_STORES} (default `sqlite`). Every store that does not run is skipped with a reason.
 */
export const KNOWN_STORES = ['sqlite', 'postgres'] as const;
export type KnownStore = (typeof KNOWN_STORES)[number];

const raw = process.env.STORES ?? 'sqlite';
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
  if (!selected.has(store)) return `not selected: STORES=${raw} (add ${store} to run it)`;
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
