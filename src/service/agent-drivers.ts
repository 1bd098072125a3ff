/**
 * The drivers a host agent can run (`intermission agent --driver <kind>`), one factory each: it
 * declares the CLI options it reads, checks its own settings, and opens the driver of one host.
 * The registry (`driver-registry.ts`) lists them by kind; adding a driver is its folder under
 * `src/hypervisor/`, a factory, and one line there.
 */
import { IntermissionError, type FleetIndex, type Host } from '../domain/index.js';
import type { HypervisorDriver } from '../hypervisor/driver.js';
import { createSimFleet, type SimHost, type SimTime } from '../hypervisor/sim/index.js';
import type { Logger } from './logging.js';
import { loadQemuHostFile, openQemuHost, type QemuHostConfig, type QemuHostStart } from './qemu-host.js';

/** What a factory gets to open the driver of the agent's host. */
export interface AgentDriverContext {
  /** The host the agent runs (it is in the fleet). */
  readonly host: Host;
  readonly fleet: FleetIndex;
  /** The agent's time, which a simulated host shares. */
  readonly time: SimTime;
  readonly logger?: Logger;
}

/** An opened driver, and what the agent reports of it beyond the port. */
export interface OpenedAgentDriver {
  readonly driver: HypervisorDriver;
  /** The simulated host the driver acts on (it lives in this process). */
  readonly simHost?: SimHost;
  /** For QEMU: which VMs were adopted, launched, or found outside the fleet at start. */
  readonly qemu?: QemuHostStart;
}

/** A CLI option that only one driver kind reads, as commander declares it. */
export interface AgentDriverOption {
  /** E.g. `--qemu-config <file>`. */
  readonly flags: string;
  readonly description: string;
  /** A default makes the option always present, so it is not refused with another kind. */
  readonly defaultValue?: string;
}

/** The parsed `intermission agent` options, by commander's camel-cased names. */
export type AgentDriverFlags = Readonly<Record<string, string | undefined>>;

/** One driver kind of the agent. `Settings` is what its choice carries beside `kind`. */
export interface AgentDriverFactory<Settings extends object> {
  /** What the kind drives, for the `--driver` help: `this machine's VMs`. */
  readonly summary: string;
  /** The options only this kind reads. */
  readonly options: readonly AgentDriverOption[];
  /** Its settings from the CLI options, checked: `INVALID_INPUT` names the option to fix. */
  fromFlags(flags: AgentDriverFlags): Promise<Settings>;
  /** Opens the driver of `context.host`. */
  open(settings: Settings, context: AgentDriverContext): Promise<OpenedAgentDriver>;
}

/** Settings of the simulated driver. */
export interface SimAgentSettings {
  /** Seeds the simulated host's timings. Default 1. */
  readonly seed?: number;
}

/** A simulated host in this process, holding the fleet's VMs of that host. */
export const simAgentDriver: AgentDriverFactory<SimAgentSettings> = {
  summary: 'a simulated host in this process',
  options: [{ flags: '--seed <n>', description: 'seed of the simulated host timings', defaultValue: '1' }],
  fromFlags(flags) {
    const text = flags.seed ?? '1';
    const seed = Number(text);
    if (!Number.isSafeInteger(seed)) {
      return Promise.reject(new IntermissionError('INVALID_INPUT', `--seed wants an integer, got ${text}`));
    }
    return Promise.resolve({ seed });
  },
  open(settings, { host, fleet, time }) {
    const simHost = createSimFleet({
      fleet: { hosts: [host], vms: fleet.vmsOnHost(host.name) },
      time,
      seed: settings.seed ?? 1,
    }).get(host.name);
    if (!simHost) return Promise.reject(new IntermissionError('INTERNAL', `the simulator made no host ${host.name}`));
    return Promise.resolve({ driver: simHost.connect(), simHost });
  },
};

/** Settings of the QEMU driver. */
export interface QemuAgentSettings {
  readonly config: QemuHostConfig;
}

/** This machine's VMs under QEMU (see docs/qemu.md). */
export const qemuAgentDriver: AgentDriverFactory<QemuAgentSettings> = {
  summary: "this machine's VMs",
  options: [
    {
      flags: '--qemu-config <file>',
      description: 'with --driver qemu: QEMU settings (YAML or JSON; see docs/qemu.md)',
    },
  ],
  async fromFlags(flags) {
    if (flags.qemuConfig === undefined) {
      throw new IntermissionError('INVALID_INPUT', '--driver qemu needs --qemu-config <file>');
    }
    return { config: await loadQemuHostFile(flags.qemuConfig) };
  },
  async open(settings, { host, fleet, logger }) {
    const qemu = await openQemuHost({
      host: host.name,
      config: settings.config,
      vms: fleet.vmsOnHost(host.name),
      ...(logger ? { logger } : {}),
    });
    return { driver: qemu.driver, qemu };
  },
};
