import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseFleet, timeScale } from '../../src/domain/index.js';
import { httpUrl } from '../../src/service/address.js';
import { startMetadataRuntime } from '../../src/service/metadata-runtime.js';
import { startSimHosts } from '../../src/service/sim-hosts.js';
import { Exposition } from '../metrics/exposition.js';

const fleet = parseFleet({
  hosts: [{ name: 'h1' }, { name: 'h2' }],
  availabilitySets: [{ name: 'web', updateDomains: 2 }],
  vms: [
    { name: 'web_0', host: 'h1', availabilitySet: 'web' },
    { name: 'web_1', host: 'h2', availabilitySet: 'web' },
    { name: 'solo', host: 'h1' },
  ],
});

describe('the embedded runtime end to end', () => {
  it('runs a rollout on simulated hosts and exposes what it measured at /metrics', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'intermission-runtime-'));
    const runtime = await startMetadataRuntime({
      fleet,
      stateDir: dir,
      bindings: [{ vm: 'web_0', address: { host: '127.0.0.1', port: 0 } }],
      control: { host: '127.0.0.1', port: 0 },
      timing: { scale: timeScale(60) },
      hosts: ({ stateDir }) => startSimHosts({ fleet, stateDir }),
    });
    try {
      const controller = runtime.controller;
      assert.ok(controller, 'a controller runs beside simulated hosts');
      const rollout = await controller.apply({
        update: { id: 'patch-m', kind: 'host-patch', expectedApplyMs: '200ms' },
        policy: { settleMs: 0 },
      });
      // Tenants approve at once, so that nothing waits for the notice.
      for (let i = 0; i < 400; i++) {
        for (const e of runtime.service.list().filter((x) => x.phase === 'Scheduled' && x.approvedAt === undefined)) {
          const vm = e.resources[0];
          if (vm) await runtime.service.approve(vm, [e.eventId]);
        }
        const detail = await controller.detail(rollout.id);
        if (detail.rollout.status === 'completed') break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal((await controller.detail(rollout.id)).rollout.status, 'completed');
      const metadata = runtime.metadata[0];
      assert.ok(metadata, 'a metadata listener');
      const se = await fetch(`${httpUrl(metadata.address)}/metadata/scheduledevents?api-version=2020-07-01`, {
        headers: { Metadata: 'true' },
      });
      assert.equal(se.status, 200);

      const res = await fetch(`${httpUrl(runtime.control)}/metrics`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      // Exposition parses with parse-prometheus-text-format and checks the format (HELP, TYPE,
      // cumulative buckets, _count = +Inf), working around that parser's folding of labelled histograms.
      const x = Exposition.parse(await res.text());
      const pauses = x.histogram('intermission_vm_pause_seconds', { path: 'pause' });
      assert.equal(pauses.count, 3, 'one pause per VM');
      assert.ok(pauses.sum > 0.3 && pauses.sum < 3, `pause sum ${pauses.sum} s for three ~200 ms pauses`);
      assert.equal(
        x.value('intermission_metadata_requests_total', { endpoint: 'scheduledevents', method: 'GET', status: '200' }),
        1,
      );
      assert.equal(
        x.value('intermission_scheduled_event_transitions_total', { type: 'Freeze', transition: 'started' }),
        3,
      );
      assert.equal(x.value('intermission_rollout_host_steps_finished_total', { result: 'succeeded' }), 2);
    } finally {
      await runtime.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
