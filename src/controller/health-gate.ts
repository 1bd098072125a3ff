import { coerceError } from '../domain/index.js';
import type { Wave } from '../domain/rollout/index.js';
import type { AgentClient, HostStepStatus } from '../agent/index.js';
import type { EventService } from '../service/event-service.js';
import type { RolloutRecord, StepRecord } from '../store/rollout-store.js';

/** What {@link healthGate} looks at. */
export interface HealthGateInput {
  readonly rollout: RolloutRecord;
  readonly wave: Wave;
  /** The wave's step records. */
  readonly steps: readonly StepRecord[];
  readonly now: number;
  readonly agent: (host: string) => AgentClient;
  readonly events: EventService;
  /** A resynchronised clock further off than this fails the gate. */
  readonly maxResidualMs: number;
  /** How long a VM that read Scheduled Events before its step has to read them again. */
  readonly pollGraceMs: number;
}

/**
 * After the settle time: every VM of the wave's succeeded steps runs, its clock residual is within
 * bound, and a VM that read Scheduled Events before the wave has read them again since its step.
 * Failed steps were counted when they finished.
 */
export async function healthGate(
  input: HealthGateInput,
): Promise<'wait' | { failedHosts: string[]; reasons: string[] }> {
  const { rollout, wave, steps, now, agent, events, maxResidualMs, pollGraceMs } = input;
  const failedHosts = new Set<string>();
  const reasons: string[] = [];
  const planned = new Map(wave.batches.flatMap((b) => b.steps).map((s) => [s.host, s]));
  for (const record of steps) {
    if (record.status === 'cancelled') continue; // left out by an operator: its VMs were not touched
    if (record.status !== 'succeeded') {
      reasons.push(`${record.host}: step failed (${record.error ?? 'unknown'})`);
      continue;
    }
    const step = planned.get(record.host);
    if (!step) continue;
    let vms: Awaited<ReturnType<AgentClient['vms']>>;
    try {
      vms = await agent(record.host).vms();
    } catch (error) {
      // An agent restarting right now is not a failed host: ask again for up to the grace time.
      if (now < (rollout.settleUntil ?? now) + pollGraceMs) return 'wait';
      failedHosts.add(record.host);
      reasons.push(`${record.host}: agent unreachable for the health gate (${coerceError(error).message})`);
      continue;
    }
    const states = new Map(vms.map((v) => [v.name, v.state]));
    const results = new Map(((record.result as HostStepStatus | null)?.vms ?? []).map((v) => [v.name, v]));
    for (const vm of step.vms) {
      if (vm.classification.path === 'redeploy') continue; // it left the host
      if (states.get(vm.name) !== 'running') {
        failedHosts.add(record.host);
        reasons.push(`${vm.name} is ${states.get(vm.name) ?? 'missing'}`);
      }
      const residual = results.get(vm.name)?.clockResidualMs;
      if (residual !== null && residual !== undefined && Math.abs(residual) > maxResidualMs) {
        failedHosts.add(record.host);
        reasons.push(`${vm.name} clock residual ${residual} ms above ${maxResidualMs} ms`);
      }
      // A VM that was reading Scheduled Events when its step began must read them again after it.
      const lastPoll = events.lastPoll(vm.name);
      const dispatchedAt = record.dispatchedAt ?? now;
      const finishedAt = record.finishedAt ?? now;
      if (lastPoll !== undefined && lastPoll >= dispatchedAt - pollGraceMs && lastPoll < finishedAt) {
        if (now < finishedAt + pollGraceMs) return 'wait';
        failedHosts.add(record.host);
        reasons.push(`${vm.name} has not read Scheduled Events since its maintenance`);
      }
    }
  }
  return { failedHosts: [...failedHosts], reasons };
}
