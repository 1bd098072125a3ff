import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FleetIndex, eventTiming, parseFleet, timeScale, type Fleet } from '../../src/domain/index.js';
import { createControlApp } from '../../src/control/app.js';
import { createMetrics } from '../../src/metrics/index.js';
import { LiveHub, type LiveHubOptions } from '../../src/control/live.js';
import { feedLiveHub } from '../../src/control/live-feed.js';
import { TokenAuthority } from '../../src/control/tokens.js';
import { Controller } from '../../src/controller/controller.js';
import { realTime } from '../../src/hypervisor/sim/index.js';
import { EventService } from '../../src/service/event-service.js';
import { startSimHosts } from '../../src/service/sim-hosts.js';
import { openSqliteStore } from '../../src/store/sqlite/index.js';
import { serveFetch, type RunningServer } from '../../src/service/http.js';
import { httpUrl } from '../../src/service/address.js';

/** Two hosts, one set over two update domains, one standalone VM. */
export function smallFleet(): Fleet {
  return parseFleet({
    hosts: [{ name: 'h1' }, { name: 'h2' }],
    availabilitySets: [{ name: 'web', updateDomains: 2, faultDomains: 2 }],
    vms: [
      { name: 'web_0', host: 'h1', availabilitySet: 'web' },
      { name: 'web_1', host: 'h2', availabilitySet: 'web' },
      { name: 'solo', host: 'h1' },
    ],
  });
}

/** The control app over real parts (SQLite store, simulated hosts, controller, live hub), in-process. */
export interface ControlWorld {
  readonly app: ReturnType<typeof createControlApp>;
  readonly service: EventService;
  readonly controller: Controller;
  readonly live: LiveHub;
  readonly tokens: TokenAuthority;
  readonly operator: string;
  /** Authorization header of the operator. */
  readonly auth: { authorization: string };
  close(): Promise<void>;
}

/** Builds a {@link ControlWorld} in a temp directory; `close` removes it. The reconcile loop is not started. */
export async function controlWorld(options: { readonly live?: LiveHubOptions } = {}): Promise<ControlWorld> {
  const dir = await mkdtemp(join(tmpdir(), 'intermission-control-'));
  const fleet = smallFleet();
  const store = await openSqliteStore({ path: join(dir, 'intermission.db') });
  const service = await EventService.open({
    fleet: new FleetIndex(fleet),
    store,
    clock: { now: () => Date.now() },
    timing: eventTiming({ scale: timeScale(60) }),
  });
  const hosts = await startSimHosts({ fleet, stateDir: dir });
  const controller = new Controller({ events: service, store, agents: hosts.clients, time: realTime() });
  const live = new LiveHub(options.live);
  const unfeed = feedLiveHub({ hub: live, service, executor: controller.executor });
  const tokens = await TokenAuthority.open(dir);
  const operator = await tokens.issue({ role: 'operator', name: 'op' });
  const app = createControlApp({ service, tokens, controller, live, metrics: createMetrics() });
  return {
    app,
    service,
    controller,
    live,
    tokens,
    operator,
    auth: { authorization: `Bearer ${operator}` },
    close: async () => {
      live.close();
      unfeed();
      await controller.stop();
      await hosts.close();
      await service.stop();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Serves a world's control app on a loopback port, as a real client reaches it; `base` is its URL. */
export async function serveOnLoopback(world: ControlWorld): Promise<{ server: RunningServer; base: string }> {
  const server = await serveFetch(world.app.fetch, { host: '127.0.0.1', port: 0 });
  return { server, base: httpUrl(server.address) };
}
