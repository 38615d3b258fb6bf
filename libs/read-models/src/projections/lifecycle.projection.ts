import { RecordedEvent } from '@strata/event-store';
import { BackupRemovalEvent, BackupScheduleEvent } from '@strata/domain';
import { Projection, SqlExecutor } from './projection';

/**
 * Deleted backups (status Removed until their files are gone, then Expunged; a merge gives the children the
 * removed backup's parent, its chain position and the data they took in), and backup schedules.
 */
export const lifecycleProjection: Projection = {
  name: 'lifecycle',
  handles: ['BackupDeletionRequested', 'BackupRemovalFailed', 'BackupsMerged', 'BackupExpunged', 'BackupScheduleCreated', 'BackupScheduleUpdated', 'BackupScheduleDeleted'],
  async apply(recorded: RecordedEvent, sql: SqlExecutor) {
    const event = { type: recorded.type, data: recorded.data } as BackupRemovalEvent | BackupScheduleEvent;
    switch (event.type) {
      case 'BackupDeletionRequested':
        await sql.query(`UPDATE backups SET status = 'Removed', failure = NULL WHERE id = $1 AND status <> 'Expunged'`, [event.data.backupId]);
        return;
      case 'BackupRemovalFailed':
        await sql.query(`UPDATE backups SET failure = $2 WHERE id = $1`, [event.data.backupId, `removal failed: ${event.data.reason}`]);
        return;
      case 'BackupsMerged': {
        const d = event.data;
        // Later backups of the chain move up one place (idempotent: only while the removed one still holds its place).
        await sql.query(
          `UPDATE backups b SET chain_position = b.chain_position - 1 FROM backups x
           WHERE x.id = $1 AND x.status <> 'Expunged' AND b.chain_id = x.chain_id AND b.chain_position > x.chain_position`,
          [d.backupId],
        );
        for (const child of d.intoBackupIds) {
          const delta = d.volumes.filter((v) => v.backupId === child).reduce((n, v) => n + v.bytesAfter - v.bytesBefore, 0);
          const stored = Object.fromEntries(d.volumes.filter((v) => v.backupId === child).map((v) => [v.volumeId, v.bytesAfter]));
          await sql.query(
            `UPDATE backups SET parent_id = $2, type = CASE WHEN $2::uuid IS NULL THEN 'FULL' ELSE type END,
               from_checkpoint = CASE WHEN $2::uuid IS NULL THEN NULL ELSE 'strata-' || $2 END, size = size + $3, uncompressed_size = uncompressed_size + $3,
               volumes = (SELECT jsonb_agg(CASE WHEN $4::jsonb ? (v ->> 'volumeId') THEN v || jsonb_build_object('storedBytes', ($4::jsonb ->> (v ->> 'volumeId'))::bigint) ELSE v END) FROM jsonb_array_elements(volumes) v)
             WHERE id = $1 AND parent_id IS DISTINCT FROM $2::uuid`,
            [child, d.newParentBackupId, delta, JSON.stringify(stored)],
          );
        }
        return;
      }
      case 'BackupExpunged':
        await sql.query(`UPDATE backups SET status = 'Expunged', failure = CASE WHEN $3 THEN $2 ELSE failure END WHERE id = $1`, [event.data.backupId, event.data.reason, event.data.filesMissing]);
        return;
      case 'BackupScheduleCreated':
      case 'BackupScheduleUpdated': {
        const d = event.data;
        await sql.query(
          `INSERT INTO backup_schedules (id, vm_id, interval_type, schedule, timezone, max_backups, quiesce, isolated, cron, version, user_id, created)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
           ON CONFLICT (id) DO UPDATE SET interval_type = EXCLUDED.interval_type, schedule = EXCLUDED.schedule, timezone = EXCLUDED.timezone,
             max_backups = EXCLUDED.max_backups, quiesce = EXCLUDED.quiesce, isolated = EXCLUDED.isolated, cron = EXCLUDED.cron, version = EXCLUDED.version`,
          [d.scheduleId, d.vmId, d.intervalType, d.schedule, d.timezone, d.maxBackups, d.quiesce, d.isolated, d.cron, d.version, d.userId, d.createdAt],
        );
        return;
      }
      case 'BackupScheduleDeleted':
        await sql.query(`UPDATE backup_schedules SET removed = $2 WHERE id = $1`, [event.data.scheduleId, event.data.deletedAt]);
        return;
    }
  },
};
