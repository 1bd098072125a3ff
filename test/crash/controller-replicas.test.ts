/**
 * Several controllers as real processes (issue 14): three `intermission controller` replicas on one
 * PostgreSQL over four `intermission agent` processes (simulated hosts). During a four-wave host
 * patch the leader is killed (SIGKILL), then the next leader is frozen (SIGSTOP) and later thawed
 * (SIGCONT). Each time another replica leads within 10 s; the thawed one stops acting at once; the
 * rollout completes with every host step run once and every event published once; a standby
 * refuses writes with 503 NOT_LEADER. Needs dist/ (built on demand) and PostgreSQL.
 */
import { strict as assert } from 'node:assert';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { postgresSkip, startPostgresCluster, type PostgresCluster } from '../store/postgres-harness.js';
import { Proc, ensureBuilt, sleep } from './harness.js';
import { trackDir } from './proc.js';

const HOSTS = ['h1', 'h2', 'h3', 'h4'] as const;
const TARGET_MS = 10_000;

const cluster: PostgresCluster | undefined = postgresSkip === undefined ? await startPostgresCluster() : undefined;
before(
  async () => {
    if (postgresSkip === undefined) await ensureBuilt();
  },
  { timeout: 300_000 },
);
const procs: Proc[] = [];
after(async () => {
  await Promise.allSettled(procs.map((p) => p.kill('SIGKILL')));
  await cluster?.stop();
});

interface LeaseLine {
  readonly kind: 'leading' | 'lost';
  readonly epoch: number;
  readonly at: number;
}

/** What the control API answers. */
interface Answer {
  readonly status: number;
  readonly json: {
    readonly error?: { readonly code?: string };
    readonly rollout?: { readonly status?: string; readonly wave?: number };
    readonly steps?: readonly { readonly status: string }[];
  } | null;
}

/** The lease lines a controller logged: `leading` with the epoch, or `lost`. */
function leaseLog(p: Proc): LeaseLine[] {
  return p.lines().flatMap((line): LeaseLine[] => {
    const json = line.replace(/^(out|err): /, '');
    if (!json.startsWith('{')) return [];
    const entry = JSON.parse(json) as { msg?: string; epoch?: number; time?: number };
    if (entry.msg === 'leading: leader lease acquired')
      return [{ kind: 'leading' as const, epoch: entry.epoch ?? 0, at: entry.time ?? 0 }];
    if (entry.msg === 'no longer leading')
      return [{ kind: 'lost' as const, epoch: entry.epoch ?? 0, at: entry.time ?? 0 }];
    return [];
  });
}

function leads(p: Proc): boolean {
  return p.alive && leaseLog(p).at(-1)?.kind === 'leading';
}

