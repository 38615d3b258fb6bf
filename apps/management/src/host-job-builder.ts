import { DataSource } from 'typeorm';
import { BackupCompleted, BackupRequested, ConsolidationRequested, RestoreRequested, Streams } from '@strata/domain';
import { EventStore } from '@strata/event-store';
import { BackupJobData, ConsolidationJobData, RestoreJobData } from '@strata/jobs';
import { BackupRepositoryView, BackupView, effectiveSetting, RestoreView, VirtualMachineView } from '@strata/read-models';

/** Where a backup's files go: `<vmId>/<chainId>/<backupId>/<volumeId>.qcow2` under the repository root. */
export const backupFile = (vmId: string, chainId: string, backupId: string, volumeId: string) => `${vmId}/${chainId}/${backupId}/${volumeId}.qcow2`;

/** `nas.backup.bandwidth.limit.mbps` of a zone in bytes per second (0 = unlimited); the setting is in Mbit/s. */
export async function bandwidthBytesPerSec(db: DataSource, zoneId: string | null): Promise<number> {
  const mbps = Number(await effectiveSetting(db, 'nas.backup.bandwidth.limit.mbps', zoneId));
  return Number.isFinite(mbps) && mbps > 0 ? Math.floor(mbps * 125_000) : 0;
}

/** Everything the host needs for one backup, from the request, the read models and the parent's events. */
export async function buildBackupJob(request: BackupRequested['data'], db: DataSource, store: EventStore): Promise<BackupJobData> {
  const repo = await db.getRepository(BackupRepositoryView).findOneOrFail({ where: { id: request.repositoryId } });
  const vm = await db.getRepository(VirtualMachineView).findOneOrFail({ where: { id: request.vmId } });
  const timeoutSeconds = Number(await effectiveSetting(db, 'knib.timeout', vm.zoneId));
  let parentCheckpointXml: string | null = null;
  if (request.parentBackupId) {
    const events = await store.readStream(Streams.vmBackups(request.vmId));
    const parent = events.find((e) => e.type === 'BackupCompleted' && (e.data as BackupCompleted['data']).backupId === request.parentBackupId);
    parentCheckpointXml = parent ? (parent.data as BackupCompleted['data']).checkpointXml : null;
  }
  return {
    backupId: request.backupId,
    vmId: request.vmId,
    domainName: vm.name,
    chainId: request.chainId,
    type: request.type,
    checkpointName: request.checkpointName,
    parentCheckpointName: request.parentCheckpointName,
    parentCheckpointXml,
    repository: { repositoryId: repo.id, type: repo.type as BackupJobData['repository']['type'], address: repo.address, mountOptions: repo.mountOptions, encryptedCredentials: repo.encryptedCredentials },
    volumes: request.volumes.map((v) => ({
      volumeId: v.volumeId,
      target: v.target,
      sourcePath: v.path,
      virtualSizeBytes: v.virtualSizeBytes,
      targetFile: backupFile(request.vmId, request.chainId, request.backupId, v.volumeId),
      backingFile: request.parentBackupId ? `../${request.parentBackupId}/${v.volumeId}.qcow2` : null,
    })),
    timeoutSeconds,
    bandwidthBytesPerSec: await bandwidthBytesPerSec(db, vm.zoneId),
    quiesce: request.quiesce,
  };
}

/** The repository access a host needs (credentials stay encrypted). */
function repositoryAccess(repo: BackupRepositoryView): RestoreJobData['repository'] {
  return { repositoryId: repo.id, type: repo.type as RestoreJobData['repository']['type'], address: repo.address, mountOptions: repo.mountOptions, encryptedCredentials: repo.encryptedCredentials };
}

/** Everything the host needs for one restore: the backup's files in the repository and where each volume goes. */
export async function buildRestoreJob(request: RestoreRequested['data'], db: DataSource): Promise<RestoreJobData> {
  const backup = await db.getRepository(BackupView).findOneOrFail({ where: { id: request.backupId } });
  const repo = await db.getRepository(BackupRepositoryView).findOneOrFail({ where: { id: backup.repositoryId } });
  const timeoutSeconds = Number(await effectiveSetting(db, 'knib.timeout', repo.zoneId));
  const destination = new Map(request.destinations.map((d) => [d.volumeId, d.path]));
  return {
    restoreId: request.restoreId,
    vmId: request.vmId,
    backupId: request.backupId,
    kind: request.kind,
    quick: request.quick,
    domainName: request.domainName,
    targetVmId: request.targetVmId,
    manifestFile: `${backup.vmId}/${backup.chainId}/${backup.id}/manifest.json`,
    repository: repositoryAccess(repo),
    volumes: request.volumeIds.map((volumeId) => {
      const v = backup.volumes.find((x) => x.volumeId === volumeId);
      if (!v) throw new Error(`volume ${volumeId} is not in backup ${backup.id}`);
      return { volumeId, target: v.target, format: v.format, virtualSizeBytes: v.virtualSizeBytes, backupFile: backupFile(backup.vmId, backup.chainId, backup.id, volumeId), destinationPath: destination.get(volumeId)! };
    }),
    consolidationJobId: null,
    bandwidthBytesPerSec: await bandwidthBytesPerSec(db, repo.zoneId),
    timeoutSeconds,
    movedFromHostId: request.movedFromHostId ?? null,
    startVm: request.startVm === true,
  };
}

/** The pull of a quick restore's disks, on the host the VM runs on, with the repository its backing files are in. */
export async function buildConsolidationJob(request: ConsolidationRequested['data'], vmId: string, db: DataSource): Promise<ConsolidationJobData> {
  const vm = await db.getRepository(VirtualMachineView).findOne({ where: { id: request.targetVmId } });
  const restore = await db.getRepository(RestoreView).findOneOrFail({ where: { id: request.restoreId } });
  const backup = await db.getRepository(BackupView).findOneOrFail({ where: { id: restore.backupId } });
  const repo = await db.getRepository(BackupRepositoryView).findOneOrFail({ where: { id: backup.repositoryId } });
  return {
    restoreId: request.restoreId,
    vmId,
    targetVmId: request.targetVmId,
    domainName: request.domainName,
    disks: request.disks,
    bandwidthBytesPerSec: await bandwidthBytesPerSec(db, vm?.zoneId ?? null),
    repository: repositoryAccess(repo),
  };
}
