import { Decider, DomainEvent, fold } from '@strata/domain';
import { AppendResult, ConcurrencyError, EventStore, NewEvent } from '@strata/event-store';

export interface HandleOptions {
  /** Ids of the new events; derive them from a job id to make a retried job idempotent. Default: random. */
  eventId?: (event: DomainEvent, index: number) => string;
  metadata?: Record<string, unknown>;
  /** How often to re-read and re-decide when another writer appended first. */
  retries?: number;
}

export interface HandleResult<E> {
  events: E[];
  /** Null when the decider decided nothing. */
  append: AppendResult | null;
}

/**
 * Load a stream, fold it, decide, append with the revision that was read. A concurrent append makes
 * the append fail with ConcurrencyError; the command is then decided again on the fresh state.
 */
export class CommandHandler {
  constructor(private readonly store: EventStore, private readonly newEventId: () => string) {}

  async load<E extends DomainEvent, S>(streamId: string, decider: Pick<Decider<unknown, E, S>, 'evolve' | 'initialState'>): Promise<{ state: S; revision: number | null }> {
    const recorded = await this.store.readStream(streamId);
    const events = recorded.map((r) => ({ type: r.type, data: r.data }) as E);
    return { state: fold(decider, events), revision: recorded.length ? recorded[recorded.length - 1].streamRevision : null };
  }

  async handle<C, E extends DomainEvent, S>(streamId: string, decider: Decider<C, E, S>, command: C, options: HandleOptions = {}): Promise<HandleResult<E>> {
    const attempts = (options.retries ?? 5) + 1;
    for (let attempt = 1; ; attempt++) {
      const { state, revision } = await this.load(streamId, decider);
      const events = decider.decide(command, state);
      if (events.length === 0) return { events, append: null };
      const toAppend: NewEvent[] = events.map((e, i) => ({
        id: options.eventId ? options.eventId(e, i) : this.newEventId(),
        type: e.type,
        data: e.data,
        metadata: options.metadata,
      }));
      try {
        const append = await this.store.append(streamId, toAppend, revision === null ? 'no_stream' : revision);
        return { events, append };
      } catch (error) {
        if (!(error instanceof ConcurrencyError) || attempt >= attempts) throw error;
      }
    }
  }
}
