export * from './event-store.port';
export * from './event-store.errors';
export * from './stream-name';
export * from './position';
export * from './append-validation';
export * from './postgres/postgres-event-store';
export * from './esdb/esdb-event-store';
export * from './create-event-store';
