import { strict as assert } from 'node:assert';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { createControlApp, type MetricsAuth } from '../../src/control/app.js';
import { DashboardSessions, SIGN_IN_CODE_TTL_MS } from '../../src/control/sessions.js';
import { TokenAuthority } from '../../src/control/tokens.js';
import { createMetrics } from '../../src/metrics/index.js';
import { httpUrl } from '../../src/service/address.js';
import { serveFetch, type RunningServer } from '../../src/service/http.js';
import { controlWorld, type ControlWorld } from './helpers.js';

/**
 * Issue 12, item 9 and the /metrics part of item 10, through real HTTP on loopback: token expiry,
 * revocation (live streams end), no `?token=` on the stream, the dashboard's one-time sign-in code
 * and session cookie, and a token for /metrics on request.
 */

const HOUR = 60 * 60 * 1000;

/** A clock the test moves. */
const clock = { t: Date.parse('2026-12-01T00:00:00Z') };

interface Server {
  readonly base: string;
  readonly tokens: TokenAuthority;
  readonly operator: string;
  readonly http: RunningServer;
  readonly dir: string;
}

let w: ControlWorld;
const servers: Server[] = [];

/** The world's service, controller and hub behind a control app with its own (fake-clock) tokens. */
async function serve(metricsAuth?: MetricsAuth): Promise<Server> {
  const dir = await mkdtemp(join(tmpdir(), 'control-auth-'));
  const now = (): number => clock.t;
  const tokens = await TokenAuthority.open(dir, { now });
  const operator = await tokens.issue({ role: 'operator', name: 'op' });
  const app = createControlApp({
    service: w.service,
    tokens,
    controller: w.controller,
    live: w.live,
    metrics: createMetrics(),
    sessions: new DashboardSessions({ tokens, now }),
    ...(metricsAuth ? { metricsAuth } : {}),
  });
  const http = await serveFetch(app.fetch, { host: '127.0.0.1', port: 0 });
  const server = { base: httpUrl(http.address), tokens, operator, http, dir };
  servers.push(server);
  return server;
}

const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });
const json = { 'content-type': 'application/json' };

before(async () => {
  w = await controlWorld();
});
after(async () => {
  for (const s of servers) {
    s.http.server.closeAllConnections();
    await s.http.close();
    await rm(s.dir, { recursive: true, force: true });
  }
  await w.close();
});
beforeEach(() => {
  clock.t = Date.parse('2026-12-01T00:00:00Z');
});

/** Reads a streamed body until `pattern` shows, or until it ends; returns what was read and whether it ended. */
async function readUntil(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  pattern: RegExp | null,
  timeoutMs = 5000,
): Promise<{ text: string; ended: boolean }> {
  const decoder = new TextDecoder();
  let text = '';
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (pattern && pattern.test(text)) return { text, ended: false };
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`nothing matching ${String(pattern)} in time; read ${JSON.stringify(text)}`);
    let timer: NodeJS.Timeout | undefined;
    const chunk = await Promise.race([
      reader.read(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`stream still open after ${timeoutMs} ms`)), left);
      }),
    ]).finally(() => clearTimeout(timer));
    if (chunk.done) return { text, ended: true };
    text += decoder.decode(chunk.value, { stream: true });
  }
}

