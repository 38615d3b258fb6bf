import { createEventStore } from './create-event-store';
import { EsdbEventStore } from './esdb/esdb-event-store';
import { PostgresEventStore } from './postgres/postgres-event-store';

describe('createEventStore', () => {
  it('builds the PostgreSQL adapter by default configuration', async () => {
    const store = createEventStore({ eventStore: 'postgres', databaseUrl: 'postgres://strata@127.0.0.1:1/none', esdbUrl: null });
    expect(store).toBeInstanceOf(PostgresEventStore);
    await store.close();
  });

  it('builds the EventStoreDB adapter when selected', async () => {
    const store = createEventStore({ eventStore: 'esdb', databaseUrl: 'postgres://unused', esdbUrl: 'esdb://127.0.0.1:1?tls=false' });
    expect(store).toBeInstanceOf(EsdbEventStore);
    await store.close();
  });

  it('refuses EventStoreDB without a URL', () => {
    expect(() => createEventStore({ eventStore: 'esdb', databaseUrl: 'postgres://unused', esdbUrl: null })).toThrow(/STRATA_ESDB_URL/);
  });
});
