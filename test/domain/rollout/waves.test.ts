/**
 * Wave building through the public planner: hosts described as lists of (set, update domain)
 * pairs, each pair one VM.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { eventTiming } from '../../../src/domain/events/notice.js';
import { derivedGuid } from '../../../src/domain/fleet.js';
import type { Fleet } from '../../../src/domain/vocabulary.js';
import { planRollout, type Plan, type Update } from '../../../src/domain/rollout/index.js';
import { assertPlanInvariants, fleetOf, NOW, type VmSpec } from './helpers.js';

const UPDATE: Update = { id: 'waves', kind: 'host-patch', expectedApplyMs: 1000 };

/** A fleet whose host `i` holds one VM per pair of `hosts[i]`; `[]` is a host without set VMs. */
function fleetOfPairs(hosts: readonly (readonly [number, number])[][], standalone: readonly number[] = []): Fleet {
  const vms: VmSpec[] = [];
  hosts.forEach((pairs, i) =>
    pairs.forEach(([set, ud], k) => vms.push({ name: `v${i}-${k}`, host: hostName(i), set: `s${set}`, ud })),
  );
  standalone.forEach((i) => vms.push({ name: `solo${i}`, host: hostName(i) }));
  const sets = [...new Set(vms.flatMap((v) => (v.set ? [v.set] : [])))];
  return fleetOf({
    hosts: hosts.map((_, i) => hostName(i)),
    sets: sets.map((name) => ({ name, updateDomains: 20, faultDomains: 3 })),
    vms,
  });
}

const hostName = (i: number) => `h${String(i).padStart(3, '0')}`;

function plan(fleet: Fleet): Plan {
  const p = planRollout({ fleet, update: UPDATE, now: NOW });
  assertPlanInvariants(p, { fleet, update: UPDATE, timing: eventTiming(), selected: fleet.hosts.map((h) => h.name) });
  return p;
}

function waveOf(p: Plan): Map<string, number> {
  return new Map(
    p.waves.flatMap((w) => w.batches.flatMap((b) => b.steps.map((s): [string, number] => [s.host, w.index]))),
  );
}

void describe('waves', () => {
  void it('puts hosts with different update domains of a set in different waves', () => {
    const p = plan(fleetOfPairs([[[0, 0]], [[0, 1]], [[0, 2]], [[0, 0]]]));
    const w = waveOf(p);
    assert.equal(p.waves.length, 3);
    assert.equal(w.get('h000'), w.get('h003'), 'the same update domain shares a wave');
    assert.equal(new Set([w.get('h000'), w.get('h001'), w.get('h002')]).size, 3);
  });

  void it('lets different sets be in maintenance together, each in its own update domain', () => {
    const p = plan(fleetOfPairs([[[0, 0]], [[1, 3]]]));
    assert.equal(p.waves.length, 1);
    assert.deepEqual({ ...p.waves[0]?.updateDomains }, { s0: 0, s1: 3 });
  });

  void it('finds exactly the update-domain waves of a fleet placed by update domain', () => {
    // 4 update domains, 8 sets, 24 hosts: host i is in group i % 4 and holds 3 sets in that domain.
    const hosts = Array.from({ length: 24 }, (_, i) =>
      [0, 1, 2].map((k): [number, number] => [(i * 3 + k) % 8, i % 4]),
    );
    assert.equal(plan(fleetOfPairs(hosts)).waves.length, 4);
  });

  void it('reaches the lower bound on larger seeded fleets placed by update domain', () => {
    for (let seed = 1; seed <= 20; seed++) {
      let s = seed;
      const rand = (n: number) => {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        return s % n;
      };
      const groups = 3 + rand(5);
      const hosts = Array.from({ length: groups * 12 }, (_, i) => {
        const sets = new Set<number>();
        while (sets.size < 4) sets.add(rand(15));
        return [...sets].map((set): [number, number] => [set, i % groups]);
      });
      assert.equal(plan(fleetOfPairs(hosts)).waves.length, groups, `seed ${seed}`);
    }
  });

  void it('spreads hosts without set VMs over the least loaded waves', () => {
    const p = plan(fleetOfPairs([[[0, 0]], [[0, 0]], [[0, 1]], [], [], []], [3, 4]));
    assert.equal(p.waves.length, 2);
    assert.deepEqual(
      p.waves.map((w) => w.hosts),
      [3, 3],
    );
  });

  void it('makes one wave of hosts without set VMs, and none of no hosts', () => {
    assert.equal(plan(fleetOfPairs([[], []], [0, 1])).waves.length, 1);
    assert.equal(plan(fleetOfPairs([])).waves.length, 0);
  });

  void it('never puts conflicting hosts together on a dense random fleet', () => {
    let s = 7;
    const rand = (n: number) => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return s % n;
    };
    const hosts = Array.from({ length: 200 }, () => {
      const sets = new Set<number>();
      while (sets.size < 6) sets.add(rand(40));
      return [...sets].map((set): [number, number] => [set, rand(5)]);
    });
    const p = plan(fleetOfPairs(hosts));
    assert.ok(p.waves.length >= 5);
  });

  void it('derives event ids as GUIDs of <update id>/<wave>/<scope>/<type>', () => {
    const p = plan(fleetOfPairs([[[0, 0]], [[0, 1]]], [0]));
    for (const w of p.waves) {
      for (const e of w.events)
        assert.equal(e.eventId, derivedGuid(`waves/${w.index}/${e.scope}/${e.type}`).toUpperCase());
    }
    assert.equal(p.stats.events, 3);
  });
});
