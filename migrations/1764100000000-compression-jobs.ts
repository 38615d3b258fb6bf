import { MigrationInterface, QueryRunner } from 'typeorm';

/** Read model of backup compression jobs (listBackupCompressionJobs, and the compression scheduler's counts). */
export class CompressionJobs1764100000000 implements MigrationInterface {
  name = 'CompressionJobs1764100000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE backup_compression_jobs (
      id uuid PRIMARY KEY, backup_id uuid NOT NULL, vm_id uuid NOT NULL, zone_id uuid NOT NULL, type text NOT NULL, status text NOT NULL,
      library text NOT NULL, attempts int NOT NULL DEFAULT 0, host_id uuid, preferred_host_id uuid, scheduled_date timestamptz NOT NULL,
      start_date timestamptz, deadline timestamptz, removed timestamptz, last_error text, cancel_requested boolean NOT NULL DEFAULT false,
      side_files jsonb NOT NULL DEFAULT '[]', settings jsonb, created timestamptz NOT NULL)`);
    await q.query(`CREATE INDEX backup_compression_jobs_status ON backup_compression_jobs (status, scheduled_date)`);
    await q.query(`CREATE INDEX backup_compression_jobs_backup ON backup_compression_jobs (backup_id)`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE IF EXISTS backup_compression_jobs`);
  }
}
