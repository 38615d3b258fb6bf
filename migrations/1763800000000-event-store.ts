import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Schema of the PostgreSQL event store (owned by libs/event-store, see postgres-event-store.ts).
 *
 * The global order is (transaction_id, global_position), not global_position alone: a sequence value is
 * taken before commit, so concurrent transactions can commit out of sequence order, while readers only
 * return rows of transactions older than every transaction still in flight (pg_snapshot_xmin). That order
 * is the primary key, so readAll's row comparison (transaction_id, global_position) > (...) walks its
 * index, and an append maintains three indexes rather than four.
 */
export class EventStore1763800000000 implements MigrationInterface {
  name = 'EventStore1763800000000';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE events (
        global_position bigserial NOT NULL,
        transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
        stream_id text NOT NULL,
        stream_revision integer NOT NULL CHECK (stream_revision >= 0),
        event_id uuid NOT NULL,
        type text NOT NULL,
        data jsonb NOT NULL,
        metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
        created_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT events_pkey PRIMARY KEY (transaction_id, global_position),
        CONSTRAINT events_event_id_key UNIQUE (event_id),
        CONSTRAINT events_stream_revision_key UNIQUE (stream_id, stream_revision)
      )`);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE IF EXISTS events`);
  }
}
