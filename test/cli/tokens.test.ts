import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { run } from '../../src/cli/main.js';
import type { Output } from '../../src/cli/output.js';
import { parseFleet } from '../../src/domain/index.js';
import { httpUrl } from '../../src/service/address.js';
import { startMetadataRuntime, type MetadataRuntime } from '../../src/service/metadata-runtime.js';

/** `token create|list|revoke` and `dashboard` through the real CLI against a running service. */

let dir: string;
let runtime: MetadataRuntime;
let base: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cli-tokens-'));
  runtime = await startMetadataRuntime({
    fleet: parseFleet({ hosts: [{ name: 'h1' }], vms: [{ name: 'solo', host: 'h1' }] }),
    stateDir: dir,
    bindings: [],
    control: { host: '127.0.0.1', port: 0 },
  });
  base = httpUrl(runtime.control);
});
after(async () => {
  await runtime.close();
  await rm(dir, { recursive: true, force: true });
});

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const output: Output = { out: (t) => void (out += `${t}\n`), err: (t) => void (err += `${t}\n`) };
  const code = await run(['node', 'intermission', ...argv, '--state', dir], output);
  return { code, out, err };
}

describe('token commands', () => {
  it('create with --ttl, list, revoke: the revoked token is refused at once', async () => {
    const created = await cli('token', 'create', '--tenant', 'acme', '--vm', 'solo', '--ttl', '7d', '--json');
    assert.equal(created.code, 0, created.err);
    const { token, expiresAt } = JSON.parse(created.out) as { token: string; expiresAt: string };
    const days = (Date.parse(expiresAt) - Date.now()) / 86_400_000;
    assert.ok(days > 6.99 && days <= 7, `expires in ${days} days`);
    const whoami = (): Promise<number> =>
      fetch(`${base}/v1/whoami`, { headers: { authorization: `Bearer ${token}` } }).then((r) => r.status);
    assert.equal(await whoami(), 200);

    const listed = await cli('token', 'list');
    assert.equal(listed.code, 0, listed.err);
    assert.match(listed.out, /^NAME\s+ROLE\s+VMS\s+CREATED\s+EXPIRES/m);
    assert.match(listed.out, /^acme\s+tenant\s+solo\s/m);
    assert.match(listed.out, /^operator-\S+\s+operator\s/m);
    assert.doesNotMatch(listed.out, /im_/, 'no token is ever listed');

    const revoked = await cli('token', 'revoke', 'acme');
    assert.equal(revoked.code, 0, revoked.err);
    assert.match(revoked.out, /revoked acme \(tenant\)/);
    assert.equal(await whoami(), 401);
    assert.equal((await cli('token', 'revoke', 'acme')).code, 3, 'not found: exit 3');
  });

  it('a metrics token, and a ttl out of bounds exits 2', async () => {
    const m = await cli('token', 'create', '--metrics', 'prom');
    assert.equal(m.code, 0, m.err);
    assert.match(m.out, /token for metrics prom, expires .*, shown once:\nim_mx_/);
    assert.equal((await cli('token', 'create', '--tenant', 'x', '--vm', 'solo', '--ttl', '2y')).code, 2);
    assert.equal((await cli('token', 'create', '--tenant', 'x')).code, 2, '--tenant needs --vm');
  });

  it('dashboard prints a one-time sign-in link that opens a session once', async () => {
    const res = await cli('dashboard');
    assert.equal(res.code, 0, res.err);
    const link = res.out.split('\n')[0] ?? '';
    assert.ok(link.startsWith(`${base}/#code=`), link);
    const { token } = JSON.parse(await readFile(runtime.controlFile, 'utf8')) as { token: string };
    assert.ok(!res.out.includes(token), 'the operator token is not printed');
    const code = link.slice(`${base}/#code=`.length);
    const signIn = (): Promise<Response> =>
      fetch(`${base}/v1/sessions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-intermission-csrf': '1' },
        body: JSON.stringify({ code }),
      });
    assert.equal((await signIn()).status, 201);
    assert.equal((await signIn()).status, 401, 'single use');
  });

  it("the runtime's own sign-in path (printed by up) works too", async () => {
    const path = runtime.signInPath();
    const code = /^\/#code=(.+)$/.exec(path)?.[1] ?? '';
    const res = await fetch(`${base}/v1/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-intermission-csrf': '1' },
      body: JSON.stringify({ code }),
    });
    assert.equal(res.status, 201);
  });
});

describe('the operator token of control.json', () => {
  it('is kept and renewed at every start, and replaced once it has expired or was revoked', async () => {
    const state = await mkdtemp(join(tmpdir(), 'cli-operator-'));
    const clock = { t: Date.parse('2026-12-01T00:00:00Z'), now: (): number => clock.t };
    const start = (): Promise<MetadataRuntime> =>
      startMetadataRuntime({
        fleet: parseFleet({ hosts: [{ name: 'h1' }], vms: [{ name: 'solo', host: 'h1' }] }),
        stateDir: state,
        bindings: [],
        control: { host: '127.0.0.1', port: 0 },
        clock,
      });
    const operator = async (): Promise<{ token: string; expiresAt: string }> => {
      const { token } = JSON.parse(await readFile(join(state, 'control.json'), 'utf8')) as { token: string };
      const file = JSON.parse(await readFile(join(state, 'tokens.json'), 'utf8')) as {
        tokens: { role: string; expiresAt: string }[];
      };
      const op = file.tokens.filter((t) => t.role === 'operator').at(-1);
      return { token, expiresAt: op?.expiresAt ?? '' };
    };
    try {
      await (await start()).close();
      const first = await operator();
      assert.equal(first.expiresAt, '2026-12-31T00:00:00.000Z', '30 days');
      clock.t += 20 * 86_400_000;
      await (await start()).close();
      const second = await operator();
      assert.equal(second.token, first.token, 'kept across a restart');
      assert.equal(second.expiresAt, '2027-01-20T00:00:00.000Z', 'renewed: 30 days from this start');
      clock.t += 31 * 86_400_000;
      const third = await start();
      const replaced = await operator();
      assert.notEqual(replaced.token, first.token, 'an expired token is replaced');
      const who = await fetch(`${httpUrl(third.control)}/v1/whoami`, {
        headers: { authorization: `Bearer ${first.token}` },
      });
      assert.equal(who.status, 401);
      await third.close();
    } finally {
      await rm(state, { recursive: true, force: true });
    }
  });
});

describe('--metrics-auth', () => {
  it('token: the runtime asks for a token on /metrics; a wrong mode exits 2', async () => {
    const state = await mkdtemp(join(tmpdir(), 'cli-metrics-'));
    const rt = await startMetadataRuntime({
      fleet: parseFleet({ hosts: [{ name: 'h1' }], vms: [{ name: 'solo', host: 'h1' }] }),
      stateDir: state,
      bindings: [],
      control: { host: '127.0.0.1', port: 0 },
      metricsAuth: 'token',
    });
    try {
      const url = `${httpUrl(rt.control)}/metrics`;
      assert.equal((await fetch(url)).status, 401);
      const { token } = JSON.parse(await readFile(rt.controlFile, 'utf8')) as { token: string };
      assert.equal((await fetch(url, { headers: { authorization: `Bearer ${token}` } })).status, 200);
    } finally {
      await rt.close();
      await rm(state, { recursive: true, force: true });
    }
    let err = '';
    const code = await run(['node', 'intermission', 'up', '--metrics-auth', 'open', '--state', state], {
      out: () => undefined,
      err: (t) => void (err += t),
    });
    assert.equal(code, 2, err);
    assert.match(err, /--metrics-auth wants none \| token/);
  });
});
