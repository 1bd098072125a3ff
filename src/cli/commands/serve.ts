import type { Command } from 'commander';
import { fileURLToPath } from 'node:url';
import { METRICS_AUTH_MODES, type MetricsAuth } from '../../control/app.js';
import { IntermissionError, parseDuration, timeScale, type EventTimingOptions } from '../../domain/index.js';
import { formatAddress, httpUrl, parseAddress } from '../../service/address.js';
import { loadFleetFile } from '../../service/fleet-file.js';
import { createLogger } from '../../service/logging.js';
import { startSimHosts } from '../../service/sim-hosts.js';
import {
  ACCEL_CHOICES,
  assertQemuUsable,
  localMetadataSocket,
  prepareRunBase,
  startLocalQemuHosts,
  type LocalQemuHosts,
} from '../../service/local-qemu.js';
import { startMetadataRuntime, type MetadataBinding, type MetadataRuntime } from '../../service/metadata-runtime.js';
import type { Output } from '../output.js';

/** The demo fleet shipped with the package. */
export const DEMO_FLEET = fileURLToPath(new URL('../../../examples/demo-fleet.yaml', import.meta.url));
/** The fleet of `up --qemu`: three real guests, two sets, two update domains. */
export const QEMU_DEMO_FLEET = fileURLToPath(new URL('../../../examples/qemu-fleet.yaml', import.meta.url));

/** Flags of {@link timingOptions}, as commander hands them over. */
export interface TimingFlags {
  timeScale?: string;
  linger?: string;
  terminateNotice?: string;
  logLevel?: string;
}

/** The event timing the flags of {@link timingOptions} ask for. */
export function timingFrom(flags: TimingFlags): EventTimingOptions {
  return {
    ...(flags.timeScale === undefined ? {} : { scale: timeScale(Number(flags.timeScale)) }),
    ...(flags.linger === undefined ? {} : { lingerMs: parseDuration(flags.linger) }),
    ...(flags.terminateNotice === undefined ? {} : { terminateNoticeMs: parseDuration(flags.terminateNotice) }),
  };
}

/** Adds the time-scale, linger, terminate-notice and log-level flags. */
export function timingOptions(cmd: Command): Command {
  return cmd
    .option('--time-scale <n>', 'divide every notice and linger by n, for demos and tests (production: 1)')
    .option('--linger <duration>', 'how long a finished event stays listed as Started', '5m')
    .option('--terminate-notice <duration>', 'the Terminate notice (scale-set notBeforeTimeout), 5m to 15m', '5m')
    .option('--log-level <level>', 'fatal | error | warn | info | debug', 'info');
}

/** Reads a `--bind <vm>=<address>` value. */
export function parseBinding(text: string): MetadataBinding {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new IntermissionError('INVALID_INPUT', `--bind wants <vm>=<address>, got ${JSON.stringify(text)}`);
  return { vm: text.slice(0, eq), address: parseAddress(text.slice(eq + 1)) };
}

/** Resolves when SIGINT or SIGTERM arrives. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const done = (signal: NodeJS.Signals): void => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolve(signal);
    };
    process.on('SIGINT', done);
    process.on('SIGTERM', done);
  });
}

async function runUntilSignal(runtime: MetadataRuntime, output: Output): Promise<void> {
  const signal = await untilSignal();
  output.err(`${signal}: shutting down`);
  await runtime.close();
}

/** The `--metrics-auth` option: who may scrape GET /metrics of the control API (see docs/security.md). */
export const METRICS_AUTH_HELP =
  'GET /metrics: none (anyone who reaches the control address) | token (an operator or metrics token)';

/** Reads `--metrics-auth`. */
export function metricsAuthFrom(flags: { metricsAuth?: string }): MetricsAuth {
  const mode = METRICS_AUTH_MODES.find((m) => m === (flags.metricsAuth ?? 'none'));
  if (mode === undefined) {
    throw new IntermissionError(
      'INVALID_INPUT',
      `--metrics-auth wants ${METRICS_AUTH_MODES.join(' | ')}, got ${flags.metricsAuth}`,
    );
  }
  return mode;
}

