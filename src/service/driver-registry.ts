/**
 * The registry of the drivers a host agent can run, by kind. The agent runtime opens its driver
 * through it and `intermission agent` builds its `--driver` option from it, so a new driver (say
 * `libvirt`) is its folder, its factory (see `agent-drivers.ts`) and one line in
 * {@link AGENT_DRIVERS}.
 */
import { IntermissionError } from '../domain/index.js';
import {
  qemuAgentDriver,
  simAgentDriver,
  type AgentDriverContext,
  type AgentDriverFactory,
  type AgentDriverFlags,
  type OpenedAgentDriver,
} from './agent-drivers.js';

/** Every driver kind of the agent, in the order the CLI lists them (the first is the default). */
export const AGENT_DRIVERS = {
  sim: simAgentDriver,
  qemu: qemuAgentDriver,
} as const satisfies Record<string, AgentDriverFactory<object>>;

/** A driver kind of the agent: `sim`, `qemu`. */
export type AgentDriverKind = keyof typeof AGENT_DRIVERS;

type SettingsOf<K extends AgentDriverKind> = (typeof AGENT_DRIVERS)[K] extends AgentDriverFactory<infer S> ? S : never;

/**
 * What the agent drives: a kind and that kind's settings, e.g. `{ kind: 'sim', seed: 1 }` (a
 * simulated host in this process) or `{ kind: 'qemu', config }` (the real VMs of this machine).
 */
export type AgentDriverChoice = {
  [K in AgentDriverKind]: { readonly kind: K } & SettingsOf<K>;
}[AgentDriverKind];

/** The driver kinds, in registry order. */
export function agentDriverKinds(): AgentDriverKind[] {
  return Object.keys(AGENT_DRIVERS) as AgentDriverKind[];
}

function isAgentDriverKind(kind: string): kind is AgentDriverKind {
  return Object.hasOwn(AGENT_DRIVERS, kind);
}

/** `a`, `a or b`, `a, b or c`. */
function oneOf(kinds: readonly string[]): string {
  return kinds.length <= 1 ? (kinds[0] ?? '') : `${kinds.slice(0, -1).join(', ')} or ${kinds.at(-1) ?? ''}`;
}

/**
 * The factory of `kind`.
 *
 * @param subject who asked, for the message: `--driver` on the command line
 * @throws IntermissionError `INVALID_INPUT` for an unknown kind, listing the known ones
 */
export function agentDriverFactory(kind: string, subject = 'the driver kind'): AgentDriverFactory<object> {
  if (!isAgentDriverKind(kind)) {
    throw new IntermissionError(
      'INVALID_INPUT',
      `${subject} wants ${oneOf(agentDriverKinds())}, got ${JSON.stringify(kind)}`,
    );
  }
  return AGENT_DRIVERS[kind];
}

/** Opens the driver the choice names, for the agent of `context.host`. */
export function openAgentDriver(choice: AgentDriverChoice, context: AgentDriverContext): Promise<OpenedAgentDriver> {
  return agentDriverFactory(choice.kind).open(choice, context);
}

/** The help of `--driver`: `sim (a simulated host in this process) | qemu (this machine's VMs)`. */
export function driverOptionHelp(): string {
  return agentDriverKinds()
    .map((kind) => `${kind} (${AGENT_DRIVERS[kind].summary})`)
    .join(' | ');
}

/** The commander name of an option: `--qemu-config <file>` → `qemuConfig`. */
export function optionKey(flags: string): string {
  const long = flags.split(/[ ,]+/).find((part) => part.startsWith('--')) ?? flags;
  return long.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/**
 * The choice of `intermission agent --driver <kind>`: the kind checked, an option of another kind
 * refused (`--qemu-config is for --driver qemu`), and the kind's settings read from its options.
 */
export async function agentDriverFromFlags(kind: string, flags: AgentDriverFlags): Promise<AgentDriverChoice> {
  const factory = agentDriverFactory(kind, '--driver');
  for (const other of agentDriverKinds()) {
    if (other === kind) continue;
    for (const option of AGENT_DRIVERS[other].options) {
      if (option.defaultValue === undefined && flags[optionKey(option.flags)] !== undefined) {
        const name = option.flags.split(' ')[0] ?? option.flags;
        throw new IntermissionError('INVALID_INPUT', `${name} is for --driver ${other}`);
      }
    }
  }
  const settings = await factory.fromFlags(flags);
  return { ...settings, kind } as AgentDriverChoice;
}
