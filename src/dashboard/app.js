// The operator console: sign-in (a one-time link, or the operator token once; then a session cookie), then the fleet, rollouts, plan, event log
// and pauses, kept live by the control API's stream (no reloads).
import { render } from 'preact';
import { useCallback, useEffect, useReducer, useRef, useState } from 'preact/hooks';
import { ApiError, api, connectStream, endSession, startSession, takeCodeFromUrl } from './api.js';
import { html } from './components.js';
import { clock } from './format.js';
import { initialState, reduce, rolloutsNewestFirst } from './store.js';
import { EventsView } from './views/events.js';
import { FleetView } from './views/fleet.js';
import { PausesView } from './views/pauses.js';
import { PlanView } from './views/plan.js';
import { RolloutsView } from './views/rollouts.js';

/** @typedef {import('./types.js').State} State */
/** @typedef {import('./types.js').Action} Action */

const TABS = /** @type {const} */ ([
  { id: 'fleet', label: 'Fleet' },
  { id: 'rollouts', label: 'Rollouts' },
  { id: 'plan', label: 'Plan' },
  { id: 'events', label: 'Events' },
  { id: 'pauses', label: 'Pauses' },
]);
/** @typedef {(typeof TABS)[number]['id']} Tab */

/** Rollout details fetched at start: the newest ones, where operators look. */
const DETAILS_AT_START = 10;

/**
 * Loads what the views need; called at sign-in and whenever the stream (re)connects, so that
 * nothing missed while disconnected stays missing.
 * @param {(action: Action) => void} dispatch
 */
async function loadAll(dispatch) {
  const [health, fleet, events, rollouts] = await Promise.all([
    api('/v1/health'),
    api('/v1/fleet'),
    api('/v1/events?all=true'),
    api('/v1/rollouts'),
  ]);
  const h = /** @type {{ now: string, timeScale: number }} */ (health);
  dispatch({ type: 'health', now: h.now, timeScale: h.timeScale });
  dispatch({ type: 'fleet', fleet: /** @type {import('./types.js').FleetView} */ (fleet) });
  dispatch({ type: 'events', events: /** @type {{ events: import('./types.js').EventView[] }} */ (events).events });
  const list = /** @type {{ rollouts: import('./types.js').RolloutSummary[] }} */ (rollouts).rollouts;
  dispatch({ type: 'rollouts', rollouts: list });
  const newest = [...list].sort((a, b) => (a.createdAt < b.createdAt ? 1 : -1)).slice(0, DETAILS_AT_START);
  await Promise.all(newest.map((r) => loadDetail(dispatch, r.id)));
}

/**
 * @param {(action: Action) => void} dispatch
 * @param {string} id
 */
async function loadDetail(dispatch, id) {
  /** @type {{ rollout: import('./types.js').RolloutSummary, plan?: import('./types.js').Plan, steps: import('./types.js').StepRecord[], operations: import('./types.js').Operation[] }} */
  const d = await api(`/v1/rollouts/${encodeURIComponent(id)}?plan=true`);
  dispatch({ type: 'detail', rollout: d.rollout, plan: d.plan ?? null, steps: d.steps, operations: d.operations });
}

/**
 * The sign-in card.
 * @param {{ onToken: (token: string) => Promise<void>, message: string | null }} props
 */
