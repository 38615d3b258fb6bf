import { Pool, type PoolConfig } from 'pg';
import { normaliseReadStreamOptions, validateAppend } from '../append-validation';
import { ConcurrencyError, IdempotencyConflictError } from '../event-store.errors';
import type {
  AppendResult,
  Checkpoint,
  EventStore,
  ExpectedRevision,
  NewEvent,
  ReadStreamOptions,
  RecordedEvent,
  SubscribeOptions,
  Subscription,
} from '../event-store.port';
import { comparePositions, decodePosition, encodePosition } from '../position';
import { assertStreamName } from '../stream-name';
import { AppendBatcher } from './append-batcher';
import { PgChangeNotifier } from './pg-change-notifier';
import { executeAppends, type AppendInput, type AppendOutcome } from './postgres-append-statement';
import { PgNotificationListener } from './pg-notification-listener';
import { PostgresSubscription } from './postgres-subscription';
import { OpenSubscriptions } from '../open-subscriptions';

/** Channel appends notify on; subscriptions LISTEN to it. */
export const EVENTS_CHANNEL = 'strata_events';

/** How often an append with 'any' / 'stream_exists' retries after losing a revision race. */
const MAX_REVISION_RACE_RETRIES = 50;

// Positions leave as text (xid8 and bigint exceed a double); the aliases differ from the column names so
// that an ORDER BY can never silently sort by the text form. The time leaves as epoch milliseconds: parsing
// timestamp text was a sixth of the client's time when catching up.
const EVENT_COLUMNS = `e.event_id, e.type, e.data, e.metadata, e.stream_id, e.stream_revision,
  e.transaction_id::text AS position_tx, e.global_position::text AS position_seq,
  (extract(epoch FROM e.created_at) * 1000)::float8 AS created_ms`;

/*
 * Global order = (transaction_id, global_position), and only rows of transactions older than the oldest
 * one still in flight: a transaction that took its sequence value earlier but commits later can therefore
 * never be skipped, because its rows sort after everything returned so far.
 */
const READ_ALL_SQL = `
SELECT ${EVENT_COLUMNS}
FROM events e
WHERE (e.transaction_id, e.global_position) > ($1::xid8, $2::bigint)
  AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY e.transaction_id, e.global_position
LIMIT $3`;

const READ_STREAM_SQL = `
SELECT ${EVENT_COLUMNS}
FROM events e
WHERE e.stream_id = $1 AND e.stream_revision >= $2
ORDER BY e.stream_revision
LIMIT $3`;

const STORED_IDS_SQL = `
SELECT e.event_id, e.stream_id, e.stream_revision, e.transaction_id::text AS position_tx, e.global_position::text AS position_seq
FROM events e WHERE e.event_id = ANY($1::uuid[]) ORDER BY e.stream_revision`;

const HEAD_SQL = `SELECT max(stream_revision) AS revision FROM events WHERE stream_id = $1`;

interface EventRow {
  event_id: string;
  type: string;
  data: unknown;
  metadata: Record<string, unknown> | null;
  stream_id: string;
  stream_revision: number;
  position_tx: string;
  position_seq: string;
  created_ms: number;
}

interface StoredIdRow {
  event_id: string;
  stream_id: string;
  stream_revision: number;
  position_tx: string;
  position_seq: string;
}

export interface PostgresEventStoreOptions {
  /** Pool size when the store creates its own pool from a connection string. */
  poolSize?: number;
  applicationName?: string;
  /**
   * Append statements in flight at once per instance (see AppendBatcher); keep it below the pool size.
   * One gave the best throughput on a small machine; more helps when single appends are slow (lock waits,
   * very large appends) and would otherwise hold up the others of this process.
   */
  maxConcurrentAppends?: number;
}

const DEFAULT_MAX_CONCURRENT_APPENDS = 1;
const MAX_EVENTS_PER_STATEMENT = 1000;

/**
 * PostgreSQL adapter of the event store port: one `events` table (migrations/1763800000000-event-store.ts),
 * in the same database as the read models.
 *
 * Appends: validated, then batched with the appends of other callers of this instance (AppendBatcher) into
 * one statement; each append is still all or nothing, checked against its own expected revision, and
 * idempotent by event id. Subscribers are woken by a NOTIFY after commit (PgChangeNotifier).
 *
 * Reads in global order lag behind commits while any older write transaction in the cluster is still open
 * (see READ_ALL_SQL): keep transactions that write short, including projection rebuilds.
 */
export class PostgresEventStore implements EventStore {
  private readonly pool: Pool;
  private readonly ownsPool: boolean;
  private readonly listener: PgNotificationListener;
  private readonly notifier: PgChangeNotifier;
  private readonly batcher: AppendBatcher<AppendInput, AppendOutcome>;
  private readonly subscriptions = new OpenSubscriptions();
  private closed = false;

