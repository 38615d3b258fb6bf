import { MigrationInterface, QueryRunner } from 'typeorm';

/** Whether a host removed the side files a Failed or Cancelled compression job left (the scheduler asks one until it has). */
export class CompressionSideFileDiscards1764250000000 implements MigrationInterface {
  name = 'CompressionSideFileDiscards1764250000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE backup_compression_jobs ADD COLUMN side_files_discarded boolean NOT NULL DEFAULT false`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE backup_compression_jobs DROP COLUMN IF EXISTS side_files_discarded`);
  }
}
