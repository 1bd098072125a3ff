/**
 * What a host agent does when it starts on a host whose previous agent may have died mid-step:
 * every VM still paused is resumed at once; every VM that the interrupted steps may have paused
 * has its clock resynchronised, whoever resumed it (this agent now, the predecessor before it died,
 * or the hypervisor's resume lease); and each interrupted step is recorded as failed, with what
 * happened to its VMs: who resumed them, after how long, and the clock offset and residual
 * (invariants 1, 4 and 5). The step is never run again.
 */
import { coerceError } from '../domain/index.js';
import type { HypervisorDriver, LeaseResume } from '../hypervisor/index.js';
import type { AgentJournal, JournalEntry } from './journal.js';
import type { VmInStep, VmStepResult } from './protocol.js';

/** The clock fields of a VM's result. */
export type ClockFields = Pick<VmStepResult, 'clockOffsetMs' | 'clockResidualMs' | 'clockRoundTripMs'>;

/** A clock resync done at adoption. */
export interface AdoptionClockInfo {
  readonly host: string;
  readonly vm: string;
  /** Who resumed the VM: the hypervisor's lease, this agent at start-up, or unknown (before the death). */
  readonly resumedBy: 'lease' | 'agent' | 'unknown';
  readonly offsetBeforeMs: number | null;
  readonly residualMs: number | null;
  readonly error: { readonly code: string; readonly message: string } | null;
}

/** Options of {@link adoptHost}. */
export interface AdoptHostOptions {
  readonly host: string;
  readonly driver: HypervisorDriver;
  readonly journal: AgentJournal;
  readonly now: () => number;
  /** The agent's resync (tries again above the bound); rejects when the clock cannot be reached. */
  readonly resync: (vm: string, maxResidualMs: number | undefined) => Promise<ClockFields>;
  readonly onResumed: (vm: string) => void;
  readonly onClock: (info: AdoptionClockInfo) => void;
}

/** VM paths whose VMs a step pauses (and whose clocks fall behind). */
const PAUSING_PATHS: ReadonlySet<VmInStep['path']> = new Set(['pause', 'in-place-migration']);

/** A VM resumed by this agent at start-up. */
interface ResumedHere {
  readonly pausedAt: number | null;
  readonly resumedAt: number;
}

/** See the module comment. */
export async function adoptHost(options: AdoptHostOptions): Promise<void> {
  const { driver, journal } = options;
  const interrupted = journal.entries().filter((e) => e.status.status === 'running');
  const present = await driver.listVms();
  const resumedHere = new Map<string, ResumedHere>();
  for (const vm of present.filter((v) => v.state === 'paused')) {
    const { resumedAt } = await driver.resume({ vm: vm.name });
    resumedHere.set(vm.name, { pausedAt: vm.pausedSince, resumedAt });
    options.onResumed(vm.name);
  }
  const names = new Set(present.map((v) => v.name));
  const done = new Set<string>();
  for (const entry of interrupted) {
    const vms: VmStepResult[] = [];
    for (const vm of entry.request.vms) {
      if (!PAUSING_PATHS.has(vm.path) || !names.has(vm.name)) continue;
      const result = await adoptVm(options, entry, vm, resumedHere.get(vm.name));
      if (result !== undefined) vms.push(result);
      done.add(vm.name);
    }
    await journal.put({
      request: entry.request,
      status: {
        ...entry.status,
        status: 'failed',
        finishedAt: options.now(),
        vms,
        error: {
          code: 'UNREACHABLE',
          message:
            'the agent restarted while the step ran; paused VMs were resumed and their clocks resynchronised (see vms)',
        },
      },
    });
  }
  // A VM found paused that no interrupted step names (paused by hand, or a journal lost): its clock too.
  for (const [vm] of resumedHere) {
    if (done.has(vm)) continue;
    const clock = await resyncQuietly(options, vm, undefined);
    options.onClock({ host: options.host, vm, resumedBy: 'agent', ...clockInfo(clock) });
  }
}

