/**
 * The QEMU driver's errors: every failure of a call becomes a driver error with a stable reason
 * (see `../../errors.ts`) here, in {@link normalize}, and nowhere else.
 */
import { isIntermissionError, type IntermissionError } from '../../../domain/index.js';
import type { QmpRunState } from '../../../qmp/index.js';
import { isDriverError, operationError, type DriverErrorReason } from '../../errors.js';
import { alive, vmStateOf, type Call, type QemuContext, type VmHandle } from './context.js';

/** A driver error of `call` on the driver's host. */
export function callError(
  ctx: Pick<QemuContext, 'host'>,
  call: Pick<Call, 'operation' | 'vm'>,
  reason: DriverErrorReason,
  message: string,
  extra: Readonly<Record<string, unknown>> = {},
  cause?: unknown,
  retryable?: boolean,
): IntermissionError {
  return operationError({
    host: ctx.host,
    call,
    reason,
    message,
    extra,
    cause,
    ...(retryable === undefined ? {} : { retryable }),
  });
}

/** `DRIVER_CLOSED`: a call on (or interrupted by) a closed driver. */
export function closedError(
  ctx: Pick<QemuContext, 'host'>,
  operation: string,
  vm: string | undefined,
): IntermissionError {
  return callError(ctx, { operation, vm }, 'DRIVER_CLOSED', `the driver of host ${ctx.host} is closed`);
}

/** The one place where what a call met becomes a driver error with a stable reason. */
export function normalize(ctx: Pick<QemuContext, 'host'>, call: Call, error: unknown): IntermissionError {
  if (isDriverError(error)) return error;
  if (call.signal.aborted && isDriverError(call.signal.reason)) return call.signal.reason;
  if (!isIntermissionError(error)) {
    return callError(ctx, call, 'OPERATION_FAILED', `${call.operation} failed: ${String(error)}`, {}, error);
  }
  if (error.code === 'INVALID_INPUT') return error;
  const reason = error.details.reason;
  const peer = error.details.peer;
  const running = call.handle === undefined || alive(call.handle);
  const vm = call.vm === undefined ? '' : ` of VM ${call.vm}`;
  if (!running) {
    return callError(
      ctx,
      call,
      'VM_FAILED',
      `VM ${call.vm ?? '?'} has failed (its QEMU process is gone); restart it`,
      {
        state: 'failed',
      },
      error,
    );
  }
  if (peer === 'guest-agent' && (reason === 'TIMEOUT' || reason === 'CONNECT_FAILED' || reason === 'CONNECTION_LOST')) {
    return callError(
      ctx,
      call,
      'GUEST_AGENT_UNREACHABLE',
      `the guest agent${vm} does not answer: ${error.message}`,
      {},
      error,
      true,
    );
  }
  if (reason === 'TIMEOUT') {
    return callError(ctx, call, 'DEADLINE_EXCEEDED', `${call.operation}${vm}: ${error.message}`, {}, error);
  }
  if (reason === 'ABORTED') return callError(ctx, call, 'ABORTED', `${call.operation}${vm} was aborted`, {}, error);
  return callError(ctx, call, 'OPERATION_FAILED', `${call.operation}${vm} failed: ${error.message}`, {}, error);
}

/** `BUSY` when an operation (launch, swap, reboot, destroy) owns the VM. */
export function notBusy(ctx: Pick<QemuContext, 'host'>, call: Call, handle: VmHandle): void {
  if (handle.operation !== null) {
    throw callError(ctx, call, 'BUSY', `VM ${handle.name} is busy: ${handle.operation} under way`, {
      state: handle.operation === 'swap' ? 'migrating' : 'stopped',
      busyWith: handle.operation,
    });
  }
}

/** The error of a call that the VM's run state does not allow. */
export function stateError(
  ctx: Pick<QemuContext, 'host'>,
  call: Call,
  handle: VmHandle,
  status: QmpRunState,
): IntermissionError {
  const state = vmStateOf(status);
  return state === 'migrating'
    ? callError(ctx, call, 'BUSY', `VM ${handle.name} is migrating (${status}); wait for it to end`, { state, status })
    : callError(ctx, call, 'WRONG_STATE', `cannot ${call.operation} VM ${handle.name}: it is ${state} (${status})`, {
        state,
        status,
      });
}
