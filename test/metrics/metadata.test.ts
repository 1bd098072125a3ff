import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { createMetadataApp, type MetadataApp } from '../../src/imds/index.js';
import { METRIC_NAMES, createMetrics, type IntermissionMetrics } from '../../src/metrics/index.js';
import { DRILL_OWNER_PREFIX } from '../../src/service/event-service.js';
import { Exposition, labelKey } from './exposition.js';
import { openServiceWorld } from './fixtures.js';

const SE = '/metadata/scheduledevents?api-version=2020-07-01';
const META = { Metadata: 'true' };

function send(app: MetadataApp, vm: string, path: string, init: RequestInit = {}): Promise<number> {
  return Promise.resolve(app.fetch(new Request(`http://169.254.169.254${path}`, init), vm)).then(async (r) => {
    await r.arrayBuffer();
    return r.status;
  });
}

async function requests(metrics: IntermissionMetrics): Promise<Map<string, number>> {
  return Exposition.parse(await metrics.render()).series(METRIC_NAMES.metadataRequests);
}

describe('metrics of the metadata service (real createMetadataApp over the real event service)', () => {
  it('counts the reported requests by endpoint, method and status, approvals by result, and enablements', async () => {
    const w = await openServiceWorld();
    const metrics = createMetrics();
    const app = createMetadataApp({ backend: w.service, rateLimit: false, onEvent: metrics.metadataListener });
    const event = await w.service.schedule({
      type: 'Freeze',
      resources: ['web_0', 'web_1'],
      owner: `${DRILL_OWNER_PREFIX}m`,
    });

    const statuses = [
      await send(app, 'web_0', SE, { headers: META }),
      await send(app, 'web_0', SE),
      await send(app, 'web_0', '/metadata/instance/compute/nothing?api-version=2021-02-01', { headers: META }),
      await send(app, 'web_0', '/metadata/instance/compute/name?api-version=2021-02-01', { headers: META }),
      await send(app, 'web_0', '/metadata/versions', { method: 'PUT', headers: META }),
      await send(app, 'web_0', '/metadata/versions', { method: 'DELETE', headers: META }),
      await send(app, 'web_0', '/some/guess', { headers: META }),
      await send(app, 'web_0', '/metadata?api-version=2021-02-01', { headers: META }),
      await send(app, 'ghost', SE, { headers: META }),
      await send(app, 'web_1', SE, {
        method: 'POST',
        headers: META,
        body: JSON.stringify({
          StartRequests: [{ EventId: event.eventId }, { EventId: '00000000-0000-4000-8000-000000000000' }],
        }),
      }),
      await send(app, 'web_1', SE, {
        method: 'POST',
        headers: META,
        body: JSON.stringify({ StartRequests: [{ EventId: event.eventId }] }),
      }),
    ];
    assert.deepEqual(statuses, [200, 400, 404, 400, 405, 405, 404, 404, 404, 200, 200]);

    const x = Exposition.parse(await metrics.render());
    assert.deepEqual(
      x.series(METRIC_NAMES.metadataRequests),
      new Map([
        [labelKey({ endpoint: 'scheduledevents', method: 'GET', status: '200' }), 1],
        [labelKey({ endpoint: 'scheduledevents', method: 'GET', status: '400' }), 1],
        [labelKey({ endpoint: 'instance', method: 'GET', status: '404' }), 1],
        [labelKey({ endpoint: 'instance', method: 'GET', status: '400' }), 1],
        [labelKey({ endpoint: 'versions', method: 'other', status: '405' }), 2],
        [labelKey({ endpoint: 'other', method: 'GET', status: '404' }), 1],
        [labelKey({ endpoint: 'metadata', method: 'GET', status: '404' }), 1],
        // An unknown VM: the backend throws NOT_FOUND and the app answers with its status.
        [labelKey({ endpoint: 'scheduledevents', method: 'GET', status: '404' }), 1],
        [labelKey({ endpoint: 'scheduledevents', method: 'POST', status: '200' }), 2],
      ]),
      'every answered request is counted once, by status',
    );
    assert.deepEqual(
      x.series(METRIC_NAMES.metadataRequestErrors),
      new Map([
        [labelKey({ code: 'METADATA_HEADER_REQUIRED' }), 1],
        [labelKey({ code: 'NOT_FOUND' }), 4],
        [labelKey({ code: 'LEAF_REQUIRES_TEXT' }), 1],
        [labelKey({ code: 'METHOD_NOT_ALLOWED' }), 2],
      ]),
    );
    assert.equal(x.value(METRIC_NAMES.metadataApprovals, { result: 'approved' }), 1);
    assert.equal(x.value(METRIC_NAMES.metadataApprovals, { result: 'already_approved' }), 1);
    assert.equal(x.value(METRIC_NAMES.metadataApprovals, { result: 'unknown' }), 1);
    assert.equal(x.value(METRIC_NAMES.metadataEnablements, { reset: 'false' }), 1, 'the set web was enabled once');
    await w.close();
  });

  it('counts throttled requests (429) and never lets a failing count reach the service', async () => {
    const w = await openServiceWorld();
    const metrics = createMetrics();
    const app = createMetadataApp({
      backend: w.service,
      rateLimit: { requestsPerSecond: 1, burst: 1 },
      onEvent: metrics.metadataListener,
    });
    assert.deepEqual(
      [await send(app, 'solo', SE, { headers: META }), await send(app, 'solo', SE, { headers: META })],
      [200, 429],
    );
    assert.deepEqual(
      await requests(metrics),
      new Map([
        [labelKey({ endpoint: 'scheduledevents', method: 'GET', status: '200' }), 1],
        [labelKey({ endpoint: 'scheduledevents', method: 'GET', status: '429' }), 1],
      ]),
    );
    // A payload this module cannot read is counted as a listener error, not thrown.
    assert.doesNotThrow(() =>
      metrics.metadataListener('imds:approve', { vm: 'solo', approved: null, alreadyApproved: [] } as never),
    );
    const x = Exposition.parse(await metrics.render());
    assert.equal(x.value(METRIC_NAMES.listenerErrors, { event: 'imds:approve' }), 1);
    await w.close();
  });
});
