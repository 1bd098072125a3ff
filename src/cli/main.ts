import { Command, CommanderError } from 'commander';
import { IntermissionError, coerceError } from '../domain/index.js';
import { applyHeapGrowth, heapGrowthPercent } from '../service/heap-growth.js';
import { registerClusterCommands } from './commands/cluster.js';
import { registerEventCommands } from './commands/events.js';
import { registerFleetCommands } from './commands/fleet.js';
import { registerRolloutCommands } from './commands/rollouts.js';
import { registerServeCommands } from './commands/serve.js';
import { registerTokenCommands } from './commands/tokens.js';
import { EXIT_CODES, ExitError, exitCodeFor, processOutput, type Output } from './output.js';

const ISSUES_URL = 'https://github.com/intermission-dev/intermission/issues/new';

export function buildProgram(output: Output = processOutput): Command {
  const program = new Command('intermission')
    .description('VM-preserving host maintenance for KVM/QEMU fleets, with Azure-compatible Scheduled Events')
    .version('0.1.0')
    .exitOverride()
    .configureOutput({ writeOut: (s) => output.out(s), writeErr: (s) => output.err(s) })
    .showHelpAfterError();
  registerServeCommands(program, output);
  registerRolloutCommands(program, output);
  registerEventCommands(program, output);
  registerTokenCommands(program, output);
  registerFleetCommands(program, output);
  registerClusterCommands(program, output);
  return program;
}

/**
 * The CLI's one error boundary: commands throw, this maps what they threw to a message and an exit
 * code. Returns the exit code (and sets process.exitCode) rather than exiting.
 */
export async function run(argv: readonly string[], output: Output = processOutput): Promise<number> {
  const program = buildProgram(output);
  try {
    await program.parseAsync([...argv]);
    return EXIT_CODES.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.exitCode === 0 ? EXIT_CODES.ok : EXIT_CODES.invalidInput;
    }
    if (error instanceof ExitError) return error.exitCode;
    const e = coerceError(error);
    if (e.code === 'INTERNAL' && !(error instanceof IntermissionError)) {
      output.err(`intermission: internal error (a bug, please report it at ${ISSUES_URL}):`);
      output.err(error instanceof Error ? (error.stack ?? error.message) : String(error));
    } else {
      output.err(`intermission: ${e.message} [${e.code}]`);
    }
    return exitCodeFor(e);
  }
}

/**
 * The process entry point: applies the heap growth setting (see `src/service/heap-growth.ts`)
 * before any command runs, then runs the command.
 */
export async function main(argv: readonly string[], output: Output = processOutput): Promise<void> {
  try {
    applyHeapGrowth(heapGrowthPercent());
  } catch (error) {
    output.err(`intermission: ${coerceError(error).message}`);
    process.exitCode = EXIT_CODES.invalidInput;
    return;
  }
  process.exitCode = await run(argv, output);
}
