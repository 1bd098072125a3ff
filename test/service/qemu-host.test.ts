/** The QEMU host file of `intermission agent --driver qemu`: parsing, paths, and clear refusals. */
import { strict as assert } from 'node:assert';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { IntermissionError } from '../../src/domain/index.js';
import { loadQemuHostFile, metadataSocketOf, parseQemuHostConfig } from '../../src/service/qemu-host.js';

const VALID = {
  runDir: 'run',
  vmmBuilds: { '7.2.22': '/usr/bin/qemu-system-x86_64', next: 'bin/qemu', path: 'qemu-system-x86_64' },
  defaultVmmVersion: '7.2.22',
  kernel: 'guest/vmlinuz',
  initrd: '/srv/guest/initrd.img',
  metadataDir: 'md',
  hostUpdateCommand: ['/usr/local/sbin/patch', '--now'],
  vms: { db_0: { ramMb: 2048 } },
};

function refusal(input: unknown): IntermissionError {
  try {
    parseQemuHostConfig(input, '/etc/intermission');
  } catch (error) {
    assert.ok(error instanceof IntermissionError);
    assert.equal(error.code, 'INVALID_INPUT');
    return error;
  }
  assert.fail('accepted');
}

describe('QEMU host file', () => {
  it('resolves relative paths against the file, leaving PATH lookups alone', () => {
    const config = parseQemuHostConfig(VALID, '/etc/intermission');
    assert.equal(config.runDir, '/etc/intermission/run');
    assert.equal(config.kernel, '/etc/intermission/guest/vmlinuz');
    assert.equal(config.initrd, '/srv/guest/initrd.img');
    assert.equal(config.metadataDir, '/etc/intermission/md');
    assert.deepEqual(config.vmmBuilds, {
      '7.2.22': '/usr/bin/qemu-system-x86_64',
      next: '/etc/intermission/bin/qemu',
      path: 'qemu-system-x86_64',
    });
    assert.deepEqual(config.vms, { db_0: { ramMb: 2048 } });
    assert.equal(metadataSocketOf(config.metadataDir, 'db_0'), '/etc/intermission/md/db_0.sock');
  });

  it('refuses what it does not know, naming the field', () => {
    assert.match(refusal({ ...VALID, ramMB: 5 }).message, /ramMB/);
    assert.match(refusal({ ...VALID, accel: 'hvf' }).message, /accel/);
    assert.match(
      refusal({ ...VALID, defaultVmmVersion: '8.0' }).message,
      /defaultVmmVersion "8.0" is not a key of vmmBuilds/,
    );
    assert.match(refusal({ ...VALID, vms: { db_0: { ramMb: 1 } } }).message, /vms\.db_0\.ramMb/);
    assert.match(refusal({ ...VALID, hostUpdateCommand: [] }).message, /hostUpdateCommand/);
    const { metadataDir: _omitted, ...withoutMetadata } = VALID;
    assert.match(refusal(withoutMetadata).message, /metadataDir/);
  });

  it('reads YAML and names the file in its errors', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'qemu-host-'));
    const good = join(dir, 'qemu.yaml');
    await writeFile(
      good,
      'runDir: run\nvmmBuilds: { a: /usr/bin/qemu-system-x86_64 }\ndefaultVmmVersion: a\nkernel: k\ninitrd: i\nmetadataDir: md\n',
    );
    assert.equal((await loadQemuHostFile(good)).runDir, join(dir, 'run'));
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, 'runDir: [\n');
    await assert.rejects(
      loadQemuHostFile(bad),
      (e: unknown) => e instanceof IntermissionError && e.message.includes(bad),
    );
    await assert.rejects(loadQemuHostFile(join(dir, 'missing.yaml')), /cannot read QEMU host file/);
  });
});
