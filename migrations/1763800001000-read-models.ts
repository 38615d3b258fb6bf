import { MigrationInterface, QueryRunner } from 'typeorm';

/** Read-model tables and the projector's checkpoints (owned by libs/read-models). */
export class ReadModels1763800001000 implements MigrationInterface {
  name = 'ReadModels1763800001000';

  public async up(_queryRunner: QueryRunner): Promise<void> {
    // filled in with the read models
  }

  public async down(_queryRunner: QueryRunner): Promise<void> {}
}
