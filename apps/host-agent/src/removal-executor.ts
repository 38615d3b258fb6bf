import { constants } from 'node:fs';
import { copyFile, open, readdir, readFile, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { Logger } from '@strata/config';
import { ImageInfo, QemuImgDriver, VirshDriver } from '@strata/hypervisor';
import { AgentReport, RemoveBackupJobData, removalMarkerName } from '@strata/jobs';
import { FAILPOINT_ENV } from './backup-executor';
import { MountedRepository, mountRepository, RepositoryMounter } from './repository-mounter';

const MERGE_SUFFIX = '.strata-merge';

/**
 * Test-only failpoints of a removal (issue 6: an agent killed mid-removal), named by `STRATA_AGENT_FAILPOINT`
 * like the backup executor's: the executor logs that it got there and waits for ever, so that a test can
 * SIGKILL the agent at that point. `hang-after-first-merged-volume`: a merge has swapped in its first
 * rebased child volume, the others still read the removed backup. `hang-after-deleting-backup-files`: the
 * removed backup's directory is gone, nothing is reported yet. Unset (always, outside tests) they do nothing.
 */
export const REMOVAL_FAILPOINTS = ['hang-after-first-merged-volume', 'hang-after-deleting-backup-files'] as const;

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Bytes a file takes on disk (what `size` counts). */
async function allocated(path: string): Promise<number> {
  return stat(path).then(
    (s) => s.blocks * 512,
    () => 0,
  );
}

/** Backing file names compared as paths relative to the image's directory. */
const sameBacking = (a: string | null, b: string | null) => (a === null || a === '' ? b === null : b !== null && posix.normalize(a) === posix.normalize(b));

/**
 * Removes a deleted backup's files (and its libvirt checkpoint) on the VM's host; see RemoveBackupJobData.
 * Crash safety: a child is rebased in a copy that replaces it by an atomic rename, so it is always either
 * its old self (backed by the removed backup, whose files are deleted only after every child is done) or
 * its merged self; a retry recognises merged children by their backing file, and a drop by its marker.
 */
export class RemovalExecutor {
  constructor(
    private readonly virsh: VirshDriver,
    private readonly qemuImg: QemuImgDriver,
    private readonly report: (r: AgentReport) => Promise<void>,
    private readonly logger: Logger,
    private readonly mounter: RepositoryMounter | null = null,
  ) {}

  async run(job: RemoveBackupJobData): Promise<void> {
    const at = () => new Date().toISOString();
    let mounted: MountedRepository | null = null;
    try {
      mounted = await mountRepository(this.mounter, job.repository);
      const root = mounted.root;
      const outcome = job.mode === 'merge' ? await this.merge(job, root) : await this.drop(job, root);
      await this.removeCheckpoint(job);
      await this.report({ type: 'BackupRemovalSucceeded', vmId: job.vmId, backupId: job.backupId, removalJobId: job.removalJobId, outcome, at: at() });
      await rm(join(root, job.vmId, removalMarkerName(job.removalJobId)), { force: true });
      this.logger.log(`backup ${job.backupId}: ${job.mode === 'merge' ? `merged into ${job.children.map((c) => c.backupId).join(', ')}` : 'dropped'}`);
    } catch (error) {
      const reason = (error as Error).message;
      this.logger.error(`removal ${job.removalJobId} of backup ${job.backupId} failed: ${reason}`);
      await this.report({ type: 'BackupRemovalFailed', vmId: job.vmId, backupId: job.backupId, removalJobId: job.removalJobId, reason, at: at() });
    } finally {
      await mounted?.release();
    }
  }

  private async filesPresent(job: RemoveBackupJobData, root: string): Promise<boolean> {
    for (const f of job.files) if (!(await exists(join(root, f.file)))) return false;
    return true;
  }

  /** Deletes the backup's directory (and its chain directory when that is left empty); returns the bytes freed. */
  private async deleteBackupDir(job: RemoveBackupJobData, root: string): Promise<number> {
    const dir = join(root, job.backupDir);
    let freed = 0;
    for (const name of await readdir(dir).catch(() => [] as string[])) freed += await allocated(join(dir, name));
    await writeFile(join(root, job.vmId, removalMarkerName(job.removalJobId)), `${job.backupId}\n`);
    await rm(dir, { recursive: true, force: true });
    await rmdir(dirname(dir)).catch(() => undefined); // the chain directory, when no backup is left in it
    await this.failpoint('hang-after-deleting-backup-files', job);
    return freed;
  }

  private async drop(job: RemoveBackupJobData, root: string) {
    if (await this.filesPresent(job, root)) return { kind: 'dropped' as const, freedBytes: await this.deleteBackupDir(job, root), filesMissing: false };
    // An earlier attempt of this removal deleted them and died before reporting.
    if (await exists(join(root, job.vmId, removalMarkerName(job.removalJobId)))) return { kind: 'dropped' as const, freedBytes: 0, filesMissing: false };
    if (!job.forced) throw new Error(`the files of backup ${job.backupId} are missing from the repository (${job.backupDir}); delete it with forced=true to remove it anyway`);
    await rm(join(root, job.backupDir), { recursive: true, force: true });
    return { kind: 'dropped' as const, freedBytes: 0, filesMissing: true };
  }

  private async merge(job: RemoveBackupJobData, root: string) {
    const present = await this.filesPresent(job, root);
    const volumes: { backupId: string; volumeId: string; bytesBefore: number; bytesAfter: number }[] = [];
    let removedBytes = 0;
    for (const f of job.files) removedBytes += await allocated(join(root, f.file));
    for (const child of job.children) {
      for (const v of child.volumes) {
        const file = join(root, v.file);
        const tmp = `${file}${MERGE_SUFFIX}`;
        await rm(tmp, { force: true }); // a copy an earlier attempt left
        const info = (await this.qemuImg.info(file)) as ImageInfo;
        const before = await allocated(file);
        if (sameBacking(info.backingFilename, v.newBackingFile)) {
          volumes.push({ backupId: child.backupId, volumeId: v.volumeId, bytesBefore: before, bytesAfter: before }); // merged by an earlier attempt
          continue;
        }
        if (!sameBacking(info.backingFilename, v.oldBackingFile)) throw new Error(`${v.file} is backed by ${info.backingFilename ?? 'nothing'}, neither the removed backup's file nor its parent's`);
        if (!present) {
          if (!job.forced) throw new Error(`the files of backup ${job.backupId} are missing from the repository (${job.backupDir}), and backup ${child.backupId} needs them; delete it with forced=true to remove it anyway`);
          throw new Error(`the files of backup ${job.backupId} are missing: backup ${child.backupId}, which depends on them, cannot be repaired by a merge`);
        }
        // The copy reads the same backing file (same directory); safe mode copies in what the new backing lacks.
        await copyFile(file, tmp, constants.COPYFILE_FICLONE);
        await this.qemuImg.rebase(tmp, { format: 'qcow2', backingFile: v.newBackingFile, backingFormat: 'qcow2', timeoutMs: job.timeoutSeconds * 1000 });
        const fh = await open(tmp, 'r+');
        try {
          await fh.sync();
        } finally {
          await fh.close();
        }
        await rename(tmp, file);
        volumes.push({ backupId: child.backupId, volumeId: v.volumeId, bytesBefore: before, bytesAfter: await allocated(file) });
        if (volumes.length === 1) await this.failpoint('hang-after-first-merged-volume', job);
      }
      await this.rewriteManifest(job, root, child);
    }
    if (present) await this.deleteBackupDir(job, root);
    else await rm(join(root, job.backupDir), { recursive: true, force: true });
    return { kind: 'merged' as const, volumes, removedBytes };
  }

  /** Test-only (see REMOVAL_FAILPOINTS): does nothing unless the variable names this failpoint. */
  private async failpoint(name: (typeof REMOVAL_FAILPOINTS)[number], job: RemoveBackupJobData): Promise<void> {
    if (process.env[FAILPOINT_ENV] !== name) return;
    this.logger.warn(`failpoint ${name}: removal ${job.removalJobId} of backup ${job.backupId} waits here until the agent is killed (test only)`);
    await new Promise<never>(() => undefined);
  }

  /** The child's manifest names its new parent and backing files, so the repository stays readable on its own. */
  private async rewriteManifest(job: RemoveBackupJobData, root: string, child: RemoveBackupJobData['children'][number]): Promise<void> {
    const path = join(root, child.dir, 'manifest.json');
    let manifest: Record<string, unknown> & { volumes?: { volumeId: string; backingFile?: string | null }[]; mergedFrom?: string[] };
    try {
      manifest = JSON.parse(await readFile(path, 'utf8'));
    } catch {
      return; // no manifest (an old or broken backup): nothing to rewrite
    }
    if ((manifest.mergedFrom ?? []).includes(job.backupId)) return;
    manifest.parentBackupId = child.newParentBackupId;
    if (child.newParentBackupId === null) manifest.parentCheckpoint = null;
    manifest.volumes = (manifest.volumes ?? []).map((v) => ({ ...v, backingFile: child.volumes.find((x) => x.volumeId === v.volumeId)?.newBackingFile ?? null }));
    manifest.mergedFrom = [...(manifest.mergedFrom ?? []), job.backupId];
    const tmp = join(root, child.dir, '.manifest.json.tmp');
    await writeFile(tmp, JSON.stringify(manifest, null, 2));
    await rename(tmp, path);
  }

  /**
   * The removed backup's checkpoint and its bitmaps. Never the current chain's tip (the decider moved the
   * tip before the removal started), so the next incremental's checkpoint is untouched. libvirt deletes
   * bitmaps only of a running domain whose images all have them; otherwise it forgets the checkpoint and
   * the bitmaps are removed here (QMP for a running domain, qemu-img for a stopped one).
   */
  private async removeCheckpoint(job: RemoveBackupJobData): Promise<void> {
    const domain = job.domainName;
    if (!domain) return;
    try {
      const known = (await this.virsh.checkpointList(domain)).some((c) => c.name === job.checkpointName);
      if (known) {
        try {
          await this.virsh.checkpointDelete(domain, job.checkpointName);
          return;
        } catch {
          await this.virsh.checkpointDelete(domain, job.checkpointName, { metadataOnly: true });
        }
      }
      await this.removeBitmaps(domain, job.checkpointName);
    } catch (error) {
      // The backup's files are gone either way; a bitmap left behind costs only guest-write work.
      this.logger.warn(`backup ${job.backupId}: checkpoint ${job.checkpointName} of ${domain} not removed: ${(error as Error).message}`);
    }
  }

  private async removeBitmaps(domain: string, name: string): Promise<void> {
    const running = (await this.virsh.domainState(domain)).state !== 'shutoff';
    if (running) {
      const nodes = (await this.virsh.qmp(domain, 'query-named-block-nodes', { flat: true })) as { 'node-name'?: string; drv?: string; 'dirty-bitmaps'?: { name: string }[] }[];
      for (const n of nodes.filter((x) => x.drv === 'qcow2' && x['node-name'] && (x['dirty-bitmaps'] ?? []).some((b) => b.name === name))) {
        await this.virsh.qmp(domain, 'block-dirty-bitmap-remove', { node: n['node-name'], name });
      }
      return;
    }
    for (const disk of (await this.virsh.domainDisks(domain)).filter((d) => d.device === 'disk' && d.format === 'qcow2' && d.sourcePath)) {
      const info = (await this.qemuImg.info(disk.sourcePath!)) as ImageInfo;
      if (info.bitmaps.some((b) => b.name === name)) await this.qemuImg.bitmap(disk.sourcePath!, name, { op: 'remove' });
    }
  }
}
