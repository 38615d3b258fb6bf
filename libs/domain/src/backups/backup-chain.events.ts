import { DomainEvent } from '../decider';
import { RestoreEvent } from './restore.events';

export type BackupType = 'FULL' | 'INCREMENTAL';
export type IntervalType = 'MANUAL' | 'HOURLY' | 'DAILY' | 'WEEKLY' | 'MONTHLY';

export interface BackupVolume {
  volumeId: string;
  /** libvirt target device (vda). */
  target: string;
  path: string;
  format: string;
  virtualSizeBytes: number;
}

/** Why a backup that could have been incremental is full (shown as `fullreason`). */
export type FullReason =
  | 'first backup'
  | 'isolated'
  | 'chain size reached'
  | 'chain finished'
  | 'parent failed or missing'
  | 'checkpoint or bitmap not trusted'
  | 'disks changed'
  | 'full-backup-only disks'
  | 'restored since last backup';

export type BackupRequested = DomainEvent<
  'BackupRequested',
  {
    backupId: string;
    vmId: string;
    jobId: string;
    chainId: string;
    parentBackupId: string | null;
    chainPosition: number;
    type: BackupType;
    fullReason: FullReason | null;
    checkpointName: string;
    parentCheckpointName: string | null;
    isolated: boolean;
    quiesce: boolean;
    intervalType: IntervalType;
    name: string | null;
    description: string | null;
    volumes: BackupVolume[];
    offeringId: string;
    repositoryId: string;
    hostId: string;
    requestedAt: string;
  }
>;

export type BackupStarted = DomainEvent<'BackupStarted', { backupId: string; hostId: string; startedAt: string }>;

export type BackupCompleted = DomainEvent<
  'BackupCompleted',
  {
    backupId: string;
    /** FULL when the host had to fall back from an incremental (then `fullReason` says why). */
    type: BackupType;
    fullReason: FullReason | null;
    chainId: string;
    volumes: { volumeId: string; storedBytes: number; virtualSizeBytes: number }[];
    /** libvirt's checkpoint XML, kept so that a host that lost it can redefine it. */
    checkpointXml: string;
    completedAt: string;
  }
>;

export type BackupFailed = DomainEvent<'BackupFailed', { backupId: string; reason: string; cleanedUp: string[]; checkpointTrusted: boolean; failedAt: string }>;

export type ChainEnded = DomainEvent<'ChainEnded', { vmId: string; chainId: string; reason: string; endedAt: string }>;

export type BackupChainEvent = BackupRequested | BackupStarted | BackupCompleted | BackupFailed | ChainEnded | RestoreEvent;
