import { Logger } from '@strata/config';
import { ImageInfo, QemuImgDriver, VirshDriver } from '@strata/hypervisor';
import { AgentReport, ConsolidationJobData } from '@strata/jobs';

const POLL_MS = 250;

/**
 * Makes a quick-restored VM's disks independent of the repository. Running VM: `virsh blockpull` (the
 * guest keeps running and its writes land in the top image, which the pull never overwrites); stopped VM:
 * `qemu-img rebase` onto nothing, which copies the backing data in. Everything it decides comes from
 * libvirt and the image itself (a pull already running, a disk that has no backing file left), so a job
 * handed out again after an agent restart resumes the pull QEMU kept running, or starts it again.
 */
export class ConsolidationExecutor {
  constructor(
    private readonly virsh: VirshDriver,
    private readonly qemuImg: QemuImgDriver,
    private readonly report: (r: AgentReport) => Promise<void>,
    private readonly logger: Logger,
  ) {}

  /** `finalAttempt`: a failure is reported as final; before that it is thrown, and BullMQ tries again later. */
  async run(job: ConsolidationJobData, finalAttempt = true): Promise<void> {
    const at = () => new Date().toISOString();
    try {
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
