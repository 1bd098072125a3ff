/**
 * The short fuzz run of CI (the long one is bench/fuzz.ts; see docs/reliability.md, "Fuzzing"):
 * a few fixed seeds, a bounded number of hostile inputs each, against a real `intermission up`
 * process (compiled CLI, built on demand) over its metadata listeners and its control API, as an
 * operator, as tenants of different tenants, and without a token. Every input must leave the
 * process alive and be answered without a 5xx, and an input that is refused must change no event
 * and no DocumentIncarnation. Accepted inputs must stay within their sender's authority, and the
 * Scheduled Events document is served for its own spelling only. The state is looked at once per
 * batch of 50 inputs and a batch with an unexplained change is replayed one input at a time from a
 * checkpoint (see fuzzer.ts, attribution.ts), so a failure still names one input.
 *
 * INTERMISSION_FUZZ_SEEDS=1,2,3 and INTERMISSION_FUZZ_INPUTS=<n> vary the run; a failure names the
 * seed and the index of the input, and shows its bytes.
 */
import { strict as assert } from 'node:assert';
import { before, describe, it } from 'node:test';
import { ensureBuilt } from '../crash/harness.js';
import { formatReport, runFuzz, type Finding, type FindingKind, type FuzzReport } from './fuzzer.js';

const SEEDS = (process.env.INTERMISSION_FUZZ_SEEDS ?? '1201,1202').split(',').map(Number);
const INPUTS = Number(process.env.INTERMISSION_FUZZ_INPUTS ?? 300);

function examples(report: FuzzReport, kind: FindingKind): string {
  const list = report.distinct.filter((f) => f.kind === kind);
  return list
    .slice(0, 8)
    .map(
      (f: Finding & { count: number }) =>
        `  x${f.count} #${f.index} ${f.status} ${f.label}\n    ${f.detail.split('\n')[0]}\n    ${f.bytes.slice(0, 300)}`,
    )
    .join('\n');
}

before(async () => void (await ensureBuilt()), { timeout: 300_000 });

for (const seed of SEEDS) {
  describe(`fuzz: seed ${seed}, ${INPUTS} inputs to the metadata listeners and the control API`, () => {
    let report: FuzzReport | undefined;
    const get = (): FuzzReport => {
      assert.ok(report, 'the fuzz run did not finish');
      return report;
    };

    before(
      async () => {
        report = await runFuzz({ seed, inputs: INPUTS });
        process.stderr.write(`${formatReport(report)}\n`);
      },
      { timeout: 240_000 },
    );

    it('the server process never dies', () => {
      const r = get();
      assert.equal(r.crashes, 0, `crashes:\n${examples(r, 'crash')}`);
    });

    it('no input is answered with a 5xx', () => {
      const r = get();
      assert.equal(r.serverErrors, 0, `5xx answers:\n${examples(r, '5xx')}`);
    });

    it('a refused input changes no event and no DocumentIncarnation, and leaves the state readable', () => {
      const r = get();
      assert.equal(
        r.rejectedChangedState,
        0,
        `state changed by refused input:\n${examples(r, 'rejected-changed-state')}\n${examples(r, 'unreadable-state')}`,
      );
      // A batch's change that its replay, one input at a time, did not lay at any input.
      assert.equal(r.unattributedChanges, 0, `unattributed changes:\n${examples(r, 'unattributed-change')}`);
    });

    it('an accepted input changes only what its sender may change', () => {
      const r = get();
      assert.equal(r.outOfAuthority, 0, `out of authority:\n${examples(r, 'out-of-authority')}`);
    });

    it('the Scheduled Events document is served for its own spelling only', () => {
      const r = get();
      assert.equal(r.oddSpellingServed, 0, `odd spellings served:\n${examples(r, 'odd-spelling-served')}`);
    });
  });
}
