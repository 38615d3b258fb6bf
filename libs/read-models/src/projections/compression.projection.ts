import { RecordedEvent } from '@strata/event-store';
import { BackupCompressionEvent } from '@strata/domain';
import { Projection, SqlExecutor } from './projection';

/**
 * Compression jobs (listBackupCompressionJobs) and the backups' `compressionstatus`, `size` and
 * `uncompressedsize`: Uncompressed -> Compressing (Starting attempt) -> FinalizingCompression (side files
 * written, swap pending or running) -> Compressed, or CompressionError when the retries are used up. While
 * a failed Starting attempt waits for its retry the backup is Uncompressed again (its files are untouched).
 */
export const compressionProjection: Projection = {
  name: 'compression',
  handles: ['CompressionJobScheduled', 'CompressionStarted', 'CompressionSideFilesWritten', 'CompressionFinalized', 'CompressionAttemptFailed', 'CompressionFailed', 'CompressionCancelled', 'CompressionJobStopped', 'CompressionSideFilesDiscarded'],
  async apply(recorded: RecordedEvent, sql: SqlExecutor) {
    const event = { type: recorded.type, data: recorded.data } as BackupCompressionEvent;
    /** After a job of the backup ended without compressing it: Uncompressed, unless something else runs or it is compressed. */
    const settle = (backupId: string) =>
      sql.query(
        `UPDATE backups SET compression_status = 'Uncompressed' WHERE id = $1 AND compression_status IN ('Compressing', 'FinalizingCompression')
           AND NOT EXISTS (SELECT 1 FROM backup_compression_jobs WHERE backup_id = $1 AND status IN ('Scheduled', 'Running'))`,
        [backupId],
      );
    switch (event.type) {
      case 'CompressionJobScheduled': {
        const d = event.data;
        // Preferred host: the one that took the backup (Starting), the one that wrote the side files (Finalizing).
        const preferred =
          d.type === 'Starting'
            ? `(SELECT host_id FROM backups WHERE id = $2)`
            : `(SELECT host_id FROM backup_compression_jobs WHERE backup_id = $2 AND type = 'Starting' ORDER BY created DESC LIMIT 1)`;
        await sql.query(
          `INSERT INTO backup_compression_jobs (id, backup_id, vm_id, zone_id, type, status, library, attempts, preferred_host_id, scheduled_date, side_files, created)
           VALUES ($1, $2, COALESCE(NULLIF($3, '')::uuid, (SELECT vm_id FROM backups WHERE id = $2)), $4, $5, 'Scheduled', $6, 0, ${preferred}, $7, $8, $7)
           ON CONFLICT (id) DO NOTHING`,
          [d.jobId, d.backupId, d.vmId, d.zoneId, d.type, d.library, d.scheduledAt, JSON.stringify(d.sideFiles)],
        );
        return;
      }
      case 'CompressionStarted': {
        const d = event.data;
        await sql.query(
          `UPDATE backup_compression_jobs SET status = 'Running', attempts = $2, host_id = $3, start_date = $4, deadline = $5, settings = $6 WHERE id = $1`,
          [d.jobId, d.attempt, d.hostId, d.startedAt, d.deadline, JSON.stringify(d.settings)],
        );
        await sql.query(`UPDATE backups SET compression_status = $2 WHERE id = $1 AND compression_status <> 'Compressed'`, [d.backupId, d.type === 'Starting' ? 'Compressing' : 'FinalizingCompression']);
        return;
      }
      case 'CompressionSideFilesWritten': {
        const d = event.data;
        await sql.query(`UPDATE backup_compression_jobs SET status = 'Done', removed = $2, side_files = $3 WHERE id = $1`, [d.jobId, d.writtenAt, JSON.stringify(d.volumes)]);
        await sql.query(`UPDATE backups SET compression_status = 'FinalizingCompression' WHERE id = $1`, [d.backupId]);
        return;
      }
      case 'CompressionFinalized': {
        const d = event.data;
        const compressed = d.volumes.reduce((n, v) => n + v.compressedBytes, 0);
        const original = d.volumes.reduce((n, v) => n + v.uncompressedBytes, 0);
        const stored = Object.fromEntries(d.volumes.map((v) => [v.volumeId, v.compressedBytes]));
        await sql.query(`UPDATE backup_compression_jobs SET status = 'Done', removed = $2 WHERE id = $1`, [d.jobId, d.finalizedAt]);
        await sql.query(
          `UPDATE backups SET compression_status = 'Compressed', size = $2, uncompressed_size = $3,
             volumes = (SELECT jsonb_agg(CASE WHEN $4::jsonb ? (v ->> 'volumeId') THEN v || jsonb_build_object('storedBytes', ($4::jsonb ->> (v ->> 'volumeId'))::bigint) ELSE v END) FROM jsonb_array_elements(volumes) v)
           WHERE id = $1`,
          [d.backupId, compressed, original, JSON.stringify(stored)],
        );
        return;
      }
      case 'CompressionAttemptFailed': {
        const d = event.data;
        if (d.retryAt) {
          await sql.query(`UPDATE backup_compression_jobs SET status = 'Scheduled', scheduled_date = $2, last_error = $3 WHERE id = $1`, [d.jobId, d.retryAt, d.reason]);
          if (d.type === 'Starting') await sql.query(`UPDATE backups SET compression_status = 'Uncompressed' WHERE id = $1 AND compression_status = 'Compressing'`, [d.backupId]);
        } else {
          await sql.query(`UPDATE backup_compression_jobs SET status = 'Failed', removed = $2, last_error = $3 WHERE id = $1`, [d.jobId, d.failedAt, d.reason]);
        }
        return;
      }
      case 'CompressionFailed': {
        const d = event.data;
        await sql.query(`UPDATE backup_compression_jobs SET status = 'Failed', removed = COALESCE(removed, $2) WHERE id = $1`, [d.jobId, d.failedAt]);
        await sql.query(`UPDATE backups SET compression_status = 'CompressionError' WHERE id = $1`, [d.backupId]);
        return;
      }
      case 'CompressionCancelled': {
        const d = event.data;
        const reason = `cancelled: ${d.reason}`;
        if (d.cancelledJobIds.length) {
          await sql.query(`UPDATE backup_compression_jobs SET status = 'Cancelled', removed = $2, last_error = COALESCE(last_error, $3) WHERE id = ANY($1::uuid[])`, [`{${d.cancelledJobIds.join(',')}}`, d.cancelledAt, reason]);
        }
        if (d.stoppingJobIds.length) await sql.query(`UPDATE backup_compression_jobs SET cancel_requested = true WHERE id = ANY($1::uuid[])`, [`{${d.stoppingJobIds.join(',')}}`]);
        await settle(d.backupId);
        return;
      }
      case 'CompressionJobStopped': {
        const d = event.data;
        await sql.query(`UPDATE backup_compression_jobs SET status = 'Cancelled', removed = $2, last_error = COALESCE(last_error, $3) WHERE id = $1`, [d.jobId, d.stoppedAt, `cancelled while running (${d.outcome}): ${d.detail}`]);
        await settle(d.backupId);
        return;
      }
      case 'CompressionSideFilesDiscarded':
        await sql.query(`UPDATE backup_compression_jobs SET side_files_discarded = true WHERE id = $1`, [event.data.jobId]);
        return;
    }
  },
};
