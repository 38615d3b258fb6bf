import type { CompressionReport } from './compression-jobs';
import type { RemovalReport, RemoveBackupJob } from './removal-jobs';

/**
 * Contracts between the management plane and the host agents (BullMQ). Each host has its own queue of
 * work (`host.<hostId>`); agents report back on one durable queue (`agent-reports`) that the management
 * plane turns into events. Agents hold no database credentials: Redis and the repository mounts only.
 */
export const hostQueueName = (hostId: string) => `host.${hostId}`;
export const AGENT_REPORTS_QUEUE = 'agent-reports';

export type RepositoryKind = 'nfs' | 'cifs' | 'cephfs' | 'local';

export interface RepositoryAccess {
  repositoryId: string;
  type: RepositoryKind;
  address: string;
  mountOptions: string;
  /** Encrypted credentials; the agent never logs them. Null when none. */
  encryptedCredentials: string | null;
}

export interface BackupVolumeSpec {
  volumeId: string;
  /** libvirt target device, e.g. `vda`. */
  target: string;
  /** Path of the VM's disk image on the host. */
  sourcePath: string;
  virtualSizeBytes: number;
  /** Relative to the repository root: `<vmId>/<chainId>/<backupId>/<volumeId>.qcow2`. */
  targetFile: string;
  /** Relative to the target file's directory (`../<parentBackupId>/<volumeId>.qcow2`), or null for a full. */
  backingFile: string | null;
}

export interface BackupJobData {
  backupId: string;
  vmId: string;
  domainName: string;
  chainId: string;
  type: 'FULL' | 'INCREMENTAL';
  /** Checkpoint created by this backup, named after it. */
  checkpointName: string;
  /** Checkpoint of the parent backup for an incremental, else null. */
  parentCheckpointName: string | null;
  /** What the events recorded about the parent checkpoint, to redefine it when libvirt lost it. */
  parentCheckpointXml: string | null;
  repository: RepositoryAccess;
  volumes: BackupVolumeSpec[];
  timeoutSeconds: number;
  /** Speed limit of the whole backup, shared by its disks; 0 or absent = unlimited (nas.backup.bandwidth.limit.mbps). */
  bandwidthBytesPerSec?: number;
  quiesce: boolean;
}

export interface BackupJob {
  name: 'backup';
  data: BackupJobData;
}

export interface RestoreVolumeSpec {
  /** The backed-up volume. */
  volumeId: string;
  /** Its target device in the backup (`vda`); a `volume` restore attaches at the next free one instead. */
  target: string;
  format: string;
  virtualSizeBytes: number;
  /** The backup's file of this volume, relative to the repository root (the top of its chain). */
  backupFile: string;
  /** Where the restored disk goes on the host (the VM's own disk for `vm`, a new file otherwise). */
  destinationPath: string;
}

export interface RestoreJobData {
  restoreId: string;
  /** The backup's VM. */
  vmId: string;
  backupId: string;
  kind: 'vm' | 'volume' | 'newVm';
  quick: boolean;
  /** The domain that gets the disks: the VM's own, the chosen VM's, or the new domain's name. */
  domainName: string;
  targetVmId: string;
  /** The backup's manifest, relative to the repository root (its domain XML defines a `newVm`). */
  manifestFile: string;
  repository: RepositoryAccess;
  volumes: RestoreVolumeSpec[];
  /** Id of the quick restore's consolidation async job (null for a plain restore). */
  consolidationJobId: string | null;
  /** 0 = unlimited (nas.backup.bandwidth.limit.mbps). */
  bandwidthBytesPerSec: number;
  timeoutSeconds: number;
  /**
   * A quick restore that moves the VM onto this host (`hostid`): where the domain is not defined here, it
   * is defined from the backup's manifest under its own name and uuid; either way its definition is
   * marked as placed on this host. The old host removes its definition afterwards (`forgetDomain`).
   */
  movedFromHostId?: string | null;
  /** A volume restore that starts the stopped target VM here once the volume is attached. */
  startVm?: boolean;
}

