import { formatDuration } from '../time.js';
import type { EventType, ScopeId } from '../vocabulary.js';
import {
  ADVISORY_CODES,
  REASON_CODES,
  UPDATE_IMPACTS,
  VM_PATHS,
  type AdvisoryCode,
  type MaintenanceWindow,
  type Plan,
  type ReasonCode,
} from './model.js';

/** One event as one tenant sees it. */
export interface TenantEvent {
  readonly eventId: string;
  readonly type: EventType;
  readonly resources: readonly string[];
  /** When it appears in the scope's document. */
  readonly createdAt: number;
  readonly notBefore: number;
  readonly durationInSeconds: number;
  readonly wave: number;
}

/** Everything one scope (availability set or standalone VM) will see, in order. */
export interface TenantTimeline {
  readonly scope: ScopeId;
  readonly events: readonly TenantEvent[];
}

/** What each tenant will see and when: the plan's events by scope (sorted), each scope's by time. */
export function tenantTimeline(plan: Plan): readonly TenantTimeline[] {
  const byScope = new Map<ScopeId, TenantEvent[]>();
  for (const wave of plan.waves) {
    for (const e of wave.events) {
      let list = byScope.get(e.scope);
      if (!list) byScope.set(e.scope, (list = []));
      list.push(
        Object.freeze({
          eventId: e.eventId,
          type: e.type,
          resources: e.resources,
          createdAt: e.createdAt,
          notBefore: e.notBefore,
          durationInSeconds: e.durationInSeconds,
          wave: e.wave,
        }),
      );
    }
  }
  return Object.freeze(
    [...byScope.keys()]
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
      .map((scope) => Object.freeze({ scope, events: Object.freeze(byScope.get(scope) ?? []) })),
  );
}

/** Options of {@link describePlan}. */
export interface DescribePlanOptions {
  /**
   * At most this many hosts per batch, VMs per host and events per wave are listed; the rest are
   * counted ("… and 12 more"). Default 20; `Infinity` lists everything.
   */
  readonly maxItems?: number;
}

/**
 * The plan in words, for a dry run: a summary, the blocked hosts, then per wave when its events
 * appear and when it starts, per batch and host what is done to each VM and why, and what each
 * tenant sees and when. Times are UTC.
 */