describe('tokens expire', () => {
  it('a tenant token is refused once its ttl has passed (default 30 days)', async () => {
    const s = await serve();
    const res = await fetch(`${s.base}/v1/tokens`, {
      method: 'POST',
      headers: { ...bearer(s.operator), ...json },
      body: JSON.stringify({ tenant: 'short', vms: ['solo'], ttl: '1h' }),
    });
    assert.equal(res.status, 201);
    const issued = (await res.json()) as { token: string; expiresAt: string };
    assert.equal(issued.expiresAt, new Date(clock.t + HOUR).toISOString());
    const long = await s.tokens.issue({ role: 'tenant', name: 'long', vms: ['solo'] });
    assert.equal((await fetch(`${s.base}/v1/whoami`, { headers: bearer(issued.token) })).status, 200);
    clock.t += HOUR;
    assert.equal((await fetch(`${s.base}/v1/whoami`, { headers: bearer(issued.token) })).status, 401, 'expired');
    clock.t += 30 * 24 * HOUR - HOUR - 1;
    assert.equal((await fetch(`${s.base}/v1/whoami`, { headers: bearer(long) })).status, 200);
    clock.t += 1;
    assert.equal((await fetch(`${s.base}/v1/whoami`, { headers: bearer(long) })).status, 401, 'default 30 days');
  });

  it('a ttl out of bounds is a 400', async () => {
    const s = await serve();
    for (const ttl of ['10s', '400d', 'soon']) {
      const res = await fetch(`${s.base}/v1/tokens`, {
        method: 'POST',
        headers: { ...bearer(s.operator), ...json },
        body: JSON.stringify({ tenant: `t-${ttl}`, vms: ['solo'], ttl }),
      });
      assert.equal(res.status, 400, ttl);
    }
  });

  it('a token file of version 1 (no expiry) is read, and its tokens get the default lifetime', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'control-auth-v1-'));
    const first = await TokenAuthority.open(dir, { now: () => clock.t });
    const token = await first.issue({ role: 'tenant', name: 'old', vms: ['solo'] });
    const v2 = JSON.parse(await readFile(join(dir, 'tokens.json'), 'utf8')) as {
      tokens: Record<string, unknown>[];
    };
    const v1 = { version: 1, tokens: v2.tokens.map(({ expiresAt: _drop, ...t }) => t) };
    await writeFile(join(dir, 'tokens.json'), JSON.stringify(v1));
    const reopened = await TokenAuthority.open(dir, { now: () => clock.t });
    assert.equal(reopened.authenticate(token)?.name, 'old');
    assert.equal(reopened.list()[0]?.expiresAt, new Date(clock.t + 30 * 24 * HOUR).toISOString());
    await rm(dir, { recursive: true, force: true });
  });
});