  constructor(database: Pool | string, options: PostgresEventStoreOptions = {}) {
    const applicationName = options.applicationName ?? 'strata-event-store';
    let listenConfig: PoolConfig;
    if (typeof database === 'string') {
      listenConfig = { connectionString: database };
      this.pool = new Pool({
        connectionString: database,
        max: options.poolSize ?? 10,
        application_name: applicationName,
        // The planner prices the append statement's custom plans lower (it sees how many appends and
        // events the JSON holds), so it would plan it afresh on every call; the generic plan does the same
        // index lookups without the planning. Only this pool's sessions are affected.
        options: '-c plan_cache_mode=force_generic_plan',
      });
      // An idle pooled client that loses its server emits 'error' on the pool; the next query reconnects.
      this.pool.on('error', () => undefined);
      this.ownsPool = true;
    } else {
      listenConfig = { ...database.options };
      this.pool = database;
      this.ownsPool = false;
    }
    this.listener = new PgNotificationListener(listenConfig, EVENTS_CHANNEL);
    this.notifier = new PgChangeNotifier(this.pool, EVENTS_CHANNEL);
    this.batcher = new AppendBatcher((appends) => executeAppends(this.pool, appends), {
      maxConcurrent: options.maxConcurrentAppends ?? DEFAULT_MAX_CONCURRENT_APPENDS,
      maxEvents: MAX_EVENTS_PER_STATEMENT,
    });
  }

  async append(streamId: string, events: NewEvent[], expected: ExpectedRevision): Promise<AppendResult> {
    const valid = validateAppend(streamId, events, expected);
    const ids = valid.map((e) => e.id);
    for (let attempt = 0; ; attempt++) {
      const outcome = await this.batcher.submit(streamId, valid.length, { streamId, events: valid, expected });
      switch (outcome.kind) {
        case 'appended':
          this.notifier.changed();
          return outcome.result;
        case 'ids-stored':
          return this.alreadyAppended(streamId, ids);
        case 'expected-mismatch':
          throw new ConcurrencyError(streamId, String(expected), outcome.head ?? 'no_stream');
        case 'unique-violation': {
          // A concurrent append may have stored these very ids: that is the idempotent no-op, not a conflict.
          const stored = await this.storedIds(ids);
          if (stored.length > 0) return this.classifyStored(streamId, ids, stored);
          if ((expected === 'any' || expected === 'stream_exists') && attempt < MAX_REVISION_RACE_RETRIES) continue;
          throw new ConcurrencyError(streamId, String(expected), (await this.head(streamId)) ?? 'no_stream');
        }
      }
    }
  }

  async readStream(streamId: string, options?: ReadStreamOptions): Promise<RecordedEvent[]> {
    assertStreamName(streamId);
    const { fromRevision, maxCount } = normaliseReadStreamOptions(options);
    if (maxCount === 0) return [];
    const { rows } = await this.pool.query<EventRow>({
      name: 'strata_es_read_stream_v2',
      text: READ_STREAM_SQL,
      values: [streamId, fromRevision, maxCount],
    });
    return rows.map(toRecordedEvent);
  }

  async readAll(after: Checkpoint | null, limit: number): Promise<RecordedEvent[]> {
    if (!Number.isSafeInteger(limit) || limit < 0) throw new RangeError(`limit must be a non-negative integer, got ${limit}`);
    if (limit === 0) return [];
    const from = after === null ? { major: 0n, minor: 0n } : decodePosition(after);
    const { rows } = await this.pool.query<EventRow>({
      name: 'strata_es_read_all_v2',
      text: READ_ALL_SQL,
      values: [from.major.toString(), from.minor.toString(), limit],
    });
    return rows.map(toRecordedEvent);
  }

  subscribeToAll(options: SubscribeOptions): Subscription {
    if (this.closed) throw new Error('event store is closed');
    const subscription = new PostgresSubscription((after, limit) => this.readAll(after, limit), this.listener, options);
    return this.subscriptions.track(subscription);
  }

  comparePositions(a: Checkpoint, b: Checkpoint): number {
    return comparePositions(a, b);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.subscriptions.stopAll();
    await this.listener.close();
    await this.notifier.close();
    if (this.ownsPool) await this.pool.end();
  }

  private async alreadyAppended(streamId: string, ids: string[]): Promise<AppendResult> {
    return this.classifyStored(streamId, ids, await this.storedIds(ids));
  }

  /** All ids stored in this stream: the append already happened, answer what it answered then. */
  private classifyStored(streamId: string, ids: string[], stored: StoredIdRow[]): AppendResult {
    const inStream = stored.filter((row) => row.stream_id === streamId);
    if (inStream.length !== ids.length) throw new IdempotencyConflictError(streamId, stored.map((row) => row.event_id));
    const last = inStream[inStream.length - 1];
    return { nextExpectedRevision: last.stream_revision, position: encodePosition(last.position_tx, last.position_seq) };
  }

  private async storedIds(ids: string[]): Promise<StoredIdRow[]> {
    const { rows } = await this.pool.query<StoredIdRow>({ name: 'strata_es_stored_ids_v1', text: STORED_IDS_SQL, values: [ids] });
    return rows;
  }

  private async head(streamId: string): Promise<number | null> {
    const { rows } = await this.pool.query<{ revision: number | null }>({ name: 'strata_es_head_v1', text: HEAD_SQL, values: [streamId] });
    return rows[0]?.revision ?? null;
  }
}

function toRecordedEvent(row: EventRow): RecordedEvent {
  return {
    id: row.event_id,
    type: row.type,
    data: row.data,
    metadata: row.metadata ?? {},
    streamId: row.stream_id,
    streamRevision: row.stream_revision,
    position: encodePosition(row.position_tx, row.position_seq),
    createdAt: new Date(row.created_ms),
  };
}
