import { MigrationInterface, QueryRunner } from 'typeorm';

/** Read models of hosts, virtual machines and backups. */
export class InventoryAndBackups1763900000000 implements MigrationInterface {
  name = 'InventoryAndBackups1763900000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE hosts (
      id uuid PRIMARY KEY, name text NOT NULL, zone_id uuid NOT NULL, state text NOT NULL, last_heartbeat timestamptz,
      libvirt_version text NOT NULL, qemu_version text NOT NULL, capabilities text NOT NULL, created timestamptz NOT NULL)`);
    await q.query(`CREATE TABLE virtual_machines (
      id uuid PRIMARY KEY, name text NOT NULL, host_id uuid NOT NULL, zone_id uuid NOT NULL, state text NOT NULL,
      volumes jsonb NOT NULL, backup_offering_id uuid, created timestamptz NOT NULL)`);
    await q.query(`CREATE INDEX virtual_machines_host ON virtual_machines (host_id)`);
    await q.query(`CREATE TABLE backups (
      id uuid PRIMARY KEY, vm_id uuid NOT NULL, name text, description text, type text NOT NULL, full_reason text,
      interval_type text NOT NULL, status text NOT NULL, chain_id uuid NOT NULL, parent_id uuid, chain_position int NOT NULL,
      from_checkpoint text, to_checkpoint text NOT NULL, isolated boolean NOT NULL, quiesced boolean NOT NULL,
      volumes jsonb NOT NULL, size bigint NOT NULL DEFAULT 0, virtual_size bigint NOT NULL DEFAULT 0, uncompressed_size bigint NOT NULL DEFAULT 0,
      compression_status text NOT NULL DEFAULT 'Uncompressed', validation_status text NOT NULL DEFAULT 'NotValidated',
      offering_id uuid NOT NULL, repository_id uuid NOT NULL, zone_id uuid, host_id uuid NOT NULL, job_id uuid NOT NULL,
      failure text, created timestamptz NOT NULL, completed timestamptz)`);
    await q.query(`CREATE INDEX backups_vm_created ON backups (vm_id, created)`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE IF EXISTS backups`);
    await q.query(`DROP TABLE IF EXISTS virtual_machines`);
    await q.query(`DROP TABLE IF EXISTS hosts`);
  }
}