/**
 * The result of one VM of an interrupted step, its clock resynchronised; undefined when nothing
 * shows that the step touched it (not found paused, no lease resume, its clock in step): a VM the
 * predecessor never paused, or one that came back with a fresh process.
 */
async function adoptVm(
  options: AdoptHostOptions,
  entry: JournalEntry,
  vm: VmInStep,
  resumedHere: ResumedHere | undefined,
): Promise<VmStepResult | undefined> {
  // Resynchronised first: the driver waits for a lease's resync under way, so the record is complete.
  const clock = await resyncQuietly(options, vm.name, entry.request.maxClockResidualMs);
  const lease = await leaseResumeOf(options.driver, vm.name, entry.status.startedAt);
  const resumedBy = lease ? 'lease' : resumedHere ? 'agent' : 'unknown';
  options.onClock({ host: options.host, vm: vm.name, resumedBy, ...clockInfo(clock) });
  // Resumed by the predecessor before it died, without its resync, shows as a clock found behind.
  const offset = 'fields' in clock ? clock.fields.clockOffsetMs : null;
  if (resumedBy === 'unknown' && (offset === null || Math.abs(offset) <= entry.request.maxClockResidualMs)) {
    return undefined;
  }
  const pausedAt = lease?.pausedAt ?? resumedHere?.pausedAt ?? null;
  const resumedAt = lease?.resumedAt ?? resumedHere?.resumedAt ?? null;
  const pauseMs = pausedAt !== null && resumedAt !== null ? resumedAt - pausedAt : null;
  const measured = 'fields' in clock ? clock.fields : null;
  const lostClock = 'error' in clock ? clock.error : null;
  const lastResidual = measured?.clockResidualMs ?? lease?.clock?.residualMs ?? null;
  const reason =
    resumedBy === 'lease'
      ? `the agent was gone; the hypervisor's resume lease resumed the VM after ${pauseMs} ms`
      : resumedBy === 'agent'
        ? `the agent restarted while the VM was paused; resumed at start-up after ${pauseMs ?? '?'} ms`
        : 'the agent restarted during the step';
  return {
    name: vm.name,
    path: vm.path,
    outcome: resumedBy === 'lease' ? 'lease-resumed' : 'failed',
    pausedAt,
    resumedAt,
    pauseMs,
    pauseBudgetMs: vm.pauseBudgetMs,
    // How far behind the VM was when resumed (the lease's reading when it resynchronised first).
    clockOffsetMs: lease?.clock?.offsetBeforeMs ?? measured?.clockOffsetMs ?? null,
    clockResidualMs: lastResidual,
    clockRoundTripMs: measured?.clockRoundTripMs ?? lease?.clock?.roundTripMs ?? null,
    error: {
      code: 'UNREACHABLE',
      message: lostClock ? `${reason}; its clock could not be resynchronised: ${lostClock.message}` : reason,
    },
  };
}

type QuietResync = { readonly fields: ClockFields } | { readonly error: { code: string; message: string } };

async function resyncQuietly(options: AdoptHostOptions, vm: string, bound: number | undefined): Promise<QuietResync> {
  try {
    return { fields: await options.resync(vm, bound) };
  } catch (error) {
    const e = coerceError(error);
    return { error: { code: e.code, message: e.message } };
  }
}

function clockInfo(clock: QuietResync): Pick<AdoptionClockInfo, 'offsetBeforeMs' | 'residualMs' | 'error'> {
  return 'fields' in clock
    ? { offsetBeforeMs: clock.fields.clockOffsetMs, residualMs: clock.fields.clockResidualMs, error: null }
    : { offsetBeforeMs: null, residualMs: null, error: clock.error };
}

/** The newest resume by the hypervisor's lease of a pause within the step, if any. */
async function leaseResumeOf(
  driver: HypervisorDriver,
  vm: string,
  stepStartedAt: number,
): Promise<LeaseResume | undefined> {
  try {
    return (await driver.leaseResumes({ vm })).filter((r) => r.resumedAt >= stepStartedAt).at(-1);
  } catch {
    return undefined;
  }
}
