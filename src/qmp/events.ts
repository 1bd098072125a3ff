/**
 * QMP events the driver reacts to (qapi/run-state.json, qapi/migration.json, qapi/misc-target.json),
 * typed and validated. Every monitor of a QEMU process receives every event, with the same
 * timestamp. An event we do not model, or one whose data does not match our schema (a newer
 * QEMU), is still delivered, as `known: false`.
 */
import { z } from 'zod';
import type { QmpMigrationStatus } from './commands.js';
import { qmpTimestampToMs, type QmpTimestamp } from './protocol.js';

/** Why QEMU shut down or reset (qapi/run-state.json `ShutdownCause`). */
export type QmpShutdownCause =
  | 'none'
  | 'host-error'
  | 'host-qmp-quit'
  | 'host-qmp-system-reset'
  | 'host-signal'
  | 'host-ui'
  | 'guest-shutdown'
  | 'guest-reset'
  | 'guest-panic'
  | 'subsystem-reset'
  | 'snapshot-load'
  | (string & {});

/** The `data` of each modelled event; `{}` for events without data. */
export interface QmpEventData {
  /** vCPUs paused (`stop`, a migration's final phase, an I/O error with `werror=stop`, ...). */
  STOP: Readonly<Record<string, never>>;
  /** vCPUs resumed. */
  RESUME: Readonly<Record<string, never>>;
  /** QEMU is shutting down (or, with `-no-shutdown`, stopped the guest). */
  SHUTDOWN: { readonly guest: boolean; readonly reason: QmpShutdownCause };
  /** The VM was reset. */
  RESET: { readonly guest: boolean; readonly reason: QmpShutdownCause };
  /** ACPI power button pressed (`system_powerdown`). */
  POWERDOWN: Readonly<Record<string, never>>;
  /** Migration state changed (needs the `events` migration capability on older QEMUs). */
  MIGRATION: { readonly status: QmpMigrationStatus };
  /** A RAM pass of a precopy migration began. */
  MIGRATION_PASS: { readonly pass: number };
  /** The guest entered S3. */
  SUSPEND: Readonly<Record<string, never>>;
  /** The guest left S3. */
  WAKEUP: Readonly<Record<string, never>>;
  /** The guest changed its RTC: `offset` seconds from the host clock base. */
  RTC_CHANGE: { readonly offset: number; readonly 'qom-path'?: string };
  /** The guest panicked; `action` is what QEMU did (pause, poweroff, run). */
  GUEST_PANICKED: { readonly action: string; readonly info?: Readonly<Record<string, unknown>> };
  /** A watchdog fired; `action` is what QEMU did. */
  WATCHDOG: { readonly action: string };
}

/** A modelled event name. */
export type QmpEventName = keyof QmpEventData;

/** Fields every delivered event has. */
interface QmpEventBase {
  /** Exactly as QEMU sent it, for lossless records. */
  readonly timestamp: QmpTimestamp;
  /** `timestamp` in milliseconds since the epoch, fractional (microsecond resolution kept). */
  readonly timestampMs: number;
}

/** A modelled event with its typed data. */
export interface QmpEventOf<K extends QmpEventName> extends QmpEventBase {
  readonly known: true;
  readonly name: K;
  readonly data: QmpEventData[K];
}

/** An event we do not model, or whose data did not match our schema. */
export interface QmpUnknownEvent extends QmpEventBase {
  readonly known: false;
  readonly name: string;
  readonly data: Readonly<Record<string, unknown>>;
}

/** Any modelled event; narrow on `name`. */
export type QmpKnownEvent = { [K in QmpEventName]: QmpEventOf<K> }[QmpEventName];

/** Any event; narrow on `known`, then on `name`. */
export type QmpEvent = QmpKnownEvent | QmpUnknownEvent;

const noData = z.object({}).loose() as unknown as z.ZodType<Readonly<Record<string, never>>>;
const shutdownData = z.object({ guest: z.boolean(), reason: z.string() }).loose();

/** Validators of each modelled event's `data`. */
export const QMP_EVENT_SCHEMAS: { readonly [K in QmpEventName]: z.ZodType<QmpEventData[K]> } = Object.freeze({
  STOP: noData,
  RESUME: noData,
  SHUTDOWN: shutdownData,
  RESET: shutdownData,
  POWERDOWN: noData,
  MIGRATION: z.object({ status: z.string() }).loose(),
  MIGRATION_PASS: z.object({ pass: z.int() }).loose(),
  SUSPEND: noData,
  WAKEUP: noData,
  RTC_CHANGE: z.object({ offset: z.number(), 'qom-path': z.string().optional() }).loose(),
  GUEST_PANICKED: z.object({ action: z.string(), info: z.record(z.string(), z.unknown()).optional() }).loose(),
  WATCHDOG: z.object({ action: z.string() }).loose(),
});

/** Whether `name` is a modelled event. */
export function isQmpEventName(name: string): name is QmpEventName {
  return Object.hasOwn(QMP_EVENT_SCHEMAS, name);
}

/** Types a received event: validated data for modelled events, `known: false` otherwise. */
export function toQmpEvent(name: string, data: Readonly<Record<string, unknown>>, timestamp: QmpTimestamp): QmpEvent {
  const timestampMs = qmpTimestampToMs(timestamp);
  if (isQmpEventName(name)) {
    const parsed = QMP_EVENT_SCHEMAS[name].safeParse(data);
    // The cast pairs `name` with its own schema's output, which TypeScript cannot follow.
    if (parsed.success) return { known: true, name, data: parsed.data, timestamp, timestampMs } as QmpKnownEvent;
  }
  return { known: false, name, data, timestamp, timestampMs };
}
