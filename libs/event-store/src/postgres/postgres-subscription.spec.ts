import type { RecordedEvent } from '../event-store.port';
import { PostgresSubscription, type ChangeSignal } from './postgres-subscription';

/** A log the test appends to, and a change signal the test fires by hand. */
function fakes() {
  const log: RecordedEvent[] = [];
  const reads: Array<{ after: string | null; limit: number }> = [];
  let wake: (() => void) | null = null;
  let generation = 0;
  const signal: ChangeSignal & { fire(): void } = {
    get generation() {
      return generation;
    },
    start: () => undefined,
    waitForChange(seen, _timeoutMs, abort) {
      if (generation !== seen || abort?.aborted) return Promise.resolve();
      return new Promise<void>((resolve) => {
        wake = resolve;
        abort?.addEventListener('abort', () => resolve(), { once: true });
      });
    },
    fire() {
      generation += 1;
      wake?.();
    },
  };
  const append = (n: number) => {
    for (let i = 0; i < n; i++) {
      const seq = log.length + 1;
      log.push({ id: `e${seq}`, type: 'T', data: {}, metadata: {}, streamId: 's-1', streamRevision: seq - 1, position: `1:${seq}`, createdAt: new Date() });
    }
  };
  const readAfter = async (after: string | null, limit: number) => {
    reads.push({ after, limit });
    const from = after === null ? 0 : Number(after.split(':')[1]);
    return log.slice(from, from + limit);
  };
  return { log, reads, signal, append, readAfter };
}

const until = async (condition: () => boolean) => {
  for (let i = 0; i < 500 && !condition(); i++) await new Promise((r) => setTimeout(r, 2));
  expect(condition()).toBe(true);
};

describe('PostgresSubscription', () => {
  it('catches up in full batches, reports caught up on a short read, then follows notifications', async () => {
    const { reads, signal, append, readAfter } = fakes();
    append(5);
    const batches: string[][] = [];
    const caughtUp: Array<string | null> = [];
    const subscription = new PostgresSubscription(readAfter, signal, {
      batchSize: 2,
      onBatch: async (events) => void batches.push(events.map((e) => e.id)),
      onCaughtUp: (checkpoint) => caughtUp.push(checkpoint),
    });
    await until(() => caughtUp.length === 1);
    expect(batches).toEqual([['e1', 'e2'], ['e3', 'e4'], ['e5']]);
    expect(caughtUp).toEqual(['1:5']);
    expect(reads.map((r) => r.after)).toEqual([null, '1:2', '1:4']);

    append(1);
    signal.fire();
    await until(() => batches.length === 4);
    expect(batches[3]).toEqual(['e6']);
    await subscription.stop();
  });

  it('starts after the given checkpoint', async () => {
    const { signal, append, readAfter } = fakes();
    append(3);
    const seen: string[] = [];
    const subscription = new PostgresSubscription(readAfter, signal, { from: '1:2', onBatch: async (events) => void seen.push(...events.map((e) => e.id)) });
    await until(() => seen.length === 1);
    expect(seen).toEqual(['e3']);
    await subscription.stop();
  });

  it('delivers the next batch only after onBatch resolved, and stop() waits for the current one', async () => {
    const { signal, append, readAfter } = fakes();
    append(6);
    let release: (() => void) | null = null;
    let delivered = 0;
    const subscription = new PostgresSubscription(readAfter, signal, {
      batchSize: 2,
      onBatch: () =>
        new Promise<void>((resolve) => {
          release = () => {
            delivered += 1;
            resolve();
          };
        }),
    });
    await until(() => release !== null);
    let stopped = false;
    const stopping = subscription.stop().then(() => (stopped = true));
    await new Promise((r) => setTimeout(r, 10));
    expect(stopped).toBe(false);
    release!();
    await stopping;
    expect(delivered).toBe(1);
    await expect(subscription.done).resolves.toBeUndefined();
  });

  it('stops on a failing onBatch: onError, then done rejects', async () => {
    const { signal, append, readAfter } = fakes();
    append(1);
    const failure = new Error('boom');
    const errors: Error[] = [];
    const subscription = new PostgresSubscription(readAfter, signal, {
      onBatch: async () => {
        throw failure;
      },
      onError: (e) => errors.push(e),
    });
    await expect(subscription.done).rejects.toBe(failure);
    expect(errors).toEqual([failure]);
  });

  it('refuses a batch size below 1', () => {
    const { signal, readAfter } = fakes();
    expect(() => new PostgresSubscription(readAfter, signal, { batchSize: 0, onBatch: async () => undefined })).toThrow(RangeError);
  });
});
