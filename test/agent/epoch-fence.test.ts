import { strict as assert } from 'node:assert';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { AgentClient, EpochFence, FileEpochStore, type HostStepRequest } from '../../src/agent/index.js';
import { isIntermissionError, parseFleet, type Fleet } from '../../src/domain/index.js';
import { httpUrl } from '../../src/service/address.js';
import { startAgentRuntime, type AgentRuntime } from '../../src/service/agent-runtime.js';

// Fencing at the agent, over real HTTP on loopback: a command carrying an epoch lower than one the
// agent has seen is refused with 409 STALE_EPOCH, before and after the agent restarts.

const fleet: Fleet = parseFleet({
  hosts: [{ name: 'h0' }],
  vms: [{ name: 'solo', host: 'h0' }],
});

const dir = await mkdtemp(join(tmpdir(), 'intermission-fence-'));
after(() => rm(dir, { recursive: true, force: true }));

const token = 'fence-test-token';

function start(stateDir: string): Promise<AgentRuntime> {
  return startAgentRuntime({ fleet, host: 'h0', stateDir, listen: { host: '127.0.0.1', port: 0 }, token });
}

function client(runtime: AgentRuntime): AgentClient {
  return new AgentClient({ host: 'h0', baseUrl: httpUrl(runtime.address), token, fetch: (r) => globalThis.fetch(r) });
}

function step(id: string): HostStepRequest {
  return {
    stepId: id,
    rolloutId: 'r1',
    host: 'h0',
    kind: 'hot-patch',
    update: { id: 'u1', kind: 'hot-patch', expectedApplyMs: 10, targetVmmVersion: null },
    vms: [],
    maxClockResidualMs: 250,
  };
}

const stale = (e: unknown): boolean => isIntermissionError(e) && e.code === 'STALE_EPOCH';

describe('agent fencing by epoch (real HTTP)', () => {
  it('refuses an older epoch once it saw a newer one, across a restart too', async () => {
    const stateDir = join(dir, 'a');
    let runtime = await start(stateDir);
    try {
      let agent = client(runtime);
      // A fresh agent takes any epoch; the highest seen goes up with each newer one.
      assert.equal((await agent.submit(step('s1'), { epoch: 3 })).stepId, 's1');
      assert.equal(runtime.agent.highestEpoch, 3);
      assert.equal((await agent.submit(step('s2'), { epoch: 5 })).stepId, 's2');
      // The deposed controller (epoch 3) is refused, for a new step and for a resend of its own.
      await assert.rejects(agent.submit(step('s3'), { epoch: 4 }), stale);
      await assert.rejects(agent.submit(step('s1'), { epoch: 3 }), stale);
      await assert.rejects(agent.submit(step('s4')), stale, 'no epoch counts as 0');
      assert.equal(runtime.agent.status('s3'), undefined, 'a refused step is not journaled, so never runs');
      // The wire: 409 with the stable code.
      const raw = await globalThis.fetch(new URL('/v1/steps/s5', httpUrl(runtime.address)), {
        method: 'PUT',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'intermission-epoch': '4' },
        body: JSON.stringify(step('s5')),
      });
      assert.equal(raw.status, 409);
      assert.equal(((await raw.json()) as { error: { code: string } }).error.code, 'STALE_EPOCH');
      // The current leader's resend of a known step gets its recorded status (an equal epoch passes).
      assert.equal((await agent.submit(step('s2'), { epoch: 5 })).stepId, 's2');

      await runtime.close();
      runtime = await start(stateDir);
      agent = client(runtime);
      assert.equal(runtime.agent.highestEpoch, 5, 'the fence outlives the process');
      await assert.rejects(agent.submit(step('s6'), { epoch: 4 }), stale);
      assert.equal((await agent.submit(step('s6'), { epoch: 6 })).stepId, 's6');
      assert.deepEqual(JSON.parse(await readFile(join(stateDir, 'agents', 'h0.epoch'), 'utf8')), { epoch: 6 });
    } finally {
      await runtime.close();
    }
  });

  it('refuses a malformed epoch header with 400', async () => {
    const runtime = await start(join(dir, 'b'));
    try {
      for (const bad of ['-1', 'x', '1.5', '99999999999999999999']) {
        const response = await globalThis.fetch(new URL('/v1/steps/s1', httpUrl(runtime.address)), {
          method: 'PUT',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'intermission-epoch': bad },
          body: JSON.stringify(step('s1')),
        });
        assert.equal(response.status, 400, bad);
        await response.body?.cancel();
      }
      assert.equal(runtime.agent.highestEpoch, 0);
    } finally {
      await runtime.close();
    }
  });

  it('checks and raises one command at a time, and saves a higher epoch before admitting it', async () => {
    const saved: number[] = [];
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const fence = await EpochFence.open({
      load: () => Promise.resolve(0),
      save: async (epoch) => {
        await gate;
        saved.push(epoch);
      },
    });
    const seven = fence.admit(7);
    const six = fence.admit(6);
    let admitted = false;
    void seven.then(() => (admitted = true));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(admitted, false, 'not admitted before the save completes');
    release();
    await seven;
    await assert.rejects(six, stale, 'the concurrent older one is judged after the newer was saved');
    assert.deepEqual(saved, [7]);
  });

  it('an unreadable epoch file stops the agent from starting rather than forgetting the fence', async () => {
    const path = join(dir, 'broken.epoch');
    await writeFile(path, '{"epoch": "five"}');
    await assert.rejects(EpochFence.open(new FileEpochStore(path)), (e: unknown) => isIntermissionError(e));
  });
});
