import { RecordedEvent } from '@strata/event-store';
import { BackupChainEvent } from '@strata/domain';
import { Projection, SqlExecutor } from './projection';

/**
 * Restores, and the `Restoring` status of the backups they read from: a backup is Restoring while any
 * restore of it runs, and BackedUp again when the last one ends.
 */
export const restoresProjection: Projection = {
  name: 'restores',
  handles: ['RestoreRequested', 'RestoreCompleted', 'RestoreFailed', 'ConsolidationRequested', 'ConsolidationCompleted', 'ConsolidationFailed'],
  async apply(recorded: RecordedEvent, sql: SqlExecutor) {
    const event = { type: recorded.type, data: recorded.data } as BackupChainEvent;
    const backAfterRestore = (backupId: string) =>
      sql.query(
        `UPDATE backups SET status = CASE WHEN EXISTS (SELECT 1 FROM restores WHERE backup_id = $1 AND status = 'Restoring') THEN 'Restoring' ELSE 'BackedUp' END
         WHERE id = $1 AND status = 'Restoring'`,
        [backupId],
      );
    switch (event.type) {
      case 'RestoreRequested': {
        const d = event.data;
        await sql.query(
          `INSERT INTO restores (id, kind, backup_id, vm_id, target_vm_id, host_id, quick, status, job_id, domain_name, reads_backup_ids, created)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 'Restoring', $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING`,
          [d.restoreId, d.kind, d.backupId, d.vmId, d.targetVmId, d.hostId, d.quick, d.jobId, d.domainName, JSON.stringify(d.readsBackupIds), d.requestedAt],
        );
        await sql.query(`UPDATE backups SET status = 'Restoring' WHERE id = $1 AND status = 'BackedUp'`, [d.backupId]);
        return;
      }
      case 'RestoreCompleted': {
        const d = event.data;
        await sql.query(`UPDATE restores SET status = $2, disks = $3, completed = $4 WHERE id = $1`, [d.restoreId, d.quick ? 'Consolidating' : 'Restored', JSON.stringify(d.disks), d.completedAt]);
        await backAfterRestore(d.backupId);
        return;
      }
      case 'RestoreFailed': {
        const d = event.data;
        await sql.query(`UPDATE restores SET status = 'Failed', failure = $2, completed = $3 WHERE id = $1`, [d.restoreId, d.reason, d.failedAt]);
        await backAfterRestore(d.backupId);
        return;
      }
      case 'ConsolidationRequested':
        await sql.query(`UPDATE restores SET consolidation_job_id = $2 WHERE id = $1`, [event.data.restoreId, event.data.consolidationJobId]);
        return;
      case 'ConsolidationCompleted':
        await sql.query(`UPDATE restores SET status = 'Consolidated', consolidated = $2 WHERE id = $1`, [event.data.restoreId, event.data.completedAt]);
        return;
      case 'ConsolidationFailed':
        await sql.query(`UPDATE restores SET status = 'ConsolidationFailed', failure = $2 WHERE id = $1`, [event.data.restoreId, event.data.reason]);
        return;
      default:
        return;
    }
  },
};
