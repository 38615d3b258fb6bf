import type { Pool } from 'pg';
import { PgChangeNotifier } from './pg-change-notifier';

/** A pool whose queries complete when the test says so. */
function fakePool() {
  const pending: Array<() => void> = [];
  let sent = 0;
  const pool = {
    query: () =>
      new Promise((resolve) => {
        sent += 1;
        pending.push(() => resolve({ rows: [] }));
      }),
  } as unknown as Pool;
  return { pool, pending, sent: () => sent };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('PgChangeNotifier', () => {
  it('notifies at once after a quiet period', async () => {
    const { pool, pending, sent } = fakePool();
    const notifier = new PgChangeNotifier(pool, 'strata_events');
    notifier.changed();
    expect(sent()).toBe(1);
    pending.shift()!();
    await notifier.close();
  });

  it('coalesces a burst, and announces changes made while a NOTIFY was on its way with one more', async () => {
    const { pool, pending, sent } = fakePool();
    const notifier = new PgChangeNotifier(pool, 'strata_events');
    for (let i = 0; i < 100; i++) notifier.changed();
    expect(sent()).toBe(1);
    pending.shift()!();
    await sleep(50);
    expect(sent()).toBe(2);
    pending.shift()!();
    await sleep(50);
    expect(sent()).toBe(2);
    await notifier.close();
  });

  it('on close, sends the NOTIFY it was holding back', async () => {
    const { pool, pending, sent } = fakePool();
    const notifier = new PgChangeNotifier(pool, 'strata_events');
    notifier.changed();
    pending.shift()!();
    await sleep(1);
    notifier.changed();
    expect(sent()).toBe(1);
    const closing = notifier.close();
    expect(sent()).toBe(2);
    pending.shift()!();
    await closing;
    notifier.changed();
    expect(sent()).toBe(2);
  });

  it('never fails the caller when the NOTIFY fails', async () => {
    const pool = { query: () => Promise.reject(new Error('connection lost')) } as unknown as Pool;
    const notifier = new PgChangeNotifier(pool, 'strata_events');
    expect(() => notifier.changed()).not.toThrow();
    await expect(notifier.close()).resolves.toBeUndefined();
  });
});
