import { randomUUID } from 'node:crypto';
import { Client, Pool } from 'pg';
import { createTestDatabase, type TestDatabase } from '../../../../test/support/database';
import type { RecordedEvent } from '../event-store.port';
import { PostgresEventStore } from './postgres-event-store';
import { SAFETY_RECHECK_MS } from './postgres-subscription';

/* PostgreSQL-specific behaviour behind the contract: visibility below the oldest transaction, LISTEN. */
describe('PostgresEventStore', () => {
  let db: TestDatabase;
  let store: PostgresEventStore;
  let sql: Client;

  beforeAll(async () => {
    db = await createTestDatabase('strata_pges');
    store = new PostgresEventStore(db.url);
    sql = new Client({ connectionString: db.url });
    await sql.connect();
  });
  afterAll(async () => {
    await store?.close();
    await sql?.end();
    await db?.drop();
  });

  const newEvent = (type: string) => ({ id: randomUUID(), type, data: { type } });

  it('holds back events committed after an older transaction that is still in flight, then returns both in order', async () => {
    const seen: RecordedEvent[] = [];
    const subscription = store.subscribeToAll({ batchSize: 10, onBatch: async (batch) => void seen.push(...batch) });
    const slow = new Client({ connectionString: db.url });
    await slow.connect();
    try {
      const start = (await store.append('mark-1', [newEvent('Marked')], 'no_stream')).position;
      // An append that took its place in the log first but commits last (as a slow commit would).
      await slow.query('BEGIN');
      await slow.query(`INSERT INTO events (stream_id, stream_revision, event_id, type, data) VALUES ('held-1', 0, $1, 'Held', '{}')`, [randomUUID()]);
      await store.append('later-1', [newEvent('Later')], 'no_stream');

      expect(await store.readAll(start, 10)).toEqual([]);
      await sleep(200);
      expect(seen.map((e) => e.streamId)).toEqual(['mark-1']);

      // Ends without a NOTIFY: the subscription's periodic re-check has to find it.
      await slow.query('COMMIT');
      expect((await store.readAll(start, 10)).map((e) => e.streamId)).toEqual(['held-1', 'later-1']);
      await waitFor(() => seen.length === 3, SAFETY_RECHECK_MS * 4);
      expect(seen.map((e) => e.streamId)).toEqual(['mark-1', 'held-1', 'later-1']);
    } finally {
      await slow.end();
      await subscription.stop();
    }
  });

  it('wakes caught-up subscriptions with NOTIFY, well before the periodic re-check', async () => {
    const seen = new Map<string, number>();
    const subscription = store.subscribeToAll({
      from: (await store.append('wake-0', [newEvent('Start')], 'no_stream')).position,
      onBatch: async (batch) => batch.forEach((e) => seen.set(e.id, Date.now())),
    });
    try {
      await sleep(100);
      const latencies: number[] = [];
      for (let i = 1; i <= 5; i++) {
        const event = newEvent('Woken');
        const sent = Date.now();
        await store.append(`wake-${i}`, [event], 'no_stream');
        await waitFor(() => seen.has(event.id), 5000);
        latencies.push(seen.get(event.id)! - sent);
        await sleep(50);
      }
      latencies.sort((a, b) => a - b);
      expect(latencies[2]).toBeLessThan(SAFETY_RECHECK_MS / 2);
    } finally {
      await subscription.stop();
    }
  });

  it('re-establishes its LISTEN connection when the server drops it', async () => {
    const listeners = async () =>
      (
        await sql.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'strata-event-store-listen'`,
        )
      ).rows.map((r) => r.pid);
    const seen: RecordedEvent[] = [];
    const errors: Error[] = [];
    const subscription = store.subscribeToAll({
      from: (await store.append('drop-0', [newEvent('Start')], 'no_stream')).position,
      onBatch: async (batch) => void seen.push(...batch),
      onError: (e) => errors.push(e),
    });
    try {
      await waitFor(async () => (await listeners()).length === 1, 5000);
      const [before] = await listeners();
      await sql.query('SELECT pg_terminate_backend($1)', [before]);
      await waitFor(async () => {
        const now = await listeners();
        return now.length === 1 && now[0] !== before;
      }, 10_000);
      const event = newEvent('AfterReconnect');
      await store.append('drop-1', [event], 'no_stream');
      await waitFor(() => seen.some((e) => e.id === event.id), 5000);
      expect(errors).toEqual([]);
    } finally {
      await subscription.stop();
    }
  });

  it('leaves a pool it was given open on close', async () => {
    const pool = new Pool({ connectionString: db.url, max: 2 });
    const borrowed = new PostgresEventStore(pool);
    await borrowed.append('pool-1', [newEvent('A')], 'no_stream');
    await borrowed.close();
    expect((await pool.query('SELECT count(*)::int AS n FROM events WHERE stream_id = $1', ['pool-1'])).rows[0].n).toBe(1);
    await pool.end();
  });

  it('stores positions that order like (transaction id, sequence) and survive past 2^53', () => {
    expect(store.comparePositions('9007199254740993:1', '9007199254740992:5')).toBeGreaterThan(0);
    expect(store.comparePositions('10:2', '9:30')).toBeGreaterThan(0);
    expect(store.comparePositions('10:9', '10:10')).toBeLessThan(0);
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(10);
  }
}
