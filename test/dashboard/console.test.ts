import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import type { RolloutSummary } from '../../src/control/rollouts.js';
import type { VmOperationRecord } from '../../src/store/rollout-store.js';
import { httpUrl } from '../../src/service/address.js';
import { browserSkip, startConsoleWorld, type ConsoleWorld } from './harness.js';
import { countColor, imageStats, readPng } from './png.js';

// The operator console in a real browser (Debian's chromium through playwright-core) against the
// embedded runtime in this process: sign-in, the fleet, a plan preview, a rollout started from the
// page and followed live (no reload), pause and resume, measured pauses and their histogram, and a
// cancel. Screenshots of each view are written to test-results/dashboard/ and checked.

/** The VM whose metadata listener the test uses to approve an event, as a tenant application would. */
const TENANT_VM = 'web_1';
/**
 * The host patch's apply time: above the 3 s budget the plan preview uses to force fallbacks. How
 * long the VMs stay paused does not depend on it: the test holds host-b's update (below) until it
 * has looked at the paused VMs.
 */
const APPLY = '4s';
const LONG = 90_000;

/** A full-page screenshot that shows a real page: its size, and far from blank. */
function assertRendered(path: string, min: { width: number; height: number }): void {
  const image = readPng(path);
  assert.ok(image.width >= min.width && image.height >= min.height, `${path}: ${image.width}x${image.height}`);
  const stats = imageStats(image);
  assert.ok(stats.luminanceStdDev > 12, `${path} looks blank (luminance σ ${stats.luminanceStdDev.toFixed(1)})`);
  assert.ok(stats.colors > 40, `${path} has only ${stats.colors} colors`);
  assert.ok(stats.dominantShare < 0.92, `${path} is ${(stats.dominantShare * 100).toFixed(0)} % one color`);
}

/** An attribute of the first match, once it exists. */
async function attr(page: Page, selector: string, name: string): Promise<string> {
  return (await page.locator(selector).first().getAttribute(name)) ?? '';
}

const skip = browserSkip();

