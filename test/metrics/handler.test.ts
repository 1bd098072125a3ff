import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { Hono } from 'hono';
import { METRIC_NAMES, createMetrics, metricsHandler } from '../../src/metrics/index.js';
import { DRILL_OWNER_PREFIX } from '../../src/service/event-service.js';
import { Exposition, ExpositionError } from './exposition.js';
import { openServiceWorld } from './fixtures.js';

const PROMETHEUS_TEXT = 'text/plain; version=0.0.4; charset=utf-8';

describe('metricsHandler', () => {
  it('serves the same exposition as render(), with the Prometheus Content-Type, mounted in Hono', async () => {
    const w = await openServiceWorld();
    const metrics = createMetrics({ defaultLabels: { role: 'controller' } });
    metrics.observeEventService(w.service);
    await w.service.schedule({ type: 'Freeze', resources: ['solo'], owner: `${DRILL_OWNER_PREFIX}h` });
    const handler = metricsHandler(metrics);
    const app = new Hono();
    app.on(['GET', 'HEAD'], '/metrics', (c) => handler(c.req.raw));

    const response = await app.request('/metrics');
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), PROMETHEUS_TEXT);
    assert.equal(metrics.contentType, PROMETHEUS_TEXT);
    assert.equal(response.headers.get('cache-control'), 'no-store');
    const served = Exposition.parse(await response.text());
    const rendered = Exposition.parse(await metrics.render());
    assert.deepEqual(served.families, rendered.families);
    assert.equal(
      served.value(METRIC_NAMES.eventTransitions, { type: 'Freeze', transition: 'scheduled', role: 'controller' }),
      1,
    );
    for (const family of served.families.values()) {
      assert.ok(family.name.startsWith('intermission_'), `${family.name} is prefixed`);
      assert.ok(family.help.length > 0);
      for (const sample of family.samples) assert.equal(sample.labels.role, 'controller');
    }

    const head = await app.request('/metrics', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-type'), PROMETHEUS_TEXT);
    assert.equal(await head.text(), '');
    await w.close();
  });

  it('answers 405 with Allow to other methods and 500 when collection fails', async () => {
    const handler = metricsHandler(createMetrics());
    const post = await handler(new Request('http://x/metrics', { method: 'POST' }));
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');

    const failing = metricsHandler({ contentType: PROMETHEUS_TEXT, render: () => Promise.reject(new Error('boom')) });
    const error = await failing(new Request('http://x/metrics'));
    assert.equal(error.status, 500);
    assert.doesNotMatch(await error.text(), /boom/);
  });

  it('adds the process metrics when asked, and the whole exposition still validates', async () => {
    const metrics = createMetrics({ processMetrics: true });
    const response = await metricsHandler(metrics)(new Request('http://x/metrics'));
    const x = Exposition.parse(await response.text());
    assert.equal(x.family('process_cpu_seconds_total').type, 'counter');
    assert.equal(x.family('nodejs_eventloop_lag_seconds').type, 'gauge');
    assert.ok(x.family(METRIC_NAMES.vmPause).histograms.length > 0);
    // Two registries never share metrics: the second one is empty of process metrics.
    assert.equal((await createMetrics().render()).includes('process_cpu_seconds_total'), false);
  });
});

describe('the exposition check itself', () => {
  const valid = [
    '# HELP h_seconds A histogram.',
    '# TYPE h_seconds histogram',
    'h_seconds_bucket{le="1",path="a"} 1',
    'h_seconds_bucket{le="+Inf",path="a"} 2',
    'h_seconds_sum{path="a"} 3.5',
    'h_seconds_count{path="a"} 2',
    '# HELP c_total A counter.',
    '# TYPE c_total counter',
    'c_total{code="X"} 4',
    '',
  ].join('\n');

  it('reads labelled histograms series by series, which the parser alone folds together', () => {
    const x = Exposition.parse(valid);
    assert.deepEqual(x.histogram('h_seconds', { path: 'a' }), {
      labels: { path: 'a' },
      buckets: new Map([
        [1, 1],
        [Infinity, 2],
      ]),
      sum: 3.5,
      count: 2,
    });
    assert.equal(x.value('c_total', { code: 'X' }), 4);
  });

  const broken: [string, string][] = [
    ['no HELP', valid.replace('# HELP c_total A counter.\n', '')],
    ['no TYPE', valid.replace('# TYPE c_total counter\n', '')],
    ['_count differs from +Inf', valid.replace('h_seconds_count{path="a"} 2', 'h_seconds_count{path="a"} 3')],
    [
      'decreasing buckets',
      valid.replace('h_seconds_bucket{le="+Inf",path="a"} 2', 'h_seconds_bucket{le="+Inf",path="a"} 0'),
    ],
    ['no +Inf bucket', valid.replace('h_seconds_bucket{le="+Inf",path="a"} 2\n', '')],
    ['no _sum', valid.replace('h_seconds_sum{path="a"} 3.5\n', '')],
    ['undeclared sample', `${valid}other 1\n`],
    ['repeated sample', `${valid}c_total{code="X"} 5\n`],
    ['negative counter', valid.replace('c_total{code="X"} 4', 'c_total{code="X"} -1')],
  ];
  for (const [what, text] of broken) {
    it(`rejects an exposition with ${what}`, () => {
      assert.throws(() => Exposition.parse(text), ExpositionError);
    });
  }
});
