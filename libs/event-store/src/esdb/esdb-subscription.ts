import { setImmediate as nextTurn } from 'node:timers/promises';
import {
  START,
  excludeSystemEvents,
  type AllStreamResolvedEvent,
  type AllStreamSubscription,
  type EventStoreDBClient,
} from '@eventstore/db-client';
import type { Checkpoint, RecordedEvent, SubscribeOptions, Subscription } from '../event-store.port';
import { fromEsdbEvent, isSystemEvent, toEsdbPosition } from './esdb-mapping';

const DEFAULT_BATCH_SIZE = 500;

/**
 * Servers before 23.10 never say "caught up"; after this long without an event and with nothing buffered
 * the subscription is taken to be live anyway, so onCaughtUp still fires.
 */
const IDLE_CAUGHT_UP_MS = 500;

/**
 * A server-side catch-up subscription to $all (system events filtered out by the server, and again here),
 * regrouped into batches: events are buffered as they stream in, the stream is paused while a full batch
 * waits, and onBatch gets one batch at a time. A dropped connection ends the subscription with the error;
 * the owner resubscribes from its last checkpoint.
 */
export class EsdbSubscription implements Subscription {
  readonly done: Promise<void>;
  private readonly stream: AllStreamSubscription;
  private readonly pending: RecordedEvent[] = [];
  private readonly batchSize: number;
  private wake: (() => void) | null = null;
  private stopping = false;
  private failure: Error | null = null;
  private ended = false;
  private serverCaughtUp = false;
  private lastArrival = Date.now();

  constructor(
    client: EventStoreDBClient,
    private readonly options: SubscribeOptions,
  ) {
    this.batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
    if (!Number.isSafeInteger(this.batchSize) || this.batchSize < 1) {
      throw new RangeError(`batchSize must be a positive integer, got ${this.batchSize}`);
    }
    this.stream = client.subscribeToAll({
      fromPosition: options.from ? toEsdbPosition(options.from) : START,
      filter: excludeSystemEvents(),
      resolveLinkTos: false,
    });
    this.stream.on('data', (resolved: AllStreamResolvedEvent) => this.receive(resolved));
    this.stream.on('caughtUp', () => {
      this.serverCaughtUp = true;
      this.signal();
    });
    this.stream.on('fellBehind', () => {
      this.serverCaughtUp = false;
    });
    this.stream.on('error', (error: Error) => {
      if (!this.stopping) this.failure ??= error;
      this.signal();
    });
    this.stream.on('end', () => {
      this.ended = true;
      this.signal();
    });
    this.done = this.run(options.from ?? null);
    this.done.catch(() => undefined);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.signal();
    await this.done.catch(() => undefined);
  }

  private receive(resolved: AllStreamResolvedEvent): void {
    const event = resolved.event;
    if (!event || isSystemEvent(event)) return;
    try {
      this.pending.push(fromEsdbEvent(event));
    } catch (error) {
      this.failure ??= error instanceof Error ? error : new Error(String(error));
    }
    this.lastArrival = Date.now();
    if (this.pending.length >= this.batchSize) this.stream.pause();
    this.signal();
  }

  private async run(from: Checkpoint | null): Promise<void> {
    let checkpoint = from;
    let reportedCaughtUp = false;
    try {
      for (;;) {
        if (this.stopping) return;
        if (this.failure) throw this.failure;
        if (this.pending.length === 0) {
          if (this.ended) throw new Error('EventStoreDB ended the $all subscription');
          if (!reportedCaughtUp && this.isLive()) {
            reportedCaughtUp = true;
            this.options.onCaughtUp?.(checkpoint);
          }
          await this.nextSignal(reportedCaughtUp ? undefined : IDLE_CAUGHT_UP_MS);
          continue;
        }
        // Let events already on their way join this batch instead of delivering them one by one.
        if (this.pending.length < this.batchSize) await nextTurn();
        const batch = this.pending.splice(0, this.batchSize);
        if (this.stream.isPaused() && this.pending.length < this.batchSize) this.stream.resume();
        await this.options.onBatch(batch);
        checkpoint = batch[batch.length - 1].position;
        reportedCaughtUp = false;
      }
    } catch (caught) {
      const error = caught instanceof Error ? caught : new Error(String(caught));
      this.options.onError?.(error);
      throw error;
    } finally {
      await this.stream.unsubscribe().catch(() => undefined);
    }
  }

  /** Everything the server had has been delivered (nothing buffered here or in the stream). */
  private isLive(): boolean {
    if (this.stream.readableLength > 0) return false;
    return this.serverCaughtUp || Date.now() - this.lastArrival >= IDLE_CAUGHT_UP_MS;
  }

  private nextSignal(timeoutMs?: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = timeoutMs === undefined ? null : setTimeout(() => this.signal(), timeoutMs);
      this.wake = () => {
        if (timer) clearTimeout(timer);
        resolve();
      };
    });
  }

  private signal(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }
}
