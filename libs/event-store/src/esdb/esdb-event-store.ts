import {
  BACKWARDS,
  END,
  EventStoreDBClient,
  FORWARDS,
  START,
  WrongExpectedVersionError,
  jsonEvent,
  type JSONType,
  type Position,
} from '@eventstore/db-client';
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
import { comparePositions } from '../position';
import { assertStreamName } from '../stream-name';
import {
  fromEsdbCurrentRevision,
  fromEsdbEvent,
  isStreamNotFound,
  isSystemEvent,
  toCheckpoint,
  toEsdbExpectedRevision,
  toEsdbPosition,
  toRevisionNumber,
} from './esdb-mapping';
import { EsdbSubscription } from './esdb-subscription';
import { OpenSubscriptions } from '../open-subscriptions';

/** Smallest page readAll asks for: system events in $all are skipped, so pages may yield fewer events. */
const MIN_READ_ALL_PAGE = 64;
const MAX_READ_ALL_PAGE = 4096;

/**
 * EventStoreDB adapter of the event store port, through @eventstore/db-client 6.x (gRPC).
 *
 * Idempotency: the server only deduplicates a retried append when it arrives with the same expected
 * revision as the original (and, with ANY, only while the ids are in its recent cache). The port promises
 * more: re-appending ids already in the stream is a no-op whatever the expected revision, e.g. a handler
 * that reloaded the stream after a crash. So append first looks for the ids in the stream (reading it
 * backwards, stopping as soon as all are found) and looks again when the server reports a conflict. Two
 * concurrent re-appends of the same new ids with 'any' still depend on the server's own deduplication.
 * The price: an append of new ids reads its whole stream first, which is fine for strata's streams (one
 * per VM or object, thousands of small events at most) but is the first thing to revisit if they grow.
 *
 * Reading $all needs a user allowed to (the default admin of a connection string is).
 */
export class EsdbEventStore implements EventStore {
  private readonly client: EventStoreDBClient;
  private readonly ownsClient: boolean;
  private readonly subscriptions = new OpenSubscriptions();
  private closed = false;

  constructor(connection: EventStoreDBClient | string) {
    if (typeof connection === 'string') {
      this.client = EventStoreDBClient.connectionString(connection);
      this.ownsClient = true;
    } else {
      this.client = connection;
      this.ownsClient = false;
    }
  }

  async append(streamId: string, events: NewEvent[], expected: ExpectedRevision): Promise<AppendResult> {
    const valid = validateAppend(streamId, events, expected);
    const ids = valid.map((e) => e.id);
    const before = await this.findAppended(streamId, ids);
    if (before) return before;
    try {
      const result = await this.client.appendToStream(
        streamId,
        valid.map((e) =>
          jsonEvent({
            id: e.id,
            type: e.type,
            // JSON.stringify is what the client does with it; null and numbers are valid JSON too.
            data: (e.data ?? null) as JSONType,
            metadata: e.metadata ?? {},
          }),
        ),
        { expectedRevision: toEsdbExpectedRevision(expected) },
      );
      const nextExpectedRevision = toRevisionNumber(result.nextExpectedRevision);
      const position = await this.positionOfLast(streamId, valid.length, result.nextExpectedRevision, result.position);
      return { nextExpectedRevision, position };
    } catch (error) {
      if (!(error instanceof WrongExpectedVersionError)) throw error;
      // A concurrent append of these very ids made the stream move: that is the no-op, not a conflict.
      const after = await this.findAppended(streamId, ids);
      if (after) return after;
      throw new ConcurrencyError(streamId, String(expected), fromEsdbCurrentRevision(error.actualVersion));
    }
  }