describe('tokens are listed and revoked by operators', () => {
  it('list shows no secret; revoke refuses the token at once; tenants may do neither', async () => {
    const s = await serve();
    const tenant = await s.tokens.issue({ role: 'tenant', name: 'acme', vms: ['solo'] });
    const listRes = await fetch(`${s.base}/v1/tokens`, { headers: bearer(s.operator) });
    assert.equal(listRes.status, 200);
    const listText = await listRes.text();
    assert.doesNotMatch(listText, /sha256|im_/, 'neither hashes nor tokens');
    const list = JSON.parse(listText) as { tokens: { name: string; role: string; expired: boolean }[] };
    assert.deepEqual(
      list.tokens.map((t) => [t.name, t.role, t.expired]),
      [
        ['op', 'operator', false],
        ['acme', 'tenant', false],
      ],
    );
    assert.equal((await fetch(`${s.base}/v1/tokens`, { headers: bearer(tenant) })).status, 401);
    assert.equal(
      (await fetch(`${s.base}/v1/tokens/op`, { method: 'DELETE', headers: bearer(tenant) })).status,
      401,
      'a tenant cannot revoke',
    );
    const revoked = await fetch(`${s.base}/v1/tokens/acme`, { method: 'DELETE', headers: bearer(s.operator) });
    assert.equal(revoked.status, 200);
    assert.equal((await fetch(`${s.base}/v1/whoami`, { headers: bearer(tenant) })).status, 401, 'refused at once');
    assert.equal(
      (await fetch(`${s.base}/v1/tokens/acme`, { method: 'DELETE', headers: bearer(s.operator) })).status,
      404,
    );
    // Revocation is written down: a restart keeps refusing it.
    const reopened = await TokenAuthority.open(s.dir, { now: () => clock.t });
    assert.equal(reopened.authenticate(tenant), undefined);
  });

  it('a revocation racing other changes stays revoked (in memory and on disk)', async () => {
    const s = await serve();
    const victim = await s.tokens.issue({ role: 'tenant', name: 'victim', vms: ['solo'] });
    const issues = Array.from({ length: 5 }, (_, i) =>
      s.tokens.issue({ role: 'tenant', name: `racer-${i}`, vms: ['solo'] }),
    );
    const revoke = s.tokens.revoke('victim');
    await Promise.all([...issues, revoke, s.tokens.renew('op', HOUR)]);
    assert.equal(s.tokens.authenticate(victim), undefined, 'in memory');
    assert.deepEqual(
      s.tokens
        .list()
        .map((t) => t.name)
        .sort(),
      ['op', 'racer-0', 'racer-1', 'racer-2', 'racer-3', 'racer-4'],
    );
    const reopened = await TokenAuthority.open(s.dir, { now: () => clock.t });
    assert.equal(reopened.authenticate(victim), undefined, 'on disk');
    assert.equal(reopened.list().length, 6, 'no issue was lost either');
  });

  it('the live stream of a revoked token ends', async () => {
    const s = await serve();
    const tenant = await s.tokens.issue({ role: 'tenant', name: 'streamer', vms: ['solo'] });
    const other = await s.tokens.issue({ role: 'tenant', name: 'bystander', vms: ['solo'] });
    const subscribers = w.live.size;
    const res = await fetch(`${s.base}/v1/stream`, { headers: bearer(tenant) });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    await readUntil(reader, /"type":"hello"/);
    const otherRes = await fetch(`${s.base}/v1/stream`, { headers: bearer(other) });
    const otherReader = otherRes.body!.getReader();
    await readUntil(otherReader, /"type":"hello"/);
    await s.tokens.revoke('streamer');
    const { ended } = await readUntil(reader, null);
    assert.ok(ended, 'the revoked token’s stream ended');
    // Another token's stream goes on.
    await w.service.schedule({
      type: 'Freeze',
      resources: ['solo'],
      noticeMs: 15 * 60 * 1000,
      durationInSeconds: 5,
      source: 'User',
      owner: 'test',
    });
    await readUntil(otherReader, /event:scheduled/);
    await otherReader.cancel();
    // Both streams let go of the hub: the revoked one and the one its client closed.
    for (let i = 0; i < 100 && w.live.size > subscribers; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(w.live.size, subscribers, 'no subscriber left behind');
  });

  it('the live stream of a token ends when the token expires', async () => {
    // A clock that runs with real time, from an offset the test sets: the stream's timer waits real
    // milliseconds and then asks this clock.
    let offset = 0;
    const dir = await mkdtemp(join(tmpdir(), 'control-auth-exp-'));
    const tokens = await TokenAuthority.open(dir, { now: () => Date.now() + offset });
    const app = createControlApp({ service: w.service, tokens, live: w.live });
    const http = await serveFetch(app.fetch, { host: '127.0.0.1', port: 0 });
    try {
      const token = await tokens.issue({ role: 'tenant', name: 'brief', vms: ['solo'] }, { ttlMs: 60_000 });
      offset = 60_000 - 300; // 0.3 s left
      const res = await fetch(`${httpUrl(http.address)}/v1/stream`, { headers: bearer(token) });
      assert.equal(res.status, 200);
      const reader = res.body!.getReader();
      await readUntil(reader, /"type":"hello"/);
      const started = Date.now();
      assert.ok((await readUntil(reader, null, 3000)).ended, 'the stream ended at expiry');
      assert.ok(Date.now() - started < 2000, `ended ${Date.now() - started} ms later`);
      assert.equal((await fetch(`${httpUrl(http.address)}/v1/whoami`, { headers: bearer(token) })).status, 401);
    } finally {
      http.server.closeAllConnections();
      await http.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('/v1/stream no longer takes ?token=', async () => {
    const s = await serve();
    const res = await fetch(`${s.base}/v1/stream?token=${encodeURIComponent(s.operator)}`);
    assert.equal(res.status, 401);
    const body = (await res.json()) as { error: { message: string } };
    assert.match(body.error.message, /\?token= is no longer accepted/);
  });
});

/** The session cookie (name=value) of a Set-Cookie header, checking its attributes. */
function sessionCookieOf(res: Response): string {
  const set = res.headers.get('set-cookie') ?? '';
  assert.match(set, /^im_session=[A-Za-z0-9_-]{40,};/);
  assert.match(set, /HttpOnly/i);
  assert.match(set, /SameSite=Strict/i);
  assert.match(set, /Path=\//);
  return set.split(';')[0] ?? '';
}

describe('dashboard sign-in with a one-time code and a session cookie', () => {
  const signIn = (s: Server, body: unknown, csrf = true): Promise<Response> =>
    fetch(`${s.base}/v1/sessions`, {
      method: 'POST',
      headers: { ...json, ...(csrf ? { 'x-intermission-csrf': '1' } : {}) },
      body: JSON.stringify(body),
    });

  it('the code works once, opens an HttpOnly SameSite=Strict session, and sign-out ends it', async () => {
    const s = await serve();
    const codeRes = await fetch(`${s.base}/v1/sign-in-codes`, { method: 'POST', headers: bearer(s.operator) });
    assert.equal(codeRes.status, 201);
    const { code, path } = (await codeRes.json()) as { code: string; path: string };
    assert.equal(path, `/#code=${code}`, 'in the fragment: never sent to a server, so never in its logs');
    assert.equal((await signIn(s, { code }, false)).status, 400, 'needs the CSRF header');
    const res = await signIn(s, { code });
    assert.equal(res.status, 201);
    assert.equal(((await res.json()) as { principal: { role: string } }).principal.role, 'operator');
    const cookie = sessionCookieOf(res);
    assert.equal((await signIn(s, { code })).status, 401, 'single use');

    const who = await fetch(`${s.base}/v1/whoami`, { headers: { cookie } });
    assert.equal(who.status, 200);
    // The stream opens with the cookie (same-origin EventSource sends it), no token in the URL.
    const stream = await fetch(`${s.base}/v1/stream`, { headers: { cookie } });
    assert.equal(stream.status, 200);
    const reader = stream.body!.getReader();
    await readUntil(reader, /"type":"hello"/);

    const post = (headers: Record<string, string>): Promise<Response> =>
      fetch(`${s.base}/v1/events`, {
        method: 'POST',
        headers: { cookie, ...json, ...headers },
        body: JSON.stringify({ type: 'Freeze', vms: ['web_0'] }),
      });
    assert.equal((await post({})).status, 401, 'a cookie alone does not authorise a POST (CSRF)');
    assert.equal((await post({ 'x-intermission-csrf': '1' })).status, 201);

    const out = await fetch(`${s.base}/v1/sessions`, {
      method: 'DELETE',
      headers: { cookie, 'x-intermission-csrf': '1' },
    });
    assert.equal(out.status, 200);
    assert.equal((await fetch(`${s.base}/v1/whoami`, { headers: { cookie } })).status, 401, 'signed out');
    assert.ok((await readUntil(reader, null)).ended, 'the session’s stream ended');
  });

  it('a code expires after 5 minutes; tenants get no code; a pasted operator token opens a session too', async () => {
    const s = await serve();
    const { code } = (await (
      await fetch(`${s.base}/v1/sign-in-codes`, { method: 'POST', headers: bearer(s.operator) })
    ).json()) as { code: string };
    clock.t += SIGN_IN_CODE_TTL_MS;
    assert.equal((await signIn(s, { code })).status, 401, 'expired');
    const tenant = await s.tokens.issue({ role: 'tenant', name: 'acme', vms: ['solo'] });
    assert.equal((await fetch(`${s.base}/v1/sign-in-codes`, { method: 'POST', headers: bearer(tenant) })).status, 401);
    assert.equal((await signIn(s, { token: tenant })).status, 401, 'the console is for operators');
    assert.equal((await signIn(s, { token: 'im_op_wrong' })).status, 401);
    const res = await signIn(s, { token: s.operator });
    assert.equal(res.status, 201);
    const cookie = sessionCookieOf(res);
    assert.equal((await fetch(`${s.base}/v1/whoami`, { headers: { cookie } })).status, 200);
  });

  it('revoking the operator token ends its sessions; sessions expire', async () => {
    const s = await serve();
    const second = await s.tokens.issue({ role: 'operator', name: 'op2' });
    const cookieFor = async (token: string): Promise<string> => sessionCookieOf(await signIn(s, { token }));
    const a = await cookieFor(s.operator);
    const b = await cookieFor(second);
    await s.tokens.revoke('op2');
    assert.equal((await fetch(`${s.base}/v1/whoami`, { headers: { cookie: b } })).status, 401);
    assert.equal((await fetch(`${s.base}/v1/whoami`, { headers: { cookie: a } })).status, 200);
    clock.t += 12 * HOUR;
    assert.equal((await fetch(`${s.base}/v1/whoami`, { headers: { cookie: a } })).status, 401, '12 h at most');
  });
});

describe('/metrics access', () => {
  it('is open by default (loopback), and needs an operator or metrics token with metricsAuth: token', async () => {
    const open = await serve();
    assert.equal((await fetch(`${open.base}/metrics`)).status, 200);

    const s = await serve('token');
    const anonymous = await fetch(`${s.base}/metrics`);
    assert.equal(anonymous.status, 401);
    assert.match(anonymous.headers.get('www-authenticate') ?? '', /^Bearer/);
    const res = await fetch(`${s.base}/v1/tokens`, {
      method: 'POST',
      headers: { ...bearer(s.operator), ...json },
      body: JSON.stringify({ metrics: 'prometheus' }),
    });
    assert.equal(res.status, 201);
    const { token: scrape } = (await res.json()) as { token: string };
    const tenant = await s.tokens.issue({ role: 'tenant', name: 'acme', vms: ['solo'] });
    const scraped = await fetch(`${s.base}/metrics`, { headers: bearer(scrape) });
    assert.equal(scraped.status, 200);
    assert.match(await scraped.text(), /^# (HELP|TYPE) /m);
    assert.equal((await fetch(`${s.base}/metrics`, { headers: bearer(s.operator) })).status, 200);
    assert.equal((await fetch(`${s.base}/metrics`, { headers: bearer(tenant) })).status, 401);
    assert.equal((await fetch(`${s.base}/v1/whoami`, { headers: bearer(scrape) })).status, 401, 'scrape only');
  });
});
