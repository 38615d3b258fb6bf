import { RecordedEvent } from '@strata/event-store';
import { ZoneEvent } from '@strata/domain';
import { Projection, SqlExecutor } from './projection';

export const zonesProjection: Projection = {
  name: 'zones',
  handles: ['ZoneCreated', 'ZoneDeleted', 'BackupRepositoryAdded', 'BackupRepositoryUpdated', 'BackupRepositoryDeleted'],
  async apply(recorded: RecordedEvent, sql: SqlExecutor) {
    const event = { type: recorded.type, data: recorded.data } as ZoneEvent;
    switch (event.type) {
      case 'ZoneCreated':
        await sql.query(`INSERT INTO zones (id, name, created) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING`, [event.data.zoneId, event.data.name, event.data.createdAt]);
        return;
      case 'ZoneDeleted':
        await sql.query(`UPDATE zones SET removed = $2 WHERE id = $1`, [event.data.zoneId, event.data.deletedAt]);
        return;
      case 'BackupRepositoryAdded': {
        const d = event.data;
        await sql.query(
          `INSERT INTO backup_repositories (id, zone_id, name, address, type, mount_options, encrypted_credentials, capacity_bytes, created)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING`,
          [d.repositoryId, d.zoneId, d.name, d.address, d.type, d.mountOptions, d.encryptedCredentials, d.capacityBytes, d.createdAt],
        );
        return;
      }
      case 'BackupRepositoryUpdated': {
        const d = event.data;
        await sql.query(
          `UPDATE backup_repositories SET
             name = COALESCE($2, name), address = COALESCE($3, address), mount_options = COALESCE($4, mount_options),
             encrypted_credentials = CASE WHEN $5 THEN $6 ELSE encrypted_credentials END
           WHERE id = $1`,
          [d.repositoryId, d.name ?? null, d.address ?? null, d.mountOptions ?? null, d.encryptedCredentials !== undefined, d.encryptedCredentials ?? null],
        );
        return;
      }
      case 'BackupRepositoryDeleted':
        await sql.query(`UPDATE backup_repositories SET removed = $2 WHERE id = $1`, [event.data.repositoryId, event.data.deletedAt]);
        return;
    }
  },
};
