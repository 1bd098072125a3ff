import { strict as assert } from 'node:assert';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import type { LeaderLeaseEventMap } from '../../src/controller/leader-lease.js';
import { METRIC_NAMES, createMetrics } from '../../src/metrics/index.js';
import { Exposition } from './exposition.js';

class FakeLease extends EventEmitter<LeaderLeaseEventMap> {
  epoch: number | undefined = undefined;
}

describe('metrics of the leader lease', () => {
  it('shows whether this replica leads, its epoch, and the changes', async () => {
    const metrics = createMetrics();
    const lease = new FakeLease();
    lease.epoch = 3; // leading before the metrics were built
    metrics.observeLease(lease);
    let x = Exposition.parse(await metrics.render());
    assert.equal(x.value(METRIC_NAMES.controllerLeader), 1);
    assert.equal(x.value(METRIC_NAMES.controllerLeaseEpoch), 3);
    assert.equal(x.value(METRIC_NAMES.controllerLeaseChanges, { change: 'lost' }), 0);
    lease.emit('lease:lost', { holder: 'a', epoch: 3, reason: 'test' });
    lease.emit('lease:standby', { leader: false, epoch: 4, holder: 'b', expiresAt: 0, now: 0 });
    x = Exposition.parse(await metrics.render());
    assert.equal(x.value(METRIC_NAMES.controllerLeader), 0);
    assert.equal(x.value(METRIC_NAMES.controllerLeaseEpoch), 4);
    lease.emit('lease:acquired', { holder: 'a', epoch: 5 });
    x = Exposition.parse(await metrics.render());
    assert.equal(x.value(METRIC_NAMES.controllerLeader), 1);
    assert.equal(x.value(METRIC_NAMES.controllerLeaseEpoch), 5);
    assert.equal(x.value(METRIC_NAMES.controllerLeaseChanges, { change: 'acquired' }), 1);
    assert.equal(x.value(METRIC_NAMES.controllerLeaseChanges, { change: 'lost' }), 1);
  });
});