describe('operator console in chromium', { skip }, () => {
  let w: ConsoleWorld;
  let rolloutId = '';

  before(async () => {
    w = await startConsoleWorld({ metadataVm: TENANT_VM });
  });
  after(async () => {
    await w?.close();
  });

  it('asks for the operator token, refuses a wrong one, and signs in with the right one', async () => {
    const { page } = w;
    await page.goto(`${w.base}/`);
    await page.getByTestId('login').waitFor();
    const loginShot = await w.shot('login');
    assertRendered(loginShot, { width: 1440, height: 900 });
    const card = readPng(await w.shot('login-card', { selector: '[data-testid=login]' }));
    assert.ok(card.width >= 380 && card.width <= 460, `login card is ${card.width} px wide`);

    await page.locator('input[name=token]').fill('im_op_not-a-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByTestId('login-error').waitFor();
    assert.match(await page.getByTestId('login-error').innerText(), /not valid/);
    // The browser logs the refused request; that one is expected, and the only one.
    assert.deepEqual(w.pageErrors.splice(0), [
      'console: Failed to load resource: the server responded with a status of 401 (Unauthorized)',
    ]);

    await page.locator('input[name=token]').fill(w.token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByTestId('fleet-view').waitFor();
    await page.locator('[data-testid=connection][data-state=live]').waitFor();
    // The page keeps no token: the session is an HttpOnly cookie that scripts cannot read.
    const storage = await page.evaluate<string>('JSON.stringify([sessionStorage, localStorage, document.cookie])');
    assert.ok(!storage.includes(w.token), 'no token in storage or readable cookies');
    const cookies = await w.context.cookies(w.base);
    const session = cookies.find((c) => c.name === 'im_session');
    assert.ok(session?.httpOnly, 'an HttpOnly session cookie');
    assert.equal(session.sameSite, 'Strict');
    // A reload keeps the session.
    await page.reload();
    await page.getByTestId('fleet-view').waitFor();
  });

  it('signs in from the one-time #code= link that `intermission dashboard` prints, once', async () => {
    const { page } = w;
    await w.context.clearCookies();
    const { path } = await w.api<{ path: string }>('/v1/sign-in-codes', { method: 'POST' });
    await page.goto('about:blank');
    await page.goto(`${w.base}${path}`);
    await page.getByTestId('fleet-view').waitFor();
    assert.doesNotMatch(page.url(), /code=/, 'taken out of the address');
    await page.locator('[data-testid=connection][data-state=live]').waitFor();
    // The same link again, without the session: refused, it was used. (The session is put back after.)
    const saved = await w.context.cookies(w.base);
    await w.context.clearCookies();
    const other = await w.context.newPage();
    try {
      await other.goto(`${w.base}${path}`);
      await other.getByTestId('login-error').waitFor();
      assert.match(await other.getByTestId('login-error').innerText(), /used already, or expired/);
    } finally {
      await other.close();
      await w.context.addCookies(saved);
    }
    await page.locator('[data-testid=connection][data-state=live]').waitFor();
    // From here on the page is never reloaded: everything that changes arrives over the stream.
    await page.evaluate('window.__sameDocument = 42');
  });

  it('shows the fleet by availability set, update domain and fault domain, hosts, and every VM running', async () => {
    const { page } = w;
    const fleet = await w.api<{ vms: { name: string; host: string; availabilitySet: string | null }[] }>('/v1/fleet');
    await page.locator('[data-testid=set][data-set=web] [data-testid=vm]').first().waitFor();
    assert.equal(await page.locator('[data-testid=set][data-set=web] [data-testid=ud]').count(), 3);
    assert.equal(await page.locator('[data-testid=set][data-set=db] [data-testid=ud]').count(), 2);
    for (const vm of fleet.vms) {
      const where = vm.availabilitySet ? `[data-set=${vm.availabilitySet}]` : '[data-testid=standalone]';
      assert.equal(await page.locator(`${where} [data-vm="${vm.name}"]`).count(), 1, `${vm.name} in its set`);
      assert.equal(await page.locator(`[data-host=${vm.host}] [data-vm="${vm.name}"]`).count(), 1, `on ${vm.host}`);
      assert.equal(await attr(page, `[data-testid=sets] [data-vm="${vm.name}"]`, 'data-state'), 'running');
    }
    assert.equal(await page.getByTestId('host').count(), 3);
    const shot = await w.shot('fleet');
    assertRendered(shot, { width: 1440, height: 900 });
    // The running dot green of the chips is on screen.
    assert.ok(countColor(readPng(shot), [21, 128, 61], 20) > 100, 'running VMs are drawn green');
  });

  it('previews a plan with per-VM paths and the reasons of each fallback', async () => {
    const { page } = w;
    await page.getByTestId('tab-plan').click();
    await page.locator('select[name=kind]').selectOption('host-patch');
    await page.locator('input[name=applyTime]').fill(APPLY);
    // A budget below the expected pause: every VM falls back, each with its reason.
    await page.locator('input[name=pauseBudget]').fill('3s');
    await page.getByTestId('preview').click();
    await page.getByTestId('plan-preview').waitFor();
    const vms = page.getByTestId('preview-vm');
    assert.equal(await vms.count(), 8);
    assert.equal(await page.locator('[data-testid=preview-vm][data-path=reboot]').count(), 8);
    assert.match(await page.getByTestId('preview-vms').innerText(), /APPLY_EXCEEDS_PAUSE_BUDGET/);
    assert.match(await page.getByTestId('reason').first().innerText(), /budget/i);

    // Within budget, two hosts (host-c left out), no settle time: two waves, every VM paused.
    await page.locator('input[name=pauseBudget]').fill('');
    await page.locator('input[name=settle]').fill('0s');
    await page.locator('input[name=host][value=host-c]').uncheck();
    assert.equal(await page.getByTestId('start').isDisabled(), true, 'the form changed: preview again first');
    await page.getByTestId('preview').click();
    await page.locator('[data-testid=plan-preview][data-waves="2"]').waitFor();
    assert.equal(await page.locator('[data-testid=preview-vm][data-path=pause]').count(), 5);
    assert.equal(await page.getByTestId('preview-wave').count(), 2);
    const server = await w.api<{ plan: { waves: unknown[]; stats: { plannedVms: number } } }>('/v1/plans', {
      body: {
        update: {
          id: 'same',
          kind: 'host-patch',
          expectedApplyMs: APPLY,
          hosts: { kind: 'names', names: ['host-a', 'host-b'] },
        },
        policy: { settleMs: '0s' },
      },
    });
    assert.equal(server.plan.stats.plannedVms, 5, 'the page shows what the API plans');
    assertRendered(await w.shot('plan'), { width: 1440, height: 900 });
    rolloutId = (await page.locator('input[name=id]').inputValue()).trim();
    assert.ok(rolloutId);
  });

  it('starts the rollout from the page and follows it live: waves, steps, events, pause and resume', async (t) => {
    const { page } = w;
    // host-b's update (wave 2) waits for this release, so that its VMs are still paused when the
    // test looks at them: the test holds what it observes instead of racing the apply time.
    const hostB = w.runtime.hosts?.simHosts.get('host-b');
    assert.ok(hostB, 'the embedded default runs simulated hosts');
    const holdHostB = hostB.holdUpdates();
    t.after(() => holdHostB.release());
    await page.getByTestId('start').click();
    const detail = page.locator(`[data-testid=rollout-detail][data-rollout="${rolloutId}"]`);
    await detail.waitFor();
    await page.locator('[data-testid=wave][data-wave="0"][data-status=published]').waitFor({ timeout: 10_000 });
    assert.equal(await attr(page, '[data-testid=wave-progress]', 'data-done'), '0');
    assert.equal(await attr(page, '[data-testid=wave-progress]', 'data-total'), '2');

    // Pause while wave 1 is under notice: the server agrees, nothing is dispatched; then resume.
    await page.getByTestId('pause').click();
    await page.locator(`[data-testid=rollout-detail][data-status=paused]`).waitFor();
    assert.equal((await w.api<{ rollout: RolloutSummary }>(`/v1/rollouts/${rolloutId}`)).rollout.status, 'paused');
    await page.getByTestId('resume').click();
    await page.locator(`[data-testid=rollout-detail][data-status=running]`).waitFor();
    assert.equal((await w.api<{ rollout: RolloutSummary }>(`/v1/rollouts/${rolloutId}`)).rollout.status, 'running');
    assertRendered(await w.shot('rollout-live'), { width: 1440, height: 900 });

    // The events of wave 1 reach the event log and the fleet as tenants see them.
    await page.getByTestId('tab-fleet').click();
    await page.locator('[data-testid=sets] [data-vm=web_0][data-state=scheduled]').waitFor();
    await page.locator('[data-testid=sets] [data-vm=web_1][data-state=running]').waitFor();
    assert.ok((await page.getByTestId('activity-item').count()) >= 3, 'activity arrives live');
    await page.getByTestId('tab-events').click();
    await page.locator('[data-testid=event-row][data-status=Scheduled]').first().waitFor();
    assert.equal(await page.locator('[data-testid=event-row]').count(), 2, 'set:web and vm:batch-1');

    // Wave 1 runs (host-a), finishes, and wave 2 is published: all without a reload.
    await page.getByTestId('tab-rollouts').click();
    await page
      .locator('[data-testid=wave][data-wave="0"] [data-testid=step][data-host=host-a][data-status=succeeded]')
      .waitFor({ timeout: LONG });
    await page.locator('[data-testid=wave-progress][data-done="1"]').waitFor({ timeout: LONG });
    await page.locator('[data-testid=wave][data-wave="1"][data-status=published]').waitFor({ timeout: LONG });

    // A tenant application in web_1 approves its event through the metadata service: the log shows it.
    await page.getByTestId('tab-events').click();
    const row = page.locator('[data-testid=event-row][data-status=Scheduled]', { hasText: 'web_1' });
    await row.waitFor();
    const eventId = (await row.getAttribute('data-event')) ?? '';
    const metadata = w.runtime.metadata.find((m) => m.vm === TENANT_VM);
    assert.ok(metadata);
    const approve = await fetch(`${httpUrl(metadata.address)}/metadata/scheduledevents?api-version=2020-07-01`, {
      method: 'POST',
      headers: { Metadata: 'true', 'content-type': 'application/json' },
      body: JSON.stringify({ StartRequests: [{ EventId: eventId }] }),
    });
    assert.equal(approve.status, 200);
    await page.locator(`[data-testid=event-row][data-event="${eventId}"]`, { hasText: `by ${TENANT_VM}` }).waitFor();
    assertRendered(await w.shot('events'), { width: 1440, height: 900 });

    // Wave 2 pauses host-b's VMs: the fleet shows them paused while the step runs.
    await page.getByTestId('tab-fleet').click();
    const paused = page.locator('[data-testid=sets] [data-vm=web_1][data-state=paused]');
    await paused.waitFor({ timeout: LONG });
    const chip = readPng(await w.shot('vm-paused', { selector: '[data-testid=sets] [data-vm=web_1]' }));
    assert.ok(chip.width > 100 && chip.height > 20, `chip ${chip.width}x${chip.height}`);
    assert.ok(countColor(chip, [219, 234, 254], 6) > chip.width * chip.height * 0.4, 'the chip is paused-blue');
    assertRendered(await w.shot('fleet-paused'), { width: 1440, height: 900 });
    assert.equal(await attr(page, '[data-testid=host][data-host=host-b]', 'data-state'), 'updating');
    holdHostB.release();

    await page.getByTestId('tab-rollouts').click();
    await page.locator(`[data-testid=rollout-detail][data-status=completed]`).waitFor({ timeout: LONG });
    await page.locator('[data-testid=wave-progress][data-done="2"]').waitFor();
    assert.equal(await page.locator('[data-testid=step][data-status=succeeded]').count(), 2);
    assertRendered(await w.shot('rollout-done'), { width: 1440, height: 900 });
    assert.equal(await page.evaluate('window.__sameDocument'), 42, 'the page was never reloaded');
  });

  /**
   * A completed rollout of host-a and host-b (5 VMs paused): the one the page started, once it has
   * completed, or, where an earlier test did not get as far as starting it, one started here through
   * the API, so that this test stands on its own.
   */
  async function completedRollout(): Promise<string> {
    let id = rolloutId;
    if (id === '') {
      id = 'pauses-standalone';
      await w.api('/v1/rollouts', {
        body: {
          update: {
            id,
            kind: 'host-patch',
            expectedApplyMs: APPLY,
            hosts: { kind: 'names', names: ['host-a', 'host-b'] },
          },
          policy: { settleMs: '0s' },
        },
      });
    }
    const deadline = Date.now() + LONG;
    for (;;) {
      const { rollout } = await w.api<{ rollout: RolloutSummary }>(`/v1/rollouts/${id}`);
      if (rollout.status === 'completed') return id;
      assert.ok(['running', 'paused'].includes(rollout.status), `rollout ${id} is ${rollout.status}`);
      assert.ok(Date.now() < deadline, `rollout ${id} did not complete within ${LONG} ms`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  /** Signs the page in where an earlier test has not (so that a test can run on its own). */
  async function signedIn(): Promise<Page> {
    const { page } = w;
    // The connection indicator is there on every view once signed in, and only then.
    if ((await page.getByTestId('connection').count()) === 0) {
      const { path } = await w.api<{ path: string }>('/v1/sign-in-codes', { method: 'POST' });
      await page.goto(`${w.base}${path}`);
      await page.getByTestId('fleet-view').waitFor();
      await page.evaluate('window.__sameDocument = 42');
    }
    return page;
  }

  it('shows each VM’s measured pause and clock residual against its budget, and their histogram', async () => {
    const page = await signedIn();
    const id = await completedRollout();
    const { operations } = await w.api<{ operations: VmOperationRecord[] }>(`/v1/rollouts/${id}`);
    assert.equal(operations.length, 5);
    await page.getByTestId('tab-pauses').click();
    await page.getByTestId('pause-row').first().waitFor();
    assert.equal(await page.getByTestId('pause-row').count(), 5);
    for (const op of operations) {
      const row = page.locator(`[data-testid=pause-row][data-vm="${op.vm}"]`);
      assert.equal(
        Number(await row.getAttribute('data-pause')),
        op.pauseMs,
        `${op.vm}: the page shows the measurement`,
      );
      assert.ok(op.pauseMs !== null && op.pauseMs > 0 && op.pauseMs <= op.pauseBudgetMs, `${op.vm} within budget`);
      const text = await row.innerText();
      assert.match(text, /30\.0 s/, 'against the 30 s budget');
      if (op.clockResidualMs !== null) assert.match(text, /ms/);
    }
    assert.match(await page.getByTestId('stat-pauses').innerText(), /5/);

    const canvas = page.locator('[data-testid=histogram] canvas');
    await canvas.waitFor();
    const box = await canvas.boundingBox();
    assert.ok(box && box.width > 500 && box.height >= 150, `histogram canvas ${box?.width}x${box?.height}`);
    const histogram = readPng(await w.shot('histogram', { selector: '[data-testid=histogram]' }));
    assert.ok(histogram.width > 500 && histogram.height >= 200, `${histogram.width}x${histogram.height}`);
    const bars = countColor(histogram, [79, 70, 229], 10);
    assert.ok(bars > 2000, `the bars are drawn (${bars} bar-colored pixels)`);
    assertRendered(await w.shot('pauses'), { width: 1440, height: 900 });
  });

  it('cancels a rollout from the page; its events are withdrawn', async () => {
    const page = await signedIn();
    await page.getByTestId('tab-plan').click();
    await page.locator('input[name=id]').fill('cancel-me');
    for (const host of ['host-a', 'host-b']) await page.locator(`input[name=host][value=${host}]`).uncheck();
    await page.locator('input[name=host][value=host-c]').check();
    await page.getByTestId('preview').click();
    await page.locator('[data-testid=plan-preview][data-waves="1"]').waitFor();
    await page.getByTestId('start').click();
    await page.locator('[data-testid=rollout-detail][data-rollout=cancel-me]').waitFor();
    await page.locator('[data-testid=wave][data-wave="0"][data-status=published]').waitFor({ timeout: 10_000 });
    await page.getByTestId('cancel').click();
    await page.getByTestId('confirm-cancel').click();
    await page.locator('[data-testid=rollout-detail][data-rollout=cancel-me][data-status=cancelled]').waitFor();
    assert.match(await page.getByTestId('rollout-reason').innerText(), /cancelled by the operator/);
    await page.getByTestId('tab-events').click();
    await page.locator('[data-testid=event-row][data-status=removed]', { hasText: 'cancelled' }).first().waitFor();
    assert.equal(
      await page.locator('[data-testid=event-row][data-status=Scheduled]').count(),
      0,
      'no event is left Scheduled',
    );
    assert.equal(await page.evaluate('window.__sameDocument'), 42, 'still the same document');
    assert.deepEqual(w.pageErrors, [], 'no console errors, uncaught exceptions or CSP violations');
  });
});
