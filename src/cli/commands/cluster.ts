import { Option, type Command } from 'commander';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { IntermissionError, type Fleet } from '../../domain/index.js';
import { formatAddress, parseAddress } from '../../service/address.js';
import { startAgentRuntime } from '../../service/agent-runtime.js';
import {
  AGENT_DRIVERS,
  agentDriverFromFlags,
  agentDriverKinds,
  driverOptionHelp,
} from '../../service/driver-registry.js';
import { loadAgentToken } from '../../service/agent-token.js';
import { loadFleetFile } from '../../service/fleet-file.js';
import type { MetadataBinding } from '../../service/metadata-runtime.js';
import { metadataSocketOf } from '../../service/qemu-host.js';
import { createLogger } from '../../service/logging.js';
import { startMetadataRuntime } from '../../service/metadata-runtime.js';
import { connectRemoteHosts, type RemoteAgent } from '../../service/remote-hosts.js';
import { describeStoreLocation, parseStoreLocation } from '../../service/store-choice.js';
import type { Output } from '../output.js';
import {
  METRICS_AUTH_HELP,
  metricsAuthFrom,
  parseBinding,
  timingFrom,
  timingOptions,
  untilSignal,
  type TimingFlags,
} from './serve.js';

/** The token file when `--token-file` is not given: beside the process's own state. */
const DEFAULT_TOKEN_FILE = 'agent.token';

interface AgentFlags {
  host: string;
  fleet: string;
  listen: string;
  state: string;
  tokenFile?: string;
  /** The driver kind; each kind's own options (`--seed`, `--qemu-config`) come from the registry. */
  driver: string;
  logLevel: string;
  [driverOption: string]: string | undefined;
}

interface ControllerFlags extends TimingFlags {
  fleet: string;
  state: string;
  store: string;
  agent: string[];
  control: string;
  bind?: string[];
  metadataDir?: string;
  tokenFile?: string;
}

function parseAgent(text: string): RemoteAgent {
  const eq = text.indexOf('=');
  if (eq <= 0) {
    throw new IntermissionError('INVALID_INPUT', `--agent wants <host>=<host:port>, got ${JSON.stringify(text)}`);
  }
  return { host: text.slice(0, eq), address: parseAddress(text.slice(eq + 1)) };
}

/** `--bind` listeners, plus one unix socket per other fleet VM under `--metadata-dir`. */
async function controllerBindings(fleet: Fleet, flags: ControllerFlags): Promise<MetadataBinding[]> {
  const bindings = (flags.bind ?? []).map(parseBinding);
  if (flags.metadataDir !== undefined) {
    const dir = resolve(flags.metadataDir);
    await mkdir(dir, { recursive: true, mode: 0o755 });
    const bound = new Set(bindings.map((b) => b.vm));
    for (const vm of fleet.vms) {
      if (!bound.has(vm.name)) bindings.push({ vm: vm.name, address: { path: metadataSocketOf(dir, vm.name) } });
    }
  }
  return bindings;
}

/**
 * The multi-process topology: `intermission agent` runs the agent of one host (here over a
 * simulated host) and serves the agent API over HTTP; `intermission controller` runs the store,
 * the event service, the control API and the rollout controller, and reaches the agents over HTTP.
 * Both read the controller ↔ agent token from one file. Either process can be killed and restarted
 * on the same state directory: the controller continues from its store, the agent from its journal.
 */
