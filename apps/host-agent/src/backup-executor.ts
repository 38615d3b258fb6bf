import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { Logger } from '@strata/config';
import { DomainJobTimeoutError, ImageInfo, QemuImgDriver, VirshDriver } from '@strata/hypervisor';
import { AgentReport, BackupJobData, BackupVolumeSpec } from '@strata/jobs';

export class UnsupportedRepositoryError extends Error {
  override readonly name = 'UnsupportedRepositoryError';
}

/** Where a repository's files are on this host. `local` repositories are a path mounted on every host. */
export function repositoryRoot(job: BackupJobData): string {
  if (job.repository.type !== 'local') {
    throw new UnsupportedRepositoryError(`repository type ${job.repository.type} is not mounted by this agent yet; use a local repository`);
  }
  return job.repository.address;
}

const escapeXml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;').replace(/"/g, '&quot;');

/** libvirt's push-mode backup XML: only the volumes of the job, each into its pre-created target file. */
export function backupXml(volumes: { target: string; file: string }[], allTargets: string[], incrementalFrom: string | null): string {
  const included = new Set(volumes.map((v) => v.target));
  const disks = [
    ...volumes.map((v) => `<disk name='${escapeXml(v.target)}' type='file'><target file='${escapeXml(v.file)}'/><driver type='qcow2'/></disk>`),
    ...allTargets.filter((t) => !included.has(t)).map((t) => `<disk name='${escapeXml(t)}' backup='no'/>`),
  ];
  const incremental = incrementalFrom ? `<incremental>${escapeXml(incrementalFrom)}</incremental>` : '';
  return `<domainbackup mode='push'>${incremental}<disks>${disks.join('')}</disks></domainbackup>`;
}

export function checkpointXml(name: string, targets: string[], allTargets: string[]): string {
  const included = new Set(targets);
  const disks = allTargets.map((t) => (included.has(t) ? `<disk name='${escapeXml(t)}' checkpoint='bitmap'/>` : `<disk name='${escapeXml(t)}' checkpoint='no'/>`));
  return `<domaincheckpoint><name>${escapeXml(name)}</name><disks>${disks.join('')}</disks></domaincheckpoint>`;
}

interface Plan {
  type: 'FULL' | 'INCREMENTAL';
  fullReason: string | null;
  chainId: string;
  volumes: BackupVolumeSpec[];
}

/**
 * One backup on this host. A retried job (the agent died mid-backup) first undoes whatever its earlier
 * attempt left (a running libvirt job, the new checkpoint, partial files), then starts over; a backup is
 * complete only when its manifest exists, which is written last and atomically.
 */
export class BackupExecutor {
  constructor(
    private readonly virsh: VirshDriver,
    private readonly qemuImg: QemuImgDriver,
    private readonly report: (r: AgentReport) => Promise<void>,
    private readonly hostName: string,
    private readonly logger: Logger,
  ) {}