export interface RestoreJob {
  name: 'restore';
  data: RestoreJobData;
}

/** Pulls a quick-restored VM's disks off the repository (`virsh blockpull`, or `qemu-img rebase` when it is off). */
export interface ConsolidationJobData {
  restoreId: string;
  vmId: string;
  targetVmId: string;
  domainName: string;
  disks: { volumeId: string; target: string; path: string }[];
  bandwidthBytesPerSec: number;
  /** The repository the disks' backing files are in: mounted (or kept mounted) until the pull is done. */
  repository: RepositoryAccess;
}

export interface ConsolidationJob {
  name: 'consolidate';
  data: ConsolidationJobData;
}

export const consolidationJobId = (restoreId: string) => `consolidate-${restoreId}`;

/**
 * Sent to the host a VM was moved away from by a quick restore (`hostid`): removes its stale, shut-off
 * definition of the VM (the disk files stay). A definition that runs, or that is placed on another host
 * (a libvirt shared with that host), is left alone.
 */
export interface ForgetDomainJobData {
  restoreId: string;
  vmId: string;
  domainName: string;
  /** The host the VM now runs on, for the log. */
  movedToHostId: string;
}

export interface ForgetDomainJob {
  name: 'forgetDomain';
  data: ForgetDomainJobData;
}

export const forgetDomainJobId = (restoreId: string) => `forget-${restoreId}`;

export type HostJob = BackupJob | RestoreJob | ConsolidationJob | RemoveBackupJob | ForgetDomainJob;

export interface DomainDisk {
  target: string;
  sourcePath: string;
  format: string;
  virtualSizeBytes: number;
}

export interface ReportedDomain {
  uuid: string;
  name: string;
  state: 'Running' | 'Stopped';
  disks: DomainDisk[];
}

export type AgentReport =
  | CompressionReport
  | RemovalReport
  | {
      type: 'HostHeartbeat';
      hostName: string;
      zoneName: string;
      libvirtVersion: string;
      qemuVersion: string;
      capabilities: string[];
      /** The agent's beat; three missed beats make the host Disconnected. */
      heartbeatSeconds: number;
      at: string;
    }
  | { type: 'DomainsReported'; hostName: string; domains: ReportedDomain[]; at: string }
  | { type: 'BackupStarted'; vmId: string; backupId: string; hostName: string; at: string }
  | { type: 'BackupProgressed'; vmId: string; backupId: string; bytesDone: number; bytesTotal: number; at: string }
  | {
      type: 'BackupSucceeded';
      vmId: string;
      backupId: string;
      /** FULL when the host could not trust the parent's bitmap and fell back (then fullReason says why). */
      backupType: 'FULL' | 'INCREMENTAL';
      fullReason: string | null;
      volumes: { volumeId: string; storedBytes: number; virtualSizeBytes: number }[];
      checkpointXml: string;
      at: string;
    }
  | { type: 'RestoreProgressed'; vmId: string; restoreId: string; bytesDone: number; bytesTotal: number; at: string }
  | { type: 'RestoreSucceeded'; vmId: string; restoreId: string; disks: { volumeId: string; target: string; path: string }[]; at: string }
  | { type: 'RestoreFailed'; vmId: string; restoreId: string; reason: string; cleanedUp: string[]; at: string }
  | { type: 'ConsolidationProgressed'; vmId: string; restoreId: string; bytesDone: number; bytesTotal: number; at: string }
  | { type: 'ConsolidationSucceeded'; vmId: string; restoreId: string; at: string }
  | { type: 'ConsolidationFailed'; vmId: string; restoreId: string; reason: string; at: string }
  | {
      type: 'BackupFailed';
      vmId: string;
      backupId: string;
      reason: string;
      cleanedUp: string[];
      /** False when the failure leaves the parent's bitmap in doubt: the next backup must be full. */
      checkpointTrusted: boolean;
      at: string;
    };
