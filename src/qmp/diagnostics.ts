/**
 * node:diagnostics_channel publications of the QMP and guest-agent clients, in the manner of
 * undici's `undici:request:*`: loggers, metrics and tests subscribe by name; the clients import
 * neither. Messages are plain objects, published only when a channel has subscribers. Command
 * arguments are not published (an HMP command line or a future password argument could be
 * secret); command names, ids, timings and error codes are.
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import type { IntermissionError } from '../domain/errors.js';
import type { QmpGreeting } from './protocol.js';
import type { QmpEvent } from './events.js';

/** Channel names. Stable: subscribers match on them. */
export const QMP_DIAGNOSTICS_CHANNELS = Object.freeze({
  /** A QMP connection completed its handshake: {@link QmpConnectedMessage}. */
  connected: 'intermission:qmp:connected',
  /** A QMP command was written: {@link QmpCommandMessage}. */
  command: 'intermission:qmp:command',
  /** A QMP command succeeded: {@link QmpCommandResultMessage}. */
  commandResult: 'intermission:qmp:command:result',
  /** A QMP command failed (error reply, timeout, lost connection): {@link QmpCommandErrorMessage}. */
  commandError: 'intermission:qmp:command:error',
  /** An event arrived: {@link QmpEventMessage}. */
  event: 'intermission:qmp:event',
  /** A message that matched no command (late reply after a timeout, id-less error): {@link QmpStrayMessage}. */
  stray: 'intermission:qmp:stray',
  /** A QMP connection closed: {@link QmpCloseMessage}. */
  close: 'intermission:qmp:close',
  /** A guest-agent command was written, after its guest-sync: {@link GuestAgentCommandMessage}. */
  agentCommand: 'intermission:qga:command',
  /** A guest-agent command succeeded: {@link GuestAgentCommandResultMessage}. */
  agentCommandResult: 'intermission:qga:command:result',
  /** A guest-agent call failed: {@link GuestAgentCommandErrorMessage}. */
  agentCommandError: 'intermission:qga:command:error',
  /** Lines discarded while waiting for the guest-sync answer or a reply: {@link GuestAgentStaleMessage}. */
  agentStale: 'intermission:qga:stale',
} as const);

/** Identifies one QMP connection in every message. */
export interface QmpConnectionRef {
  /** Process-unique number of the client. */
  readonly connectionId: number;
  readonly path: string;
}

/** On {@link QMP_DIAGNOSTICS_CHANNELS.connected}. */
export interface QmpConnectedMessage extends QmpConnectionRef {
  readonly greeting: QmpGreeting;
  /** Connect + greeting + capabilities negotiation. */
  readonly durationMs: number;
}

/** On {@link QMP_DIAGNOSTICS_CHANNELS.command}. */
export interface QmpCommandMessage extends QmpConnectionRef {
  readonly command: string;
  readonly id: number;
  readonly timeoutMs: number;
}

/** On {@link QMP_DIAGNOSTICS_CHANNELS.commandResult}. */
export interface QmpCommandResultMessage extends QmpConnectionRef {
  readonly command: string;
  readonly id: number;
  /** From the write to the reply, on the monotonic clock. */
  readonly durationMs: number;
}

/** On {@link QMP_DIAGNOSTICS_CHANNELS.commandError}. */
export interface QmpCommandErrorMessage extends QmpConnectionRef {
  readonly command: string;
  readonly id: number;
  readonly durationMs: number;
  readonly error: IntermissionError;
}

/** On {@link QMP_DIAGNOSTICS_CHANNELS.event}. */
export interface QmpEventMessage extends QmpConnectionRef {
  readonly event: QmpEvent;
}

/** On {@link QMP_DIAGNOSTICS_CHANNELS.stray}. */
export interface QmpStrayMessage extends QmpConnectionRef {
  /** `late`: the reply of a command that already timed out or was aborted. */
  readonly kind: 'late' | 'unmatched' | 'invalid';
  readonly line: string;
  readonly problem?: string;
}

/** On {@link QMP_DIAGNOSTICS_CHANNELS.close}. */
export interface QmpCloseMessage extends QmpConnectionRef {
  /** False when the connection ended without `close()`, `quit` or a `SHUTDOWN` event. */
  readonly expected: boolean;
  readonly error?: IntermissionError;
}

/** Identifies one guest-agent call in every message. */
export interface GuestAgentCallRef {
  readonly path: string;
  readonly command: string;
  /** The random id of this call's guest-sync, also sent as the command's `id`. */
  readonly syncId: number;
}

/** On {@link QMP_DIAGNOSTICS_CHANNELS.agentCommand}. */
export interface GuestAgentCommandMessage extends GuestAgentCallRef {
  /** Round trip of the guest-sync that preceded the command. */
  readonly syncRoundTripMs: number;
}

/** On {@link QMP_DIAGNOSTICS_CHANNELS.agentCommandResult}. */
export interface GuestAgentCommandResultMessage extends GuestAgentCallRef {
  readonly roundTripMs: number;
  /** Connect, sync and command together. */
  readonly durationMs: number;
}

/** On {@link QMP_DIAGNOSTICS_CHANNELS.agentCommandError}. */
export interface GuestAgentCommandErrorMessage extends Omit<GuestAgentCallRef, 'syncId'> {
  readonly syncId?: number;
  readonly durationMs: number;
  readonly error: IntermissionError;
}

/** On {@link QMP_DIAGNOSTICS_CHANNELS.agentStale}. */
export interface GuestAgentStaleMessage extends GuestAgentCallRef {
  /** `sync` while waiting for the guest-sync answer, `reply` while waiting for the command's. */
  readonly phase: 'sync' | 'reply';
  readonly line: string;
}

/** The message type of each channel. */
export interface QmpDiagnosticsMessages {
  connected: QmpConnectedMessage;
  command: QmpCommandMessage;
  commandResult: QmpCommandResultMessage;
  commandError: QmpCommandErrorMessage;
  event: QmpEventMessage;
  stray: QmpStrayMessage;
  close: QmpCloseMessage;
  agentCommand: GuestAgentCommandMessage;
  agentCommandResult: GuestAgentCommandResultMessage;
  agentCommandError: GuestAgentCommandErrorMessage;
  agentStale: GuestAgentStaleMessage;
}

const channels = Object.fromEntries(
  Object.entries(QMP_DIAGNOSTICS_CHANNELS).map(([key, name]) => [key, diagnosticsChannel.channel(name)]),
) as Record<keyof QmpDiagnosticsMessages, diagnosticsChannel.Channel>;

/** Whether anyone listens on a channel: lets callers skip building a message. */
export function hasDiagnosticsSubscribers(key: keyof QmpDiagnosticsMessages): boolean {
  return channels[key].hasSubscribers;
}

/** Publishes one message if the channel has subscribers. Internal to src/qmp. */
export function publishDiagnostics<K extends keyof QmpDiagnosticsMessages>(
  key: K,
  message: QmpDiagnosticsMessages[K] | (() => QmpDiagnosticsMessages[K]),
): void {
  const channel = channels[key];
  if (!channel.hasSubscribers) return;
  channel.publish(typeof message === 'function' ? message() : message);
}
