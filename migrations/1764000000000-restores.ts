import { MigrationInterface, QueryRunner } from 'typeorm';

/** Read model of restores (and the consolidation of quick restores). */
export class Restores1764000000000 implements MigrationInterface {
  name = 'Restores1764000000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE restores (
      id uuid PRIMARY KEY, kind text NOT NULL, backup_id uuid NOT NULL, vm_id uuid NOT NULL, target_vm_id uuid NOT NULL,
      host_id uuid NOT NULL, quick boolean NOT NULL, status text NOT NULL, job_id uuid NOT NULL, consolidation_job_id uuid,
      domain_name text NOT NULL, disks jsonb NOT NULL DEFAULT '[]', reads_backup_ids jsonb NOT NULL, failure text,
      created timestamptz NOT NULL, completed timestamptz, consolidated timestamptz)`);
    await q.query(`CREATE INDEX restores_backup ON restores (backup_id)`);
    await q.query(`CREATE INDEX restores_target_vm ON restores (target_vm_id)`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE IF EXISTS restores`);
  }
}
