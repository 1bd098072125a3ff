import assert from 'node:assert/strict';
import { chmod, chown, lstat, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { IntermissionError, parseFleet } from '../../src/domain/index.js';
import { writeFileAtomic } from '../../src/control/tokens.js';
import { prepareRunBase, runBaseFor } from '../../src/service/local-qemu.js';
import { startMetadataRuntime } from '../../src/service/metadata-runtime.js';
import {
  assertTrustedFile,
  ensurePrivateDir,
  ensurePrivateDirSync,
  writePrivateFile,
  writePrivateFileSync,
} from '../../src/service/private-files.js';

/** uid/gid of `nobody` on Debian: another user to own a planted directory. */
const NOBODY = 65534;
const asRoot = process.getuid?.() === 0;
const chownSkip = asRoot ? false : 'giving a file to another user needs root';

const modeOf = async (path: string): Promise<number> => (await lstat(path)).mode & 0o777;

function rejectsWith(reason: string): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof IntermissionError, String(error));
    assert.equal(error.code, 'INVALID_INPUT');
    assert.equal(error.details.reason, reason, error.message);
    return true;
  };
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'private-files-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('atomic writes follow no symlink', () => {
  it('a symlink planted at the temporary name the old code used is not written through', async () => {
    const victim = join(dir, 'victim');
    await writeFile(victim, 'precious\n');
    const target = join(dir, 'tokens.json');
    await symlink(victim, `${target}.${process.pid}.tmp`);
    await writeFileAtomic(target, '{"new":true}\n');
    assert.equal(await readFile(victim, 'utf8'), 'precious\n', 'the victim is untouched');
    assert.equal(await readFile(target, 'utf8'), '{"new":true}\n');
    assert.equal(await modeOf(target), 0o600);
  });

  it('a symlink at the target itself is replaced, not followed (async and sync)', async () => {
    const victim = join(dir, 'victim2');
    await writeFile(victim, 'precious\n');
    for (const [name, write] of [
      ['a.json', (p: string) => writePrivateFile(p, 'mine\n')],
      ['b.json', (p: string) => Promise.resolve(writePrivateFileSync(p, 'mine\n'))],
    ] as const) {
      const target = join(dir, name);
      await symlink(victim, target);
      await write(target);
      assert.equal(await readFile(victim, 'utf8'), 'precious\n');
      assert.ok((await lstat(target)).isFile(), 'a regular file now');
      assert.equal(await readFile(target, 'utf8'), 'mine\n');
    }
  });
});

describe('private directories', () => {
  it('are created 0700 and a loosened mode is repaired on the next call', async () => {
    const d = join(dir, 'state-a');
    await ensurePrivateDir(d);
    assert.equal(await modeOf(d), 0o700);
    await chmod(d, 0o777);
    await ensurePrivateDir(d);
    assert.equal(await modeOf(d), 0o700);
    await chmod(d, 0o755);
    ensurePrivateDirSync(d);
    assert.equal(await modeOf(d), 0o700);
  });

  it('a symlink is refused, not followed', async () => {
    const real = join(dir, 'real');
    await mkdir(real, { mode: 0o755 });
    const link = join(dir, 'link');
    await symlink(real, link);
    await assert.rejects(ensurePrivateDir(link), rejectsWith('SYMLINK'));
    assert.equal(await modeOf(real), 0o755, 'the target was not touched');
  });

  it('a directory owned by another user is refused', { skip: chownSkip }, async () => {
    const d = join(dir, 'foreign');
    await mkdir(d);
    await chmod(d, 0o777);
    await chown(d, NOBODY, NOBODY);
    await assert.rejects(ensurePrivateDir(d), rejectsWith('FOREIGN_OWNER'));
    assert.equal(await modeOf(d), 0o777, 'left as it was');
  });

  it(
    "up --qemu's predictable run directory, created first by another user, is refused",
    { skip: chownSkip },
    async () => {
      const state = join(dir, 'qemu-state');
      const runBase = runBaseFor(state);
      await rm(runBase, { recursive: true, force: true });
      await mkdir(runBase, { mode: 0o777 });
      await chown(runBase, NOBODY, NOBODY);
      try {
        await assert.rejects(prepareRunBase(state), rejectsWith('FOREIGN_OWNER'));
      } finally {
        await rm(runBase, { recursive: true, force: true });
      }
      // Our own: created private, md/ too.
      assert.equal(await prepareRunBase(state), runBase);
      assert.equal(await modeOf(runBase), 0o700);
      assert.equal(await modeOf(join(runBase, 'md')), 0o700);
      await rm(runBase, { recursive: true, force: true });
    },
  );
});

describe('trusted files', () => {
  it('are refused when group/world writable, a symlink, or in a loose directory', async () => {
    const d = join(dir, 'trust');
    await ensurePrivateDir(d);
    const f = join(d, 'control.json');
    await writePrivateFile(f, '{}');
    await assertTrustedFile(f);
    await chmod(f, 0o666);
    await assert.rejects(assertTrustedFile(f), rejectsWith('LOOSE_MODE'));
    await chmod(f, 0o600);
    await chmod(d, 0o777);
    await assert.rejects(assertTrustedFile(f), rejectsWith('LOOSE_MODE'));
    await chmod(d, 0o700);
    const l = join(d, 'link.json');
    await symlink(f, l);
    await assert.rejects(assertTrustedFile(l), rejectsWith('SYMLINK'));
  });
});

describe('the state directory of a running service', () => {
  it('is made 0700 on every start, and the database, its -wal/-shm and unix sockets are 0600', async () => {
    const state = join(dir, 'runtime-state');
    await mkdir(state, { mode: 0o755 });
    await chmod(state, 0o755); // as an older version, or an operator, left it
    await writeFile(join(state, 'intermission.db'), '', { mode: 0o644 });
    await chmod(join(state, 'intermission.db'), 0o644);
    const socketDir = join(dir, 'sockets');
    await ensurePrivateDir(socketDir);
    const previous = process.umask(0o022);
    const runtime = await startMetadataRuntime({
      fleet: parseFleet({ hosts: [{ name: 'h1' }], vms: [{ name: 'solo', host: 'h1' }] }),
      stateDir: state,
      bindings: [{ vm: 'solo', address: { path: join(socketDir, 'solo.sock') } }],
      control: { path: join(socketDir, 'control.sock') },
    }).finally(() => process.umask(previous));
    try {
      assert.equal(await modeOf(state), 0o700);
      assert.equal(await modeOf(join(state, 'intermission.db')), 0o600);
      for (const f of ['intermission.db-wal', 'intermission.db-shm']) {
        const exists = await stat(join(state, f)).then(
          () => true,
          () => false,
        );
        if (exists) assert.equal(await modeOf(join(state, f)), 0o600, f);
      }
      assert.equal(await modeOf(join(state, 'tokens.json')), 0o600);
      assert.equal(await modeOf(join(state, 'control.json')), 0o600);
      assert.equal(await modeOf(join(socketDir, 'control.sock')), 0o600);
      assert.equal(await modeOf(join(socketDir, 'solo.sock')), 0o600);
    } finally {
      await runtime.close();
    }
  });
});
