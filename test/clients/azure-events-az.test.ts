/**
 * The REAL Pacemaker resource agent azure-events-az (Debian bookworm's resource-agents 4.12,
 * unmodified) against our metadata service, in a network namespace that owns 169.254.169.254.
 *
 * The agent runs its `monitor` action repeatedly, as Pacemaker would (every 10 s in a real
 * cluster; about every second here), with stand-ins for the crm_* commands it calls. What the agent
 * sends (read from its source and seen on the wire):
 *   GET  /metadata/instance?api-version=2019-08-01         (every monitor: compute.name)
 *   GET  /metadata/scheduledevents?api-version=2019-08-01  (every monitor)
 *   POST /metadata/scheduledevents?api-version=2019-08-01  body {"StartRequests": [{"EventId": ...}]},
 *        Content-Type application/x-www-form-urlencoded (python urllib's default)
 * all with `Metadata: true` and `User-Agent: Pacemaker-ResourceAgent/0.10 <distro>`.
 */
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import {
  IMDS_ADDRESS,
  MetadataService,
  Namespace,
  preflight,
  scheduledEvents,
  sleep,
  type ScheduledEventsDoc,
} from './harness.js';
import { ATTR, FakeCluster } from './pacemaker.js';

const ready = preflight(['resource-agents']);

const VM = 'hana_0';
const PEER_VM = 'hana_1';
/** The agent names this node by socket.gethostname(); the namespace shares the host's UTS. */
const SELF = hostname();
const PEER = 'peer-node';
const SCALE = 60;
const FLEET = {
  hosts: [{ name: 'host-1' }, { name: 'host-2' }],
  availabilitySets: [{ name: 'hana', updateDomains: 2 }],
  vms: [
    { name: VM, host: 'host-1', availabilitySet: 'hana' },
    { name: PEER_VM, host: 'host-2', availabilitySet: 'hana' },
  ],
};
const RELEVANT = { eventTypes: 'Freeze,Reboot,Redeploy' };
const RFC1123 =
  /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/** One monitor run and what the test saw right after it. */
interface Step {
  readonly at: number;
  readonly rc: number | null;
  readonly doc: ScheduledEventsDoc;
  readonly state: string | undefined;
  readonly pending: string | undefined;
  readonly health: string | undefined;
  readonly lastDoc: string | undefined;
}

