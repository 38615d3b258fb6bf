import { randomBytes, randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { createTestDatabase, type TestDatabase } from '../../../test/support/database';
import { EsdbEventStore } from './esdb/esdb-event-store';
import {
  ConcurrencyError,
  IdempotencyConflictError,
  InvalidAppendError,
  InvalidStreamNameError,
} from './event-store.errors';
import type { AppendResult, Checkpoint, EventStore, NewEvent, RecordedEvent } from './event-store.port';
import { PostgresEventStore } from './postgres/postgres-event-store';

/*
 * One contract, every adapter: PostgreSQL always (a fresh database), EventStoreDB when STRATA_ESDB_URL is
 * set (a shared server, so every stream name carries a per-run tag and reads of $all start after a marker).
 */

interface StoredRow {
  id: string;
  streamId: string;
  streamRevision: number;
}

interface Harness {
  store: EventStore;
  /** Another instance on the same store, as another process would have (closed by the caller). */
  connect(): EventStore;
  /** What the store holds for these streams, read behind the adapter's back where possible. */
  stored(streamIds: string[]): Promise<StoredRow[]>;
  /**
   * Makes appends to streams of this category slow to commit after they took their place in the log,
   * the situation that makes a naive reader skip events. Absent where the store has no such window.
   */
  slowCommits?(category: string): Promise<void>;
  cleanup(): Promise<void>;
}

async function postgresHarness(): Promise<Harness> {
  const db: TestDatabase = await createTestDatabase('strata_es');
  const store = new PostgresEventStore(db.url);
  const sql = new Client({ connectionString: db.url });
  await sql.connect();
  return {
    store,
    connect: () => new PostgresEventStore(db.url),
    async stored(streamIds) {
      const { rows } = await sql.query<{ event_id: string; stream_id: string; stream_revision: number }>(
        'SELECT event_id, stream_id, stream_revision FROM events WHERE stream_id = ANY($1) ORDER BY global_position',
        [streamIds],
      );
      return rows.map((r) => ({ id: r.event_id, streamId: r.stream_id, streamRevision: r.stream_revision }));
    },
    async slowCommits(category) {
      // The row already has its global_position (sequence) when the trigger sleeps; others commit meanwhile.
      await sql.query(`
        CREATE FUNCTION contract_slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_sleep(random() * 0.02); RETURN NULL; END $$`);
      await sql.query(`
        CREATE TRIGGER contract_slow_commit AFTER INSERT ON events FOR EACH ROW
        WHEN (starts_with(NEW.stream_id, '${category}-')) EXECUTE FUNCTION contract_slow_commit()`);
    },
    async cleanup() {
      await store.close();
      await sql.end();
      await db.drop();
    },
  };
}

async function esdbHarness(url: string): Promise<Harness> {
  const store = new EsdbEventStore(url);
  return {
    store,
    connect: () => new EsdbEventStore(url),
    async stored(streamIds) {
      const streams = await Promise.all(streamIds.map((s) => store.readStream(s)));
      return streams.flat().map((e) => ({ id: e.id, streamId: e.streamId, streamRevision: e.streamRevision }));
    },
    cleanup: () => store.close(),
  };
}

const ADAPTERS: Array<[string, () => Promise<Harness>]> = [['postgres', postgresHarness]];
const esdbUrl = process.env.STRATA_ESDB_URL;
if (esdbUrl) ADAPTERS.push(['esdb', () => esdbHarness(esdbUrl)]);
else {
  console.log('event store contract: STRATA_ESDB_URL is not set, EventStoreDB adapter skipped');
  describe.skip('EventStore contract (esdb): STRATA_ESDB_URL not set', () => {
    it('runs against EventStoreDB', () => undefined);
  });
}

describe.each(ADAPTERS)('EventStore contract (%s)', (_name, createHarness) => {
  let harness: Harness;
  let store: EventStore;
  /** Per-run tag in every category, so a shared EventStoreDB never mixes runs. */
  const run = randomBytes(4).toString('hex');
  const stream = (category: string, id: string = randomUUID()) => `${category}${run}-${id}`;
  const ownEvents = (events: RecordedEvent[]) => events.filter((e) => e.streamId.split('-')[0].endsWith(run));

  beforeAll(async () => {
    harness = await createHarness();
    store = harness.store;
  });
  afterAll(async () => {
    await harness?.cleanup();
  });

  /** A position just before this test's events: $all of a shared server holds other runs too. */
  async function marker(): Promise<Checkpoint> {
    return (await store.append(stream('marker'), [event('Marked')], 'no_stream')).position;
  }

  describe('append and readStream', () => {
    it('appends events and reads them back in stream order', async () => {
      const s = stream('vm');
      const events = [event('BackupRequested', { n: 1 }), event('BackupStarted', { n: 2 }), event('BackupCompleted', { n: 3 })];
      const result = await store.append(s, events, 'no_stream');
      expect(result.nextExpectedRevision).toBe(2);

      const read = await store.readStream(s);
      expect(read.map((e) => e.streamRevision)).toEqual([0, 1, 2]);
      read.forEach((recorded, i) => {
        expect(recorded).toMatchObject({ id: events[i].id, type: events[i].type, data: events[i].data, metadata: events[i].metadata, streamId: s });
        expect(recorded.createdAt).toBeInstanceOf(Date);
        expect(Math.abs(recorded.createdAt.getTime() - Date.now())).toBeLessThan(5 * 60_000);
      });
      expect(read[2].position).toBe(result.position);
      expect(store.comparePositions(read[0].position, read[1].position)).toBeLessThan(0);
      expect(store.comparePositions(read[1].position, read[2].position)).toBeLessThan(0);
    });

    it('reads from a revision, at most maxCount events', async () => {
      const s = stream('vm');
      await store.append(s, [event('A'), event('B'), event('C'), event('D')], 'no_stream');
      expect((await store.readStream(s, { fromRevision: 1, maxCount: 2 })).map((e) => e.type)).toEqual(['B', 'C']);
      expect((await store.readStream(s, { fromRevision: 3 })).map((e) => e.type)).toEqual(['D']);
      expect(await store.readStream(s, { fromRevision: 4 })).toEqual([]);
      expect(await store.readStream(s, { maxCount: 0 })).toEqual([]);
    });

    it('reads an unknown stream as empty', async () => {
      expect(await store.readStream(stream('vm'))).toEqual([]);
    });

    it('keeps data and metadata as given, and defaults metadata to {}', async () => {
      const s = stream('vm');
      const data = { text: 'quote " backslash \\ unicode é ✓', nested: { list: [1, 2.5, null, true], empty: {} } };
      await store.append(s, [{ id: randomUUID(), type: 'Odd', data }], 'no_stream');
      const [recorded] = await store.readStream(s);
      expect(recorded.data).toEqual(data);
      expect(recorded.metadata).toEqual({});
    });

    it('refuses invalid stream names and events', async () => {
      await expect(store.append('no category', [event('A')], 'any')).rejects.toBeInstanceOf(InvalidStreamNameError);
      await expect(store.append('$system-x', [event('A')], 'any')).rejects.toBeInstanceOf(InvalidStreamNameError);
      await expect(store.append(stream('vm'), [], 'any')).rejects.toBeInstanceOf(InvalidAppendError);
      await expect(store.append(stream('vm'), [{ id: 'not-a-uuid', type: 'A', data: {} }], 'any')).rejects.toBeInstanceOf(InvalidAppendError);
      const twice = event('A');
      await expect(store.append(stream('vm'), [twice, twice], 'any')).rejects.toBeInstanceOf(InvalidAppendError);
    });
  });

  describe('expected revision', () => {
    it('accepts the current revision and rejects a stale or future one with a ConcurrencyError', async () => {
      const s = stream('vm');
      const first = await store.append(s, [event('A'), event('B')], 'no_stream');
      const second = await store.append(s, [event('C')], first.nextExpectedRevision);
      expect(second.nextExpectedRevision).toBe(2);

      const stale = await store.append(s, [event('Stale')], 1).catch((e: unknown) => e);
      expect(stale).toBeInstanceOf(ConcurrencyError);
      expect(stale).toMatchObject({ streamId: s, actual: 2 });
      await expect(store.append(s, [event('Future')], 5)).rejects.toBeInstanceOf(ConcurrencyError);
      expect((await store.readStream(s)).map((e) => e.type)).toEqual(['A', 'B', 'C']);
    });

    it('no_stream: only when the stream does not exist', async () => {
      const s = stream('vm');
      await store.append(s, [event('A')], 'no_stream');
      const error = await store.append(s, [event('B')], 'no_stream').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConcurrencyError);
      expect(error).toMatchObject({ actual: 0 });
      await expect(store.append(stream('vm'), [event('A')], 0)).rejects.toMatchObject({ name: 'ConcurrencyError', actual: 'no_stream' });
    });

    it('stream_exists: only when the stream exists', async () => {
      const s = stream('vm');
      await expect(store.append(s, [event('A')], 'stream_exists')).rejects.toBeInstanceOf(ConcurrencyError);
      expect(await store.readStream(s)).toEqual([]);
      await store.append(s, [event('A')], 'no_stream');
      expect((await store.append(s, [event('B')], 'stream_exists')).nextExpectedRevision).toBe(1);
    });

    it('any: whatever the state of the stream', async () => {
      const s = stream('vm');
      expect((await store.append(s, [event('A')], 'any')).nextExpectedRevision).toBe(0);
      expect((await store.append(s, [event('B'), event('C')], 'any')).nextExpectedRevision).toBe(2);
    });

    it('any: concurrent appends to one stream all land, none lost', async () => {
      const s = stream('vm');
      const events = Array.from({ length: 20 }, (_, i) => event('Concurrent', { i }));
      await Promise.all(events.map((e) => store.append(s, [e], 'any')));
      const read = await store.readStream(s);
      expect(read.map((e) => e.streamRevision)).toEqual(events.map((_, i) => i));
      expect(new Set(read.map((e) => e.id))).toEqual(new Set(events.map((e) => e.id)));
    });
  });

  describe('idempotency by event id', () => {
    it('re-appending the same events is a no-op that answers the same result, whatever the expected revision', async () => {
      const s = stream('vm');
      const events = [event('A'), event('B')];
      const first = await store.append(s, events, 'no_stream');
      expect(await store.append(s, events, 'no_stream')).toEqual(first);
      expect(await store.append(s, events, 'any')).toEqual(first);
      expect(await store.append(s, events, 'stream_exists')).toEqual(first);

      await store.append(s, [event('C')], first.nextExpectedRevision);
      // A handler that reloaded the stream retries with the current revision: still the no-op.
      expect(await store.append(s, events, 2)).toEqual(first);
      expect(await store.append(s, events, first.nextExpectedRevision)).toEqual(first);
      expect((await store.readStream(s)).map((e) => e.type)).toEqual(['A', 'B', 'C']);
    });

    it('concurrent duplicates end as one append and the same answer', async () => {
      const s = stream('vm');
      await store.append(s, [event('A')], 'no_stream');
      const events = [event('B'), event('C')];
      const results = await Promise.all([store.append(s, events, 0), store.append(s, events, 0), store.append(s, events, 0)]);
      expect(results[1]).toEqual(results[0]);
      expect(results[2]).toEqual(results[0]);
      expect((await store.readStream(s)).map((e) => e.type)).toEqual(['A', 'B', 'C']);
    });

    it('a partial overlap is an IdempotencyConflictError and writes nothing', async () => {
      const s = stream('vm');
      const old = event('A');
      await store.append(s, [old], 'no_stream');
      const error = await store.append(s, [old, event('B')], 'any').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(IdempotencyConflictError);
      expect((error as IdempotencyConflictError).eventIds).toEqual([old.id]);
      expect((await store.readStream(s)).map((e) => e.type)).toEqual(['A']);
    });

    it('compares ids case-insensitively', async () => {
      const s = stream('vm');
      const e = event('A');
      const first = await store.append(s, [e], 'no_stream');
      expect(await store.append(s, [{ ...e, id: e.id.toUpperCase() }], 'any')).toEqual(first);
      expect(await store.readStream(s)).toHaveLength(1);
    });
  });

  describe('global order', () => {
    it('readAll returns events after a checkpoint, in append order, page by page', async () => {
      const from = await marker();
      const expected: string[] = [];
      for (let i = 0; i < 9; i++) {
        const e = event('Ordered', { i });
        await store.append(stream('order', String(i % 3)), [e], 'any');
        expected.push(e.id);
      }
      const all = await readAllVisible(from, expected.length);
      expect(all.map((e) => e.id)).toEqual(expected);
      expectIncreasing(all.map((e) => e.position));

      const paged: RecordedEvent[] = [];
      let cursor: Checkpoint | null = from;
      for (;;) {
        const page = await store.readAll(cursor, 2);
        expect(page.length).toBeLessThanOrEqual(2);
        if (page.length === 0) break;
        paged.push(...page);
        cursor = page[page.length - 1].position;
      }
      expect(ownEvents(paged).map((e) => e.id)).toEqual(expected);
      expect(ownEvents(await store.readAll(all[all.length - 1].position, 10))).toEqual([]);
      expect(await store.readAll(from, 0)).toEqual([]);
    });

    it('readAll from null starts at the beginning', async () => {
      const first = await store.readAll(null, 1);
      expect(first).toHaveLength(1);
      const second = await store.readAll(null, 2);
      expect(second[0]).toEqual(first[0]);
    });

    it('comparePositions orders positions as the log does', async () => {
      const a = await store.append(stream('cmp'), [event('A')], 'no_stream');
      const b = await store.append(stream('cmp'), [event('B')], 'no_stream');
      expect(store.comparePositions(a.position, b.position)).toBeLessThan(0);
      expect(store.comparePositions(b.position, a.position)).toBeGreaterThan(0);
      expect(store.comparePositions(a.position, a.position)).toBe(0);
      const [next] = await readAllVisible(a.position, 1);
      expect(next.position).toBe(b.position);
    });
  });

  describe('subscribeToAll', () => {
    it('from the beginning: every event once, in order, then live events', async () => {
      const s1 = stream('sub');
      const s2 = stream('sub');
      const before = [event('A'), event('B'), event('C')];
      await store.append(s1, before.slice(0, 2), 'no_stream');
      await store.append(s2, before.slice(2), 'no_stream');

      const seen: RecordedEvent[] = [];
      let caughtUp = 0;
      const subscription = store.subscribeToAll({
        batchSize: 2,
        onBatch: async (batch) => {
          expect(batch.length).toBeLessThanOrEqual(2);
          seen.push(...batch);
        },
        onCaughtUp: () => {
          caughtUp += 1;
        },
      });
      const mine = () => seen.filter((e) => e.streamId === s1 || e.streamId === s2);
      try {
        await waitFor(() => mine().length >= 3 && caughtUp > 0);
        const live = event('D');
        await store.append(s1, [live], 1);
        await waitFor(() => mine().length >= 4);
        expect(mine().map((e) => e.id)).toEqual([...before, live].map((e) => e.id));
        expectIncreasing(seen.map((e) => e.position), seen);
      } finally {
        await subscription.stop();
      }
      await expect(subscription.done).resolves.toBeUndefined();
    });

    it('from a checkpoint: only what comes after it', async () => {
      const s = stream('sub');
      const first = await store.append(s, [event('A'), event('B')], 'no_stream');
      const later = [event('C'), event('D')];
      await store.append(s, later, first.nextExpectedRevision);

      const seen: RecordedEvent[] = [];
      const subscription = store.subscribeToAll({ from: first.position, onBatch: async (batch) => void seen.push(...batch) });
      try {
        await waitFor(() => seen.filter((e) => e.streamId === s).length >= 2);
        expect(seen.filter((e) => e.streamId === s).map((e) => e.id)).toEqual(later.map((e) => e.id));
        expect(store.comparePositions(seen[0].position, first.position)).toBeGreaterThan(0);
      } finally {
        await subscription.stop();
      }
    });

    it('delivers one batch at a time and stops after the current batch', async () => {
      const from = await marker();
      const s = stream('sub');
      await store.append(s, Array.from({ length: 12 }, (_, i) => event('Slow', { i })), 'no_stream');
      let active = 0;
      let maxActive = 0;
      let batches = 0;
      let stopped: Promise<void> | null = null;
      const subscription = store.subscribeToAll({
        from,
        batchSize: 3,
        onBatch: async () => {
          active += 1;
          maxActive = Math.max(maxActive, active);
          await sleep(20);
          batches += 1;
          if (batches === 2) stopped = subscription.stop();
          active -= 1;
        },
      });
      await waitFor(() => stopped !== null);
      await stopped;
      expect(batches).toBe(2);
      await sleep(100);
      expect(batches).toBe(2);
      expect(maxActive).toBe(1);
    });

    it('ends with the error when onBatch throws', async () => {
      await store.append(stream('sub'), [event('A')], 'no_stream');
      const errors: Error[] = [];
      const failure = new Error('projection failed');
      const subscription = store.subscribeToAll({
        onBatch: async () => {
          throw failure;
        },
        onError: (e) => errors.push(e),
      });
      await expect(subscription.done).rejects.toBe(failure);
      expect(errors).toEqual([failure]);
      await subscription.stop();
    });
  });

  it('many concurrent writers, one subscriber: every committed event exactly once, in every stream order', async () => {
    const TARGET = 2400;
    const from = await marker();
    const shared = Array.from({ length: 24 }, (_, i) => stream('busy', String(i)));
    const slow = Array.from({ length: 4 }, (_, i) => stream('slow', String(i)));
    await harness.slowCommits?.(`slow${run}`);

    // Writers spread over several instances, as over several processes: each instance may funnel its own
    // appends through one connection, but instances race each other for real.
    const instances = Array.from({ length: 4 }, () => harness.connect());
    const committed = new Map<string, string>(); // event id -> stream
    const rejected = new Set<string>();
    const counts = { conflicts: 0, staleRejected: 0, idempotentRetries: 0, twins: 0 };
    const pick = <T>(list: T[]): T => list[Math.floor(Math.random() * list.length)];
    const head = async (s: string) => (await store.readStream(s)).length - 1;
    const commit = (s: string, events: NewEvent[]) => events.forEach((e) => committed.set(e.id, s));
    const batch = (n: number) => Array.from({ length: n }, (_, i) => event('Busy', { i }));

    const seen: RecordedEvent[] = [];
    const subscription = store.subscribeToAll({ from, batchSize: 50, onBatch: async (events) => void seen.push(...ownEvents(events)) });

    /** Reads the head, appends with it as expected revision; a lost race is a ConcurrencyError, retried. */
    async function honest(w: EventStore, streams: string[]): Promise<void> {
      const s = pick(streams);
      const events = batch(1 + Math.floor(Math.random() * 3));
      try {
        const h = await head(s);
        await w.append(s, events, h < 0 ? 'no_stream' : h);
        commit(s, events);
      } catch (e) {
        if (!(e instanceof ConcurrencyError)) throw e;
        counts.conflicts += 1;
        events.forEach((ev) => rejected.add(ev.id));
      }
    }

    /**
     * Deliberately stale, on a stream seen to exist (streams only grow, so a revision below the head seen,
     * or 'no_stream', can never become right): rejected, and no trace left.
     */
    async function stale(w: EventStore): Promise<void> {
      const s = pick(shared);
      const h = await head(s);
      if (h < 0) return;
      const events = batch(2);
      events.forEach((e) => rejected.add(e.id));
      const error = await w.append(s, events, h === 0 ? 'no_stream' : h - 1).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConcurrencyError);
      counts.staleRejected += 1;
    }

    /** Appends, then retries the very same events: the retry must answer the first result. */
    async function reappending(w: EventStore): Promise<void> {
      const s = pick(shared);
      const events = batch(1 + Math.floor(Math.random() * 2));
      const first = await w.append(s, events, 'any');
      commit(s, events);
      const again = await pick(instances).append(s, events, pick<'any' | 'stream_exists' | number>(['any', 'stream_exists', 0, first.nextExpectedRevision]));
      expect(again).toEqual(first);
      counts.idempotentRetries += 1;
    }

    /** The same append sent twice at once, by two instances (a retry racing the original): one append, one answer. */
    async function twins(w: EventStore): Promise<void> {
      const s = pick(shared);
      const events = batch(2);
      const h = await head(s);
      const expected = h < 0 ? 'no_stream' : h;
      const other = instances[(instances.indexOf(w) + 1) % instances.length];
      const outcomes = await Promise.allSettled([w.append(s, events, expected), other.append(s, events, expected)]);
      const ok = outcomes.filter((o): o is PromiseFulfilledResult<AppendResult> => o.status === 'fulfilled');
      if (ok.length > 0) {
        expect(ok).toHaveLength(2);
        expect(ok[1].value).toEqual(ok[0].value);
        commit(s, events);
        counts.twins += 1;
      } else {
        outcomes.forEach((o) => expect((o as PromiseRejectedResult).reason).toBeInstanceOf(ConcurrencyError));
        events.forEach((e) => rejected.add(e.id));
      }
    }

    const roles: Array<(w: EventStore) => Promise<void>> = [
      (w) => honest(w, shared),
      (w) => honest(w, shared),
      (w) => honest(w, shared),
      (w) => honest(w, shared),
      stale,
      reappending,
      reappending,
      twins,
      (w) => honest(w, slow),
      (w) => honest(w, slow),
    ];
    try {
      await Promise.all(
        roles.map(async (role, i) => {
          while (committed.size < TARGET) await role(instances[i % instances.length]);
        }),
      );
    } finally {
      await Promise.all(instances.map((w) => w.close()));
    }

    const streams = [...shared, ...slow];
    const stored = await harness.stored(streams);
    try {
      // On timeout the assertions below say what is missing (a reader that skipped events never gets them).
      await waitFor(() => seen.length >= stored.length, 15_000).catch(() => undefined);
      await sleep(300); // anything delivered twice would show up now
    } finally {
      await subscription.stop();
    }
    const own = seen.filter((e) => streams.includes(e.streamId));
    const seenIds = new Set(own.map((e) => e.id));
    expect(stored.filter((r) => !seenIds.has(r.id))).toEqual([]);

    expect(committed.size).toBeGreaterThanOrEqual(TARGET);
    expect(counts.staleRejected).toBeGreaterThan(0);
    expect(counts.idempotentRetries).toBeGreaterThan(0);
    // Stored = committed, nothing rejected left a trace.
    expect(new Set(stored.map((r) => r.id))).toEqual(new Set(committed.keys()));
    expect(stored.length).toBe(committed.size);
    for (const id of rejected) expect(committed.has(id)).toBe(false);
    expect(stored.filter((r) => rejected.has(r.id))).toEqual([]);
    // Seen exactly once each, everything stored.
    expect(own.length).toBe(stored.length);
    expect(seenIds.size).toBe(own.length);
    expect(seenIds).toEqual(new Set(stored.map((r) => r.id)));
    // Global order agrees with every stream's order, without gaps; positions strictly increase.
    const next = new Map<string, number>();
    for (const e of own) {
      expect(`${e.streamId}@${e.streamRevision}`).toBe(`${e.streamId}@${next.get(e.streamId) ?? 0}`);
      next.set(e.streamId, e.streamRevision + 1);
      expect(committed.get(e.id)).toBe(e.streamId);
    }
    expectIncreasing(own.map((e) => e.position));
  });

  /**
   * readAll until this run's events after `from` number at least `count`. Readers may lag behind appends:
   * PostgreSQL only shows events once every older write transaction in the cluster has ended.
   */
  async function readAllVisible(from: Checkpoint, count: number): Promise<RecordedEvent[]> {
    let events: RecordedEvent[] = [];
    await waitFor(() => events.length >= count, 15_000, async () => {
      events = ownEvents(await store.readAll(from, 1000));
    });
    return events;
  }

  function expectIncreasing(positions: Checkpoint[], ev?: RecordedEvent[]): void {
    for (let i = 1; i < positions.length; i++) {
      if (store.comparePositions(positions[i - 1], positions[i]) >= 0) {
        throw new Error(`positions out of order at ${i}: ${positions[i - 1]} then ${positions[i]} ${JSON.stringify(ev?.slice(0, i + 2).map((e) => [e.position, e.streamId, e.streamRevision, e.type]))}`);
      }
    }
  }
});

function event(type: string, data: Record<string, unknown> = {}): NewEvent {
  return { id: randomUUID(), type, data: { ...data }, metadata: { correlationId: randomUUID() } };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitFor(condition: () => boolean, timeoutMs = 15_000, refresh?: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await refresh?.();
    if (condition()) return;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(10);
  }
}
