import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { IntermissionError } from '../../src/domain/index.js';
import { META, SE_LATEST, fixture, http, serve, type RecordedEvent } from './helpers.js';

/**
 * Issue 12, item 10: internal messages (a RangeError's "Invalid time value" from rendering a bad
 * date) must never reach a guest. The metadata service answers a generic body and reports the
 * detail through `imds:error`, where the process logs it.
 */
void describe('failures on our side reach guests as generic answers only', () => {
  const cases = [
    { name: 'a RangeError', error: new RangeError('Invalid time value'), status: 500, text: 'Internal server error' },
    {
      name: 'a store failure with a path in its message',
      error: new IntermissionError('STORE_FAILURE', 'SQLITE_CORRUPT at /var/lib/intermission/intermission.db'),
      status: 503,
      text: 'Service unavailable',
    },
  ];
  for (const c of cases) {
    void test(`${c.name}: GET and POST answer ${c.status} {"error":"${c.text}"}, the detail is reported`, async () => {
      const f = fixture();
      // The backend fails the way a row that cannot be rendered made it fail.
      const failing = f.backend as unknown as { document: () => never; approve: () => Promise<never> };
      failing.document = () => {
        throw c.error;
      };
      failing.approve = () => Promise.reject(c.error);
      const s = await serve(f.app, ['as0_0']);
      try {
        const port = s.port('as0_0');
        const get = await http({ port, path: SE_LATEST, headers: META });
        const post = await http({
          port,
          path: SE_LATEST,
          method: 'POST',
          headers: META,
          body: '{"StartRequests":[{"EventId":"A"}]}',
        });
        for (const res of [get, post]) {
          assert.equal(res.status, c.status);
          assert.equal(res.body, JSON.stringify({ error: c.text }));
          assert.equal(res.body.includes(c.error.message), false);
        }
        const reported = f.events.filter(
          (e): e is Extract<RecordedEvent, { name: 'imds:error' }> => e.name === 'imds:error',
        );
        assert.equal(reported.length, 2);
        for (const r of reported) assert.equal(r.payload.error.message, c.error.message);
      } finally {
        await s.listeners.close();
      }
    });
  }
});
