/**
 * The QMP wire format (QEMU docs/interop/qmp-spec): one JSON object per line, of four kinds. The
 * server speaks first with a greeting; every command may carry an `id` that its reply echoes;
 * events arrive at any time, between replies. The guest agent uses the same envelopes without the
 * greeting and without events.
 */
import { z } from 'zod';

/** A QEMU version triple, as in the greeting and `query-version`. */
export interface QmpVersionTriple {
  readonly major: number;
  readonly minor: number;
  readonly micro: number;
}

/** `query-version`'s answer and the greeting's `version`. */
export interface QmpVersionInfo {
  readonly qemu: QmpVersionTriple;
  /** Distribution build string, e.g. `Debian 1:7.2+dfsg-7+deb12u18`. */
  readonly package: string;
}

/** The greeting a QMP server sends on connect. */
export interface QmpGreeting {
  readonly version: QmpVersionInfo;
  /** Capabilities the server offers (`oob`); none is enabled unless asked for. */
  readonly capabilities: readonly string[];
}

/** An event timestamp as QEMU sends it: wall-clock seconds and microseconds since the epoch. */
export interface QmpTimestamp {
  readonly seconds: number;
  readonly microseconds: number;
}

const versionTriple = z.object({ major: z.int(), minor: z.int(), micro: z.int() }).loose();

/** Validates {@link QmpVersionInfo}. */
export const qmpVersionInfoSchema: z.ZodType<QmpVersionInfo> = z
  .object({ qemu: versionTriple, package: z.string() })
  .loose();

const greetingSchema = z.object({
  QMP: z.object({ version: qmpVersionInfoSchema, capabilities: z.array(z.string()) }).loose(),
});

const errorBodySchema = z.object({ class: z.string(), desc: z.string() }).loose();

const timestampSchema = z.object({ seconds: z.int(), microseconds: z.int() }).loose();

const eventSchema = z.object({
  event: z.string(),
  data: z.record(z.string(), z.unknown()).optional(),
  timestamp: timestampSchema,
});

/** One message received from a QMP server or a guest agent, classified. */
export type QmpInbound =
  | { readonly kind: 'greeting'; readonly greeting: QmpGreeting }
  | { readonly kind: 'return'; readonly id: unknown; readonly value: unknown }
  | { readonly kind: 'error'; readonly id: unknown; readonly error: { readonly class: string; readonly desc: string } }
  | {
      readonly kind: 'event';
      readonly name: string;
      readonly data: Readonly<Record<string, unknown>>;
      readonly timestamp: QmpTimestamp;
    }
  | { readonly kind: 'invalid'; readonly line: string; readonly problem: string };

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Parses and classifies one line. Never throws: a line we cannot read is `kind: 'invalid'`. */
export function parseQmpLine(line: string): QmpInbound {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (error) {
    return { kind: 'invalid', line, problem: error instanceof Error ? error.message : 'not JSON' };
  }
  if (!isRecord(value)) return { kind: 'invalid', line, problem: 'not a JSON object' };
  if ('return' in value) return { kind: 'return', id: value.id, value: value.return };
  if ('error' in value) {
    const body = errorBodySchema.safeParse(value.error);
    if (!body.success) return { kind: 'invalid', line, problem: 'error reply without class and desc' };
    return { kind: 'error', id: value.id, error: { class: body.data.class, desc: body.data.desc } };
  }
  if ('event' in value) {
    const event = eventSchema.safeParse(value);
    if (!event.success) return { kind: 'invalid', line, problem: 'event without name or timestamp' };
    const { seconds, microseconds } = event.data.timestamp;
    return {
      kind: 'event',
      name: event.data.event,
      data: event.data.data ?? {},
      timestamp: { seconds, microseconds },
    };
  }
  if ('QMP' in value) {
    const greeting = greetingSchema.safeParse(value);
    if (!greeting.success) return { kind: 'invalid', line, problem: 'malformed greeting' };
    const { version, capabilities } = greeting.data.QMP;
    return { kind: 'greeting', greeting: { version, capabilities } };
  }
  return { kind: 'invalid', line, problem: 'neither a reply, an event nor a greeting' };
}

/**
 * Converts an event timestamp to milliseconds since the epoch. Exact to the microsecond: the
 * result is the nearest double to `seconds * 1000 + microseconds / 1000`, and doubles near
 * 1.8e12 resolve about 0.25 µs, so no microsecond is lost. QEMU sends -1/-1 if it had no clock.
 */
export function qmpTimestampToMs(timestamp: QmpTimestamp): number {
  return timestamp.seconds * 1000 + timestamp.microseconds / 1000;
}

/** Serialises a command with the optional `id` (QMP and guest agent alike) as one line. */
export function encodeQmpCommand(command: string, args: unknown, id: number | undefined): string {
  const message: Record<string, unknown> = { execute: command };
  if (args !== undefined) message.arguments = args;
  if (id !== undefined) message.id = id;
  return `${JSON.stringify(message)}\n`;
}
