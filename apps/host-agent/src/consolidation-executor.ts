import { Logger } from '@strata/config';
import { ImageInfo, QemuImgDriver, VirshDriver } from '@strata/hypervisor';
import { AgentReport, ConsolidationJobData } from '@strata/jobs';
import { MountedRepository, RepositoryMounter } from './repository-mounter';
import { RestoreMountHolds } from './restore-executor';

const POLL_MS = 250;

/**
 * Makes a quick-restored VM's disks independent of the repository. Running VM: `virsh blockpull` (the
 * guest keeps running and its writes land in the top image, which the pull never overwrites); stopped VM:
 * `qemu-img rebase` onto nothing, which copies the backing data in. Everything it decides comes from
 * libvirt and the image itself (a pull already running, a disk that has no backing file left), so a job
 * handed out again after an agent restart resumes the pull QEMU kept running, or starts it again.
 * The repository stays mounted while the VM reads from it: the job holds it (mounting it again after an
 * agent restart) and, once done, releases its own hold and the one the quick restore left.
 */
export class ConsolidationExecutor {
  constructor(
    private readonly virsh: VirshDriver,
    private readonly qemuImg: QemuImgDriver,
    private readonly report: (r: AgentReport) => Promise<void>,
    private readonly logger: Logger,
    /** Mounts NFS, CIFS and CephFS repositories; without it only `local` ones can be used. */
    private readonly mounter: RepositoryMounter | null = null,
    private readonly holds: RestoreMountHolds | null = null,
  ) {}

  /** `finalAttempt`: a failure is reported as final; before that it is thrown, and BullMQ tries again later. */
  async run(job: ConsolidationJobData, finalAttempt = true): Promise<void> {
    const at = () => new Date().toISOString();
    let mounted: MountedRepository | null = null;
    let done = false;
    try {
      if (this.mounter) {
        try {
          mounted = await this.mounter.acquire(job.repository);
        } catch (error) {
          throw new Error(`repository ${job.repository.repositoryId} could not be mounted: ${(error as Error).message}`);
        }
      }
      const sizes: number[] = [];
      for (const d of job.disks) sizes.push(((await this.qemuImg.info(d.path, { forceShare: true })) as ImageInfo).virtualSizeBytes);
      const total = sizes.reduce((a, b) => a + b, 0);
      let before = 0;
      let lastReport = 0;
      for (const [i, disk] of job.disks.entries()) {
        await this.consolidate(job, disk, (cur) => {
          if (Date.now() - lastReport < 1000) return;
          lastReport = Date.now();
          void this.report({ type: 'ConsolidationProgressed', vmId: job.vmId, restoreId: job.restoreId, bytesDone: before + cur, bytesTotal: total, at: at() }).catch(() => undefined);
        });
        before += sizes[i];
      }
      done = true;
      await this.report({ type: 'ConsolidationSucceeded', vmId: job.vmId, restoreId: job.restoreId, at: at() });
      this.logger.log(`consolidation of restore ${job.restoreId}: ${job.domainName} no longer reads from the repository`);
    } catch (error) {
      const reason = (error as Error).message;
      if (!finalAttempt) {
        this.logger.warn(`consolidation of restore ${job.restoreId} (${job.domainName}) failed, will try again: ${reason}`);
        throw error;
      }
      this.logger.error(`consolidation of restore ${job.restoreId} (${job.domainName}) failed: ${reason}`);
      await this.report({ type: 'ConsolidationFailed', vmId: job.vmId, restoreId: job.restoreId, reason, at: at() });
    } finally {
      await this.settleMount(job, mounted, done, finalAttempt);
    }
  }

  /**
   * Done: the disks no longer read from the repository, every hold of this restore goes. Failed for good:
   * the VM still reads from it, so a hold stays (this job's replaces the restore's, which may be gone
   * with an earlier agent). Failed with a retry to come: only this attempt's hold goes.
   */
  private async settleMount(job: ConsolidationJobData, mounted: MountedRepository | null, done: boolean, finalAttempt: boolean): Promise<void> {
    try {
      if (done) {
        await mounted?.release();
        await this.holds?.release(job.restoreId);
      } else if (finalAttempt && mounted && this.holds) {
        this.holds.keep(job.restoreId, mounted);
      } else {
        await mounted?.release();
      }
    } catch (error) {
      this.logger.warn(`consolidation of restore ${job.restoreId}: releasing the repository failed: ${(error as Error).message}`);
    }
  }

  private async backingOf(path: string): Promise<string | null> {
    return ((await this.qemuImg.info(path, { forceShare: true })) as ImageInfo).backingFilename;
  }

  private async consolidate(job: ConsolidationJobData, disk: ConsolidationJobData['disks'][number], progress: (cur: number) => void): Promise<void> {
    const domain = job.domainName;
    // Pulls started here; a pull that ends while the disk still has a backing file (the VM was stopped
    // mid-way, a job was cancelled) is started again, a few times at most.
    let started = 0;
    while (started <= 5) {
      const running = (await this.virsh.domainState(domain)).state !== 'shutoff';
      if (!running) {
        if ((await this.backingOf(disk.path)) === null) return;
        this.logger.log(`consolidation of restore ${job.restoreId}: ${domain} is off; copying the backing data into ${disk.path}`);
        started++;
        await this.qemuImg.rebase(disk.path, { format: 'qcow2', backingFile: null });
        continue;
      }
      const current = await this.virsh.blockJobInfo(domain, disk.target);
      if (current) {
        if (current.type !== 'pull') throw new Error(`disk ${disk.target} of ${domain} runs another block job (${current.type})`);
        progress(current.cur);
        await new Promise((r) => setTimeout(r, POLL_MS));
        continue;
      }
      if ((await this.backingOf(disk.path)) === null) return;
      this.logger.log(`consolidation of restore ${job.restoreId}: pulling ${disk.target} of ${domain}${job.bandwidthBytesPerSec > 0 ? ` at ${job.bandwidthBytesPerSec} B/s` : ''}`);
      started++;
      await this.virsh.blockPull(domain, disk.target, job.bandwidthBytesPerSec > 0 ? { bandwidthBytesPerSec: job.bandwidthBytesPerSec } : {});
    }
    throw new Error(`disk ${disk.target} of ${domain} still reads from the repository after repeated pulls`);
  }
}
