/** The heap growth setting: what the environment may say, and the CLI's refusal of anything else. */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { IntermissionError } from '../../src/domain/index.js';
import { DEFAULT_HEAP_GROWTH_PERCENT, HEAP_GROWTH_ENV, heapGrowthPercent } from '../../src/service/heap-growth.js';
import { ensureBuilt } from '../crash/harness.js';

void describe('heap growth setting', () => {
  void it('is the default when unset or blank, and the whole number given otherwise', () => {
    assert.equal(heapGrowthPercent({}), DEFAULT_HEAP_GROWTH_PERCENT);
    assert.equal(heapGrowthPercent({ [HEAP_GROWTH_ENV]: '  ' }), DEFAULT_HEAP_GROWTH_PERCENT);
    assert.equal(heapGrowthPercent({ [HEAP_GROWTH_ENV]: '0' }), 0);
    assert.equal(heapGrowthPercent({ [HEAP_GROWTH_ENV]: ' 120 ' }), 120);
  });

  void it('refuses what is not a whole percent from 0 to 1000, naming the variable', () => {
    for (const raw of ['abc', '-5', '12.5', '1001', '1e9', '0x10']) {
      assert.throws(
        () => heapGrowthPercent({ [HEAP_GROWTH_ENV]: raw }),
        (error: unknown) =>
          error instanceof IntermissionError &&
          error.code === 'INVALID_INPUT' &&
          error.message.includes(HEAP_GROWTH_ENV),
        raw,
      );
    }
  });

  void it('makes the CLI exit 2 before running any command when the setting is bad', async () => {
    await ensureBuilt();
    const bin = fileURLToPath(new URL('../../bin/intermission.js', import.meta.url));
    const bad = spawnSync(process.execPath, [bin, '--version'], {
      env: { ...process.env, [HEAP_GROWTH_ENV]: 'lots' },
      encoding: 'utf8',
    });
    assert.equal(bad.status, 2, bad.stderr);
    assert.match(bad.stderr, /INTERMISSION_HEAP_GROWTH_PERCENT wants a whole number/);
    assert.equal(bad.stdout, '', 'the command did not run');
    const good = spawnSync(process.execPath, [bin, '--version'], {
      env: { ...process.env, [HEAP_GROWTH_ENV]: '25' },
      encoding: 'utf8',
    });
    assert.equal(good.status, 0, good.stderr);
    assert.match(good.stdout, /0\.1\.0/);
  });
});
