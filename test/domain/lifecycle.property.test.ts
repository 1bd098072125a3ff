import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { arbitraryFleet, arbitraryOps, arbitraryTiming, Simulation } from './lifecycle-model.js';

// The event lifecycle under random fleets, random operations and a clock that jumps both ways. The
// invariants live in Simulation (lifecycle-model.ts): every step and every applied mutation is checked.

void describe('event lifecycle properties', () => {
  void it('keeps every invariant under random operations and clock jumps', () => {
    const totals = { mutations: 0, refused: 0, started: 0, startedEarly: 0, removed: 0, restarts: 0, clockBack: 0 };
    fc.assert(
      fc.property(arbitraryFleet, arbitraryTiming, arbitraryOps(), (fleet, timing, ops) => {
        const sim = new Simulation(fleet, timing);
        for (const op of ops) {
          if (op.kind === 'restart') {
            // Restore a fresh book from everything ever written, removed events included.
            const restored = sim.newBook();
            restored.restore({ events: [...sim.history.values()], scopes: sim.book.scopes() });
            sim.restart(restored);
          } else {
            sim.apply(sim.step(op));
          }
        }
        for (const [k, v] of Object.entries(sim.stats)) totals[k as keyof typeof totals] += v;
      }),
      { numRuns: 300 },
    );
    // The runs must reach every path, or the invariants above were checked on nothing.
    for (const [k, v] of Object.entries(totals)) assert.ok(v > 0, `no run exercised ${k}`);
  });
});
