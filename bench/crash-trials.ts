/**
 * Crash trials benchmark: runs seeded crash trials (test/crash/trial-*.ts) one after the other and
 * prints the totals: trials, faults by target, point and signal, rollout outcomes, each class of
 * violation, wall time. Each trial is a rollout on real processes (the compiled CLI's controller
 * and agents) with one process killed or frozen at a drawn point; see docs/reliability.md.
 *
 *   node --import tsx bench/crash-trials.ts --trials 200 [--qemu N] --seed S [--quiet]
 *
 * Simulated trial i has seed S + i; QEMU trial j has seed S + j (QEMU trials need root, QEMU and a
 * built guest, see test/qemu/qemu-fixture.ts; they share one cluster of two hosts and three guests).
 * Target: 200 trials, 0 violations. Exits with 1 when a violation was found.
 */
import { parseArgs } from 'node:util';
import { ensureBuilt } from '../test/crash/harness.js';
import { qemuBackend } from '../test/crash/trial-qemu.js';
import { emptyTotals, formatTotals, runTrials, simBackend } from '../test/crash/trials.js';

const { values } = parseArgs({
  options: {
    trials: { type: 'string', default: '200' },
    qemu: { type: 'string', default: '0' },
    seed: { type: 'string', default: String(Date.now() % 1_000_000) },
    quiet: { type: 'boolean', default: false },
  },
});
const count = (name: string, text: string): number => {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${name} wants a whole number, got ${text}`);
  return n;
};
const simCount = count('trials', values.trials);
const qemuCount = count('qemu', values.qemu);
const seed = count('seed', values.seed);
const log = values.quiet ? (): void => undefined : (line: string): void => void process.stderr.write(`${line}\n`);

const began = Date.now();
await ensureBuilt();
process.stderr.write(`crash trials: ${simCount} simulated + ${qemuCount} QEMU, first seed ${seed}\n`);
const sim = await runTrials({ backend: simBackend(), firstSeed: seed, count: simCount, log });
const qemu = emptyTotals();
if (qemuCount > 0) {
  const backend = await qemuBackend();
  try {
    await runTrials({ backend, firstSeed: seed, count: qemuCount, totals: qemu, log });
  } finally {
    await backend.close();
  }
}
const lines = [
  ...(simCount > 0 ? formatTotals(sim, 'sim') : []),
  ...(qemuCount > 0 ? formatTotals(qemu, 'qemu') : []),
  `wall time ${((Date.now() - began) / 1000).toFixed(0)} s`,
];
process.stdout.write(`${lines.join('\n')}\n`);
process.exitCode = sim.failed.length + qemu.failed.length > 0 ? 1 : 0;
