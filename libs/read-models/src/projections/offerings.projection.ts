import { RecordedEvent } from '@strata/event-store';
import { BackupOfferingEvent, NativeOfferingEvent } from '@strata/domain';
import { Projection, SqlExecutor } from './projection';

export const offeringsProjection: Projection = {
  name: 'offerings',
  handles: [
    'NativeBackupOfferingCreated',
    'NativeBackupOfferingDeleted',
    'NativeBackupOfferingImported',
    'NativeBackupOfferingReleased',
    'BackupOfferingImportRequested',
    'BackupOfferingImported',
    'BackupOfferingImportFailed',
    'BackupOfferingDeleted',
  ],
  async apply(recorded: RecordedEvent, sql: SqlExecutor) {
    const event = { type: recorded.type, data: recorded.data } as NativeOfferingEvent | BackupOfferingEvent;
    switch (event.type) {
      case 'NativeBackupOfferingCreated': {
        const d = event.data;
        await sql.query(
          `INSERT INTO native_backup_offerings (id, name, compress, validate, validation_steps, allow_quick_restore, allow_extract_file,
             backup_chain_size, compression_library, created)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING`,
          [d.offeringId, d.name, d.compress, d.validate, d.validationSteps.join(','), d.allowQuickRestore, d.allowExtractFile, d.backupChainSize, d.compressionLibrary, d.createdAt],
        );
        return;
      }
      case 'NativeBackupOfferingDeleted':
        await sql.query(`UPDATE native_backup_offerings SET removed = $2 WHERE id = $1`, [event.data.offeringId, event.data.deletedAt]);
        return;
      case 'NativeBackupOfferingImported':
        await sql.query(`UPDATE native_backup_offerings SET imported_count = imported_count + 1 WHERE id = $1`, [event.data.offeringId]);
        return;
      case 'NativeBackupOfferingReleased':
        await sql.query(`UPDATE native_backup_offerings SET imported_count = imported_count - 1 WHERE id = $1`, [event.data.offeringId]);
        return;
      case 'BackupOfferingImportRequested': {
        const d = event.data;
        await sql.query(
          `INSERT INTO backup_offerings (id, name, description, zone_id, external_id, allow_user_driven_backups, repository_id, status, created)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 'Importing', $8) ON CONFLICT (id) DO NOTHING`,
          [d.offeringId, d.name, d.description, d.zoneId, d.nativeOfferingId, d.allowUserDrivenBackups, d.repositoryId, d.requestedAt],
        );
        return;
      }
      case 'BackupOfferingImported':
        await sql.query(`UPDATE backup_offerings SET status = 'Active', repository_id = $2 WHERE id = $1`, [event.data.offeringId, event.data.repositoryId]);
        return;
      case 'BackupOfferingImportFailed':
        await sql.query(`UPDATE backup_offerings SET status = 'Failed' WHERE id = $1`, [event.data.offeringId]);
        return;
      case 'BackupOfferingDeleted':
        await sql.query(`UPDATE backup_offerings SET removed = $2 WHERE id = $1`, [event.data.offeringId, event.data.deletedAt]);
        return;
    }
  },
};
