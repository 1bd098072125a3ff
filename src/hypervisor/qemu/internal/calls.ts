/**
 * Running one call of the QEMU driver: the checks before it, its deadline and abort signal, and
 * the bounds of the QMP and guest-agent requests made on its behalf.
 */
import { DEFAULT_QMP_COMMAND_TIMEOUT_MS, type QmpExecuteOptions } from '../../../qmp/index.js';
import type { DriverCapabilityFlag, OperationOptions } from '../../driver.js';
import type { Call, QemuContext, VmHandle } from './context.js';
import { callError, closedError, normalize } from './errors.js';

/** Bound on each guest-agent call (the call's deadline may be shorter). */
const AGENT_CALL_TIMEOUT_MS = 5_000;

/** Runs one call: checks, the deadline/abort signal, and one place where errors are normalised. */
export async function runCall<T>(
  ctx: QemuContext,
  operation: string,
  options: OperationOptions & { readonly vm?: string },
  flag: DriverCapabilityFlag | undefined,
  defaultTimeoutMs: number | undefined,
  body: (call: Call) => Promise<T>,
): Promise<T> {
  const startedAt = Date.now();
  const base = { operation, vm: options.vm };
  if (ctx.closed()) throw closedError(ctx, operation, options.vm);
  if (flag !== undefined && !ctx.capabilities[flag]) {
    throw callError(ctx, base, 'UNSUPPORTED', `driver of host ${ctx.host} does not declare ${flag}`, {
      capability: flag,
    });
  }
  const deadline = options.deadline ?? startedAt + (defaultTimeoutMs ?? ctx.config.operationTimeoutMs);
  if (!(deadline > startedAt)) {
    throw callError(ctx, base, 'DEADLINE_EXCEEDED', `${operation}: the deadline had passed before the call`, {
      deadline,
    });
  }
  if (options.signal?.aborted === true) {
    throw callError(ctx, base, 'ABORTED', `${operation} was aborted before it started`, {}, options.signal.reason);
  }
  const controller = new AbortController();
  const call: Call = { operation, vm: options.vm, startedAt, deadline, signal: controller.signal };
  const timer = setTimeout(
    () =>
      controller.abort(
        callError(
          ctx,
          call,
          'DEADLINE_EXCEEDED',
          `${operation}${call.vm === undefined ? '' : ` of VM ${call.vm}`} did not complete by its deadline`,
          { deadline },
        ),
      ),
    deadline - startedAt,
  );
  const onAbort = (): void =>
    controller.abort(callError(ctx, call, 'ABORTED', `${operation} was aborted`, {}, options.signal?.reason));
  const onClose = (): void => controller.abort(closedError(ctx, operation, options.vm));
  options.signal?.addEventListener('abort', onAbort, { once: true });
  ctx.closer.addEventListener('abort', onClose, { once: true });
  try {
    return await body(call);
  } catch (error) {
    throw normalize(ctx, call, error);
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
    ctx.closer.removeEventListener('abort', onClose);
  }
}

/** What is left of the call's time (at least 1 ms). */
export function remaining(call: Call): number {
  return Math.max(1, call.deadline - Date.now());
}

/** Options of a QMP command made for the call: its signal, and at most `capMs`. */
export function qmpOptions(call: Call, capMs = DEFAULT_QMP_COMMAND_TIMEOUT_MS): QmpExecuteOptions {
  return { signal: call.signal, timeoutMs: Math.min(remaining(call), capMs) };
}

/** Options of a guest-agent request made for the call. */
export function agentOptions(call: Call): { timeoutMs: number; signal: AbortSignal; now: () => number } {
  return {
    timeoutMs: Math.min(remaining(call), AGENT_CALL_TIMEOUT_MS),
    signal: call.signal,
    now: () => Date.now(),
  };
}

/** The VM the call names, which becomes the call's; `VM_NOT_FOUND` for one the driver does not know. */
export function handleOf(ctx: QemuContext, call: Call): VmHandle {
  const handle = call.vm === undefined ? undefined : ctx.handles.get(call.vm);
  if (handle === undefined) {
    throw callError(ctx, call, 'VM_NOT_FOUND', `host ${ctx.host} has no VM named ${JSON.stringify(call.vm)}`);
  }
  call.handle = handle;
  return handle;
}

/** The binary of a VMM build; `UNSUPPORTED` for one the host does not have. */
export function binaryOf(ctx: QemuContext, call: Call, version: string): string {
  const binary = ctx.config.vmmBuilds[version];
  if (binary === undefined) {
    throw callError(ctx, call, 'UNSUPPORTED', `host ${ctx.host} has no VMM build ${JSON.stringify(version)}`, {
      vmmVersion: version,
      known: Object.keys(ctx.config.vmmBuilds),
    });
  }
  return binary;
}
