import { MigrationInterface, QueryRunner } from 'typeorm';

/** Read-model tables and the checkpoints of the projector and the dispatcher (owned by libs/read-models). */
export class ReadModels1763800001000 implements MigrationInterface {
  name = 'ReadModels1763800001000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE zones (
      id uuid PRIMARY KEY, name text NOT NULL, created timestamptz NOT NULL, removed timestamptz)`);
    await q.query(`CREATE TABLE backup_repositories (
      id uuid PRIMARY KEY, zone_id uuid NOT NULL, name text NOT NULL, address text NOT NULL, type text NOT NULL,
      mount_options text NOT NULL DEFAULT '', encrypted_credentials text, capacity_bytes bigint, used_bytes bigint NOT NULL DEFAULT 0,
      created timestamptz NOT NULL, removed timestamptz)`);
    await q.query(`CREATE INDEX backup_repositories_zone ON backup_repositories (zone_id)`);
    await q.query(`CREATE TABLE native_backup_offerings (
      id uuid PRIMARY KEY, name text NOT NULL, compress boolean NOT NULL, validate boolean NOT NULL,
      validation_steps text NOT NULL, allow_quick_restore boolean NOT NULL, allow_extract_file boolean NOT NULL,
      backup_chain_size int, compression_library text NOT NULL, imported_count int NOT NULL DEFAULT 0,
      created timestamptz NOT NULL, removed timestamptz)`);
    await q.query(`CREATE TABLE backup_offerings (
      id uuid PRIMARY KEY, name text NOT NULL, description text NOT NULL, zone_id uuid NOT NULL, external_id uuid NOT NULL,
      allow_user_driven_backups boolean NOT NULL, repository_id uuid, status text NOT NULL,
      created timestamptz NOT NULL, removed timestamptz)`);
    await q.query(`CREATE INDEX backup_offerings_zone ON backup_offerings (zone_id)`);
    await q.query(`CREATE TABLE configuration_values (
      name text NOT NULL, scope_key text NOT NULL, value text NOT NULL, secret boolean NOT NULL, updated timestamptz NOT NULL,
      PRIMARY KEY (name, scope_key))`);
    await q.query(`CREATE TABLE api_users (
      id uuid PRIMARY KEY, name text NOT NULL, role text NOT NULL, api_key text NOT NULL UNIQUE,
      encrypted_secret_key text NOT NULL, created timestamptz NOT NULL)`);
    await q.query(`CREATE TABLE async_jobs (
      id uuid PRIMARY KEY, command text NOT NULL, user_id uuid NOT NULL, instance_type text, instance_id uuid,
      status int NOT NULL, result_code int NOT NULL, result_type text, result jsonb, progress int NOT NULL,
      bytes_done bigint, bytes_total bigint, created timestamptz NOT NULL, completed timestamptz)`);
    await q.query(`CREATE INDEX async_jobs_user_created ON async_jobs (user_id, created)`);
    await q.query(`CREATE TABLE projection_checkpoints (name text PRIMARY KEY, position text NOT NULL, updated timestamptz NOT NULL)`);
    // Secrets are encrypted with a key that lives outside the database (STRATA_MASTER_KEY_FILE); this
    // records its fingerprint so that starting with the wrong key fails at once instead of garbling.
    await q.query(`CREATE TABLE master_key_fingerprint (id int PRIMARY KEY CHECK (id = 1), fingerprint text NOT NULL)`);
  }

  public async down(q: QueryRunner): Promise<void> {
    for (const t of ['master_key_fingerprint', 'projection_checkpoints', 'async_jobs', 'api_users', 'configuration_values', 'backup_offerings', 'native_backup_offerings', 'backup_repositories', 'zones']) {
      await q.query(`DROP TABLE IF EXISTS ${t}`);
    }
  }
}
