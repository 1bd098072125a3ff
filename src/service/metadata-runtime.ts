import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import {
  FleetIndex,
  IntermissionError,
  eventTiming,
  type Clock,
  type EventTimingOptions,
  type Fleet,
} from '../domain/index.js';
import { createControlApp, type InternalFailure, type MetricsAuth } from '../control/app.js';
import { controlFileSchema } from '../control/client.js';
import { LiveHub } from '../control/live.js';
import { feedLiveHub } from '../control/live-feed.js';
import { DEFAULT_OPERATOR_TTL_MS, TokenAuthority, writeFileAtomic } from '../control/tokens.js';
import { DashboardSessions } from '../control/sessions.js';
import { createMetadataApp, listenMetadata, onMetadataError, openAttestationKey } from '../imds/index.js';
import { createMetrics } from '../metrics/index.js';
import { formatAddress, type ListenAddress } from './address.js';
import { ensurePrivateDir, restrictMode } from './private-files.js';
import { DEFAULT_STORE_LOCATION, openStoreAt, type StoreLocation } from './store-choice.js';
import { EventService } from './event-service.js';
import { serveFetch } from './http.js';
import type { HttpLimits } from './http-limits.js';
import { logEventService, logExecutor, type Logger } from './logging.js';
import type { HostAgents } from './sim-hosts.js';
import { Controller } from '../controller/controller.js';
import { LeaderLease, uniqueHolder, type LeaderLeaseOptions } from '../controller/leader-lease.js';
import { realTime } from '../hypervisor/sim/index.js';
import { systemClock } from './system-clock.js';

export interface MetadataBinding {
  readonly vm: string;
  readonly address: ListenAddress;
}

export interface MetadataRuntimeOptions {
  readonly fleet: Fleet;
  /** Directory for the SQLite store, tokens and control.json. */
  readonly stateDir: string;
  /**
   * Where events, incarnations and rollouts live: SQLite in `stateDir` (the default), or a
   * PostgreSQL database (see store-choice.ts). Tokens and control.json stay in `stateDir`.
   */
  readonly store?: StoreLocation;
  readonly bindings: readonly MetadataBinding[];
  readonly control: ListenAddress;
  readonly timing?: EventTimingOptions;
  readonly clock?: Clock;
  readonly logger?: Logger;
  /**
   * The hosts' agents. With them the runtime also runs the rollout controller (the embedded default
   * passes simulated hosts); without them it serves events and drills only.
   */
  readonly hosts?: (ctx: { stateDir: string }) => Promise<HostAgents>;
  /** Who may scrape GET /metrics of the control API: `none` (default) or `token`. See docs/security.md. */
  readonly metricsAuth?: MetricsAuth;
  /**
   * Limits of the listeners (docs/limits.md): figures not given are `CONTROL_HTTP_LIMITS` for the
   * control API and `METADATA_HTTP_LIMITS` for each VM's metadata listener.
   */
  readonly httpLimits?: { readonly control?: Partial<HttpLimits>; readonly metadata?: Partial<HttpLimits> };
  /**
   * The leader lease of the controller (see leader-lease.ts): its timings, and the holder name. The
   * controller always takes the lease: on PostgreSQL replicas compete for it (holder unique to the
   * process by default); on SQLite, one process's store, the holder is fixed (`embedded`), so that a
   * restart renews the lease at once with the same epoch instead of waiting for its ttl.
   */
  readonly lease?: Partial<Pick<LeaderLeaseOptions, 'holder' | 'ttlMs' | 'intervalMs' | 'marginMs'>>;
  /** Live streams (GET /v1/stream) one token may hold at once; default 8. */
  readonly maxLiveStreamsPerToken?: number;
}

export interface MetadataRuntime {
  readonly service: EventService;
  readonly controller: Controller | undefined;
  /** The live feed of the control API (GET /v1/stream). */
  readonly live: LiveHub;
  readonly hosts: HostAgents | undefined;
  readonly metadata: readonly { vm: string; address: ListenAddress }[];
  readonly control: ListenAddress;
  readonly controlFile: string;
  /**
   * A one-time dashboard sign-in path (`/#code=…`, valid for a few minutes, single use) for the
   * operator token of control.json: append it to the control API's URL.
   */
  signInPath(): string;
  /** Stops listeners and ticks, then closes the store. Idempotent. */
  close(): Promise<void>;
}

/**
 * Composes the event engine, its store, the metadata listeners (one per VM) and the control API.
 * Events and incarnations live in `<state>/intermission.db` (or the PostgreSQL database of
 * `options.store`) and survive restarts.
 */
