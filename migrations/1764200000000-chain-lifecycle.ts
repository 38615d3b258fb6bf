import { MigrationInterface, QueryRunner } from 'typeorm';

/** Backup schedules (listBackupSchedule); deleted and merged backups need no new column (status, parent, size). */
export class ChainLifecycle1764200000000 implements MigrationInterface {
  name = 'ChainLifecycle1764200000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE backup_schedules (
      id uuid PRIMARY KEY, vm_id uuid NOT NULL, interval_type text NOT NULL, schedule text NOT NULL, timezone text NOT NULL,
      max_backups int NOT NULL, quiesce boolean NOT NULL, isolated boolean NOT NULL, cron text NOT NULL, version int NOT NULL,
      user_id uuid NOT NULL, created timestamptz NOT NULL, removed timestamptz)`);
    await q.query(`CREATE INDEX backup_schedules_vm ON backup_schedules (vm_id)`);
    await q.query(`CREATE INDEX backups_repository ON backups (repository_id, status)`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX IF EXISTS backups_repository`);
    await q.query(`DROP TABLE IF EXISTS backup_schedules`);
  }
}
