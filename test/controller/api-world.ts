import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FleetIndex, eventTiming, timeScale } from '../../src/domain/index.js';
import { AgentClient, HostAgent, MemoryJournal, createAgentApp } from '../../src/agent/index.js';
import { createControlApp } from '../../src/control/app.js';
import { LiveHub, type LiveMessage } from '../../src/control/live.js';
import { feedLiveHub } from '../../src/control/live-feed.js';
import { liveMessageSchema } from '../../src/control/schemas.js';
import { TokenAuthority } from '../../src/control/tokens.js';
import { Controller } from '../../src/controller/controller.js';
import { VirtualTime, createSimFleet, type SimHost } from '../../src/hypervisor/sim/index.js';
import { EventService } from '../../src/service/event-service.js';
import { loadFleetFile } from '../../src/service/fleet-file.js';
import { serveFetch, type RunningServer } from '../../src/service/http.js';
import { openSqliteStore, type RolloutRecord, type SqliteEventStore } from '../../src/store/index.js';

/** The demo fleet of `intermission up`: three hosts, two sets, the standalone VMs batch-1 and batch-2. */
export const DEMO_FLEET = fileURLToPath(new URL('../../examples/demo-fleet.yaml', import.meta.url));

/** An answer of the control API, as read off the wire. */
export interface ApiAnswer {
  readonly status: number;
  readonly body: Record<string, unknown> & { error?: { code: string; message: string; details?: unknown } };
}

/**
 * The control API served over HTTP on loopback (port 0) in front of a real executor, a SQLite
 * store and simulated hosts with their agents, on virtual time: the test moves time and runs the
 * reconcile passes itself, so nothing depends on how fast the machine is.
 */
export interface ApiWorld {
  readonly time: VirtualTime;
  readonly store: SqliteEventStore;
  readonly events: EventService;
  readonly controller: Controller;
  readonly sim: ReadonlyMap<string, SimHost>;
  readonly operator: string;
  readonly baseUrl: string;
  /** Every live-feed message published, each checked against the documented schema. */
  readonly feed: LiveMessage[];
  /** A tenant token for these VMs, issued through POST /v1/tokens. */
  tenant(name: string, vms: readonly string[]): Promise<string>;
  call(method: 'GET' | 'POST', path: string, token: string, body?: unknown): Promise<ApiAnswer>;
  /** Reconcile passes and event ticks, 250 ms of virtual time apart, until `done` holds. */
  runUntil(done: () => boolean | Promise<boolean>, what: string): Promise<void>;
  /** Runs until the rollout ends (completed, halted or cancelled) and returns it. */
  runToEnd(id: string): Promise<RolloutRecord>;
  close(): Promise<void>;
}

export async function apiWorld(name: string): Promise<ApiWorld> {
  const dir = await mkdtemp(join(tmpdir(), `intermission-${name}-`));
  const time = new VirtualTime();
  const fleetData = await loadFleetFile(DEMO_FLEET);
  const fleet = new FleetIndex(fleetData);
  const store = await openSqliteStore({ path: join(dir, 'intermission.db') });
  const events = await EventService.open({
    fleet,
    store,
    clock: time.clock,
    timing: eventTiming({ scale: timeScale(60) }),
  });
  const sim = createSimFleet({ fleet: fleetData, time, seed: 7 });
  const clients = new Map<string, AgentClient>();
  const agents: HostAgent[] = [];
  for (const [host, simHost] of sim) {
    const agent = await HostAgent.start({ driver: simHost.connect(), journal: new MemoryJournal(), time });
    agents.push(agent);
    const app = createAgentApp({ agent, token: 't' });
    clients.set(
      host,
      new AgentClient({ host, baseUrl: 'http://agent.invalid', token: 't', fetch: (r) => app.fetch(r) }),
    );
  }
  const controller = new Controller({ events, store, agents: clients, time });
  const live = new LiveHub({ now: () => events.now() });
  const unfeed = feedLiveHub({ hub: live, service: events, executor: controller.executor });
  const feed: LiveMessage[] = [];
  const unsubscribe = live.subscribe({
    message: (m) => {
      liveMessageSchema.parse(m);
      feed.push(m);
    },
  });
  const tokens = await TokenAuthority.open(dir);
  const operator = await tokens.issue({ role: 'operator', name: 'op-alice' });
  const server: RunningServer = await serveFetch(
    createControlApp({ service: events, tokens, controller, live }).fetch,
    {
      host: '127.0.0.1',
      port: 0,
    },
  );
  const address = server.address;
  assert.ok('port' in address);
  const baseUrl = `http://127.0.0.1:${address.port}`;

  const call = async (method: 'GET' | 'POST', path: string, token: string, body?: unknown): Promise<ApiAnswer> => {
    const res = await fetch(`${baseUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as ApiAnswer['body'] };
  };
  const runUntil = async (done: () => boolean | Promise<boolean>, what: string): Promise<void> => {
    for (let pass = 0; pass < 20_000; pass++) {
      await controller.executor.reconcileOnce();
      await events.tick();
      if (await done()) return;
      await time.advance(250);
    }
    assert.fail(`never: ${what}`);
  };
  return {
    time,
    store,
    events,
    controller,
    sim,
    operator,
    baseUrl,
    feed,
    tenant: async (tenant, vms) => {
      const res = await call('POST', '/v1/tokens', operator, { tenant, vms });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return String(res.body.token);
    },
    call,
    runUntil,
    runToEnd: async (id) => {
      let rollout: RolloutRecord | undefined;
      await runUntil(async () => {
        rollout = await store.getRollout(id);
        return rollout !== undefined && ['completed', 'halted', 'cancelled'].includes(rollout.status);
      }, `rollout ${id} ends`);
      assert.ok(rollout);
      return rollout;
    },
    close: async () => {
      unsubscribe();
      live.close();
      unfeed();
      await server.close();
      await Promise.all(agents.map((a) => a.close()));
      await events.stop();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