describe('several controllers as processes on one PostgreSQL', { skip: postgresSkip ?? false }, () => {
  it(
    'SIGKILL, then SIGSTOP of the leader mid-rollout: another leads within 10 s each time; steps and events once',
    { timeout: 240_000 },
    async (t) => {
      if (!cluster) throw new Error('PostgreSQL is not running');
      const url = await cluster.createDatabase();
      const dir = await mkdtemp(join(tmpdir(), 'intermission-replicas-'));
      trackDir(dir);
      const fleetFile = join(dir, 'fleet.yaml');
      await writeFile(
        fleetFile,
        [
          `hosts: [${HOSTS.map((h) => `{name: ${h}}`).join(', ')}]`,
          'availabilitySets: [{name: web, updateDomains: 4}]',
          'vms:',
          ...HOSTS.map((h, i) => `  - {name: web_${i}, host: ${h}, availabilitySet: web}`),
        ].join('\n') + '\n',
      );
      const tokenFile = join(dir, 'agent-token');
      const log = join(dir, 'log');
      const agents: Proc[] = [];
      const addresses: string[] = [];
      for (const h of HOSTS) {
        const agent = new Proc(
          `agent-${h}`,
          [
            'agent',
            '--fleet',
            fleetFile,
            '--host',
            h,
            '--listen',
            '127.0.0.1:0',
            '--state',
            join(dir, `agent-${h}`),
            '--token-file',
            tokenFile,
          ],
          log,
        );
        procs.push(agent);
        agents.push(agent);
        addresses.push(`${h}=${(await agent.waitForLine(/agent listening .*address=(\S+)/))[1]}`);
      }
      const controllers: Proc[] = [];
      for (const name of ['c1', 'c2', 'c3']) {
        const c = new Proc(
          name,
          [
            'controller',
            '--fleet',
            fleetFile,
            '--store',
            url,
            '--state',
            join(dir, name),
            '--token-file',
            tokenFile,
            '--control',
            '127.0.0.1:0',
            '--time-scale',
            '300',
            '--agent',
            ...addresses,
          ],
          log,
        );
        procs.push(c);
        controllers.push(c);
        await c.waitForLine(/control listening/);
      }
      const api = async (c: Proc, method: string, path: string, body?: unknown): Promise<Answer> => {
        const { address, token } = JSON.parse(await readFile(join(dir, c.name, 'control.json'), 'utf8')) as {
          address: string;
          token: string;
        };
        const r = await fetch(`http://${address}/v1${path}`, {
          method,
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
        return { status: r.status, json: (await r.json().catch(() => null)) as Answer['json'] };
      };
      const leader = async (not?: Proc): Promise<Proc> => {
        const deadline = Date.now() + 30_000;
        for (;;) {
          const found = controllers.filter((c) => c !== not && leads(c));
          assert.ok(found.length <= 1, `two replicas lead: ${found.map((c) => c.name).join(', ')}`);
          if (found[0]) return found[0];
          assert.ok(Date.now() < deadline, 'nobody leads');
          await sleep(50);
        }
      };
      const waitWave = async (c: Proc, wave: number): Promise<void> => {
        for (;;) {
          const d = await api(c, 'GET', '/rollouts/p1');
          if ((d.json?.rollout?.wave ?? 0) >= wave || d.json?.rollout?.status === 'completed') return;
          await sleep(100);
        }
      };
      try {
        const first = await leader();
        const standby = controllers.find((c) => c !== first) as Proc;
        const refused = await api(standby, 'POST', '/rollouts', {
          update: { id: 'x', kind: 'host-patch', expectedApplyMs: '1s' },
        });
        assert.deepEqual([refused.status, refused.json?.error?.code], [503, 'NOT_LEADER']);
        const applied = await api(first, 'POST', '/rollouts', {
          update: { id: 'p1', kind: 'host-patch', expectedApplyMs: '1s' },
          policy: { settleMs: 0 },
        });
        assert.equal(applied.status, 201, JSON.stringify(applied.json));
        assert.equal((await api(standby, 'GET', '/rollouts/p1')).status, 200, 'a standby serves reads');
        const health = async (c: Proc): Promise<unknown> => {
          const { address, token } = JSON.parse(await readFile(join(dir, c.name, 'control.json'), 'utf8')) as {
            address: string;
            token: string;
          };
          const r = await fetch(`http://${address}/v1/health`, { headers: { authorization: `Bearer ${token}` } });
          return ((await r.json()) as { lease?: unknown }).lease;
        };
        assert.deepEqual(await health(standby), {
          holder: ((await health(standby)) as { holder: string }).holder,
          leading: false,
          epoch: null,
        });
        assert.equal(((await health(first)) as { leading: boolean; epoch: number }).epoch, 1);

        await waitWave(first, 1);
        const killedAt = Date.now();
        await first.kill('SIGKILL');
        const second = await leader(first);
        const killTakeover = (leaseLog(second).at(-1)?.at ?? Infinity) - killedAt;
        t.diagnostic(`SIGKILL ${first.name}: ${second.name} led after ${killTakeover} ms`);
        assert.ok(killTakeover < TARGET_MS, `${killTakeover} ms`);

        await waitWave(second, 2);
        const stoppedAt = Date.now();
        second.signal('SIGSTOP');
        const third = await leader(second);
        const stopTakeover = (leaseLog(third).at(-1)?.at ?? Infinity) - stoppedAt;
        t.diagnostic(`SIGSTOP ${second.name}: ${third.name} led after ${stopTakeover} ms`);
        assert.ok(stopTakeover < TARGET_MS, `${stopTakeover} ms`);
        await sleep(1000);
        second.signal('SIGCONT');

        const deadline = Date.now() + 60_000;
        let detail: Answer;
        for (;;) {
          detail = await api(third, 'GET', '/rollouts/p1');
          if (detail.json?.rollout?.status === 'completed' || Date.now() > deadline) break;
          await sleep(200);
        }
        assert.equal(detail.json?.rollout?.status, 'completed', JSON.stringify(detail.json?.rollout));
        assert.deepEqual(
          (detail.json?.steps ?? []).map((s) => s.status),
          ['succeeded', 'succeeded', 'succeeded', 'succeeded'],
        );
        // The thawed leader noticed at once that its lease had run out, and never led again.
        await sleep(1500);
        const thawed = leaseLog(second);
        assert.deepEqual(
          thawed.map((e) => e.kind),
          ['leading', 'lost'],
          JSON.stringify(thawed),
        );
        // Every host step ran once; every event was published once.
        for (const agent of agents) {
          assert.equal(agent.lines().filter((l) => l.includes('"msg":"host step started"')).length, 1, agent.name);
        }
        const [events] = await cluster.query<{ n: number; d: number }>(
          'SELECT count(*)::int AS n, count(DISTINCT event_id)::int AS d FROM events',
          [],
          new URL(url).pathname.slice(1),
        );
        assert.deepEqual(events, { n: 4, d: 4 });
        const epochs = await Promise.all(
          HOSTS.map(
            async (h) =>
              (JSON.parse(await readFile(join(dir, `agent-${h}`, 'agents', `${h}.epoch`), 'utf8')) as { epoch: number })
                .epoch,
          ),
        );
        t.diagnostic(`highest epochs at the agents: ${epochs.join(' ')}`);
        assert.equal(Math.max(...epochs), 3);
      } finally {
        await Promise.allSettled(procs.map((p) => p.kill('SIGKILL')));
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});
