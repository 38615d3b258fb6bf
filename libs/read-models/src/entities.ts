import { Column, Entity, PrimaryColumn } from 'typeorm';
import { BackupCompressionJobView } from './compression-jobs.entity';
import { BackupScheduleView } from './backup-schedules.entity';

/*
 * Read models: rebuilt from the events at any time (`strata projector --rebuild`). Rows of deleted things
 * keep their `removed` date, as CloudStack does, so lists can show them on request.
 */
const bigintAsNumber = { to: (v: number | null) => v, from: (v: string | null) => (v === null ? null : Number(v)) };

@Entity('zones')
export class ZoneView {
  @PrimaryColumn('uuid') id!: string;
  @Column('text') name!: string;
  @Column('timestamptz') created!: Date;
  @Column('timestamptz', { nullable: true }) removed!: Date | null;
}

@Entity('backup_repositories')
export class BackupRepositoryView {
  @PrimaryColumn('uuid') id!: string;
  @Column('uuid', { name: 'zone_id' }) zoneId!: string;
  @Column('text') name!: string;
  @Column('text') address!: string;
  @Column('text') type!: string;
  @Column('text', { name: 'mount_options' }) mountOptions!: string;
  /** Encrypted credentials split off the mount options; only hosts that mount decrypt them. */
  @Column('text', { name: 'encrypted_credentials', nullable: true }) encryptedCredentials!: string | null;
  @Column('bigint', { name: 'capacity_bytes', nullable: true, transformer: bigintAsNumber }) capacityBytes!: number | null;
  @Column('bigint', { name: 'used_bytes', default: 0, transformer: bigintAsNumber }) usedBytes!: number;
  @Column('timestamptz') created!: Date;
  @Column('timestamptz', { nullable: true }) removed!: Date | null;
}

@Entity('native_backup_offerings')
export class NativeOfferingView {
  @PrimaryColumn('uuid') id!: string;
  @Column('text') name!: string;
  @Column('boolean') compress!: boolean;
  @Column('boolean') validate!: boolean;
  @Column('text', { name: 'validation_steps' }) validationSteps!: string;
  @Column('boolean', { name: 'allow_quick_restore' }) allowQuickRestore!: boolean;
  @Column('boolean', { name: 'allow_extract_file' }) allowExtractFile!: boolean;
  @Column('int', { name: 'backup_chain_size', nullable: true }) backupChainSize!: number | null;
  @Column('text', { name: 'compression_library' }) compressionLibrary!: string;
  @Column('int', { name: 'imported_count', default: 0 }) importedCount!: number;
  @Column('timestamptz') created!: Date;
  @Column('timestamptz', { nullable: true }) removed!: Date | null;
}

@Entity('backup_offerings')
export class BackupOfferingView {
  @PrimaryColumn('uuid') id!: string;
  @Column('text') name!: string;
  @Column('text') description!: string;
  @Column('uuid', { name: 'zone_id' }) zoneId!: string;
  @Column('uuid', { name: 'external_id' }) externalId!: string;
  @Column('boolean', { name: 'allow_user_driven_backups' }) allowUserDrivenBackups!: boolean;
  @Column('uuid', { name: 'repository_id', nullable: true }) repositoryId!: string | null;
  /** Importing, Active, Failed. */
  @Column('text') status!: string;
  @Column('timestamptz') created!: Date;
  @Column('timestamptz', { nullable: true }) removed!: Date | null;
}

/** Only values an operator set; defaults come from the settings registry in the domain. */
@Entity('configuration_values')
export class ConfigurationValueView {
  @PrimaryColumn('text') name!: string;
  /** `global`, the zone id, or `host:<hostId>` (hostScopeKey). */
  @PrimaryColumn('text', { name: 'scope_key' }) scopeKey!: string;
  @Column('text') value!: string;
  @Column('boolean') secret!: boolean;
  @Column('timestamptz') updated!: Date;
}

@Entity('api_users')
export class ApiUserView {
  @PrimaryColumn('uuid') id!: string;
  @Column('text') name!: string;
  @Column('text') role!: string;
  @Column('text', { name: 'api_key', unique: true }) apiKey!: string;
  @Column('text', { name: 'encrypted_secret_key' }) encryptedSecretKey!: string;
  @Column('timestamptz') created!: Date;
}

@Entity('async_jobs')
export class AsyncJobView {
  @PrimaryColumn('uuid') id!: string;
  @Column('text') command!: string;
  @Column('uuid', { name: 'user_id' }) userId!: string;
  @Column('text', { name: 'instance_type', nullable: true }) instanceType!: string | null;
  @Column('uuid', { name: 'instance_id', nullable: true }) instanceId!: string | null;
  /** CloudStack's jobstatus: 0 pending, 1 succeeded, 2 failed, 3 cancelled. */
  @Column('int') status!: number;
  @Column('int', { name: 'result_code' }) resultCode!: number;
  @Column('text', { name: 'result_type', nullable: true }) resultType!: string | null;
  @Column('jsonb', { nullable: true }) result!: Record<string, unknown> | null;
  @Column('int') progress!: number;
  @Column('bigint', { name: 'bytes_done', nullable: true, transformer: bigintAsNumber }) bytesDone!: number | null;
  @Column('bigint', { name: 'bytes_total', nullable: true, transformer: bigintAsNumber }) bytesTotal!: number | null;
  @Column('timestamptz') created!: Date;
  @Column('timestamptz', { nullable: true }) completed!: Date | null;
}

@Entity('projection_checkpoints')
export class ProjectionCheckpoint {
  @PrimaryColumn('text') name!: string;
  @Column('text') position!: string;
  @Column('timestamptz') updated!: Date;
}

