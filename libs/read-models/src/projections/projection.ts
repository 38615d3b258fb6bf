import { RecordedEvent } from '@strata/event-store';

/** Anything that runs SQL inside the projector's transaction (a TypeORM EntityManager does). */
export interface SqlExecutor {
  query(sql: string, parameters?: unknown[]): Promise<unknown>;
}

/** Folds events into read-model rows. Must be idempotent per event: a batch may be replayed after a crash
 * only if its transaction did not commit, but rebuilds replay everything. */
export interface Projection {
  readonly name: string;
  /** Event types this projection cares about. */
  readonly handles: readonly string[];
  apply(event: RecordedEvent, sql: SqlExecutor): Promise<void>;
}
