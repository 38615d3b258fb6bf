/**
 * The event store port. Adapters: PostgreSQL (default) and EventStoreDB.
 *
 * Positions in the global order are opaque strings: each adapter encodes its own notion of "where in
 * the log" (PostgreSQL: transaction id and sequence; EventStoreDB: commit and prepare positions) and
 * only the adapter may compare them. Subscribers store them verbatim as checkpoints.
 */
export type Checkpoint = string;

/** Expected state of the stream before an append (optimistic concurrency). */
export type ExpectedRevision = number | 'any' | 'no_stream' | 'stream_exists';

export interface NewEvent<T = unknown> {
  /** UUID. Derive it from the command or job that caused the event: re-appending the same id is a no-op. */
  id: string;
  type: string;
  data: T;
  metadata?: Record<string, unknown>;
}

export interface RecordedEvent<T = unknown> {
  id: string;
  type: string;
  data: T;
  metadata: Record<string, unknown>;
  streamId: string;
  /** 0-based position of the event within its stream. */
  streamRevision: number;
  /** Opaque position in the global order. */
  position: Checkpoint;
  createdAt: Date;
}

export interface AppendResult {
  /** Revision of the last event of the stream after the append (pass it as the next expected revision). */
  nextExpectedRevision: number;
  /** Global position of the last event appended (or already present, for an idempotent re-append). */
  position: Checkpoint;
}

export interface ReadStreamOptions {
  fromRevision?: number;
  maxCount?: number;
}

export interface SubscribeOptions {
  /** Start after this checkpoint; null or undefined: from the beginning. */
  from?: Checkpoint | null;
  batchSize?: number;
  /** Receives events in global order, in batches; the next batch comes after the promise resolves. */
  onBatch: (events: RecordedEvent[]) => Promise<void>;
  /** Called when the subscription stops on an error (including an error thrown by onBatch). */
  onError?: (error: Error) => void;
  /** Called each time the subscription has read everything that was visible (caught up). */
  onCaughtUp?: (checkpoint: Checkpoint | null) => void;
}

export interface Subscription {
  stop(): Promise<void>;
  /** Resolves when the subscription stops, rejects with the error that stopped it. */
  readonly done: Promise<void>;
}

export interface EventStore {
  /**
   * All events or none. ConcurrencyError when the stream is not at `expected`. Idempotent by event id:
   * when every id is already in the stream this is a no-op that answers what the original append did,
   * whatever `expected` is now; when only some are, IdempotencyConflictError. InvalidStreamNameError /
   * InvalidAppendError for a malformed call.
   */
  append(streamId: string, events: NewEvent[], expected: ExpectedRevision): Promise<AppendResult>;
  /** Events of one stream in stream order; an empty array when the stream does not exist. Sees every commit. */
  readStream(streamId: string, options?: ReadStreamOptions): Promise<RecordedEvent[]>;
  /**
   * Up to `limit` events after `after` (exclusive) in global order. May lag slightly behind commits (an
   * adapter may hold back events until it is sure nothing can still land before them), never skips one.
   */
  readAll(after: Checkpoint | null, limit: number): Promise<RecordedEvent[]>;
  subscribeToAll(options: SubscribeOptions): Subscription;
  /** Negative, zero or positive as a is before, equal to or after b in the global order. */
  comparePositions(a: Checkpoint, b: Checkpoint): number;
  close(): Promise<void>;
}

export const EVENT_STORE = Symbol('EVENT_STORE');
