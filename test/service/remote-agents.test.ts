import { strict as assert } from 'node:assert';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseFleet, type Fleet } from '../../src/domain/index.js';
import type { SimHostView } from '../../src/agent/sim-app.js';
import { startAgentRuntime } from '../../src/service/agent-runtime.js';
import { loadAgentToken } from '../../src/service/agent-token.js';
import { httpUrl } from '../../src/service/address.js';
import { connectRemoteHosts } from '../../src/service/remote-hosts.js';

const fleet: Fleet = parseFleet({
  hosts: [{ name: 'h0' }, { name: 'h1' }],
  availabilitySets: [{ name: 'web', updateDomains: 2 }],
  vms: [
    { name: 'web_0', host: 'h0', availabilitySet: 'web' },
    { name: 'web_1', host: 'h1', availabilitySet: 'web' },
    { name: 'solo', host: 'h0' },
  ],
});

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'intermission-remote-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('loadAgentToken', () => {
  it('creates the file once, mode 0600, and every concurrent caller reads the same token', async () => {
    const path = join(dir, 'nested', 'agent.token');
    const tokens = await Promise.all(Array.from({ length: 8 }, () => loadAgentToken(path)));
    assert.equal(new Set(tokens).size, 1);
    assert.match(tokens[0] ?? '', /^[A-Za-z0-9_-]{43}$/);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.equal(await loadAgentToken(path), tokens[0], 'read back, not replaced');
    assert.equal((await readFile(path, 'utf8')).trim(), tokens[0]);
  });

  it('refuses a file without a token', async () => {
    const path = join(dir, 'empty.token');
    await writeFile(path, '\n');
    await assert.rejects(loadAgentToken(path), { code: 'INVALID_INPUT' });
  });
});

describe('connectRemoteHosts', () => {
  it('wants exactly one TCP agent per fleet host', () => {
    const at = { host: '127.0.0.1', port: 1 };
    assert.throws(() => connectRemoteHosts({ fleet, token: 't', agents: [{ host: 'h0', address: at }] }), {
      code: 'INVALID_INPUT',
      message: /no agent given for hosts: h1/,
    });
    assert.throws(
      () =>
        connectRemoteHosts({
          fleet,
          token: 't',
          agents: [
            { host: 'h0', address: at },
            { host: 'h1', address: at },
            { host: 'h9', address: at },
          ],
        }),
      { code: 'INVALID_INPUT', message: /h9, which is not in the fleet/ },
    );
    assert.throws(
      () =>
        connectRemoteHosts({
          fleet,
          token: 't',
          agents: [
            { host: 'h0', address: { path: '/run/a.sock' } },
            { host: 'h1', address: at },
          ],
        }),
      { code: 'INVALID_INPUT', message: /unix socket/ },
    );
  });

  it('reaches agent processes over HTTP: health, VMs, the simulated host view, and the token is checked', async () => {
    const token = await loadAgentToken(join(dir, 'shared.token'));
    const runtimes = await Promise.all(
      ['h0', 'h1'].map((host) =>
        startAgentRuntime({
          fleet,
          host,
          stateDir: join(dir, `agent-${host}`),
          listen: { host: '127.0.0.1', port: 0 },
          token,
        }),
      ),
    );
    try {
      const hosts = connectRemoteHosts({
        fleet,
        token,
        agents: runtimes.map((r) => ({ host: r.agent.host, address: r.address })),
      });
      const h0 = hosts.clients.get('h0');
      assert.ok(h0);
      assert.equal((await h0.health()).host, 'h0');
      assert.deepEqual((await h0.vms()).map((v) => v.name).sort(), ['solo', 'web_0']);
      assert.equal(await h0.status('no-such-step'), undefined);
      assert.equal(runtimes[0]?.journalFile, join(dir, 'agent-h0', 'agents', 'h0.json'));

      const base = httpUrl(runtimes[0]?.address ?? { path: '' });
      const view = (await (
        await fetch(`${base}/v1/sim/host`, { headers: { authorization: `Bearer ${token}` } })
      ).json()) as SimHostView;
      assert.equal(view.host, 'h0');
      assert.deepEqual(view.appliedUpdates, []);
      assert.deepEqual(view.vms.map((v) => v.name).sort(), ['solo', 'web_0']);
      for (const path of ['/v1/sim/host', '/v1/health']) {
        const res = await fetch(`${base}${path}`, { headers: { authorization: 'Bearer wrong' } });
        assert.equal(res.status, 401, path);
      }
      await hosts.close();
    } finally {
      await Promise.all(runtimes.map((r) => r.close()));
    }
  });

  it('an agent for a host outside the fleet does not start', async () => {
    await assert.rejects(
      startAgentRuntime({
        fleet,
        host: 'h9',
        stateDir: join(dir, 'agent-h9'),
        listen: { host: '127.0.0.1', port: 0 },
        token: 't',
      }),
      { code: 'INVALID_INPUT' },
    );
  });
});