export function registerClusterCommands(program: Command, output: Output): void {
  const agent = program
    .command('agent')
    .description(
      'run the host agent of one host of a fleet file (simulated, or real VMs under QEMU), serving the agent API over HTTP',
    )
    .requiredOption('--host <name>', 'the fleet host this agent runs; it holds the fleet VMs of that host')
    .requiredOption('--fleet <file>', 'fleet file (YAML or JSON)')
    .requiredOption('--listen <address>', 'agent API address, host:port (port 0 picks a free one)')
    .requiredOption('--state <dir>', 'state directory (the journal of host steps); keep it across restarts')
    .option(
      '--token-file <file>',
      `controller ↔ agent token, created (mode 0600) if missing (default <state>/${DEFAULT_TOKEN_FILE})`,
    )
    .option('--driver <kind>', driverOptionHelp(), agentDriverKinds()[0]);
  // The options of each driver kind (`--seed`, `--qemu-config`), from the registry.
  for (const kind of agentDriverKinds()) {
    for (const option of AGENT_DRIVERS[kind].options) {
      agent.option(option.flags, option.description, option.defaultValue);
    }
  }
  agent
    .option('--log-level <level>', 'fatal | error | warn | info | debug', 'info')
    .action(async (flags: AgentFlags) => {
      const logger = createLogger(flags.logLevel);
      const runtime = await startAgentRuntime({
        fleet: await loadFleetFile(flags.fleet),
        host: flags.host,
        stateDir: flags.state,
        listen: parseAddress(flags.listen),
        token: await loadAgentToken(flags.tokenFile ?? join(flags.state, DEFAULT_TOKEN_FILE)),
        driver: await agentDriverFromFlags(flags.driver, flags),
        logger,
      });
      if (runtime.qemu) {
        const q = runtime.qemu;
        output.out(
          `qemu vms adopted=${q.adopted.join(',') || '-'} launched=${q.launched.join(',') || '-'}` +
            (q.foreign.length > 0 ? ` not-in-fleet=${q.foreign.join(',')}` : ''),
        );
      }
      output.out(`agent listening host=${flags.host} address=${formatAddress(runtime.address)}`);
      const signal = await untilSignal();
      output.err(`${signal}: shutting down after the steps under way`);
      await runtime.close();
    });

  timingOptions(
    program
      .command('controller')
      .description('run the controller (store, events, control API, rollouts) over agents reached by HTTP')
      .requiredOption('--fleet <file>', 'fleet file (YAML or JSON)')
      .option('--state <dir>', 'state directory (SQLite store, tokens, control.json)', '.intermission')
      .addOption(
        new Option(
          '--store <store>',
          'where events and rollouts live: sqlite (<state>/intermission.db), or PostgreSQL as a ' +
            'postgres://user@host:port/database URL or `postgres` (from the PG* environment); ' +
            'keep passwords in PGPASSWORD or ~/.pgpass, not here (see docs/postgresql.md)',
        )
          .env('INTERMISSION_STORE')
          .default('sqlite'),
      )
      .requiredOption(
        '--agent <host=address...>',
        'the agent of a host, e.g. host-a=10.0.0.7:7490 (one per fleet host)',
      )
      .option(
        '--control <address>',
        'control API address (host:port or unix:/path; port 0 picks one)',
        '127.0.0.1:7480',
      )
      .option('--bind <vm=address...>', 'metadata listener of a VM: host:port or unix:/path (optional, repeatable)')
      .option(
        '--metadata-dir <dir>',
        'a metadata listener for every fleet VM not given --bind, at <dir>/<vm>.sock (what QEMU agents forward to)',
      )
      .option(
        '--token-file <file>',
        `controller ↔ agent token, created (mode 0600) if missing (default <state>/${DEFAULT_TOKEN_FILE})`,
      )
      .option('--metrics-auth <mode>', METRICS_AUTH_HELP, 'none'),
  ).action(async (flags: ControllerFlags & { metricsAuth?: string }) => {
    const fleet = await loadFleetFile(flags.fleet);
    const store = parseStoreLocation(flags.store);
    const agents = flags.agent.map(parseAgent);
    const token = await loadAgentToken(flags.tokenFile ?? join(flags.state, DEFAULT_TOKEN_FILE));
    // Checked before anything is opened, so that a wrong --agent list fails fast.
    const hosts = connectRemoteHosts({ fleet, agents, token });
    const runtime = await startMetadataRuntime({
      fleet,
      stateDir: flags.state,
      store,
      hosts: () => Promise.resolve(hosts),
      bindings: await controllerBindings(fleet, flags),
      control: parseAddress(flags.control),
      timing: timingFrom(flags),
      logger: createLogger(flags.logLevel),
      metricsAuth: metricsAuthFrom(flags),
    });
    if (store.kind !== 'sqlite') output.out(`store ${describeStoreLocation(store, flags.state)}`);
    for (const m of runtime.metadata) output.out(`metadata listening vm=${m.vm} address=${formatAddress(m.address)}`);
    output.out(`control listening address=${formatAddress(runtime.control)}`);
    const signal = await untilSignal();
    output.err(`${signal}: shutting down`);
    await runtime.close();
  });
}
