import type { ScopeDocument, ScopeId } from '../../domain/index.js';
import { renderScheduledEvents } from '../scheduled-events.js';
import { SCHEDULED_EVENTS_API_VERSIONS, type ScheduledEventsApiVersion } from '../versions.js';
import { fnv1aHex } from './etag.js';

/** A scheduled-events body rendered once and served many times, with its response headers. */
export interface RenderedDocument {
  readonly body: Uint8Array;
  readonly etag: string;
  /** Headers of the 200: content type, length and ETag. Shared by every response: never mutate. */
  readonly headers: Readonly<Record<string, string>>;
  /** Headers of a 304 for this document. */
  readonly notModifiedHeaders: Readonly<Record<string, string>>;
}

/** What the service remembers of one scope: its enablement and its rendered documents. */
export interface ScopeState {
  readonly scope: ScopeId;
  /** Subtracted from the domain incarnation to give the one shown; 0 until a re-enable. */
  base: number;
  /** Hash of scope and base, part of every ETag so that no tag survives a scope change or reset. */
  tag: string;
  /** Time of the last scheduled-events request of any VM of the scope (backend clock). */
  lastRequestAt: number;
  /** Pending while the scope is being enabled: requests wait for it (the first-call delay). */
  ready: Promise<void> | undefined;
  /** The domain incarnation and base the `rendered` cache belongs to. */
  renderedIncarnation: number;
  renderedBase: number;
  /** Rendered documents by index in {@link SCHEDULED_EVENTS_API_VERSIONS}. */
  rendered: (RenderedDocument | undefined)[];
}

export interface ScopeDocumentsSettings {
  /** How long the first request of a scope waits (Azure: up to 120 s); 0 answers at once. */
  readonly enablementDelayMs: number;
  /** Idle time after which a scope is disabled and its shown incarnation restarts at 1. */
  readonly disableAfterIdleMs: number;
  /** Called when a scope is enabled; `reset` on a re-enable after idling. */
  readonly onEnabled: (vm: string, scope: ScopeId, reset: boolean) => void;
  /** Waits `ms` milliseconds (the enablement delay). */
  readonly sleep: (ms: number) => Promise<void>;
}

const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';
const VERSION_INDEX: ReadonlyMap<string, number> = new Map(SCHEDULED_EVENTS_API_VERSIONS.map((v, i) => [v, i]));
const encoder = new TextEncoder();

/**
 * Per-scope enablement and the render cache of the hot path. A repeated GET of an unchanged
 * document finds its body and ETag here and does no JSON work: the key is (scope, incarnation,
 * api-version), which is sound because a scope's incarnation changes with every change of its
 * document (a domain invariant).
 *
 * Enablement follows Azure: a scope is enabled by its first request, which may be delayed, and is
 * disabled after `disableAfterIdleMs` without requests; on re-enable the incarnation it shows
 * starts again at 1. The first enable after our own start keeps the domain's incarnation as it is,
 * so a restart of the service never sends pollers' incarnations backwards.
 */
export class ScopeDocuments {
  readonly #settings: ScopeDocumentsSettings;
  readonly #states = new Map<ScopeId, ScopeState>();

  constructor(settings: ScopeDocumentsSettings) {
    this.#settings = settings;
  }

  /**
   * Notes a GET of `doc` by `vm` at `now`, enabling the scope when it is new or was idle. When the
   * returned state has `ready` set, the answer must wait for it.
   */
  touch(vm: string, doc: ScopeDocument, now: number): ScopeState {
    let state = this.#states.get(doc.scope);
    if (state === undefined) {
      state = {
        scope: doc.scope,
        base: 0,
        tag: fnv1aHex(`${doc.scope}#0`),
        lastRequestAt: now,
        ready: undefined,
        renderedIncarnation: -1,
        renderedBase: -1,
        rendered: [],
      };
      this.#states.set(doc.scope, state);
      this.#enable(vm, state, false);
    } else if (now - state.lastRequestAt >= this.#settings.disableAfterIdleMs) {
      state.lastRequestAt = now;
      this.#setBase(state, Math.max(0, doc.incarnation - 1));
      this.#enable(vm, state, true);
    } else if (now > state.lastRequestAt) {
      state.lastRequestAt = now;
    }
    return state;
  }

  /** Notes an approval: keeps an enabled scope enabled; never enables one. */
  keepAlive(scope: ScopeId, now: number): void {
    const state = this.#states.get(scope);
    if (state && now > state.lastRequestAt && now - state.lastRequestAt < this.#settings.disableAfterIdleMs) {
      state.lastRequestAt = now;
    }
  }

  /** The rendered document for `version`, from the cache when the scope has not changed. */
  render(state: ScopeState, doc: ScopeDocument, version: ScheduledEventsApiVersion): RenderedDocument {
    // The domain never lowers an incarnation; should a backend do it anyway, the shown one stays >= 1.
    if (doc.incarnation - state.base < 1) this.#setBase(state, doc.incarnation - 1);
    if (state.renderedIncarnation !== doc.incarnation || state.renderedBase !== state.base) {
      state.renderedIncarnation = doc.incarnation;
      state.renderedBase = state.base;
      state.rendered = [];
    }
    const index = VERSION_INDEX.get(version) ?? 0;
    const cached = state.rendered[index];
    if (cached !== undefined) return cached;
    const incarnation = doc.incarnation - state.base;
    const body = encoder.encode(renderScheduledEvents(doc, version, { incarnation }));
    const etag = `"${incarnation}-${version.replaceAll('-', '')}-${state.tag}"`;
    const rendered: RenderedDocument = {
      body,
      etag,
      headers: Object.freeze({ 'content-type': JSON_CONTENT_TYPE, 'content-length': String(body.byteLength), etag }),
      notModifiedHeaders: Object.freeze({ etag }),
    };
    state.rendered[index] = rendered;
    return rendered;
  }

  #setBase(state: ScopeState, base: number): void {
    state.base = base;
    state.tag = fnv1aHex(`${state.scope}#${base}`);
  }

  #enable(vm: string, state: ScopeState, reset: boolean): void {
    const delay = this.#settings.enablementDelayMs;
    this.#settings.onEnabled(vm, state.scope, reset);
    if (delay <= 0) {
      state.ready = undefined;
      return;
    }
    const ready = this.#settings.sleep(delay).then(() => {
      if (state.ready === ready) state.ready = undefined;
    });
    state.ready = ready;
  }
}
