import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { serveFetch, type RunningServer } from '../../src/service/http.js';
import { connectRaw, record, write } from '../service/raw-http.js';
import { controlWorld, type ControlWorld } from './helpers.js';

/**
 * A request is acted on only once it has arrived whole. The fuzzer found an operator's
 * `POST /v1/events/<id>/cancel` whose chunked body was malformed (`zz\r\n`): the server answered
 * 400, yet the event had been cancelled, because the cancel route never reads its body and acted as
 * soon as the headers were in.
 */
describe('a request with a malformed body changes nothing', () => {
  let world: ControlWorld;
  let server: RunningServer;
  before(async () => {
    world = await controlWorld();
    server = await serveFetch(world.app.fetch, { host: '127.0.0.1', port: 0 });
  });
  after(async () => {
    await server?.close();
    await world?.close();
  });

  for (const [name, body] of [
    ['a chunk size that is not hex', 'zz\r\n'],
    ['a chunk cut off before its end', '10\r\nabc'],
  ] as const) {
    it(`cancel with ${name}: answered 4xx, the event still Scheduled`, async () => {
      const event = await world.service.schedule({ type: 'Freeze', resources: ['solo'], owner: 'drill:op' });
      const socket = await connectRaw(server.address);
      const transcript = record(socket, 15_000);
      await write(
        socket,
        [
          `POST /v1/events/${event.eventId}/cancel HTTP/1.1`,
          'Host: localhost',
          `Authorization: ${world.auth.authorization}`,
          'Content-Type: application/json',
          'Transfer-Encoding: chunked',
          '',
          body,
        ].join('\r\n'),
      );
      // The cut-off chunk never completes: the client gives up and closes its side.
      if (!body.startsWith('zz')) setTimeout(() => socket.end(), 300).unref();
      const { text } = await transcript.closed;
      const status = /^HTTP\/1\.1 (\d{3})/.exec(text)?.[1];
      assert.ok(status === undefined || status.startsWith('4'), `answered ${JSON.stringify(text.slice(0, 80))}`);
      assert.equal(world.service.get(event.eventId)?.phase, 'Scheduled', 'nothing was acted on');
      await world.service.cancel([event.eventId]);
    });
  }

  it('a whole request followed by garbage on the same connection: its own answer first, then 400', async () => {
    // The fuzzer's seed 7, input 875: a complete cancel (Content-Length: 0) and then bytes that are
    // no request. Node answered the garbage with 400 at once, before the cancel's own 200, and closed
    // the connection: the client read 400 although the cancel had been done.
    const event = await world.service.schedule({ type: 'Freeze', resources: ['solo'], owner: 'drill:op' });
    const socket = await connectRaw(server.address);
    const transcript = record(socket, 15_000);
    await write(
      socket,
      [
        `POST /v1/events/${event.eventId}/cancel HTTP/1.1`,
        'Host: localhost',
        `Authorization: ${world.auth.authorization}`,
        'Content-Length: 0',
        '',
        '[1,1,1]\r\n\r\n',
      ].join('\r\n'),
    );
    const { text } = await transcript.closed;
    const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
    assert.deepEqual(statuses, ['200', '400'], `answers in request order: ${JSON.stringify(text.slice(0, 200))}`);
    assert.equal(world.service.get(event.eventId), undefined, 'the whole request was served: cancelled');
  });
});
