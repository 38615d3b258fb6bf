import { Logger } from '@strata/config';
import { VirshDriver } from '@strata/hypervisor';

/** Each running disk's part of a limit shared by `count` disks (libvirt takes whole bytes per second, 0 = unlimited). */
export function bandwidthShare(limitBytesPerSec: number, count: number): number {
  return Math.max(1, Math.floor(limitBytesPerSec / Math.max(1, count)));
}

/**
 * Holds a backup to its speed limit (`nas.backup.bandwidth.limit.mbps`). libvirt runs one block job per
 * disk and its backup XML has no speed, so the limit is set on those jobs right after `backup-begin`
 * (`virsh blockjob --bandwidth`, libvirt's own API for QMP `block-job-set-speed`); until then, a few tens
 * of milliseconds, the jobs run unthrottled. The disks share the limit: when one finishes, the others get
 * its part.
 */
export class BackupThrottle {
  private running: string[];
  private lastCheck = 0;
  private checking: Promise<void> | null = null;

  constructor(
    private readonly virsh: VirshDriver,
    private readonly domain: string,
    targets: string[],
    private readonly limitBytesPerSec: number,
    private readonly logger: Logger,
  ) {
    this.running = [...targets];
  }

  /** Limits every disk's job; a job that has already finished (a small disk) needs none. */
  async start(): Promise<void> {
    await this.apply();
    this.lastCheck = Date.now();
    this.logger.log(`backup of ${this.domain} limited to ${this.limitBytesPerSec} bytes/s over ${this.running.length} disk(s)`);
  }

  /**
   * Called on every poll of the backup job; at most once a second (and only with more than one disk
   * left) it looks for finished disks and gives their part to the others. Never throws.
   */
  tick(): void {
    if (this.running.length < 2 || this.checking || Date.now() - this.lastCheck < 1000) return;
    this.lastCheck = Date.now();
    this.checking = this.rebalance()
      .catch((error: Error) => this.logger.warn(`bandwidth of the backup of ${this.domain}: ${error.message}`))
      .finally(() => (this.checking = null));
  }

  /** Waits for a rebalance in flight, so nothing runs virsh after the backup ended. */
  async stop(): Promise<void> {
    await this.checking;
    this.running = [];
  }

  private async rebalance(): Promise<void> {
    const running = this.running;
    const infos = await Promise.all(running.map((t) => this.virsh.blockJobInfo(this.domain, t).catch(() => null)));
    const still = running.filter((_, i) => infos[i] !== null && infos[i]!.cur < infos[i]!.end);
    if (still.length === running.length) return;
    this.running = still;
    await this.apply();
  }

  private async apply(): Promise<void> {
    while (this.running.length > 0) {
      const share = bandwidthShare(this.limitBytesPerSec, this.running.length);
      const results = await Promise.allSettled(this.running.map((t) => this.virsh.blockJobSetBandwidth(this.domain, t, share)));
      // A disk whose job already ended has nothing left to limit ("does not have an active block job"):
      // the others share the limit without it.
      const limited = this.running.filter((_, i) => results[i].status === 'fulfilled');
      if (limited.length === this.running.length) return;
      this.running = limited;
    }
  }
}
