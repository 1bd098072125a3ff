import assert from 'node:assert/strict';
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { run } from '../../src/cli/main.js';
import type { Output } from '../../src/cli/output.js';

/**
 * Issue 12, item 6: the CLI took the address from ./.intermission/control.json and the token from
 * INTERMISSION_TOKEN, so a planted control.json received the operator's token. These run the real
 * CLI (in-process) against a loopback listener that records every Authorization header it gets.
 */

const OPERATOR_TOKEN = 'im_op_the-operators-real-token';
const NOBODY = 65534;
const asRoot = process.getuid?.() === 0;

let recorder: Server;
let recorderAddress: string;
const received: string[] = [];
let dir: string;
const cwd = process.cwd();
const ENV_KEYS = ['INTERMISSION_CONTROL', 'INTERMISSION_TOKEN', 'INTERMISSION_STATE'] as const;
let savedEnv: Record<string, string | undefined>;

before(async () => {
  recorder = createServer((req, res) => {
    received.push(req.headers.authorization ?? '(none)');
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"events":[]}');
  });
  await new Promise<void>((resolve) => recorder.listen(0, '127.0.0.1', resolve));
  recorderAddress = `127.0.0.1:${(recorder.address() as AddressInfo).port}`;
});
after(async () => {
  await new Promise<void>((resolve) => recorder.close(() => resolve()));
});

beforeEach(async () => {
  received.length = 0;
  dir = await mkdtemp(join(tmpdir(), 'cli-target-'));
  savedEnv = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
  for (const k of ENV_KEYS) delete process.env[k];
  process.chdir(dir);
});
afterEach(async () => {
  process.chdir(cwd);
  for (const k of ENV_KEYS) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
  await rm(dir, { recursive: true, force: true });
});

/** Runs the CLI; returns its exit code and what it wrote to stderr. */
async function cli(...argv: string[]): Promise<{ code: number; err: string; out: string }> {
  let err = '';
  let out = '';
  const output: Output = { out: (t) => void (out += `${t}\n`), err: (t) => void (err += `${t}\n`) };
  const code = await run(['node', 'intermission', ...argv], output);
  return { code, err, out };
}

/** Plants `<dir>/.intermission/control.json` sending whoever trusts it to the recorder. */
async function plantControlFile(stateDir = join(dir, '.intermission')): Promise<string> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const path = join(stateDir, 'control.json');
  await writeFile(path, JSON.stringify({ address: recorderAddress, token: 'im_op_planted' }), { mode: 0o600 });
  return path;
}

describe('the CLI sends a token only to an address from the same source', () => {
  it('a planted ./.intermission/control.json does not receive INTERMISSION_TOKEN (exit 2)', async () => {
    await plantControlFile();
    process.env.INTERMISSION_TOKEN = OPERATOR_TOKEN;
    const res = await cli('events', 'list');
    assert.equal(res.code, 2, res.err);
    assert.match(res.err, /INTERMISSION_TOKEN is set but INTERMISSION_CONTROL is not/);
    assert.deepEqual(received, [], 'the planted address received nothing');
  });

  it('--control without --token-file, with the token in the environment, is refused (exit 2)', async () => {
    process.env.INTERMISSION_TOKEN = OPERATOR_TOKEN;
    const res = await cli('events', 'list', '--control', recorderAddress);
    assert.equal(res.code, 2, res.err);
    assert.match(res.err, /--control needs --token-file/);
    assert.deepEqual(received, []);
  });

  it('--token-file with the address of a control.json is refused (exit 2)', async () => {
    await plantControlFile();
    const tokenFile = join(dir, 'op.token');
    await writeFile(tokenFile, `${OPERATOR_TOKEN}\n`, { mode: 0o600 });
    const res = await cli('events', 'list', '--token-file', tokenFile);
    assert.equal(res.code, 2, res.err);
    assert.deepEqual(received, []);
  });

  it('INTERMISSION_CONTROL without INTERMISSION_TOKEN does not take the token of control.json', async () => {
    await plantControlFile(join(dir, 'real-state'));
    process.env.INTERMISSION_STATE = join(dir, 'real-state');
    process.env.INTERMISSION_CONTROL = recorderAddress;
    const res = await cli('events', 'list');
    assert.equal(res.code, 2, res.err);
    assert.deepEqual(received, []);
  });

  it(
    'a control.json owned by another user is not trusted (exit 2)',
    { skip: asRoot ? false : 'chown needs root' },
    async () => {
      const path = await plantControlFile();
      await chown(path, NOBODY, NOBODY);
      const res = await cli('events', 'list');
      assert.equal(res.code, 2, res.err);
      assert.match(res.err, /not trusting .*control\.json.*belongs to uid 65534/);
      assert.deepEqual(received, []);
    },
  );

  it('a control.json that others may write, or in such a directory, or a symlink, is not trusted', async () => {
    const path = await plantControlFile();
    await chmod(path, 0o666);
    assert.equal((await cli('events', 'list')).code, 2);
    await chmod(path, 0o600);
    await chmod(join(dir, '.intermission'), 0o777);
    assert.equal((await cli('events', 'list')).code, 2);
    await chmod(join(dir, '.intermission'), 0o700);
    const other = await plantControlFile(join(dir, 'elsewhere'));
    await rm(path);
    const { symlink } = await import('node:fs/promises');
    await symlink(other, path);
    const res = await cli('events', 'list');
    assert.equal(res.code, 2, res.err);
    assert.match(res.err, /symlink/);
    assert.deepEqual(received, []);
  });

  it('--token is refused and says why (a flag shows in ps)', async () => {
    const res = await cli('events', 'list', '--control', recorderAddress, '--token', OPERATOR_TOKEN);
    assert.equal(res.code, 2, res.err);
    assert.match(res.err, /--token is no longer accepted.*ps/);
    assert.deepEqual(received, []);
  });
});

describe('each trusted source, on its own, works', () => {
  it('--control with --token-file', async () => {
    const tokenFile = join(dir, 'op.token');
    await writeFile(tokenFile, `${OPERATOR_TOKEN}\n`, { mode: 0o600 });
    const res = await cli('events', 'list', '--control', recorderAddress, '--token-file', tokenFile);
    assert.equal(res.code, 0, res.err);
    assert.deepEqual(received, [`Bearer ${OPERATOR_TOKEN}`]);
  });

  it('INTERMISSION_CONTROL with INTERMISSION_TOKEN (a control.json here is ignored)', async () => {
    await plantControlFile();
    process.env.INTERMISSION_CONTROL = recorderAddress;
    process.env.INTERMISSION_TOKEN = OPERATOR_TOKEN;
    const res = await cli('events', 'list');
    assert.equal(res.code, 0, res.err);
    assert.deepEqual(received, [`Bearer ${OPERATOR_TOKEN}`]);
  });

  it('a control.json of this user, private, by --state or in ./.intermission', async () => {
    await plantControlFile();
    assert.equal((await cli('events', 'list')).code, 0);
    assert.equal((await cli('events', 'list', '--state', join(dir, '.intermission'))).code, 0);
    assert.deepEqual(received, ['Bearer im_op_planted', 'Bearer im_op_planted']);
  });
});