export function registerServeCommands(program: Command, output: Output): void {
  timingOptions(
    program
      .command('serve-metadata')
      .description('serve the Scheduled Events metadata service for a fleet file, one listener per VM')
      .requiredOption('--fleet <file>', 'fleet file (YAML or JSON)')
      .option('--state <dir>', 'state directory (SQLite store, tokens, control.json)', '.intermission')
      .option(
        '--bind <vm=address...>',
        'a VM and where it reaches the service: host:port or unix:/path (repeat per VM)',
      )
      .option('--control <address>', 'control API address (host:port or unix:/path)', '127.0.0.1:7480')
      .option('--metrics-auth <mode>', METRICS_AUTH_HELP, 'none'),
  ).action(
    async (
      flags: TimingFlags & { fleet: string; state: string; bind?: string[]; control: string; metricsAuth?: string },
    ) => {
      const bindings = (flags.bind ?? []).map(parseBinding);
      if (bindings.length === 0)
        throw new IntermissionError('INVALID_INPUT', 'give at least one --bind <vm>=<address>');
      const runtime = await startMetadataRuntime({
        fleet: await loadFleetFile(flags.fleet),
        stateDir: flags.state,
        bindings,
        control: parseAddress(flags.control),
        timing: timingFrom(flags),
        logger: createLogger(flags.logLevel),
        metricsAuth: metricsAuthFrom(flags),
      });
      for (const m of runtime.metadata) output.out(`metadata listening vm=${m.vm} address=${formatAddress(m.address)}`);
      output.out(`control listening address=${formatAddress(runtime.control)}`);
      await runUntilSignal(runtime, output);
    },
  );

  timingOptions(
    program
      .command('up')
      .description(
        'start the embedded default: a fleet with a metadata listener per VM and the control API, one process',
      )
      .option('--fleet <file>', 'fleet file (default: the demo fleet; with --qemu, examples/qemu-fleet.yaml)')
      .option('--state <dir>', 'state directory', '.intermission')
      .option('--host <host>', 'interface for every listener', '127.0.0.1')
      .option('--control-port <port>', 'control API port', '7480')
      .option('--metadata-port <port>', 'first metadata port; VM n gets port+n', '7500')
      .option(
        '--qemu',
        'real guests under QEMU instead of simulated hosts (KVM when usable, else TCG); says what to install if QEMU is missing',
      )
      .option('--accel <kind>', 'with --qemu: auto (KVM when a guest boots under it, else TCG) | kvm | tcg', 'auto')
      .option('--keep-vms', 'with --qemu: leave the guests running on exit; the next `up --qemu` adopts them')
      .option('--metrics-auth <mode>', METRICS_AUTH_HELP, 'none'),
  ).action(
    async (
      flags: TimingFlags & {
        fleet?: string;
        state: string;
        host: string;
        controlPort: string;
        metadataPort: string;
        qemu?: boolean;
        accel: string;
        keepVms?: boolean;
        metricsAuth?: string;
      },
    ) => {
      const qemu = flags.qemu === true;
      if (!qemu && flags.keepVms === true) throw new IntermissionError('INVALID_INPUT', '--keep-vms is for --qemu');
      // Checked before anything is opened, so that the answer is what to install, at once.
      if (qemu) assertQemuUsable();
      const accel = ACCEL_CHOICES.find((a) => a === flags.accel);
      if (accel === undefined) {
        throw new IntermissionError('INVALID_INPUT', `--accel wants ${ACCEL_CHOICES.join(' | ')}, got ${flags.accel}`);
      }
      const fleet = await loadFleetFile(flags.fleet ?? (qemu ? QEMU_DEMO_FLEET : DEMO_FLEET));
      const base = Number(flags.metadataPort);
      if (!Number.isInteger(base) || base < 1 || base + fleet.vms.length > 65535) {
        throw new IntermissionError(
          'INVALID_INPUT',
          `--metadata-port ${flags.metadataPort} leaves no room for ${fleet.vms.length} VMs`,
        );
      }
      const bindings: MetadataBinding[] = fleet.vms.map((vm, i) => ({
        vm: vm.name,
        address: { host: flags.host, port: base + i },
      }));
      const logger = createLogger(flags.logLevel);
      let qemuHosts: LocalQemuHosts | undefined;
      if (qemu) {
        // Each guest's own channel, beside the TCP listener an operator can curl.
        for (const vm of fleet.vms)
          bindings.push({ vm: vm.name, address: { path: localMetadataSocket(flags.state, vm.name) } });
        await prepareRunBase(flags.state);
        output.out(
          `Starting ${fleet.vms.length} QEMU guests (accel ${accel}); the first start builds the guest, and a boot under TCG takes a minute…`,
        );
      }
      const runtime = await startMetadataRuntime({
        fleet,
        stateDir: flags.state,
        hosts: qemu
          ? async ({ stateDir }) => (qemuHosts = await startLocalQemuHosts({ fleet, stateDir, logger, accel }))
          : ({ stateDir }) => startSimHosts({ fleet, stateDir }),
        bindings,
        control: parseAddress(`${flags.host}:${flags.controlPort}`),
        timing: timingFrom(flags),
        logger,
        metricsAuth: metricsAuthFrom(flags),
      });
      const scale = runtime.service.timing.scale.factor;
      const tcp = runtime.metadata.filter((m) => !('path' in m.address));
      const first = tcp[0];
      const q = qemuHosts;
      output.out(
        [
          `Intermission is up: ${fleet.hosts.length} hosts, ${fleet.availabilitySets.length} availability sets, ${fleet.vms.length} VMs${scale === 1 ? '' : `, time scale ${scale}x (demo)`}.`,
          `control API   ${httpUrl(runtime.control)}  (token in ${runtime.controlFile})`,
          `dashboard     ${httpUrl(runtime.control)}${runtime.signInPath()}  (one-time sign-in, 5 minutes; later: npx intermission dashboard --state ${flags.state})`,
          `OpenAPI       ${httpUrl(runtime.control)}/openapi.json`,
          ...tcp.map((m) => `metadata      ${m.vm.padEnd(12)} ${httpUrl(m.address)}/metadata/scheduledevents`),
          ...(q
            ? [
                `guests        QEMU (${q.accel}), VMM builds ${q.vmmVersions.join(' and ')}; serial consoles in ${q.runBase}/<host>/<vm>/serial.log`,
                `              each guest reads its own events at 169.254.169.254 and approves Freeze events`,
              ]
            : []),
          '',
          'Try:',
          ...(first
            ? [
                `  curl -s -H 'Metadata: true' '${httpUrl(first.address)}/metadata/scheduledevents?api-version=2020-07-01'`,
                `  npx intermission events schedule --state ${flags.state} --vm ${first.vm} --type Freeze`,
                `  npx intermission events list --state ${flags.state}`,
                `  npx intermission plan  --state ${flags.state} --id patch-1 --kind host-patch --apply-time 3s`,
                `  npx intermission apply --state ${flags.state} --id patch-1 --kind host-patch --apply-time 3s --wait`,
                ...(q
                  ? [
                      `  npx intermission apply --state ${flags.state} --id vmm-next --kind vmm-update --to-version ${q.vmmVersions[1]} --apply-time 1s --wait`,
                    ]
                  : []),
              ]
            : []),
          q && flags.keepVms !== true
            ? 'Stop with Ctrl-C (the guests stop too; --keep-vms leaves them running).'
            : 'Stop with Ctrl-C.',
        ].join('\n'),
      );
      await runUntilSignal(runtime, output);
      if (q && flags.keepVms !== true) await q.destroy();
    },
  );
}
