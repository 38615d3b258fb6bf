import { DomainEvent } from '../decider';

/**
 * What a restore produces: `vm` puts the VM's own disks back (restoreBackup), `volume` makes a new disk
 * from one backed-up volume and attaches it to a VM (restoreVolumeFromBackupAndAttachToVM), `newVm`
 * defines a new domain from the backup's manifest (createVMFromBackup).
 */
export type RestoreKind = 'vm' | 'volume' | 'newVm';

export type RestoreRequested = DomainEvent<
  'RestoreRequested',
  {
    restoreId: string;
    jobId: string;
    /** The backup's VM (this stream's VM). */
    vmId: string;
    backupId: string;
    kind: RestoreKind;
    quick: boolean;
    /** The VM whose disks change: this VM for `vm`, the chosen VM for `volume`, the new VM for `newVm`. */
    targetVmId: string;
    /** The host that does the work (and runs a quick-restored VM). */
    hostId: string;
    /**
     * A quick restore of the VM onto another host (`hostid`): the host the VM was defined on, whose
     * definition is removed once the VM runs on `hostId`. Absent when the VM stays where it is.
     */
    movedFromHostId?: string;
    /** A volume restore (`hostid` given) that starts the stopped target VM once the volume is attached. */
    startVm?: true;
    /** The backed-up volumes restored. */
    volumeIds: string[];
    /** The libvirt domain that gets the disks (the new one's name for `newVm`). */
    domainName: string;
    /** Name of the new domain (`newVm`), else null. */
    newVmName: string | null;
    /** Where each restored volume goes on the host. */
    destinations: { volumeId: string; path: string }[];
    /** The backups whose files the restore reads, base first (the chain up to and including backupId). */
    readsBackupIds: string[];
    requestedAt: string;
  }
>;

export interface RestoredDisk {
  volumeId: string;
  /** libvirt target device in the target VM. */
  target: string;
  /** Path of the restored disk on the host. */
  path: string;
}

export type RestoreCompleted = DomainEvent<
  'RestoreCompleted',
  {
    restoreId: string;
    backupId: string;
    kind: RestoreKind;
    quick: boolean;
    targetVmId: string;
    disks: RestoredDisk[];
    /** The VM now runs on the restore's host: this host's stale definition of it is to be removed. */
    movedFromHostId?: string;
    completedAt: string;
  }
>;

export type RestoreFailed = DomainEvent<'RestoreFailed', { restoreId: string; backupId: string; reason: string; cleanedUp: string[]; failedAt: string }>;

/** A quick restore's VM runs on files backed by the repository until this pull is done. */
export type ConsolidationRequested = DomainEvent<
  'ConsolidationRequested',
  { restoreId: string; consolidationJobId: string; targetVmId: string; hostId: string; domainName: string; disks: RestoredDisk[]; requestedAt: string }
>;

export type ConsolidationCompleted = DomainEvent<'ConsolidationCompleted', { restoreId: string; completedAt: string }>;

/** The VM still reads from the repository: the backups it depends on stay protected. */
export type ConsolidationFailed = DomainEvent<'ConsolidationFailed', { restoreId: string; reason: string; failedAt: string }>;

export type RestoreEvent = RestoreRequested | RestoreCompleted | RestoreFailed | ConsolidationRequested | ConsolidationCompleted | ConsolidationFailed;
