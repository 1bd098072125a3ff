import { strict as assert } from 'node:assert';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseFleet, timeScale } from '../../src/domain/index.js';
import { startMetadataRuntime, type MetadataRuntime } from '../../src/service/metadata-runtime.js';
import { startSimHosts } from '../../src/service/sim-hosts.js';
import { describeStoreLocation, parseStoreLocation, type StoreLocation } from '../../src/service/store-choice.js';
import { postgresSkip, startPostgresCluster, type PostgresCluster } from './postgres-harness.js';

// The controller on PostgreSQL (`--store postgres://…`): the embedded runtime with simulated hosts
// runs a rollout with its state in PostgreSQL, and a restarted runtime continues from it.

const fleet = parseFleet({
  hosts: [{ name: 'h1' }, { name: 'h2' }],
  availabilitySets: [{ name: 'web', updateDomains: 2 }],
  vms: [
    { name: 'web_0', host: 'h1', availabilitySet: 'web' },
    { name: 'web_1', host: 'h2', availabilitySet: 'web' },
  ],
});

void describe('choosing the store (--store)', () => {
  void it('reads sqlite, postgres and connection strings, and refuses anything else with INVALID_INPUT', () => {
    assert.deepEqual(parseStoreLocation('sqlite'), { kind: 'sqlite' });
    assert.deepEqual(parseStoreLocation('postgres'), { kind: 'postgres' });
    assert.deepEqual(parseStoreLocation('postgresql://ctl@db:5433/im'), {
      kind: 'postgres',
      connectionString: 'postgresql://ctl@db:5433/im',
    });
    for (const bad of ['', 'mysql://x', '/var/lib/x.db', 'postgres:/x']) {
      assert.throws(() => parseStoreLocation(bad), { code: 'INVALID_INPUT' }, bad);
    }
    assert.equal(describeStoreLocation({ kind: 'sqlite' }, '/s'), 'sqlite /s/intermission.db');
    assert.equal(
      describeStoreLocation({ kind: 'postgres', connectionString: 'postgres://ctl:pw@db:5433/im' }, '/s'),
      'postgresql ctl@db:5433/im',
    );
  });
});

const cluster: PostgresCluster | undefined = postgresSkip === undefined ? await startPostgresCluster() : undefined;

void describe('the controller on PostgreSQL', { skip: postgresSkip ?? false }, () => {
  void it('runs a rollout with its state in PostgreSQL, and a restart continues from there', async () => {
    if (!cluster) throw new Error('PostgreSQL is not running');
    const store: StoreLocation = { kind: 'postgres', connectionString: await cluster.createDatabase() };
    const dir = await mkdtemp(join(tmpdir(), 'intermission-pg-runtime-'));
    const start = (): Promise<MetadataRuntime> =>
      startMetadataRuntime({
        fleet,
        stateDir: dir,
        store,
        bindings: [],
        control: { host: '127.0.0.1', port: 0 },
        timing: { scale: timeScale(60) },
        hosts: ({ stateDir }) => startSimHosts({ fleet, stateDir }),
      });
    let runtime = await start();
    try {
      const controller = runtime.controller;
      assert.ok(controller);
      const rollout = await controller.apply({
        update: { id: 'patch-pg', kind: 'host-patch', expectedApplyMs: '100ms' },
        policy: { settleMs: 0 },
      });
      // Tenants approve at once, so that nothing waits for the notice.
      for (let i = 0; i < 400; i++) {
        for (const e of runtime.service.list().filter((x) => x.phase === 'Scheduled' && x.approvedAt === undefined)) {
          const vm = e.resources[0];
          if (vm) await runtime.service.approve(vm, [e.eventId]);
        }
        if ((await controller.detail(rollout.id)).rollout.status === 'completed') break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal((await controller.detail(rollout.id)).rollout.status, 'completed');
      const history = await runtime.service.history({ includeRemoved: true });
      assert.ok(history.length >= 2, `${history.length} events, one per wave at least`);
      assert.equal(existsSync(join(dir, 'intermission.db')), false, 'nothing of the store in the state directory');
      const database = new URL(store.connectionString ?? '').pathname.slice(1);
      const rows = await cluster.query<{ status: string }>('SELECT status FROM host_steps', [], database);
      assert.deepEqual(
        rows.map((r) => r.status),
        ['succeeded', 'succeeded'],
      );

      await runtime.close();
      runtime = await start();
      const again = runtime.controller;
      assert.ok(again);
      const detail = await again.detail(rollout.id);
      assert.equal(detail.rollout.status, 'completed');
      assert.equal(detail.steps.length, 2);
      assert.equal((await runtime.service.history({ includeRemoved: true })).length, history.length);
    } finally {
      await runtime.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
