/**
 * QMP and QEMU guest-agent clients for the QEMU driver.
 *
 * Terminology:
 * - monitor: a QMP server inside one QEMU process, reached through one `-qmp` unix socket. A
 *   socket serves one client at a time; a process may have several monitors, and every monitor
 *   receives every event.
 * - transport: the byte pipe under a client ({@link QmpTransport}); a unix socket in production.
 * - guest agent: qemu-ga inside the guest, reached through a virtio-serial chardev socket.
 * - sync: the guest-agent handshake (`guest-sync` with a random id) that skips stale lines.
 */
export {
  QmpClient,
  DEFAULT_QMP_COMMAND_TIMEOUT_MS,
  DEFAULT_MAX_BUFFERED_EVENTS,
  type QmpConnectOptions,
  type QmpExecuteOptions,
  type QmpExecuteRest,
  type QmpEventsOptions,
  type QmpEventSubscription,
  type QmpCloseInfo,
  type QmpClientEventMap,
} from './client.js';
export {
  QMP_RETURN_SCHEMAS,
  type QmpCommands,
  type QmpCommandName,
  type QmpCommandArgs,
  type QmpCommandReturn,
  type QmpRunState,
  type QmpStatusInfo,
  type QmpMigrationStatus,
  type QmpMigrationCapability,
  type QmpMigrationCapabilityStatus,
  type QmpMigrationInfo,
  type QmpMigrationRamStats,
  type QmpCpuInfoFast,
  type QmpNameInfo,
} from './commands.js';
export {
  QMP_EVENT_SCHEMAS,
  isQmpEventName,
  toQmpEvent,
  type QmpEvent,
  type QmpEventData,
  type QmpEventName,
  type QmpEventOf,
  type QmpKnownEvent,
  type QmpUnknownEvent,
  type QmpShutdownCause,
} from './events.js';
export {
  QMP_ERROR_CLASSES,
  QMP_FAILURE_REASONS,
  UNKNOWN_QMP_ERROR_CLASS_CODE,
  mapQmpError,
  type QmpErrorClass,
  type QmpErrorBody,
  type QmpErrorContext,
  type QmpFailureReason,
  type QmpFailureDetails,
  type QmpCommandOutcome,
} from './errors.js';
export {
  parseQmpLine,
  encodeQmpCommand,
  qmpTimestampToMs,
  qmpVersionInfoSchema,
  type QmpGreeting,
  type QmpInbound,
  type QmpTimestamp,
  type QmpVersionInfo,
  type QmpVersionTriple,
} from './protocol.js';
export {
  connectUnixSocket,
  DEFAULT_MAX_LINE_BYTES,
  DEFAULT_HIGH_WATER_LINES,
  type QmpTransport,
  type ConnectTransport,
  type ConnectTransportOptions,
  type UnixSocketTransportOptions,
} from './transport.js';
export {
  QMP_DIAGNOSTICS_CHANNELS,
  hasDiagnosticsSubscribers,
  type QmpDiagnosticsMessages,
  type QmpConnectionRef,
  type QmpConnectedMessage,
  type QmpCommandMessage,
  type QmpCommandResultMessage,
  type QmpCommandErrorMessage,
  type QmpEventMessage,
  type QmpStrayMessage,
  type QmpCloseMessage,
  type GuestAgentCallRef,
  type GuestAgentCommandMessage,
  type GuestAgentCommandResultMessage,
  type GuestAgentCommandErrorMessage,
  type GuestAgentStaleMessage,
} from './diagnostics.js';
export {
  GuestAgentClient,
  DEFAULT_GUEST_AGENT_TIMEOUT_MS,
  GUEST_AGENT_RETURN_SCHEMAS,
  type GuestAgentClientOptions,
  type GuestAgentCallOptions,
  type GuestAgentCallResult,
  type GuestAgentCommands,
  type GuestAgentCommandName,
  type GuestAgentCommandInfo,
  type GuestAgentInfo,
  type GuestTimeReading,
  type GuestAgentSetTimeOptions,
  type GuestSetTimeResult,
} from './guest-agent.js';
export { ANCHOR_MAX_AGE_MS, preciseNow, preciseWallClock } from './wall-clock.js';
