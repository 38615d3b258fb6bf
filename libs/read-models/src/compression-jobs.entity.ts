import { Column, Entity, PrimaryColumn } from 'typeorm';

/**
 * listBackupCompressionJobs' rows, one per compression job (a backup has a Starting job and, once its side
 * files exist, a Finalizing job). The compression scheduler counts `Running` rows for the per-host and
 * per-zone limits; a job keeps `Running` until its host reported the attempt's outcome (or its deadline
 * lapsed), so the count never falls below the qemu-img processes that really run.
 */
@Entity('backup_compression_jobs')
export class BackupCompressionJobView {
  @PrimaryColumn('uuid') id!: string;
  @Column('uuid', { name: 'backup_id' }) backupId!: string;
  @Column('uuid', { name: 'vm_id' }) vmId!: string;
  @Column('uuid', { name: 'zone_id' }) zoneId!: string;
  /** `Starting` or `Finalizing`. */
  @Column('text') type!: string;
  /** Scheduled, Running, Done, Failed or Cancelled. */
  @Column('text') status!: string;
  @Column('text') library!: string;
  @Column('int') attempts!: number;
  /** Host of the running attempt (or of the last one). */
  @Column('uuid', { name: 'host_id', nullable: true }) hostId!: string | null;
  /** Where the scheduler runs it if it can: the backup's host (Starting), the host that wrote the side files (Finalizing). */
  @Column('uuid', { name: 'preferred_host_id', nullable: true }) preferredHostId!: string | null;
  @Column('timestamptz', { name: 'scheduled_date' }) scheduledDate!: Date;
  /** Start of the running (or last) attempt. */
  @Column('timestamptz', { name: 'start_date', nullable: true }) startDate!: Date | null;
  @Column('timestamptz', { nullable: true }) deadline!: Date | null;
  /** When the job ended (Done, Failed, Cancelled). */
  @Column('timestamptz', { nullable: true }) removed!: Date | null;
  @Column('text', { name: 'last_error', nullable: true }) lastError!: string | null;
  @Column('boolean', { name: 'cancel_requested', default: false }) cancelRequested!: boolean;
  /** A host removed the side files this (Failed or Cancelled) job left; see sideFilesLeftBehind. */
  @Column('boolean', { name: 'side_files_discarded', default: false }) sideFilesDiscarded!: boolean;
  @Column('jsonb', { name: 'side_files', default: () => `'[]'` }) sideFiles!: { volumeId: string; file: string; sideFile: string; sideBytes: number; sideInode: string; originalBytes: number }[];
  /** Settings of the running (or last) attempt. */
  @Column('jsonb', { nullable: true }) settings!: { coroutines: number; rateLimitMBps: number; minimumFreeStorage: number; timeoutSeconds: number } | null;
  @Column('timestamptz') created!: Date;
}
