import { MigrationInterface, QueryRunner } from 'typeorm';

/** Schema of the PostgreSQL event store (owned by libs/event-store). */
export class EventStore1763800000000 implements MigrationInterface {
  name = 'EventStore1763800000000';

  public async up(_queryRunner: QueryRunner): Promise<void> {
    // filled in with the PostgreSQL adapter
  }

  public async down(_queryRunner: QueryRunner): Promise<void> {}
}
