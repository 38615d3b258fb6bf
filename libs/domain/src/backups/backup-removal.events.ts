import { DomainEvent } from '../decider';

/**
 * Deleting backups (deleteBackup, retention, removeVirtualMachineFromBackupOffering with forced). A deleted
 * backup is first marked Removed; its files go when nothing reads the files that change:
 *
 * - a backup no other backup depends on (a leaf) is **dropped**: its directory is deleted;
 * - a backup others depend on is **merged** into each backup whose parent it is: every child is rebased
 *   onto the deleted backup's own parent (`qemu-img rebase`, safe mode, into a copy renamed over the
 *   child), so the child holds what it read through the deleted backup; then the deleted backup's files
 *   go. A full base merged into its child makes the child the chain's base (rebased onto nothing).
 *
 * Both run on the host of the VM, one at a time per VM, when no backup of the VM runs, no restore or
 * quick-restore consolidation reads the changed files, and no compression is in flight on them;
 * otherwise the backup stays Removed and the removal starts when the last obstacle ends.
 */
export type BackupDeletionRequested = DomainEvent<
  'BackupDeletionRequested',
  {
    backupId: string;
    /** The async job of the request (deleteBackup, or the command that deleted many). */
    jobId: string;
    forced: boolean;
    /** Who or what asked (deleteBackup by a user, retention of a schedule, a VM removed from its offering). */
    reason: string;
    /** What the removal waits for at the time of the request; empty when it starts at once. */
    waitingFor: string[];
    requestedAt: string;
  }
>;

export type RemovalMode = 'drop' | 'merge';

/** The removal of one backup was handed to the VM's host: while it runs, no backup or restore of the VM starts. */
export type BackupRemovalStarted = DomainEvent<
  'BackupRemovalStarted',
  {
    backupId: string;
    /** `<backupId>-r<n>`: the n-th removal attempt of the backup (host job id `remove-<removalJobId>`). */
    removalJobId: string;
    mode: RemovalMode;
    /** The backups whose parent the removed backup is (merge); empty for a drop. */
    intoBackupIds: string[];
    /** The removed backup's own parent: the children's new parent (null: they become self-contained). */
    newParentBackupId: string | null;
    forced: boolean;
    startedAt: string;
  }
>;

/** Children of the removed backup now hold the data they read through it (sizes in bytes on disk). */
export type BackupsMerged = DomainEvent<
  'BackupsMerged',
  {
    backupId: string;
    intoBackupIds: string[];
    newParentBackupId: string | null;
    volumes: { backupId: string; volumeId: string; bytesBefore: number; bytesAfter: number }[];
    /** Bytes of the removed backup, the children before, and the children after: before = removed + children before. */
    bytesBefore: number;
    bytesAfter: number;
    mergedAt: string;
  }
>;

/** The backup's files are gone from the repository (or were already gone: `filesMissing`, forced). */
export type BackupExpunged = DomainEvent<
  'BackupExpunged',
  { backupId: string; reason: string; filesMissing: boolean; freedBytes: number; expungedAt: string }
>;

/** The removal could not be done; the backup stays Removed until deleteBackup is asked again (e.g. forced). */
export type BackupRemovalFailed = DomainEvent<'BackupRemovalFailed', { backupId: string; removalJobId: string; reason: string; failedAt: string }>;

export type BackupRemovalEvent = BackupDeletionRequested | BackupRemovalStarted | BackupsMerged | BackupExpunged | BackupRemovalFailed;

export const BACKUP_REMOVAL_EVENT_TYPES: readonly BackupRemovalEvent['type'][] = ['BackupDeletionRequested', 'BackupRemovalStarted', 'BackupsMerged', 'BackupExpunged', 'BackupRemovalFailed'];