export async function startMetadataRuntime(options: MetadataRuntimeOptions): Promise<MetadataRuntime> {
  const index = new FleetIndex(options.fleet);
  for (const b of options.bindings) index.requireVm(b.vm);
  const seen = new Set<string>();
  for (const b of options.bindings) {
    if ('port' in b.address && b.address.port === 0) continue; // port 0: each binding gets its own port
    const key = formatAddress(b.address);
    if (seen.has(key)) throw new IntermissionError('INVALID_INPUT', `address ${key} is bound twice`);
    seen.add(key);
  }
  const stateDir = resolve(options.stateDir);
  // Enforced on every start, not only on creation: a state directory whose mode was loosened since
  // (or one planted by another user) is repaired or refused before anything is read from it.
  await ensurePrivateDir(stateDir);
  const store = await openStoreAt(options.store ?? DEFAULT_STORE_LOCATION, stateDir);
  // A migration that repaired data says what it repaired (e.g. events retired for unreadable times).
  for (const r of store.migration.reports) options.logger?.warn({ migration: r.version, rows: r.rows }, r.summary);
  const cleanups: (() => Promise<void>)[] = [() => store.close()];
  const closeAll = async (): Promise<void> => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  };
  try {
    const service = await EventService.open({
      fleet: index,
      store,
      clock: options.clock ?? systemClock,
      timing: eventTiming(options.timing),
    });
    if (options.logger) logEventService(service, options.logger);
    cleanups.push(() => service.stop());

    let hosts: HostAgents | undefined;
    let controller: Controller | undefined;
    if (options.hosts) {
      hosts = await options.hosts({ stateDir });
      const h = hosts;
      cleanups.push(() => h.close());
      const lease = new LeaderLease({
        store,
        holder: options.lease?.holder ?? (store.capabilities.multiProcess ? uniqueHolder() : 'embedded'),
        // One process owns an SQLite store, so nobody waits to take over: a long lease keeps a write
        // that holds the single connection for seconds (a region's plan) from costing the lead.
        ...(options.lease?.ttlMs !== undefined
          ? { ttlMs: options.lease.ttlMs }
          : store.capabilities.multiProcess
            ? {}
            : { ttlMs: EMBEDDED_LEASE_TTL_MS }),
        ...(options.lease?.intervalMs === undefined ? {} : { intervalMs: options.lease.intervalMs }),
        ...(options.lease?.marginMs === undefined ? {} : { marginMs: options.lease.marginMs }),
      });
      if (options.logger) logLease(lease, options.logger);
      // Every write of this process is the leader's, checked in its own transaction (see fenceWrites).
      store.fenceWrites({ epoch: () => lease.epoch });
      controller = new Controller({
        events: service,
        store,
        agents: hosts.clients,
        time: realTime({ clock: options.clock ?? systemClock }),
        lease,
      });
      if (options.logger) logExecutor(controller, options.logger);
      const c = controller;
      cleanups.push(() => c.stop());
      // Know this replica's role before serving: a lone controller leads from its first pass.
      await lease.tickOnce();
    }

    const clock = options.clock ?? systemClock;
    const tokens = await TokenAuthority.open(stateDir, { now: () => clock.now() });
    const controlFile = join(stateDir, 'control.json');
    const operator = await operatorTokenFor(tokens, controlFile);
    const operatorToken = operator.token;
    // The operator token of control.json lives DEFAULT_OPERATOR_TTL_MS from the last start, and is
    // renewed while the server runs (checked hourly), so that only a copy taken away expires.
    const renewal = setInterval(() => {
      const holder = tokens.holderByName(operator.name);
      if (holder && holder.expiresAt - clock.now() < DEFAULT_OPERATOR_TTL_MS / 2) {
        tokens.renew(operator.name, DEFAULT_OPERATOR_TTL_MS).catch((error: unknown) => {
          options.logger?.warn(`renewing the operator token failed: ${(error as Error).message}`);
        });
      }
    }, OPERATOR_RENEWAL_CHECK_MS);
    renewal.unref();
    cleanups.push(() => Promise.resolve(clearInterval(renewal)));
    const sessions = new DashboardSessions({ tokens, now: () => clock.now() });
    // Signs /metadata/attested/document; created once in <state>/attestation, kept across restarts.
    const attestation = await openAttestationKey({ stateDir });
    options.logger?.info({ fingerprint256: attestation.fingerprint256 }, 'attestation key ready');
    const metrics = createMetrics({ processMetrics: true });
    metrics.observeEventService(service);
    if (controller) {
      const rollouts = await store.listRollouts();
      const steps = (
        await Promise.all(rollouts.filter((r) => r.status !== 'completed').map((r) => store.listSteps(r.id)))
      ).flat();
      metrics.observeExecutor(controller.executor, { restore: { rollouts, steps } });
      if (controller.lease) metrics.observeLease(controller.lease);
    }
    for (const agent of hosts?.agents.values() ?? []) metrics.observeAgent(agent);
    const live = new LiveHub({
      now: () => service.now(),
      ...(options.maxLiveStreamsPerToken === undefined
        ? {}
        : { maxStreamsPerPrincipal: options.maxLiveStreamsPerToken }),
    });
    const unfeed = feedLiveHub({ hub: live, service, ...(controller ? { executor: controller.executor } : {}) });
    cleanups.push(() => Promise.resolve(unfeed()));
    const control = await serveFetch(
      createControlApp({
        service,
        tokens,
        live,
        metrics,
        attestation,
        sessions,
        ...(options.metricsAuth ? { metricsAuth: options.metricsAuth } : {}),
        ...(controller ? { controller } : {}),
        // The client sees a generic message and the reference; the detail goes to the log.
        ...(options.logger
          ? {
              onInternalError: (f: InternalFailure) =>
                options.logger?.error(
                  { reference: f.reference, method: f.method, path: f.path, err: f.error },
                  'control API request failed',
                ),
            }
          : {}),
      }).fetch,
      options.control,
      options.httpLimits?.control ? { limits: options.httpLimits.control } : {},
    );
    cleanups.push(() => control.close());
    cleanups.push(() => Promise.resolve(live.close())); // runs first: open streams end, so the server can close
    await writeFileAtomic(
      controlFile,
      JSON.stringify({ address: formatAddress(control.address), token: operatorToken, pid: process.pid }, null, 2) +
        '\n',
    );

    // A failure on our side reaches the guest as a generic body; its detail goes to the log.
    const logFailure = onMetadataError((f) =>
      options.logger?.error(
        { vm: f.vm, method: f.method, path: f.path, code: f.error.code, err: f.error },
        'metadata request failed',
      ),
    );
    const metadataApp = createMetadataApp({
      backend: service,
      attestation,
      onEvent: (name, payload) => {
        metrics.metadataListener(name, payload);
        logFailure(name, payload);
      },
    });
    const listeners = await listenMetadata({
      app: metadataApp,
      bindings: options.bindings,
      ...(options.httpLimits?.metadata ? { limits: options.httpLimits.metadata } : {}),
    });
    cleanups.push(() => listeners.close());
    // Unix sockets get the umask's mode when bound; only this user may connect to them.
    for (const a of [control.address, ...listeners.addresses.map((l) => l.address)]) {
      if ('path' in a) await restrictMode(a.path);
    }
    // Under a lease the controller runs the event ticks while it leads; without hosts nothing else does.
    if (controller) controller.start();
    else service.startTicking();

    let closing: Promise<void> | undefined;
    return {
      service,
      controller,
      live,
      hosts,
      metadata: listeners.addresses,
      control: control.address,
      controlFile,
      signInPath: () => `/#code=${sessions.issueCode(operator.name).code}`,
      close: () => (closing ??= closeAll()),
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

/** The lease of a controller alone on its SQLite store (see where it is used). */
const EMBEDDED_LEASE_TTL_MS = 60_000;

/** Logs what the leader lease announces. */
function logLease(lease: LeaderLease, log: Logger): void {
  lease.on('lease:acquired', (i) => log.info(i, 'leading: leader lease acquired'));
  lease.on('lease:lost', (i) => log.warn(i, 'no longer leading'));
  lease.on('lease:error', (e) => log.warn({ code: e.code, err: e.message }, 'leader lease pass failed'));
}

/** How often the running server checks whether the operator token needs renewing. */
const OPERATOR_RENEWAL_CHECK_MS = 60 * 60 * 1000;

/**
 * The operator token: the one in control.json while it is still valid (so scripts keep working
 * across restarts; its expiry is renewed), else a new one, generated on first start or after it
 * expired or was revoked.
 */
async function operatorTokenFor(tokens: TokenAuthority, controlFile: string): Promise<{ token: string; name: string }> {
  try {
    const previous = controlFileSchema.parse(JSON.parse(await readFile(controlFile, 'utf8')));
    const holder = tokens.identify(previous.token);
    if (holder?.role === 'operator' && (await tokens.renew(holder.name, DEFAULT_OPERATOR_TTL_MS))) {
      return { token: previous.token, name: holder.name };
    }
  } catch {
    // No usable control.json: issue a new token below.
  }
  const name = `operator-${Date.now().toString(36)}`;
  return { token: await tokens.issue({ role: 'operator', name }), name };
}
