import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { IntermissionError } from '../../domain/index.js';
import { ControlClient, resolveControlTarget } from '../../control/client.js';
import type { RolloutSummary } from '../../control/rollouts.js';
import type { StepRecord, VmOperationRecord } from '../../store/rollout-store.js';
import { EXIT_CODES, ExitError, table, type Output } from '../output.js';
import { targetOptions } from './events.js';

interface TargetFlags {
  state?: string;
  control?: string;
  tokenFile?: string;
  token?: string;
  json?: boolean;
}

interface UpdateFlags extends TargetFlags {
  update?: string;
  policy?: string;
  id?: string;
  kind?: string;
  applyTime?: string;
  hosts?: string[];
  toVersion?: string;
}

async function readDocument(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new IntermissionError('INVALID_INPUT', `cannot read ${what} file ${path}: ${(error as Error).message}`);
  }
  try {
    return parseYaml(text);
  } catch (error) {
    throw new IntermissionError(
      'INVALID_INPUT',
      `${what} file ${path} is not YAML or JSON: ${(error as Error).message}`,
    );
  }
}

/** The update and policy from files, or the update from flags for the common case. */
async function rolloutBody(flags: UpdateFlags): Promise<{ update: unknown; policy?: unknown }> {
  let update: unknown;
  if (flags.update) update = await readDocument(flags.update, 'update');
  else if (flags.id && flags.kind) {
    update = {
      id: flags.id,
      kind: flags.kind,
      expectedApplyMs: flags.applyTime ?? '0s',
      ...(flags.hosts ? { hosts: { kind: 'names', names: flags.hosts } } : {}),
      ...(flags.toVersion ? { vmm: { fromVersion: 'current', toVersion: flags.toVersion } } : {}),
    };
  } else {
    throw new IntermissionError('INVALID_INPUT', 'give --update <file>, or --id and --kind (with --apply-time)');
  }
  return { update, ...(flags.policy ? { policy: await readDocument(flags.policy, 'policy') } : {}) };
}

function updateOptions(cmd: Command): Command {
  return targetOptions(cmd)
    .option('--update <file>', 'the update (YAML or JSON): id, kind, expectedApplyMs, hosts, vmm')
    .option('--policy <file>', 'the rollout policy (YAML or JSON): pause budgets, parallelism, windows, failure budget')
    .option('--id <id>', 'update id (instead of --update)')
    .option('--kind <kind>', 'hot-patch | vmm-update | host-patch | host-reboot | redeploy')
    .option('--apply-time <duration>', 'how long the host-side apply takes, e.g. 4s')
    .option('--hosts <name...>', 'only these hosts')
    .option('--to-version <version>', 'VMM build to move to (vmm-update)');
}

function summaryLine(r: RolloutSummary): string {
  const wave =
    r.status === 'completed' ? `${r.waves}/${r.waves}` : `${Math.min(r.wave + 1, r.waves)}/${r.waves} (${r.wavePhase})`;
  return `${r.id}  ${r.status}  wave ${wave}  hosts ${r.hosts}  VMs ${r.vms}  failed hosts ${r.failedHosts}/${r.failureBudget}${r.reason ? `  — ${r.reason}` : ''}`;
}

const TERMINAL = new Set(['completed', 'halted', 'cancelled']);

export function registerRolloutCommands(program: Command, output: Output): void {
  updateOptions(
    program
      .command('plan')
      .description('plan an update over the fleet (a dry run): waves, events, per-VM paths and reasons'),
  ).action(async (flags: UpdateFlags) => {
    const client = new ControlClient(await resolveControlTarget(flags));
    const res = await client.post<{ plan: unknown; text: string }>('/v1/plans', await rolloutBody(flags));
    output.out(flags.json ? JSON.stringify(res.plan) : res.text);
  });

  updateOptions(program.command('apply').description('plan and start a rollout'))
    .option('--wait', 'follow the rollout until it ends; exit 7 if it halts or is cancelled')
    .action(async (flags: UpdateFlags & { wait?: boolean }) => {
      const client = new ControlClient(await resolveControlTarget(flags));
      const rollout = await client.post<RolloutSummary>('/v1/rollouts', await rolloutBody(flags));
      if (!flags.wait) return output.out(flags.json ? JSON.stringify(rollout) : `started ${summaryLine(rollout)}`);
      let last = '';
      for (;;) {
        const { rollout: now } = await client.get<{ rollout: RolloutSummary }>(
          `/v1/rollouts/${encodeURIComponent(rollout.id)}`,
        );
        const line = flags.json ? JSON.stringify(now) : summaryLine(now);
        if (line !== last) output.out(line);
        last = line;
        if (TERMINAL.has(now.status)) {
          if (now.status !== 'completed') throw new ExitError(EXIT_CODES.rolloutFailed);
          return;
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
    });

  targetOptions(
    program
      .command('status')
      .description('rollouts, or one rollout with its host steps and measured pauses')
      .argument('[id]'),
  ).action(async (id: string | undefined, flags: TargetFlags) => {
    const client = new ControlClient(await resolveControlTarget(flags));
    if (!id) {
      const { rollouts } = await client.get<{ rollouts: RolloutSummary[] }>('/v1/rollouts');
      if (flags.json) return output.out(JSON.stringify(rollouts));
      return output.out(rollouts.length === 0 ? 'no rollouts' : rollouts.map(summaryLine).join('\n'));
    }
    const detail = await client.get<{ rollout: RolloutSummary; steps: StepRecord[]; operations: VmOperationRecord[] }>(
      `/v1/rollouts/${encodeURIComponent(id)}`,
    );
    if (flags.json) return output.out(JSON.stringify(detail));
    output.out(summaryLine(detail.rollout));
    output.out(
      table(
        detail.steps.map((s) => [
          String(s.wave),
          s.host,
          s.status,
          s.error ??
            (s.cancellation
              ? `cancelled by ${s.cancellation.by} at ${new Date(s.cancellation.at).toISOString()}: host left out, not a failure`
              : ''),
        ]),
        ['WAVE', 'HOST', 'STEP', 'ERROR'],
      ),
    );
    if (detail.operations.length > 0) {
      output.out('');
      output.out(
        table(
          detail.operations.map((o) => [
            o.vm,
            o.host,
            o.path,
            o.outcome,
            o.pauseMs === null ? '-' : `${o.pauseMs.toFixed(1)} ms`,
            `${o.pauseBudgetMs} ms`,
            o.clockResidualMs === null ? '-' : `${o.clockResidualMs.toFixed(1)} ms`,
          ]),
          ['VM', 'HOST', 'PATH', 'OUTCOME', 'PAUSE', 'BUDGET', 'CLOCK RESIDUAL'],
        ),
      );
    }
  });

  for (const action of ['pause', 'resume', 'cancel'] as const) {
    targetOptions(program.command(action).description(`${action} a rollout`).argument('<id>')).action(
      async (id: string, flags: TargetFlags) => {
        const client = new ControlClient(await resolveControlTarget(flags));
        const r = await client.post<RolloutSummary>(`/v1/rollouts/${encodeURIComponent(id)}/${action}`);
        output.out(flags.json ? JSON.stringify(r) : summaryLine(r));
      },
    );
  }
}
