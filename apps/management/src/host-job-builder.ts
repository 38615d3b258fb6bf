import { DataSource } from 'typeorm';
import { BackupCompleted, BackupRequested, Streams } from '@strata/domain';
import { EventStore } from '@strata/event-store';
import { BackupJobData } from '@strata/jobs';
import { BackupRepositoryView, effectiveSetting, VirtualMachineView } from '@strata/read-models';

/** Where a backup's files go: `<vmId>/<chainId>/<backupId>/<volumeId>.qcow2` under the repository root. */
export const backupFile = (vmId: string, chainId: string, backupId: string, volumeId: string) => `${vmId}/${chainId}/${backupId}/${volumeId}.qcow2`;

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
    quiesce: request.quiesce,
  };
}