  async readStream(streamId: string, options?: ReadStreamOptions): Promise<RecordedEvent[]> {
    assertStreamName(streamId);
    const { fromRevision, maxCount } = normaliseReadStreamOptions(options);
    if (maxCount === 0) return [];
    const events: RecordedEvent[] = [];
    try {
      const read = this.client.readStream(streamId, {
        direction: FORWARDS,
        fromRevision: BigInt(fromRevision),
        ...(maxCount === null ? {} : { maxCount }),
      });
      for await (const resolved of read) {
        if (resolved.event) events.push(fromEsdbEvent(resolved.event, resolved.commitPosition));
      }
    } catch (error) {
      if (isStreamNotFound(error)) return [];
      throw error;
    }
    return events;
  }

  async readAll(after: Checkpoint | null, limit: number): Promise<RecordedEvent[]> {
    if (!Number.isSafeInteger(limit) || limit < 0) throw new RangeError(`limit must be a non-negative integer, got ${limit}`);
    const events: RecordedEvent[] = [];
    let cursor = after;
    while (events.length < limit) {
      const pageSize = Math.min(MAX_READ_ALL_PAGE, Math.max(MIN_READ_ALL_PAGE, limit - events.length + 1));
      let read = 0;
      let last: Position | null = null;
      const page = this.client.readAll({
        direction: FORWARDS,
        fromPosition: cursor === null ? START : toEsdbPosition(cursor),
        maxCount: pageSize,
      });
      for await (const resolved of page) {
        read += 1;
        const event = resolved.event;
        if (!event) continue;
        last = event.position;
        // Reading $all from a position may include the event at that position: `after` is exclusive.
        if (cursor !== null && comparePositions(toCheckpoint(event.position), cursor) <= 0) continue;
        if (isSystemEvent(event)) continue;
        events.push(fromEsdbEvent(event));
        if (events.length === limit) break;
      }
      if (events.length === limit || read < pageSize || last === null) break;
      cursor = toCheckpoint(last);
    }
    return events;
  }

  subscribeToAll(options: SubscribeOptions): Subscription {
    if (this.closed) throw new Error('event store is closed');
    const subscription = new EsdbSubscription(this.client, options);
    return this.subscriptions.track(subscription);
  }

  comparePositions(a: Checkpoint, b: Checkpoint): number {
    return comparePositions(a, b);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.subscriptions.stopAll();
    if (this.ownsClient) await this.client.dispose();
  }

  /**
   * When every id is already in the stream: what the original append answered (revision and position of
   * its last event). When only some are: the caller mixed old and new events. Null when none are.
   */
  private async findAppended(streamId: string, ids: string[]): Promise<AppendResult | null> {
    const wanted = new Set(ids);
    const found = new Map<string, RecordedEvent>();
    try {
      const read = this.client.readStream(streamId, { direction: BACKWARDS, fromRevision: END });
      for await (const resolved of read) {
        const event = resolved.event;
        if (!event || !wanted.has(event.id.toLowerCase())) continue;
        found.set(event.id.toLowerCase(), fromEsdbEvent(event, resolved.commitPosition));
        if (found.size === wanted.size) break;
      }
    } catch (error) {
      if (isStreamNotFound(error)) return null;
      throw error;
    }
    if (found.size === 0) return null;
    if (found.size < wanted.size) throw new IdempotencyConflictError(streamId, [...found.keys()]);
    const last = [...found.values()].reduce((a, b) => (b.streamRevision > a.streamRevision ? b : a));
    return { nextExpectedRevision: last.streamRevision, position: last.position };
  }

  /**
   * The port promises the position of the last event, exactly as subscribers will see it. The server's
   * append position is that for a single event; for several it is read back rather than trusted, and also
   * when the server leaves it out (older servers, deduplicated retries).
   */
  private async positionOfLast(streamId: string, count: number, revision: bigint, position: Position | undefined): Promise<Checkpoint> {
    if (count === 1 && position && position.commit >= 0n && position.prepare >= 0n) return toCheckpoint(position);
    const [event] = await this.readStream(streamId, { fromRevision: toRevisionNumber(revision), maxCount: 1 });
    if (!event) throw new Error(`EventStoreDB did not return the position of ${streamId}@${revision}`);
    return event.position;
  }
}