  async run(job: BackupJobData): Promise<void> {
    const root = repositoryRoot(job);
    const at = () => new Date().toISOString();
    const domain = job.domainName;
    await this.report({ type: 'BackupStarted', vmId: job.vmId, backupId: job.backupId, hostName: this.hostName, at: at() });
    const cleanedUp: string[] = [];
    let startedForBackup = false;
    let plan: Plan = { type: job.type, fullReason: null, chainId: job.chainId, volumes: job.volumes };
    try {
      await this.undoEarlierAttempt(job, root, cleanedUp);
      const running = (await this.virsh.domainState(domain)).state !== 'shutoff';
      if (job.type === 'INCREMENTAL') {
        const reason = await this.untrustedParent(job, running);
        if (reason) {
          this.logger.warn(`backup ${job.backupId} of ${domain}: ${reason}; taking a full backup instead`);
          await this.removeStrataCheckpoints(job, running);
          plan = {
            type: 'FULL',
            fullReason: 'checkpoint or bitmap not trusted',
            chainId: job.backupId,
            volumes: job.volumes.map((v) => ({ ...v, backingFile: null, targetFile: posix.join(job.vmId, job.backupId, job.backupId, `${v.volumeId}.qcow2`) })),
          };
        }
      }
      // A stopped VM is started paused: the guest runs no instruction, and the backup and its checkpoint
      // go through exactly the same libvirt path as for a running VM, so libvirt's checkpoint view stays right.
      if (!running) {
        await this.virsh.start(domain, { paused: true });
        startedForBackup = true;
      }
      const dir = join(root, dirname(plan.volumes[0].targetFile));
      await mkdir(dir, { recursive: true });
      for (const v of plan.volumes) {
        const file = join(root, v.targetFile);
        if (v.backingFile) await this.qemuImg.create(file, { format: 'qcow2', backingFile: v.backingFile, backingFormat: 'qcow2' });
        else await this.qemuImg.create(file, { format: 'qcow2', sizeBytes: v.virtualSizeBytes });
      }
      const allTargets = (await this.virsh.domainDisks(domain)).filter((d) => d.device === 'disk').map((d) => d.target);
      const volumes = plan.volumes.map((v) => ({ target: v.target, file: join(root, v.targetFile) }));
      await this.virsh.backupBegin(
        domain,
        backupXml(volumes, allTargets, plan.type === 'INCREMENTAL' ? job.parentCheckpointName : null),
        checkpointXml(job.checkpointName, volumes.map((v) => v.target), allTargets),
      );
      let lastReport = 0;
      try {
        await this.virsh.waitForJob(domain, {
          pollIntervalMs: 250,
          timeoutMs: job.timeoutSeconds * 1000,
          onProgress: (info) => {
            if (Date.now() - lastReport < 1000 || info.dataTotal === null) return;
            lastReport = Date.now();
            void this.report({ type: 'BackupProgressed', vmId: job.vmId, backupId: job.backupId, bytesDone: info.dataProcessed ?? 0, bytesTotal: info.dataTotal, at: at() }).catch(() => undefined);
          },
        });
      } catch (error) {
        if (error instanceof DomainJobTimeoutError) {
          await this.virsh.domJobAbort(domain).catch(() => undefined);
          cleanedUp.push('aborted the libvirt backup job');
          throw new Error(`the backup exceeded knib.timeout (${job.timeoutSeconds} s) and was aborted`);
        }
        throw error;
      }
      const checkpoint = await this.virsh.checkpointDumpXml(domain, job.checkpointName);
      const stored: { volumeId: string; storedBytes: number; virtualSizeBytes: number }[] = [];
      for (const v of plan.volumes) {
        const info = (await this.qemuImg.info(join(root, v.targetFile))) as ImageInfo;
        stored.push({ volumeId: v.volumeId, storedBytes: info.actualSizeBytes ?? 0, virtualSizeBytes: info.virtualSizeBytes });
      }
      await this.writeManifest(root, job, plan, stored, await this.virsh.domainXml(domain, { inactive: true }));
      if (startedForBackup) await this.virsh.destroy(domain);
      startedForBackup = false;
      await this.report({ type: 'BackupSucceeded', vmId: job.vmId, backupId: job.backupId, backupType: plan.type, fullReason: plan.fullReason, volumes: stored, checkpointXml: checkpoint, at: at() });
      this.logger.log(`backup ${job.backupId} of ${domain}: ${plan.type} done, ${stored.reduce((n, v) => n + v.storedBytes, 0)} bytes stored`);
    } catch (error) {
      const reason = (error as Error).message;
      this.logger.error(`backup ${job.backupId} of ${domain} failed: ${reason}`);
      const trusted = await this.cleanUp(job, root, plan, cleanedUp);
      if (startedForBackup) await this.virsh.destroy(domain).catch(() => undefined);
      await this.report({ type: 'BackupFailed', vmId: job.vmId, backupId: job.backupId, reason, cleanedUp, checkpointTrusted: trusted, at: at() });
    }
  }

  /** Why the parent checkpoint cannot be trusted, or null. Redefines libvirt's metadata when only that was lost. */
  private async untrustedParent(job: BackupJobData, running: boolean): Promise<string | null> {
    const parent = job.parentCheckpointName;
    if (!parent) return 'no parent checkpoint was recorded';
    // A running QEMU keeps persistent bitmaps in memory and writes them to the image only when it closes
    // it, so a running VM is asked through QMP; a stopped one's image header is the truth.
    const liveBitmapsByFile = running ? await this.liveBitmaps(job.domainName) : null;
    for (const v of job.volumes) {
      if (liveBitmapsByFile) {
        const bitmap = liveBitmapsByFile.get(v.sourcePath)?.find((b) => b.name === parent);
        if (!bitmap) return `volume ${v.target} has no bitmap ${parent}`;
        if (bitmap.inconsistent) return `bitmap ${parent} of volume ${v.target} is inconsistent`;
        continue;
      }
      const info = (await this.qemuImg.info(v.sourcePath)) as ImageInfo;
      const bitmap = info.bitmaps.find((b) => b.name === parent);
      if (!bitmap) return `volume ${v.target} has no bitmap ${parent}`;
      // In a stopped image, in-use means QEMU did not store the bitmap cleanly (a crash): its content is unknown.
      if (bitmap.inUse) return `bitmap ${parent} of volume ${v.target} was not stored cleanly`;
    }
    const known = (await this.virsh.checkpointList(job.domainName)).some((c) => c.name === parent);
    if (!known) {
      if (!job.parentCheckpointXml) return `libvirt lost checkpoint ${parent} and no definition was recorded`;
      try {
        await this.virsh.checkpointRedefine(job.domainName, job.parentCheckpointXml);
        this.logger.log(`redefined checkpoint ${parent} of ${job.domainName} from the recorded definition`);
      } catch (error) {
        return `checkpoint ${parent} could not be redefined: ${(error as Error).message}`;
      }
    }
    return null;
  }

