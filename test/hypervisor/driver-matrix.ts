/**
 * Which hypervisor drivers the contract runs against: env `DRIVERS`, a comma-separated list of
 * {@link KNOWN_DRIVERS} (default `sim`). A driver that does not run is skipped with a reason.
 */
export const KNOWN_DRIVERS = ['sim', 'qemu'] as const;
/** One of {@link KNOWN_DRIVERS}. */
export type KnownDriver = (typeof KNOWN_DRIVERS)[number];

const raw = process.env.DRIVERS ?? 'sim';
const selected = new Set(
  raw
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== ''),
);
const unknown = [...selected].filter((s) => !(KNOWN_DRIVERS as readonly string[]).includes(s));
if (unknown.length > 0) {
  throw new Error(`DRIVERS names unknown drivers: ${unknown.join(', ')}; known: ${KNOWN_DRIVERS.join(', ')}`);
}

/** The reason to skip `driver`'s tests, or undefined when they run. */
export function driverSkipReason(driver: KnownDriver): string | undefined {
  return selected.has(driver) ? undefined : `not selected: DRIVERS=${raw} (add ${driver} to run it)`;
}
