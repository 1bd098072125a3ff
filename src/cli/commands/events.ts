import { Option, type Command } from 'commander';
import { formatDuration } from '../../domain/index.js';
import { ControlClient, resolveControlTarget } from '../../control/client.js';
import type { EventView } from '../../control/app.js';
import { table, type Output } from '../output.js';

interface TargetFlags {
  state?: string;
  control?: string;
  tokenFile?: string;
  token?: string;
  json?: boolean;
}

/** Adds the flags that find the running service. */
export function targetOptions(cmd: Command): Command {
  return cmd
    .option('--state <dir>', 'state directory of the running service: address and token from its control.json')
    .option('--control <address>', 'control API address (host:port or unix:/path); needs --token-file')
    .option('--token-file <file>', 'file holding the control API token; needs --control')
    .addOption(
      new Option('--token <token>', 'refused: a flag shows in ps; use --token-file or INTERMISSION_TOKEN').hideHelp(),
    )
    .option('--json', 'print JSON for scripts');
}

async function client(flags: TargetFlags): Promise<ControlClient> {
  return new ControlClient(await resolveControlTarget(flags));
}

function describe(e: EventView, now: number): string[] {
  const nb = Date.parse(e.notBefore);
  const when =
    e.status === 'Scheduled'
      ? nb > now
        ? `in ${formatDuration(nb - now)}`
        : 'due'
      : (e.status ?? e.removalReason ?? '');
  return [
    e.eventId,
    e.type,
    e.status ?? `removed (${e.removalReason ?? '?'})`,
    e.resources.join(','),
    e.source,
    when,
    e.approvedBy ?? '',
  ];
}

export function registerEventCommands(program: Command, output: Output): void {
  const events = program
    .command('events')
    .description('scheduled events: list, schedule drills and user events, cancel');

  targetOptions(events.command('list').description('list live events (or the history with --all)'))
    .option('--all', 'include completed and cancelled events')
    .action(async (flags: TargetFlags & { all?: boolean }) => {
      const res = await (await client(flags)).get<{ events: EventView[] }>(`/v1/events${flags.all ? '?all=true' : ''}`);
      if (flags.json) return output.out(JSON.stringify(res.events));
      if (res.events.length === 0) return output.out('no events');
      const now = Date.now();
      output.out(
        table(
          res.events.map((e) => describe(e, now)),
          ['EVENT', 'TYPE', 'STATUS', 'VMS', 'SOURCE', 'WHEN', 'APPROVED BY'],
        ),
      );
    });

  targetOptions(
    events
      .command('schedule')
      .description('schedule a drill or user event (Freeze, Reboot, Redeploy, Preempt, Terminate) for VMs of one scope')
      .requiredOption('--vm <name...>', 'VM(s) affected; all must share one availability set, or be one standalone VM')
      .requiredOption('--type <type>', 'Freeze | Reboot | Redeploy | Preempt | Terminate')
      .option('--notice <duration>', 'notice before it may start, e.g. 15m (default: the minimum for the type)')
      .option('--not-before <iso>', 'absolute NotBefore, ISO 8601 (instead of --notice)')
      .option('--duration <seconds>', 'DurationInSeconds tenants see (expected interruption; -1 unknown)')
      .option('--description <text>', 'Description tenants see')
      .option('--source <source>', 'EventSource: User (default) or Platform'),
  ).action(
    async (
      flags: TargetFlags & {
        vm: string[];
        type: string;
        notice?: string;
        notBefore?: string;
        duration?: string;
        description?: string;
        source?: string;
      },
    ) => {
      const body = {
        type: flags.type,
        vms: flags.vm,
        ...(flags.notice === undefined ? {} : { notice: flags.notice }),
        ...(flags.notBefore === undefined ? {} : { notBefore: flags.notBefore }),
        ...(flags.duration === undefined ? {} : { durationInSeconds: Number(flags.duration) }),
        ...(flags.description === undefined ? {} : { description: flags.description }),
        ...(flags.source === undefined ? {} : { source: flags.source }),
      };
      const event = await (await client(flags)).post<EventView>('/v1/events', body);
      if (flags.json) return output.out(JSON.stringify(event));
      output.out(
        `scheduled ${event.type} ${event.eventId} for ${event.resources.join(', ')} (${event.scope}), not before ${event.notBefore}`,
      );
    },
  );

  targetOptions(events.command('show').description('show one event').argument('<eventId>')).action(
    async (eventId: string, flags: TargetFlags) => {
      const event = await (await client(flags)).get<EventView>(`/v1/events/${encodeURIComponent(eventId)}`);
      output.out(flags.json ? JSON.stringify(event) : JSON.stringify(event, null, 2));
    },
  );

  targetOptions(events.command('cancel').description('cancel a Scheduled event').argument('<eventId>')).action(
    async (eventId: string, flags: TargetFlags) => {
      const event = await (await client(flags)).post<EventView>(`/v1/events/${encodeURIComponent(eventId)}/cancel`);
      output.out(flags.json ? JSON.stringify(event) : `cancelled ${event.eventId}`);
    },
  );

  targetOptions(
    events.command('document').description('the Scheduled Events document a VM sees right now').argument('<vm>'),
  ).action(async (vm: string, flags: TargetFlags) => {
    const doc = await (
      await client(flags)
    ).get<{ scope: string; incarnation: number; events: EventView[] }>(
      `/v1/vms/${encodeURIComponent(vm)}/scheduled-events`,
    );
    if (flags.json) return output.out(JSON.stringify(doc));
    output.out(`${vm} (${doc.scope}) DocumentIncarnation ${doc.incarnation}`);
    const now = Date.now();
    if (doc.events.length > 0) {
      output.out(
        table(
          doc.events.map((e) => describe(e, now)),
          ['EVENT', 'TYPE', 'STATUS', 'VMS', 'SOURCE', 'WHEN', 'APPROVED BY'],
        ),
      );
    }
  });
}
