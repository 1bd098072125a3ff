import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EventBook, FleetIndex, MINUTE, eventTiming, parseFleet } from '../../src/domain/index.js';

// Issue 12, item 3: the next deadline is the earliest pending transition, `now` for one that is due
// already; it used to leave out approved and past-due events, so schedulers slept past them.

const fleet = new FleetIndex(
  parseFleet({
    hosts: [{ name: 'h1' }],
    vms: [
      { name: 'a', host: 'h1' },
      { name: 'b', host: 'h1' },
    ],
  }),
);
const NOW = Date.UTC(2026, 0, 1);

function book(): EventBook {
  let n = 0;
  return new EventBook({
    timing: eventTiming({ lingerMs: 2 * MINUTE }),
    resolver: fleet,
    newId: () => `00000000-0000-4000-8000-${(++n).toString(16).padStart(12, '0').toUpperCase()}`,
  });
}

void describe('EventBook.nextDeadline', () => {
  void it('is undefined with nothing pending, then the soonest NotBefore', () => {
    const b = book();
    assert.equal(b.nextDeadline(NOW), undefined);
    b.commit(b.schedule({ type: 'Freeze', resources: ['a'], noticeMs: 20 * MINUTE }, NOW));
    b.commit(b.schedule({ type: 'Freeze', resources: ['b'] }, NOW));
    assert.equal(b.nextDeadline(NOW), NOW + 15 * MINUTE);
  });

  void it('is now for an approved event, however far its NotBefore', () => {
    const b = book();
    const { event } = b.commit(b.schedule({ type: 'Freeze', resources: ['a'], noticeMs: 60 * MINUTE }, NOW));
    b.commit(b.approve('a', [event.eventId], NOW + 1000));
    assert.equal(b.nextDeadline(NOW + 5000), NOW + 5000);
  });

  void it('is now for an event whose NotBefore has passed and that has not started', () => {
    const b = book();
    b.commit(b.schedule({ type: 'Freeze', resources: ['a'] }, NOW));
    const late = NOW + 16 * MINUTE;
    assert.equal(b.nextDeadline(late), late);
  });

  void it('counts the end of a linger, and now once it ran out', () => {
    const b = book();
    const { event } = b.commit(b.startUnplanned({ type: 'Reboot', resources: ['a'] }, NOW));
    b.commit(b.end([event.eventId], NOW + 1000));
    assert.equal(b.nextDeadline(NOW + 1000), NOW + 1000 + 2 * MINUTE);
    assert.equal(b.nextDeadline(NOW + 10 * MINUTE), NOW + 10 * MINUTE);
  });

  void it('leaves out the Scheduled events the caller does not start', () => {
    const b = book();
    const { event } = b.commit(b.schedule({ type: 'Freeze', resources: ['a'], owner: 'rollout:r1' }, NOW));
    b.commit(b.approve('a', [event.eventId], NOW));
    const mine = b.commit(
      b.schedule({ type: 'Freeze', resources: ['b'], noticeMs: 20 * MINUTE, owner: 'drill:x' }, NOW),
    );
    const drills = { starts: (e: { owner: string }) => e.owner.startsWith('drill:') };
    assert.equal(b.nextDeadline(NOW, drills), mine.event.notBefore);
    assert.equal(b.nextDeadline(NOW), NOW, 'without the filter, the approved event is due now');
  });
});
