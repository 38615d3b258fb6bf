import { RecordedEvent } from '@strata/event-store';
import { BackupChainEvent } from '@strata/domain';
import { Projection, SqlExecutor } from './projection';

/** listBackups' rows; `status` follows CloudStack's names (Queued, BackingUp, BackedUp, Failed). */
export const backupsProjection: Projection = {
  name: 'backups',
  handles: ['BackupRequested', 'BackupStarted', 'BackupCompleted', 'BackupFailed'],
  async apply(recorded: RecordedEvent, sql: SqlExecutor) {
    const event = { type: recorded.type, data: recorded.data } as BackupChainEvent;
    switch (event.type) {
      case 'BackupRequested': {
        const d = event.data;
        const virtualSize = d.volumes.reduce((n, v) => n + v.virtualSizeBytes, 0);
        await sql.query(
          `INSERT INTO backups (id, vm_id, name, description, type, full_reason, interval_type, status, chain_id, parent_id, chain_position,
             from_checkpoint, to_checkpoint, isolated, quiesced, volumes, virtual_size, offering_id, repository_id, host_id, job_id, created)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 'Queued', $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
           ON CONFLICT (id) DO NOTHING`,
          [d.backupId, d.vmId, d.name, d.description, d.type, d.fullReason, d.intervalType, d.chainId, d.parentBackupId, d.chainPosition, d.parentCheckpointName, d.checkpointName, d.isolated, d.quiesce, JSON.stringify(d.volumes), virtualSize, d.offeringId, d.repositoryId, d.hostId, d.jobId, d.requestedAt],
        );
        return;
      }
      case 'BackupStarted':
        await sql.query(`UPDATE backups SET status = 'BackingUp' WHERE id = $1 AND status = 'Queued'`, [event.data.backupId]);
        return;
      case 'BackupCompleted': {
        const d = event.data;
        const size = d.volumes.reduce((n, v) => n + v.storedBytes, 0);
        const stored = Object.fromEntries(d.volumes.map((v) => [v.volumeId, v.storedBytes]));
        // A host that fell back to a full changes type, reason, chain and parent of the row.
        await sql.query(
          `UPDATE backups SET status = 'BackedUp', type = $2, full_reason = COALESCE($3, full_reason), chain_id = $4,
             parent_id = CASE WHEN $2 = 'FULL' THEN NULL ELSE parent_id END, chain_position = CASE WHEN $2 = 'FULL' THEN 0 ELSE chain_position END,
             from_checkpoint = CASE WHEN $2 = 'FULL' THEN NULL ELSE from_checkpoint END,
             size = $5, uncompressed_size = $5, completed = $6,
             volumes = (SELECT jsonb_agg(v || jsonb_build_object('storedBytes', COALESCE(($7::jsonb ->> (v ->> 'volumeId'))::bigint, 0))) FROM jsonb_array_elements(volumes) v)
           WHERE id = $1`,
          [d.backupId, d.type, d.fullReason, d.chainId, size, d.completedAt, JSON.stringify(stored)],
        );
        return;
      }
      case 'BackupFailed':
        await sql.query(`UPDATE backups SET status = 'Failed', failure = $2, completed = $3 WHERE id = $1`, [event.data.backupId, event.data.reason, event.data.failedAt]);
        return;
      default:
        return;
    }
  },
};