function Login({ onToken, message }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState(message);
  const [busy, setBusy] = useState(false);
  // A message that arrives after the card is shown (a refused sign-in link) replaces the last one.
  useEffect(() => setError(message), [message]);
  /** @param {Event} e */
  const submit = (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    onToken(token.trim())
      .catch((/** @type {unknown} */ err) => setError(err instanceof Error ? err.message : String(err)))
      .finally(() => setBusy(false));
  };
  return html`<main class="login">
    <form class="card login-card" onSubmit=${submit} data-testid="login">
      <div class="brand brand-large"><span class="logo" aria-hidden="true"></span>Intermission</div>
      <h1>Operator console</h1>
      <p class="muted">
        Open the one-time link that <code>intermission dashboard</code> (or <code>intermission up</code>) prints, or
        paste the operator token from <code>control.json</code> in the state directory.
      </p>
      <label
        >Operator token
        <input
          class="input"
          type="password"
          name="token"
          autocomplete="off"
          value=${token}
          onInput=${(/** @type {Event} */ e) => setToken(/** @type {HTMLInputElement} */ (e.currentTarget).value)}
          required
        />
      </label>
      ${error ? html`<p class="error-text" role="alert" data-testid="login-error">${error}</p>` : null}
      <button class="btn btn-primary btn-block" type="submit" disabled=${busy}>Sign in</button>
      <p class="muted small">The page keeps no token: signing in opens a session held in an HttpOnly cookie.</p>
    </form>
  </main>`;
}

/**
 * Opens a session with a one-time code or a pasted token: operators only.
 * @param {{ code: string } | { token: string }} proof
 * @returns {Promise<import('./types.js').Principal>}
 */
async function signIn(proof) {
  /** @type {import('./types.js').Principal} */
  let principal;
  try {
    principal = await startSession(proof);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      if (/tenant/.test(error.message)) throw new Error('This console needs an operator token, not a tenant token.');
      throw new Error(
        'code' in proof
          ? 'This sign-in link is not valid (used already, or expired).'
          : 'This token is not valid here.',
      );
    }
    throw error;
  }
  return principal;
}

/**
 * The principal of the session this browser holds already (a reload), or null.
 * @returns {Promise<import('./types.js').Principal | null>}
 */
async function currentSession() {
  try {
    /** @type {{ principal: import('./types.js').Principal | null }} */
    const session = await api('/v1/sessions');
    return session.principal?.role === 'operator' ? session.principal : null;
  } catch {
    return null;
  }
}

