/**
 * Opportunistic batching of concurrent appends ("group commit" in the application).
 *
 * At most `maxConcurrent` statements run at once. An append that finds a free slot goes out alone at
 * once, so a quiet system pays no latency; appends that arrive while every slot is busy wait and leave
 * together in the next statement. Each statement costs a round trip, planning-free but CTE-heavy
 * execution, a commit and a WAL flush whatever its size; sharing them is what lets 8 writers of one
 * process get well past 3,000 appends/s on a 2-vCPU machine, where one statement per append does not.
 *
 * A batch never holds two appends to the same stream (they would compute the same next revision), and
 * its appends are ordered by stream id, so two concurrent batches take their unique-index locks in the
 * same order and cannot deadlock each other.
 */
export interface BatchRequest<R> {
  streamId: string;
  eventCount: number;
  resolve(result: R): void;
  reject(error: unknown): void;
}

export interface AppendBatcherOptions {
  /** Statements in flight at once; the pool must have at least this many connections. */
  maxConcurrent: number;
  /** Upper bound of events in one statement (one oversized append still goes out, alone). */
  maxEvents: number;
}

export class AppendBatcher<Q, R> {
  private queue: Array<BatchRequest<R> & { input: Q }> = [];
  private running = 0;
  private inFlight = 0;

  /**
   * `execute` runs one statement for the batch and returns one result per request, in order. When it
   * throws for a batch of several, each request is retried alone, so one bad append cannot fail others.
   */
  constructor(
    private readonly execute: (inputs: Q[]) => Promise<R[]>,
    private readonly options: AppendBatcherOptions,
  ) {
    if (options.maxConcurrent < 1 || options.maxEvents < 1) throw new RangeError('batcher limits must be positive');
  }

  submit(streamId: string, eventCount: number, input: Q): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ streamId, eventCount, input, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.running < this.options.maxConcurrent && this.queue.length > 0) {
      const batch = this.take();
      this.running += 1;
      this.inFlight += batch.length;
      void this.run(batch).finally(() => {
        this.inFlight -= batch.length;
        // The slot is released on the next turn, not at once: the callers just resolved are about to
        // submit their next appends (a few microtasks away); they queue and leave together in the next
        // batch, rather than the first of them taking the slot alone.
        setImmediate(() => {
          this.running -= 1;
          this.pump();
        });
      });
    }
  }

  /**
   * Oldest first; skips (keeps queued) a request whose stream is already in the batch or that would
   * overflow it. Takes a fair share of the appends waiting or in flight, so that with several slots the
   * batches even out instead of alternating between one big batch and one lone append.
   */
  private take(): Array<BatchRequest<R> & { input: Q }> {
    const share = Math.ceil((this.queue.length + this.inFlight) / this.options.maxConcurrent);
    const batch: Array<BatchRequest<R> & { input: Q }> = [];
    const rest: typeof batch = [];
    const streams = new Set<string>();
    let events = 0;
    for (const request of this.queue) {
      const fits = batch.length === 0 || (batch.length < share && events + request.eventCount <= this.options.maxEvents);
      if (fits && !streams.has(request.streamId)) {
        batch.push(request);
        streams.add(request.streamId);
        events += request.eventCount;
      } else {
        rest.push(request);
      }
    }
    this.queue = rest;
    return batch.sort((a, b) => (a.streamId < b.streamId ? -1 : a.streamId > b.streamId ? 1 : 0));
  }

  private async run(batch: Array<BatchRequest<R> & { input: Q }>): Promise<void> {
    let results: R[];
    try {
      results = await this.execute(batch.map((request) => request.input));
      if (results.length !== batch.length) throw new Error(`append batch of ${batch.length} returned ${results.length} results`);
    } catch (error) {
      if (batch.length === 1) {
        batch[0].reject(error);
        return;
      }
      for (const request of batch) await this.run([request]);
      return;
    }
    batch.forEach((request, i) => request.resolve(results[i]));
  }
}