@Entity('hosts')
export class HostView {
  @PrimaryColumn('uuid') id!: string;
  @Column('text') name!: string;
  @Column('uuid', { name: 'zone_id' }) zoneId!: string;
  @Column('text') state!: string;
  @Column('timestamptz', { name: 'last_heartbeat', nullable: true }) lastHeartbeat!: Date | null;
  @Column('text', { name: 'libvirt_version' }) libvirtVersion!: string;
  @Column('text', { name: 'qemu_version' }) qemuVersion!: string;
  @Column('text') capabilities!: string;
  @Column('timestamptz') created!: Date;
}

export interface VolumeView {
  volumeId: string;
  target: string;
  path: string;
  format: string;
  virtualSizeBytes: number;
}

@Entity('virtual_machines')
export class VirtualMachineView {
  @PrimaryColumn('uuid') id!: string;
  @Column('text') name!: string;
  @Column('uuid', { name: 'host_id' }) hostId!: string;
  @Column('uuid', { name: 'zone_id' }) zoneId!: string;
  @Column('text') state!: string;
  @Column('jsonb') volumes!: VolumeView[];
  @Column('uuid', { name: 'backup_offering_id', nullable: true }) backupOfferingId!: string | null;
  @Column('timestamptz') created!: Date;
}

@Entity('backups')
export class BackupView {
  @PrimaryColumn('uuid') id!: string;
  @Column('uuid', { name: 'vm_id' }) vmId!: string;
  @Column('text', { nullable: true }) name!: string | null;
  @Column('text', { nullable: true }) description!: string | null;
  @Column('text') type!: string;
  @Column('text', { name: 'full_reason', nullable: true }) fullReason!: string | null;
  @Column('text', { name: 'interval_type' }) intervalType!: string;
  @Column('text') status!: string;
  @Column('uuid', { name: 'chain_id' }) chainId!: string;
  @Column('uuid', { name: 'parent_id', nullable: true }) parentId!: string | null;
  @Column('int', { name: 'chain_position' }) chainPosition!: number;
  @Column('text', { name: 'from_checkpoint', nullable: true }) fromCheckpoint!: string | null;
  @Column('text', { name: 'to_checkpoint' }) toCheckpoint!: string;
  @Column('boolean') isolated!: boolean;
  @Column('boolean') quiesced!: boolean;
  @Column('jsonb') volumes!: (VolumeView & { storedBytes?: number })[];
  @Column('bigint', { transformer: bigintAsNumber }) size!: number;
  @Column('bigint', { name: 'virtual_size', transformer: bigintAsNumber }) virtualSize!: number;
  @Column('bigint', { name: 'uncompressed_size', transformer: bigintAsNumber }) uncompressedSize!: number;
  @Column('text', { name: 'compression_status' }) compressionStatus!: string;
  @Column('text', { name: 'validation_status' }) validationStatus!: string;
  @Column('uuid', { name: 'offering_id' }) offeringId!: string;
  @Column('uuid', { name: 'repository_id' }) repositoryId!: string;
  @Column('uuid', { name: 'zone_id', nullable: true }) zoneId!: string | null;
  @Column('uuid', { name: 'host_id' }) hostId!: string;
  @Column('uuid', { name: 'job_id' }) jobId!: string;
  @Column('text', { nullable: true }) failure!: string | null;
  @Column('timestamptz') created!: Date;
  @Column('timestamptz', { nullable: true }) completed!: Date | null;
}

@Entity('restores')
export class RestoreView {
  @PrimaryColumn('uuid') id!: string;
  /** `vm`, `volume` or `newVm`. */
  @Column('text') kind!: string;
  @Column('uuid', { name: 'backup_id' }) backupId!: string;
  @Column('uuid', { name: 'vm_id' }) vmId!: string;
  @Column('uuid', { name: 'target_vm_id' }) targetVmId!: string;
  @Column('uuid', { name: 'host_id' }) hostId!: string;
  @Column('boolean') quick!: boolean;
  /** Restoring, Restored, Consolidating, Consolidated, ConsolidationFailed or Failed. */
  @Column('text') status!: string;
  @Column('uuid', { name: 'job_id' }) jobId!: string;
  @Column('uuid', { name: 'consolidation_job_id', nullable: true }) consolidationJobId!: string | null;
  @Column('text', { name: 'domain_name' }) domainName!: string;
  @Column('jsonb') disks!: { volumeId: string; target: string; path: string }[];
  @Column('jsonb', { name: 'reads_backup_ids' }) readsBackupIds!: string[];
  @Column('text', { nullable: true }) failure!: string | null;
  @Column('timestamptz') created!: Date;
  @Column('timestamptz', { nullable: true }) completed!: Date | null;
  @Column('timestamptz', { nullable: true }) consolidated!: Date | null;
}

export const READ_MODEL_ENTITIES: (new () => object)[] = [
  ZoneView,
  BackupRepositoryView,
  NativeOfferingView,
  BackupOfferingView,
  ConfigurationValueView,
  ApiUserView,
  AsyncJobView,
  ProjectionCheckpoint,
  HostView,
  VirtualMachineView,
  BackupView,
  RestoreView,
  BackupCompressionJobView,
  BackupScheduleView,
];

/** Tables a rebuild empties (everything the projector writes, checkpoint included). */
export const READ_MODEL_TABLES = [
  'zones',
  'backup_repositories',
  'native_backup_offerings',
  'backup_offerings',
  'configuration_values',
  'api_users',
  'async_jobs',
  'hosts',
  'virtual_machines',
  'backups',
  'restores',
  'backup_compression_jobs',
  'backup_schedules',
];