void describe('azure-events-az (Debian resource-agents) against serve-metadata', { skip: ready.skip }, () => {
  let ns: Namespace | undefined;
  let service: MetadataService | undefined;
  let cluster: FakeCluster;
  let testNo = 0;

  before(async () => {
    ready.assertReady();
    ns = await Namespace.create('aea');
    service = await MetadataService.start({
      ns,
      fleet: FLEET,
      binds: { [VM]: `${IMDS_ADDRESS}:80` },
      timeScale: SCALE,
    });
  });

  after(async () => {
    await service?.cleanup();
    await ns?.delete();
  });

  beforeEach(async () => {
    cluster = await FakeCluster.create(join(service?.dir ?? '/nonexistent', `cluster-${++testNo}`), [SELF, PEER]);
  });

  function env(): { ns: Namespace; service: MetadataService } {
    assert.ok(ns && service, 'set up by before()');
    return { ns, service };
  }

  async function monitor(): Promise<Step> {
    const { ns: n } = env();
    const r = await cluster.runAgent(n, 'monitor', RELEVANT);
    const log = await cluster.agentLog();
    assert.equal(r.code, 0, `monitor failed (${r.code}): ${r.stderr}${r.stdout}\n--- agent log ---\n${log}`);
    return {
      at: Date.now(),
      rc: r.code,
      doc: await scheduledEvents(n),
      state: await cluster.attr(ATTR.curNodeState, SELF),
      pending: await cluster.attr(ATTR.pendingEventIDs, SELF),
      health: await cluster.attr(ATTR.health, SELF),
      lastDoc: await cluster.attr(ATTR.lastDocVersion, SELF),
    };
  }

  /** Monitors about once a second until `done` holds (or the time runs out). */
  async function monitorUntil(timeoutMs: number, done: (s: Step, all: Step[]) => boolean): Promise<Step[]> {
    const steps: Step[] = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const step = await monitor();
      steps.push(step);
      if (done(step, steps)) return steps;
      if (Date.now() > deadline) {
        assert.fail(`gave up after ${timeoutMs} ms; steps:\n${describeSteps(steps)}\n${await cluster.agentLog()}`);
      }
      await sleep(800);
    }
  }

  async function assertCleanAgentLog(): Promise<void> {
    const log = await cluster.agentLog();
    assert.doesNotMatch(log, /Failed to reach the server|couldn't fulfill the request|Traceback|ERROR/, log);
    // The agent marks the cluster-wide pull state IDLE only after a metadata request failed.
    assert.equal(await cluster.attr(ATTR.globalPullState), undefined, log);
  }

  void it(
    'a Freeze for this VM: drains the node, approves the event, recovers once it is gone',
    { timeout: 60_000 },
    async () => {
      const { ns: n, service: s } = env();
      // 60 s of notice (wall-clock; the scaled minimum is 15 s): beyond the test, so only an approval starts it.
      const scheduledAt = Date.now();
      const id = await s.schedule(VM, 'Freeze', '60s', ['--duration', '5', '--source', 'Platform']);

      const first = await scheduledEvents(n, '2019-08-01');
      const seen = first.Events.find((e) => e.EventId === id);
      assert.ok(seen, `the event is in the document: ${JSON.stringify(first)}`);
      assert.equal(seen.EventStatus, 'Scheduled');
      assert.deepEqual(seen.Resources, [VM]);
      assert.match(seen.NotBefore, RFC1123);
      assert.ok(Date.parse(seen.NotBefore) - scheduledAt > 50_000, `NotBefore ${seen.NotBefore} is ~60 s away`);

      const steps = await monitorUntil(
        45_000,
        (st, all) =>
          all.some((x) => x.doc.Events.some((e) => e.EventId === id && e.EventStatus === 'Started')) &&
          st.doc.Events.length === 0 &&
          st.state === 'AVAILABLE',
      );
      const trace = `steps:\n${describeSteps(steps)}\n--- agent log ---\n${await cluster.agentLog()}${s.output()}`;

      // Monitor 1: the agent saw a relevant local event, another node is available: STOPPING, and it
      // put this node in standby through the #health-azure node attribute (no approval yet).
      const [one] = steps;
      assert.ok(one);
      assert.equal(one.state, 'STOPPING', trace);
      assert.equal(one.pending, id, trace);
      assert.equal(one.health, '-1000000', trace);
      assert.equal(one.doc.Events[0]?.EventStatus, 'Scheduled', trace);
      // It learned its Azure name from /metadata/instance compute.name.
      assert.equal(await cluster.attr(ATTR.azName, SELF), VM, trace);
      assert.equal(await cluster.attr(`hostName_${VM}`), SELF, trace);

      // Then: resources stopped, so it set IN_EVENT and POSTed StartRequests for the event, which our
      // service started at once instead of waiting for NotBefore.
      const inEvent = steps.findIndex((x) => x.state === 'IN_EVENT');
      assert.ok(inEvent >= 1, `the node went IN_EVENT: ${trace}`);
      const log = await cluster.agentLog();
      assert.match(
        log,
        new RegExp(`forceEvents: postData = \\{'StartRequests': \\[\\{'EventId': '${id}'\\}\\]\\}`),
        trace,
      );
      const started = steps.find((x) => x.doc.Events.some((e) => e.EventId === id && e.EventStatus === 'Started'));
      assert.ok(started, trace);
      const startedEvent = started.doc.Events.find((e) => e.EventId === id);
      assert.equal(startedEvent?.NotBefore, '', `a Started event has an empty NotBefore: ${trace}`);
      assert.ok(started.at < Date.parse(seen.NotBefore), `started by the approval, before NotBefore: ${trace}`);
      // It remembers the DocumentIncarnation it acted on (an integer, read as such from our JSON).
      assert.match(steps[inEvent]?.lastDoc ?? '', /^\d+$/, trace);

      // Finally the event disappeared: the agent cleared its pending ids and document version and put
      // the node back online.
      const last = steps.at(-1);
      assert.ok(last);
      assert.equal(last.state, 'AVAILABLE', trace);
      assert.equal(last.pending, undefined, trace);
      assert.equal(last.lastDoc, undefined, trace);
      assert.equal(last.health, '0', trace);
      assert.deepEqual(await s.list().then((l) => l.filter((e) => e.eventId === id)), [], 'no longer a live event');
      // The service's own record: approved by this VM (the agent's POST), then completed.
      const record = await s.history(id);
      assert.equal(record.approvedBy, VM, JSON.stringify(record));
      assert.equal(record.removalReason, 'completed', JSON.stringify(record));

      // The crm_attribute calls a real cluster would have seen, in order: standby, then online.
      const calls = (await cluster.calls()).map((c) => c.join(' '));
      const standby = calls.indexOf(
        `crm_attribute --node ${SELF} --name #health-azure --update -1000000 --lifetime=forever`,
      );
      const online = calls.indexOf(`crm_attribute --node ${SELF} --name #health-azure --update 0 --lifetime=forever`);
      assert.ok(standby >= 0 && online > standby, `standby then online:\n${calls.join('\n')}`);

      // Incarnations are integers that only go up, one per change of the document.
      const incarnations = [first.DocumentIncarnation, ...steps.map((x) => x.doc.DocumentIncarnation)];
      for (const [i, v] of incarnations.entries()) {
        assert.ok(Number.isInteger(v), `DocumentIncarnation ${JSON.stringify(v)} is an integer`);
        assert.ok(i === 0 || v >= (incarnations[i - 1] ?? 0), `incarnations never go down: ${incarnations.join(',')}`);
      }
      assert.ok((incarnations.at(-1) ?? 0) >= first.DocumentIncarnation + 2, 'Started and removal each bumped it');
      await assertCleanAgentLog();
    },
  );

  void it("another VM's event and a cancellation leave this node alone", { timeout: 60_000 }, async () => {
    const { service: s } = env();
    const id = await s.schedule(PEER_VM, 'Freeze', '60s');

    const steps = [await monitor(), await monitor(), await monitor()];
    const trace = `steps:\n${describeSteps(steps)}\n--- agent log ---\n${await cluster.agentLog()}`;
    for (const st of steps) {
      // Same availability set: this VM sees the peer's event, Resources name only the peer.
      const e = st.doc.Events.find((x) => x.EventId === id);
      assert.ok(e, trace);
      assert.deepEqual(e.Resources, [PEER_VM], trace);
      assert.equal(e.EventStatus, 'Scheduled', `nobody approved it: ${trace}`);
      assert.equal(st.state, undefined, trace);
      assert.equal(st.health, undefined, trace);
      assert.equal(st.pending, undefined, trace);
    }
    assert.doesNotMatch(await cluster.agentLog(), /forceEvents/, trace);

    await s.cancel(id);
    const afterCancel = await monitor();
    assert.deepEqual(afterCancel.doc.Events, [], 'a cancelled event is simply gone');
    const record = await s.history(id);
    assert.equal(record.removalReason, 'cancelled', JSON.stringify(record));
    assert.equal(record.approvedBy ?? null, null, JSON.stringify(record));
    assert.ok(afterCancel.doc.DocumentIncarnation > (steps[0]?.doc.DocumentIncarnation ?? Infinity), trace);
    assert.equal(afterCancel.state, undefined);
    assert.equal(afterCancel.health, undefined);
    await assertCleanAgentLog();
  });

  void it(
    'no other node available: the agent holds, does not approve, the event starts at NotBefore',
    { timeout: 60_000 },
    async () => {
      const { service: s } = env();
      await cluster.setAttr(ATTR.curNodeState, 'STOPPING', PEER); // the peer is draining for its own reasons
      const id = await s.schedule(VM, 'Freeze', '15s', ['--duration', '5']); // the scaled minimum notice

      let notBefore = Number.NaN;
      const steps = await monitorUntil(45_000, (st, all) => {
        const e = st.doc.Events.find((x) => x.EventId === id);
        if (e?.EventStatus === 'Scheduled') notBefore = Date.parse(e.NotBefore);
        return all.some((x) => x.doc.Events.some((y) => y.EventId === id && y.EventStatus === 'Started')) && !e;
      });
      const trace = `steps:\n${describeSteps(steps)}\n--- agent log ---\n${await cluster.agentLog()}`;

      assert.equal(steps[0]?.state, 'ON_HOLD', trace);
      for (const st of steps) {
        assert.equal(st.health, undefined, `never put in standby: ${trace}`);
        assert.equal(st.pending, undefined, trace);
      }
      assert.doesNotMatch(await cluster.agentLog(), /forceEvents/, trace);
      const started = steps.find((x) => x.doc.Events.some((e) => e.EventId === id && e.EventStatus === 'Started'));
      assert.ok(started && Number.isFinite(notBefore), trace);
      // NotBefore has whole seconds; allow for that and for the poll interval.
      assert.ok(started.at >= notBefore - 1_000, `started at NotBefore, not earlier: ${trace}`);
      assert.equal(steps.at(-1)?.state, 'ON_HOLD', 'the agent leaves ON_HOLD to another node (its design)');
      // The service's own record: completed without anyone approving it.
      const record = await s.history(id);
      assert.equal(record.approvedBy ?? null, null, JSON.stringify(record));
      assert.equal(record.removalReason, 'completed', JSON.stringify(record));
      assert.ok(
        Date.parse(String(record.startedAt)) >= notBefore,
        `started at/after NotBefore: ${JSON.stringify(record)}`,
      );
      await assertCleanAgentLog();
    },
  );
});

function describeSteps(steps: readonly Step[]): string {
  const t0 = steps[0]?.at ?? 0;
  return steps
    .map(
      (s) =>
        `+${((s.at - t0) / 1000).toFixed(1)}s state=${s.state} pending=${s.pending} health=${s.health} lastDoc=${s.lastDoc} ` +
        `doc=${JSON.stringify(s.doc)}`,
    )
    .join('\n');
}
