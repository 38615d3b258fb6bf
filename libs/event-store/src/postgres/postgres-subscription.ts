import type { Checkpoint, RecordedEvent, SubscribeOptions, Subscription } from '../event-store.port';

export const DEFAULT_BATCH_SIZE = 500;

/**
 * Without a notification, how long a caught-up subscription waits before reading again anyway. Needed
 * because events only become readable once every older transaction has ended, and a transaction that held
 * them back (any transaction with an xid, in any database of the cluster) ends without notifying.
 */
export const SAFETY_RECHECK_MS = 750;

export type ReadAfter = (after: Checkpoint | null, limit: number) => Promise<RecordedEvent[]>;

/** What a subscription needs of PgNotificationListener. */
export interface ChangeSignal {
  start(): void;
  readonly generation: number;
  waitForChange(seen: number, timeoutMs: number, signal?: AbortSignal): Promise<void>;
}

/**
 * Catch-up subscription: reads batches in global order until a read comes back short, then sleeps until a
 * NOTIFY (or the safety re-check) says there may be more. One batch at a time: the next read starts only
 * after onBatch has resolved, so the subscriber's checkpoint is always the last delivered position.
 */
export class PostgresSubscription implements Subscription {
  readonly done: Promise<void>;
  private readonly abort = new AbortController();

  constructor(
    private readonly readAfter: ReadAfter,
    private readonly listener: ChangeSignal,
    private readonly options: SubscribeOptions,
  ) {
    const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
    if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
    listener.start();
    this.done = this.run(options.from ?? null, batchSize);
    // Callers who only use onError/stop() must not get an unhandled rejection; awaiting `done` still rejects.
    this.done.catch(() => undefined);
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.done.catch(() => undefined);
  }

  private get stopped(): boolean {
    return this.abort.signal.aborted;
  }

  private async run(from: Checkpoint | null, batchSize: number): Promise<void> {
    let checkpoint = from;
    try {
      while (!this.stopped) {
        // Taken before the read: a notification that arrives while we read or deliver means "read again".
        const seen = this.listener.generation;
        const events = await this.readAfter(checkpoint, batchSize);
        if (this.stopped) return;
        if (events.length > 0) {
          await this.options.onBatch(events);
          checkpoint = events[events.length - 1].position;
        }
        if (events.length < batchSize) {
          this.options.onCaughtUp?.(checkpoint);
          await this.listener.waitForChange(seen, SAFETY_RECHECK_MS, this.abort.signal);
        }
      }
    } catch (caught) {
      const error = caught instanceof Error ? caught : new Error(String(caught));
      this.options.onError?.(error);
      throw error;
    }
  }
}
