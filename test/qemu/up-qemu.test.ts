/**
 * `intermission up --qemu`, the main command on real guests: where QEMU is missing it says what to
 * install and exits 6 (unavailable) before opening anything; where it is installed it boots the
 * demo fleet's three guests, serves the console, runs an in-place VMM update from the CLI, and
 * stops the guests on Ctrl-C. Runs the compiled CLI (dist/, built on demand).
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runBaseFor } from '../../src/service/local-qemu.js';
import { Proc, ROOT, ensureBuilt, runCli } from '../crash/harness.js';
import { qemuPreflight } from './qemu-fixture.js';

const preflight = qemuPreflight();
const BIN = join(ROOT, 'bin', 'intermission.js');
let up: Proc | undefined;

before(() => ensureBuilt(), { timeout: 300_000 });
after(async () => {
  await up?.kill('SIGKILL');
});

/** Pids of QEMU processes whose command line names `dir`. */
function qemuUnder(dir: string): number[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .filter((pid) => {
      try {
        const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        return cmd.includes('qemu-system') && cmd.includes(`${dir}/`);
      } catch {
        return false;
      }
    })
    .map(Number);
}

describe('intermission up --qemu', () => {
  it('says what to install when QEMU is missing, and opens nothing', async () => {
    const state = await mkdtemp(join(tmpdir(), 'up-noqemu-'));
    const result = spawnSync(process.execPath, [BIN, 'up', '--qemu', '--state', state], {
      encoding: 'utf8',
      env: { ...process.env, PATH: '/nonexistent' },
      timeout: 30_000,
    });
    assert.equal(result.status, 6, result.stderr);
    assert.match(result.stderr, /real QEMU guests cannot run here: missing qemu-system-x86_64/);
    // The hint names every package that is missing here, whatever else this machine lacks (a fresh
    // machine has no busybox-static or kernel either), and nothing that is present.
    const hint = /sudo apt-get install -y ((?:[a-z0-9.+-]+ )*[a-z0-9.+-]+)\. Without --qemu/.exec(result.stderr);
    assert.ok(hint, result.stderr);
    const named = new Set(hint[1]?.split(' '));
    // PATH is empty, but the search also looks in /usr/sbin and /sbin, where qemu-ga lives.
    const expected = ['qemu-system-x86', 'socat', 'cpio', 'stress'];
    if (!['/usr/sbin/qemu-ga', '/sbin/qemu-ga'].some((p) => existsSync(p))) expected.push('qemu-guest-agent');
    if (!existsSync('/bin/busybox')) expected.push('busybox-static');
    const kernels = existsSync('/boot') ? readdirSync('/boot').filter((f) => f.startsWith('vmlinuz-')) : [];
    if (kernels.length === 0) expected.push('linux-image-amd64');
    assert.deepEqual([...named].sort(), expected.sort());
    assert.match(result.stderr, /Without --qemu/);
    assert.equal(existsSync(join(state, 'intermission.db')), false, 'no store was opened');
  });

  it(
    'boots the demo guests, runs an in-place VMM update from the CLI, and stops the guests on Ctrl-C',
    { skip: preflight.skip, timeout: 420_000 },
    async (t) => {
      preflight.assertReady();
      const state = await mkdtemp(join(tmpdir(), 'up-qemu-'));
      const port = 20_000 + (process.pid % 20_000);
      up = new Proc(
        'up --qemu',
        ['up', '--qemu', '--accel', 'tcg', '--state', state, '--control-port', String(port)].concat([
          '--metadata-port',
          String(port + 1),
          '--time-scale',
          '60',
          '--log-level',
          'warn',
        ]),
        join(state, 'up.log'),
      );
      await up.waitForLine(/^Stop with Ctrl-C/, 360_000);
      const text = up
        .lines()
        .map((l) => l.slice(5))
        .join('\n');
      assert.match(text, /Intermission is up: 2 hosts, 2 availability sets, 3 VMs/);
      assert.match(text, /guests {8}QEMU \(tcg\), VMM builds (\S+) and (\S+)-next/);
      const version = /VMM builds (\S+) and/.exec(text)?.[1] ?? '';
      const runBase = runBaseFor(state);
      assert.equal(qemuUnder(runBase).length, 3, 'three QEMU processes run');

      const out = await runCli(
        [
          'apply',
          '--state',
          state,
          '--id',
          'vmm-next',
          '--kind',
          'vmm-update',
          '--to-version',
          `${version}-next`,
        ].concat(['--apply-time', '1s', '--wait']),
        240_000,
      );
      assert.match(out, /vmm-next {2}completed/);
      const status = await runCli(['status', 'vmm-next', '--state', state]);
      for (const vm of ['web_0', 'db_0', 'web_1']) {
        assert.match(status, new RegExp(`${vm}\\s+host-\\w\\s+in-place-migration\\s+ok\\s+[\\d.]+ ms`));
      }
      t.diagnostic(status.trim());

      up.child.kill('SIGINT');
      const exit = await up.exited;
      assert.equal(exit.code, 0);
      assert.deepEqual(qemuUnder(runBase), [], 'the guests stopped with it');
      assert.equal(existsSync(runBase), false, 'their run directory is gone');
    },
  );
});
