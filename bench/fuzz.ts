/**
 * The long fuzz run (see docs/reliability.md, "Fuzzing"): seeded hostile input to the metadata
 * listeners and the control API of a real `intermission up` process.
 *
 *   node --import tsx bench/fuzz.ts --inputs 100000 --seed 1
 *
 * Flags: --inputs N (default 100000), --seed N (default 1), --batch N (inputs between two looks
 * at the state, default 50; 1 looks after every input), --slow (trickle some inputs up to 400 ms
 * per piece), --no-huge (leave out 1 MB headers and 8-32 MB bodies), --json (the report as JSON,
 * findings included). Exits 1 when the run found a crash, a 5xx, a state change from a rejected
 * input or a batch change no input could be found for. Targets: 0 crashes, 0 5xx, 0 state changes
 * from rejected input, RSS flat.
 */
import { ensureBuilt } from '../test/crash/harness.js';
import { formatReport, runFuzz } from '../test/fuzz/fuzzer.js';

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? undefined : process.argv[i + 1];
}

function intFlag(name: string, fallback: number): number {
  const text = flag(name);
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${name} wants an integer, got ${text}`);
  return n;
}

const inputs = intFlag('inputs', 100_000);
const seed = intFlag('seed', 1);
const batch = intFlag('batch', 50);
const json = process.argv.includes('--json');
await ensureBuilt();
const report = await runFuzz({
  seed,
  inputs,
  batch,
  slow: process.argv.includes('--slow'),
  huge: !process.argv.includes('--no-huge'),
  progressEvery: Math.max(100, Math.round(inputs / 20)),
  progress: (line) => process.stderr.write(`${line}\n`),
});
const growth = report.rss.end - report.rss.start;
// "Flat": the end within 64 MB of the start (the V8 heap settles after the first inputs).
const flat = report.restarts === 0 && growth < 64 * 2 ** 20;
if (json) process.stdout.write(`${JSON.stringify({ ...report, rssFlat: flat }, null, 2)}\n`);
else
  process.stdout.write(
    `${formatReport(report)}\nRSS flat     ${flat ? 'yes' : 'no'} (end - start ${(growth / 2 ** 20).toFixed(1)} MB)\n`,
  );
process.exitCode =
  report.crashes + report.serverErrors + report.rejectedChangedState + report.unattributedChanges > 0 ? 1 : 0;
