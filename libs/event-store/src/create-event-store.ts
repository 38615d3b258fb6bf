import type { StrataConfig } from '@strata/config';
import { EsdbEventStore } from './esdb/esdb-event-store';
import type { EventStore } from './event-store.port';
import { PostgresEventStore } from './postgres/postgres-event-store';

export type EventStoreConfig = Pick<StrataConfig, 'eventStore' | 'databaseUrl' | 'esdbUrl'>;

/** The adapter the configuration selects; the caller owns it and must close() it. */
export function createEventStore(config: EventStoreConfig): EventStore {
  switch (config.eventStore) {
    case 'postgres':
      return new PostgresEventStore(config.databaseUrl);
    case 'esdb':
      if (!config.esdbUrl) throw new Error('the EventStoreDB event store needs an esdbUrl (STRATA_ESDB_URL)');
      return new EsdbEventStore(config.esdbUrl);
    default:
      throw new Error(`unknown event store "${String(config.eventStore satisfies never)}"`);
  }
}