/** The tab in the address (`#rollouts`), so that a reload or a shared link keeps the page. */
function tabFromHash() {
  const id = location.hash.replace(/^#/, '');
  return /** @type {Tab} */ (TABS.find((t) => t.id === id)?.id ?? 'fleet');
}

function App() {
  const [state, dispatch] = useReducer(reduce, initialState);
  const [tab, setTabState] = useState(tabFromHash);
  const [selected, setSelected] = useState(/** @type {string | null} */ (null));
  const [loginMessage, setLoginMessage] = useState(/** @type {string | null} */ (null));
  const [now, setNow] = useState(Date.now());
  const known = useRef(new Set(/** @type {string[]} */ ([])));

  /** @param {Tab} t */
  const setTab = (t) => {
    setTabState(t);
    history.replaceState(null, '', `#${t}`);
  };

  const signOut = useCallback((/** @type {string | null} */ message) => {
    endSession().catch(() => undefined);
    setLoginMessage(message);
    dispatch({ type: 'reset' });
  }, []);

  // Sign in from the URL (#code=…, once), else resume the session this browser holds.
  useEffect(() => {
    const code = takeCodeFromUrl();
    (code ? signIn({ code }) : currentSession()).then(
      (principal) => {
        if (principal) dispatch({ type: 'principal', principal });
      },
      (/** @type {unknown} */ error) => signOut(error instanceof Error ? error.message : String(error)),
    );
  }, [signOut]);

  // Once signed in: the stream, and a full load at every (re)connection.
  const signedIn = state.principal !== null;
  useEffect(() => {
    if (!signedIn) return undefined;
    const close = connectStream({
      message: (message) => {
        dispatch({ type: 'live', message });
        if (message.type === 'hello') {
          loadAll(dispatch).catch((/** @type {unknown} */ e) => {
            if (e instanceof ApiError && e.status === 401) signOut('The session has ended; sign in again.');
            else console.error('load failed', e);
          });
        }
        if (message.type === 'rollout:created' && !known.current.has(message.data.id)) {
          known.current.add(message.data.id);
          loadDetail(dispatch, message.data.id).catch((/** @type {unknown} */ e) => console.error(e));
        }
      },
      state: (connection) => dispatch({ type: 'connection', connection }),
      unauthorized: () => signOut('The session has ended; sign in again.'),
    });
    return close;
  }, [signedIn, signOut]);

  // A ticking clock for countdowns (server time).
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, []);

  // A pasted #code= link in this tab signs in with it; any other hash picks a tab.
  useEffect(() => {
    const onHash = () => {
      const code = takeCodeFromUrl();
      if (!code) return setTabState(tabFromHash());
      signIn({ code }).then(
        (principal) => dispatch({ type: 'principal', principal }),
        (/** @type {unknown} */ error) => signOut(error instanceof Error ? error.message : String(error)),
      );
    };
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, [signOut]);

  if (!state.principal) {
    return html`<${Login}
      message=${loginMessage}
      onToken=${async (/** @type {string} */ token) => {
        const principal = await signIn({ token });
        setLoginMessage(null);
        dispatch({ type: 'principal', principal });
      }}
    />`;
  }
  const serverNow = now + state.clockSkewMs;
  const running = rolloutsNewestFirst(state).filter((r) => r.status === 'running' || r.status === 'paused').length;
  const act = async (/** @type {string} */ id, /** @type {'pause' | 'resume' | 'cancel'} */ action) => {
    /** @type {import('./types.js').RolloutSummary} */
    const rollout = await api(`/v1/rollouts/${encodeURIComponent(id)}/${action}`, { method: 'POST' });
    dispatch({ type: 'rollouts', rollouts: [rollout] });
  };
  return html`<div class="shell">
    <header class="topbar">
      <div class="brand">
        <span class="logo" aria-hidden="true"></span>Intermission<span class="brand-sub">operator console</span>
      </div>
      <nav class="tabs" role="tablist">
        ${TABS.map(
          (t) =>
            html`<button
              role="tab"
              class=${`tab ${tab === t.id ? 'active' : ''}`}
              aria-selected=${tab === t.id}
              data-testid=${`tab-${t.id}`}
              onClick=${() => setTab(t.id)}
            >
              ${t.label}${t.id === 'rollouts' && running > 0 ? html`<span class="count">${running}</span>` : null}
            </button>`,
        )}
      </nav>
      <div class="topbar-right">
        <span class=${`conn conn-${state.connection}`} data-testid="connection" data-state=${state.connection}>
          <span class="dot"></span
          >${state.connection === 'live' ? 'Live' : state.connection === 'offline' ? 'Offline' : 'Connecting…'}
        </span>
        <span class="muted small" title="Server time (UTC)">${clock(serverNow)} UTC</span>
        ${state.timeScale !== 1 ? html`<span class="pill" title="Notices and settle times are divided by this">${state.timeScale}× time</span>` : null}
        <span class="who" title="Signed in">${state.principal.name}</span>
        <button class="btn btn-ghost btn-small" data-testid="sign-out" onClick=${() => signOut(null)}>Sign out</button>
      </div>
    </header>
    <main class="content">
      ${tab === 'fleet' ? html`<${FleetView} state=${state} now=${serverNow} />` : null}
      ${
        tab === 'rollouts'
          ? html`<${RolloutsView}
              state=${state}
              now=${serverNow}
              selected=${selected}
              select=${setSelected}
              act=${act}
            />`
          : null
      }
      ${
        tab === 'plan' && state.fleet
          ? html`<${PlanView}
              state=${state}
              started=${(/** @type {string} */ id) => {
                setSelected(id);
                setTab('rollouts');
              }}
            />`
          : null
      }
      ${tab === 'events' ? html`<${EventsView} state=${state} now=${serverNow} />` : null}
      ${tab === 'pauses' ? html`<${PausesView} state=${state} />` : null}
    </main>
  </div>`;
}

const root = document.getElementById('app');
if (root) render(html`<${App} />`, root);