  /** Dirty bitmaps of a running domain's images, by image file name (QMP query-named-block-nodes). */
  private async liveBitmaps(domain: string): Promise<Map<string, { name: string; inconsistent: boolean }[]>> {
    const nodes = (await this.virsh.qmp(domain, 'query-named-block-nodes', { flat: true })) as { file?: string; drv?: string; 'dirty-bitmaps'?: { name: string; inconsistent?: boolean }[] }[];
    const out = new Map<string, { name: string; inconsistent: boolean }[]>();
    for (const node of nodes) {
      if (!node.file || node.drv !== 'qcow2') continue;
      const bitmaps = (node['dirty-bitmaps'] ?? []).map((b) => ({ name: b.name, inconsistent: b.inconsistent === true }));
      out.set(node.file, [...(out.get(node.file) ?? []), ...bitmaps]);
    }
    return out;
  }

  /** Before a fall-back full: no strata checkpoint or bitmap may stay behind for a later backup to trust. */
  private async removeStrataCheckpoints(job: BackupJobData, running: boolean): Promise<void> {
    const checkpoints = (await this.virsh.checkpointList(job.domainName)).filter((c) => c.name.startsWith('strata-')).reverse();
    for (const c of checkpoints) await this.virsh.checkpointDelete(job.domainName, c.name).catch(() => this.virsh.checkpointDelete(job.domainName, c.name, { metadataOnly: true }));
    if (running) return;
    for (const v of job.volumes) {
      const info = (await this.qemuImg.info(v.sourcePath)) as ImageInfo;
      for (const b of info.bitmaps.filter((x) => x.name.startsWith('strata-'))) await this.qemuImg.bitmap(v.sourcePath, b.name, { op: 'remove' });
    }
  }

  private async undoEarlierAttempt(job: BackupJobData, root: string, cleanedUp: string[]): Promise<void> {
    const info = await this.virsh.domJobInfo(job.domainName).catch(() => null);
    if (info && (info.type === 'bounded' || info.type === 'unbounded') && info.operation === 'backup') {
      await this.virsh.domJobAbort(job.domainName);
      cleanedUp.push('aborted a backup job left by an earlier attempt');
    }
    if ((await this.virsh.checkpointList(job.domainName)).some((c) => c.name === job.checkpointName)) {
      await this.virsh.checkpointDelete(job.domainName, job.checkpointName);
      cleanedUp.push(`deleted checkpoint ${job.checkpointName} of an earlier attempt`);
    }
    await rm(join(root, job.vmId, job.chainId, job.backupId), { recursive: true, force: true });
    await rm(join(root, job.vmId, job.backupId, job.backupId), { recursive: true, force: true });
  }

  /** Returns whether the chain's checkpoints are still trustworthy after the clean-up. */
  private async cleanUp(job: BackupJobData, root: string, plan: Plan, cleanedUp: string[]): Promise<boolean> {
    let trusted = true;
    try {
      const info = await this.virsh.domJobInfo(job.domainName).catch(() => null);
      if (info && (info.type === 'bounded' || info.type === 'unbounded')) {
        await this.virsh.domJobAbort(job.domainName);
        cleanedUp.push('aborted the libvirt backup job');
      }
      if ((await this.virsh.checkpointList(job.domainName)).some((c) => c.name === job.checkpointName)) {
        await this.virsh.checkpointDelete(job.domainName, job.checkpointName);
        cleanedUp.push(`deleted the new checkpoint ${job.checkpointName}`);
      }
    } catch (error) {
      trusted = false;
      cleanedUp.push(`could not remove checkpoint ${job.checkpointName}: ${(error as Error).message}`);
    }
    await rm(join(root, dirname(plan.volumes[0].targetFile)), { recursive: true, force: true });
    cleanedUp.push('removed the partial backup files');
    return trusted;
  }

  private async writeManifest(root: string, job: BackupJobData, plan: Plan, stored: { volumeId: string; storedBytes: number; virtualSizeBytes: number }[], domainXml: string): Promise<void> {
    const dir = join(root, dirname(plan.volumes[0].targetFile));
    const manifest = {
      format: 'strata-backup-manifest/1',
      backupId: job.backupId,
      vmId: job.vmId,
      domainName: job.domainName,
      chainId: plan.chainId,
      type: plan.type,
      fullReason: plan.fullReason,
      parentBackupId: plan.type === 'INCREMENTAL' ? posix.basename(posix.dirname(plan.volumes[0].backingFile ?? '')) || null : null,
      checkpoint: job.checkpointName,
      parentCheckpoint: plan.type === 'INCREMENTAL' ? job.parentCheckpointName : null,
      createdAt: new Date().toISOString(),
      volumes: plan.volumes.map((v) => ({ volumeId: v.volumeId, target: v.target, file: posix.basename(v.targetFile), backingFile: v.backingFile, ...stored.find((s) => s.volumeId === v.volumeId) })),
      domainXml,
    };
    const tmp = join(dir, '.manifest.json.tmp');
    await writeFile(tmp, JSON.stringify(manifest, null, 2));
    await rename(tmp, join(dir, 'manifest.json'));
  }
}
