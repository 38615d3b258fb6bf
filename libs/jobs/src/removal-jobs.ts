import type { RepositoryAccess } from './host-jobs';

/**
 * Removing one deleted backup's files on the VM's host (queue `host.<hostId>`, BullMQ job id
 * `remove-<removalJobId>`). `drop`: the backup's directory goes. `merge`: each child's file is rebased onto
 * the removed backup's parent (safe `qemu-img rebase` on a copy renamed over the child), the children's
 * manifests are rewritten, then the removed backup's directory goes. Either way its libvirt checkpoint
 * (and bitmaps) go too. A retried job finds what an earlier attempt did (children already on their new
 * backing file, the removal marker) and finishes it.
 */
export const removalHostJobId = (removalJobId: string) => `remove-${removalJobId}`;

/** Written in `<vmId>/` before a backup's files are deleted, removed after the outcome is reported. */
export const removalMarkerName = (removalJobId: string) => `.removal-${removalJobId}`;

export interface RemoveBackupJobData {
  vmId: string;
  backupId: string;
  removalJobId: string;
  mode: 'drop' | 'merge';
  forced: boolean;
  /** The VM's libvirt domain (its checkpoint is deleted there); null when the VM is gone. */
  domainName: string | null;
  checkpointName: string;
  repository: RepositoryAccess;
  /** The removed backup's directory, relative to the repository root (`<vmId>/<chainId>/<backupId>`). */
  backupDir: string;
  /** Its files, relative to the repository root. */
  files: { volumeId: string; file: string }[];
  children: {
    backupId: string;
    /** The child's directory, relative to the repository root (its manifest.json is there). */
    dir: string;
    newParentBackupId: string | null;
    volumes: {
      volumeId: string;
      file: string;
      /** The removed backup's file, as the child's backing file names it now (relative to the child's directory). */
      oldBackingFile: string;
      /** The new backing file, relative to the child's directory; null: the child becomes self-contained. */
      newBackingFile: string | null;
    }[];
  }[];
  timeoutSeconds: number;
}

export interface RemoveBackupJob {
  name: 'removeBackup';
  data: RemoveBackupJobData;
}

export type RemovalReport =
  | {
      type: 'BackupRemovalSucceeded';
      vmId: string;
      backupId: string;
      removalJobId: string;
      outcome:
        | { kind: 'dropped'; freedBytes: number; filesMissing: boolean }
        | { kind: 'merged'; volumes: { backupId: string; volumeId: string; bytesBefore: number; bytesAfter: number }[]; removedBytes: number };
      at: string;
    }
  | { type: 'BackupRemovalFailed'; vmId: string; backupId: string; removalJobId: string; reason: string; at: string };