export function describePlan(plan: Plan, options: DescribePlanOptions = {}): string {
  const max = options.maxItems ?? 20;
  const s = plan.stats;
  const lines: string[] = [];
  const impact = UPDATE_IMPACTS[plan.update.kind].impact;
  lines.push(`Rollout ${plan.id}: ${plan.update.kind}, ${impact}; planned at ${time(plan.plannedAt)}.`);
  if (plan.update.description !== impact) lines.push(plan.update.description);
  if (plan.update.vmm) lines.push(`VMM ${plan.update.vmm.fromVersion} → ${plan.update.vmm.toVersion}`);
  lines.push(
    `Hosts: ${s.hosts} selected, ${s.plannedHosts} planned, ${s.blockedHosts} blocked. VMs: ${s.vms} on them, ${s.plannedVms} planned, ${s.blockedVms} on blocked hosts.`,
  );
  lines.push(`Paths: ${counted(VM_PATHS.map((p) => [p, s.byPath[p]]))}.`);
  const reasons = (Object.keys(REASON_CODES) as ReasonCode[]).map((r): [string, number] => [r, s.byReason[r]]);
  if (reasons.some(([, n]) => n > 0)) lines.push(`Reasons: ${counted(reasons)}.`);
  const advisories = (Object.keys(ADVISORY_CODES) as AdvisoryCode[]).map((a): [string, number] => [a, s.byAdvisory[a]]);
  if (advisories.some(([, n]) => n > 0)) lines.push(`Advisories: ${counted(advisories)}.`);
  lines.push(
    `${s.waves} ${plural(s.waves, 'wave')}, ${s.batches} ${plural(s.batches, 'batch', 'batches')}, ${s.events} ${plural(s.events, 'event')}; at most ${s.peakPausedVms} VMs paused at once.`,
  );
  lines.push(
    `Expected end ${time(plan.expectedEndAt)} (makespan ${formatDuration(s.expectedMakespanMs)}, lower bound ${formatDuration(s.lowerBoundMs)}).`,
  );
  const p = plan.policy;
  lines.push(
    `Policy: pause budget ${formatDuration(p.pauseBudgetMs)}${budgetOverrides(plan)}; hosts in parallel ${p.maxHostsInParallel ?? 'unlimited'}; VMs paused at once ${p.maxVmsPausedAtOnce ?? 'unlimited'}; settle ${formatDuration(p.settleMs)}; fallback ${p.fallback}${p.requireGuestAgent ? '; guest agent required' : ''}; windows: ${windows(p.windows)}.`,
  );
  const fb = plan.failureBudget;
  lines.push(
    `Failure budget: halt when more than ${fb.maxFailedHosts} ${plural(fb.maxFailedHosts, 'host')} failed${fb.maxFailedFraction === null ? '' : ` (${fb.maxFailedFraction * 100}% of planned hosts)`}.`,
  );
  if (plan.timeScale !== 1) lines.push(`Time scale: protocol durations divided by ${plan.timeScale}.`);

  if (plan.blocked.length > 0) {
    lines.push('', `Blocked hosts (not updated):`);
    for (const b of plan.blocked.slice(0, max)) lines.push(`  ${b.host} [${b.reason}]: ${b.explanation}`);
    more(lines, '  ', plan.blocked.length, max);
  }

  for (const w of plan.waves) {
    lines.push('');
    const uds = Object.entries(w.updateDomains);
    const udText =
      uds.length === 0
        ? 'no availability set'
        : uds
            .slice(0, max)
            .map(([set, ud]) => `${set} UD ${ud}`)
            .join(', ') + (uds.length > max ? `, … and ${uds.length - max} more sets` : '');
    lines.push(
      `Wave ${w.index + 1} of ${plan.waves.length}: events appear ${time(w.publishAt)}, start ${time(w.startAt)} (notice ${formatDuration(w.noticeMs)}), expected end ${time(w.expectedEndAt)}; ${w.hosts} ${plural(w.hosts, 'host')}, ${w.vms} VMs; in maintenance: ${udText}.`,
    );
    for (const b of w.batches) {
      lines.push(
        `  Batch ${b.index + 1} of ${w.batches.length}: starts ${time(b.expectedStartAt)}, about ${formatDuration(b.expectedDurationMs)}, ${b.steps.length} ${plural(b.steps.length, 'host')}, ${b.pausedVms} VMs paused at once.`,
      );
      for (const step of b.steps.slice(0, max)) {
        lines.push(
          `    ${step.host}: ${step.kind}, about ${formatDuration(step.expectedDurationMs)}, ${step.vms.length} ${plural(step.vms.length, 'VM')}.`,
        );
        for (const vm of step.vms.slice(0, max)) {
          const c = vm.classification;
          const codes = [...c.reasons, ...c.advisories];
          lines.push(
            `      ${vm.name} (${vm.scope}${vm.scope.startsWith('set:') ? ` UD ${vm.updateDomain}` : ''}): ${c.path}${codes.length > 0 ? ` [${codes.join(', ')}]` : ''}. ${c.explanation}`,
          );
        }
        more(lines, '      ', step.vms.length, max);
      }
      more(lines, '    ', b.steps.length, max);
    }
    if (w.events.length > 0) {
      lines.push(`  What tenants see:`);
      for (const e of w.events.slice(0, max)) {
        lines.push(
          `    ${e.scope}: ${e.type} for ${e.resources.join(', ')}; appears ${time(e.createdAt)}, NotBefore ${time(e.notBefore)}, DurationInSeconds ${e.durationInSeconds} (EventId ${e.eventId}).`,
        );
      }
      more(lines, '    ', w.events.length, max);
    } else {
      lines.push(`  Tenants see no event.`);
    }
  }
  if (plan.waves.length === 0) lines.push('', 'Nothing to do: no host is planned.');
  return lines.join('\n');
}

function time(ms: number): string {
  return new Date(ms).toISOString().replace('.000Z', 'Z');
}

function plural(n: number, one: string, many = `${one}s`): string {
  return n === 1 ? one : many;
}

function counted(entries: readonly (readonly [string, number])[]): string {
  const nonZero = entries.filter(([, n]) => n > 0);
  return nonZero.length === 0 ? 'none' : nonZero.map(([k, n]) => `${k} ${n}`).join(', ');
}

function more(lines: string[], indent: string, total: number, max: number): void {
  if (total > max) lines.push(`${indent}… and ${total - max} more`);
}

function budgetOverrides(plan: Plan): string {
  const sets = Object.keys(plan.policy.pauseBudgets.sets).length;
  const vms = Object.keys(plan.policy.pauseBudgets.vms).length;
  return sets + vms === 0 ? '' : ` (lower for ${sets} ${plural(sets, 'set')} and ${vms} ${plural(vms, 'VM')})`;
}

function windows(list: readonly MaintenanceWindow[]): string {
  if (list.length === 0) return 'any time';
  return list
    .map((w) =>
      w.kind === 'interval'
        ? `${time(w.start)} to ${time(w.end)}`
        : `daily ${w.start} UTC for ${formatDuration(w.durationMs)}${w.days ? ` on ${w.days.join(', ')}` : ''}`,
    )
    .join('; ');
}
