import { DomainNotFoundError, DomainState, ExecaProcessRunner, ImageInfo, ImageNotFoundError, QemuImgDriver, VirshDriver, VirshVersion } from '@strata/hypervisor';
import { ReportedDomain } from '@strata/jobs';
import { HostHypervisor } from './host-hypervisor.port';

/** The agent's view of the host, through libs/hypervisor (the one place that spawns processes). */
export class LibvirtHostHypervisor implements HostHypervisor {
  readonly virsh: VirshDriver;
  readonly qemuImg: QemuImgDriver;

  /**
   * `placedOn`: this agent shares its libvirt with others (STRATA_AGENT_SHARED_LIBVIRT) and reports only
   * the domains placed on this host (their definition's placement mark names it); null: every domain.
   */
  constructor(
    uri: string,
    private readonly placedOn: string | null = null,
  ) {
    const runner = new ExecaProcessRunner();
    this.virsh = new VirshDriver(uri, runner);
    this.qemuImg = new QemuImgDriver(runner);
  }

  private version: { at: number; value: Promise<VirshVersion> } | null = null;

  /** `virsh version`, asked at most once a minute: every beat wants it twice (versions, capabilities). */
  private virshVersion(): Promise<VirshVersion> {
    if (!this.version || Date.now() - this.version.at > 60_000) {
      const value = this.virsh.version();
      this.version = { at: Date.now(), value };
      value.catch(() => (this.version = null));
    }
    return this.version.value;
  }

  async versions(): Promise<{ libvirt: string; qemu: string }> {
    const v = await this.virshVersion();
    return { libvirt: (v.daemon ?? v.library).text, qemu: v.hypervisor.version.text };
  }

  async capabilities(): Promise<string[]> {
    // Push-mode backups with checkpoints (libvirt >= 7.6 / QEMU >= 6.0) are what strata relies on.
    const v = await this.virshVersion();
    const lib = v.daemon ?? v.library;
    const caps = ['backup-push', 'checkpoints', 'qemu-storage-daemon'];
    return lib.major > 7 || (lib.major === 7 && lib.minor >= 6) ? caps : [];
  }

  async domains(): Promise<ReportedDomain[]> {
    const out: ReportedDomain[] = [];
    for (const d of await this.virsh.listDomains()) {
      try {
        const described = await this.describe(d.uuid, d.name, d.state);
        if (described) out.push(described);
      } catch (error) {
        // A domain undefined (or a disk removed) between the listing and the look: it is simply gone.
        if (error instanceof DomainNotFoundError || error instanceof ImageNotFoundError) continue;
        throw error;
      }
    }
    return out;
  }

  private async describe(uuid: string, name: string, state: DomainState): Promise<ReportedDomain | null> {
    const description = await this.virsh.describeDomain(name);
    if (this.placedOn !== null && description.placementHost !== this.placedOn) return null;
    const disks = description.disks.filter((k) => k.device === 'disk' && k.sourcePath && (k.type === 'file' || k.type === 'block'));
    const reported: ReportedDomain['disks'] = [];
    for (const disk of disks) {
      const info = (await this.qemuImg.info(disk.sourcePath!, { forceShare: true })) as ImageInfo;
      reported.push({ target: disk.target, sourcePath: disk.sourcePath!, format: disk.format ?? info.format, virtualSizeBytes: info.virtualSizeBytes });
    }
    const live = state === 'running' || state === 'paused' || state === 'blocked';
    return { uuid, name, state: live ? 'Running' : 'Stopped', disks: reported };
  }
}
