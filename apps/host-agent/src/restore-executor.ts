import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Logger } from '@strata/config';
import { cloneDomainXml, ImageInfo, QemuImgDriver, supportsDirectIo, VirshDriver, withPlacement } from '@strata/hypervisor';
import { AgentReport, ForgetDomainJobData, RestoreJobData } from '@strata/jobs';
import { MountedRepository, mountRepository, RepositoryMounter } from './repository-mounter';

/**
 * Repository mounts that quick-restored VMs read their backing files through (restore id -> hold): the
 * restore leaves its hold here and the consolidation releases it once the disks no longer need the
 * repository, so no other job's release unmounts it under a running VM.
 */
export class RestoreMountHolds {
  private readonly held = new Map<string, MountedRepository>();

  keep(restoreId: string, mounted: MountedRepository): void {
    const previous = this.held.get(restoreId);
    this.held.set(restoreId, mounted);
    if (previous && previous !== mounted) void previous.release();
  }

  async release(restoreId: string): Promise<void> {
    const mounted = this.held.get(restoreId);
    this.held.delete(restoreId);
    await mounted?.release();
  }

  /** Restores whose VM still holds its repository (for tests and diagnostics). */
  restores(): string[] {
    return [...this.held.keys()];
  }
}

export interface RestoreExecutorOptions {
  /** Mounts NFS, CIFS and CephFS repositories; without it only `local` ones can be used. */
  mounter?: RepositoryMounter | null;
  /** Shared with the consolidation executor, which releases what quick restores leave here. */
  holds?: RestoreMountHolds;
  /** This host's name: the placement mark of a VM that a quick restore moves here. */
  hostName?: string;
}

/** The next free virtio target (`vdb`, `vdc`, ...) of a domain. */
export function nextFreeTarget(used: readonly string[]): string {
  const taken = new Set(used);
  for (let i = 0; i < 26 * 27; i++) {
    const name = i < 26 ? `vd${String.fromCharCode(97 + i)}` : `vd${String.fromCharCode(96 + Math.floor(i / 26))}${String.fromCharCode(97 + (i % 26))}`;
    if (!taken.has(name)) return name;
  }
  throw new Error('the domain has no free virtio target left');
}

const tmpPathOf = (job: RestoreJobData, dest: string) => `${dest}.strata-restore-${job.restoreId}`;

async function allocatedBytes(path: string): Promise<number> {
  try {
    return (await stat(path)).blocks * 512;
  } catch {
    return 0;
  }
}

interface Restored {
  volumeId: string;
  target: string;
  path: string;
}

/**
 * One restore on this host. Plain: each volume's chain is flattened (`qemu-img convert`) into a side file
 * next to its destination, and only when every volume is done are they renamed into place, so a failure
 * leaves the destination as it was. Quick: each destination becomes a new qcow2 whose backing file is the
 * backup in the repository, the VM starts at once, and a consolidation job pulls the data in later.
 * A retried job (the agent died) looks at what libvirt already has (a running quick-restored VM, an
 * attached disk, a defined clone) and finishes from there.
 */
export class RestoreExecutor {
  constructor(
    private readonly virsh: VirshDriver,
    private readonly qemuImg: QemuImgDriver,
    private readonly report: (r: AgentReport) => Promise<void>,
    /** Sends the host's domains at once, so a new VM or disk is listed when the restore is reported done. */
    private readonly reportDomains: () => Promise<void>,
    private readonly logger: Logger,
    private readonly options: RestoreExecutorOptions = {},
  ) {
    this.holds = options.holds ?? new RestoreMountHolds();
  }

  private readonly holds: RestoreMountHolds;

  /** Mounts the repository (or finds it mounted) for the restore; a quick restore's VM keeps it mounted. */
  async run(job: RestoreJobData): Promise<void> {
    let mounted: MountedRepository;
    try {
      mounted = await mountRepository(this.options.mounter, job.repository);
    } catch (error) {
      const reason = `repository ${job.repository.repositoryId} could not be mounted: ${(error as Error).message}`;
      this.logger.error(`restore ${job.restoreId} of backup ${job.backupId} into ${job.domainName} failed: ${reason}`);
      await this.report({ type: 'RestoreFailed', vmId: job.vmId, restoreId: job.restoreId, reason, cleanedUp: [], at: new Date().toISOString() });
      return;
    }
    let readsRepository = false;
    try {
      readsRepository = await this.restoreFrom(job, mounted.root);
    } finally {
      if (readsRepository) this.holds.keep(job.restoreId, mounted);
      else await mounted.release();
    }
  }

  /** Restores from the repository at `root`; true when the restored disks read from it (a quick restore). */
  private async restoreFrom(job: RestoreJobData, root: string): Promise<boolean> {
    const at = () => new Date().toISOString();
    const cleanedUp: string[] = [];
    const created: string[] = [];
    try {
      for (const v of job.volumes) {
        const file = join(root, v.backupFile);
        if (!(await stat(file).catch(() => null))) throw new Error(`the backup's file ${v.backupFile} is missing from the repository`);
      }
      const disks = await this.restore(job, root, created);
      // A new VM, a new disk or a VM now on this host must be listed by the time the job is done; a VM's
      // own restore in place changes none of that.
      if (job.kind !== 'vm' || job.movedFromHostId) await this.reportDomains().catch((error: Error) => this.logger.warn(`restore ${job.restoreId}: domain report failed: ${error.message}`));
      await this.report({ type: 'RestoreSucceeded', vmId: job.vmId, restoreId: job.restoreId, disks, at: at() });
      this.logger.log(`restore ${job.restoreId} (${job.kind}${job.quick ? ', quick' : ''}) of backup ${job.backupId} into ${job.domainName} done`);
      return job.quick;
    } catch (error) {
      const reason = (error as Error).message;
      this.logger.error(`restore ${job.restoreId} of backup ${job.backupId} into ${job.domainName} failed: ${reason}`);
      for (const v of job.volumes) {
        const tmp = tmpPathOf(job, v.destinationPath);
        if (await stat(tmp).catch(() => null)) {
          await rm(tmp, { force: true });
          cleanedUp.push(`removed ${tmp}`);
        }
      }
      for (const path of created) {
        await rm(path, { force: true });
        cleanedUp.push(`removed ${path}`);
      }
      await this.report({ type: 'RestoreFailed', vmId: job.vmId, restoreId: job.restoreId, reason, cleanedUp, at: at() });
      return false;
    }
  }

  private async restore(job: RestoreJobData, root: string, created: string[]): Promise<Restored[]> {
    switch (job.kind) {
      case 'vm':
        return this.restoreVm(job, root, created);
      case 'volume':
        return this.restoreVolume(job, root, created);
      case 'newVm':
        return this.createVm(job, root, created);
    }
  }

  private async restoreVm(job: RestoreJobData, root: string, created: string[]): Promise<Restored[]> {
    const domain = job.domainName;
    const disks = job.volumes.map((v) => ({ volumeId: v.volumeId, target: v.target, path: v.destinationPath }));
    if (job.movedFromHostId && !(await this.definedHere(job.targetVmId))) return this.defineMovedVm(job, root, created, disks);
    const state = (await this.virsh.domainState(domain)).state;
    if (state !== 'shutoff') {
      if (job.quick && (await this.runsFromBackup(job, root))) {
        await this.forgetCheckpoints(job); // an earlier attempt got as far as starting the VM
        return disks;
      }
      throw new Error(`virtual machine ${domain} is ${state}; it must be stopped to be restored`);
    }
    await this.materialize(job, root);
    for (const v of job.volumes) await rename(tmpPathOf(job, v.destinationPath), v.destinationPath);
    // Defined here already (an earlier attempt defined it, or the libvirt is shared with the old host).
    if (job.movedFromHostId) await this.virsh.define(withPlacement(await this.virsh.domainXml(domain, { inactive: true }), this.hostName()));
    // A quick restore starts the VM first: forgetting checkpoints is metadata only, and the wait is the VM's.
    if (job.quick) await this.virsh.start(domain);
    await this.forgetCheckpoints(job);
    return disks;
  }

  /** The disks are new images without the VM's bitmaps: libvirt's checkpoints describe nothing any more. */
  private async forgetCheckpoints(job: RestoreJobData): Promise<void> {
    const checkpoints = (await this.virsh.checkpointList(job.domainName)).filter((c) => c.name.startsWith('strata-')).reverse();
    for (const c of checkpoints) await this.virsh.checkpointDelete(job.domainName, c.name, { metadataOnly: true });
    if (checkpoints.length) this.logger.log(`restore ${job.restoreId}: forgot checkpoints [${checkpoints.map((c) => c.name).join(', ')}] of ${job.domainName}`);
  }

  private async restoreVolume(job: RestoreJobData, root: string, created: string[]): Promise<Restored[]> {
    const domain = job.domainName;
    const v = job.volumes[0];
    const current = await this.virsh.domainDisks(domain, { inactive: true });
    const attached = current.find((d) => d.sourcePath === v.destinationPath);
    if (attached) {
      await this.startIfAsked(job);
      return [{ volumeId: v.volumeId, target: attached.target, path: v.destinationPath }];
    }
    await this.materialize(job, root);
    await rename(tmpPathOf(job, v.destinationPath), v.destinationPath);
    created.push(v.destinationPath);
    const target = nextFreeTarget(current.map((d) => d.target));
    const running = (await this.virsh.domainState(domain)).state !== 'shutoff';
    await this.virsh.attachDisk(domain, { path: v.destinationPath, target, format: job.quick ? 'qcow2' : v.format }, { live: running });
    created.length = 0; // attached: from here on it is the VM's disk
    await this.startIfAsked(job);
    return [{ volumeId: v.volumeId, target, path: v.destinationPath }];
  }

  /** `hostid` on a volume restore: the stopped VM starts here with its new disk. */
  private async startIfAsked(job: RestoreJobData): Promise<void> {
    if (job.startVm && (await this.virsh.domainState(job.domainName)).state === 'shutoff') await this.virsh.start(job.domainName);
  }

  private async definedHere(uuid: string): Promise<boolean> {
    return (await this.virsh.listDomains()).some((d) => d.uuid === uuid.toLowerCase());
  }

  private hostName(): string {
    if (!this.options.hostName) throw new Error('this agent was started without its host name, which a VM moved here is marked with');
    return this.options.hostName;
  }

  private async manifestDomainXml(job: RestoreJobData, root: string): Promise<string> {
    let manifest: { domainXml?: string };
    try {
      manifest = JSON.parse(await readFile(join(root, job.manifestFile), 'utf8')) as { domainXml?: string };
    } catch (error) {
      throw new Error(`the backup's manifest ${job.manifestFile} cannot be read: ${(error as Error).message}`);
    }
    if (!manifest.domainXml) throw new Error(`the backup's manifest ${job.manifestFile} holds no VM definition`);
    return manifest.domainXml;
  }

  /**
   * A quick restore that moves the VM here, where libvirt does not know it: the backup's definition under
   * the VM's own name, uuid and MAC addresses, on the new images, marked as placed on this host. Not
   * started, it is undefined again: the VM stays on the host it was on, and nothing half-moved is left.
   */
  private async defineMovedVm(job: RestoreJobData, root: string, created: string[], disks: Restored[]): Promise<Restored[]> {
    const xml = withPlacement(
      cloneDomainXml(await this.manifestDomainXml(job, root), {
        name: job.domainName,
        uuid: job.targetVmId,
        disks: Object.fromEntries(job.volumes.map((v) => [v.target, { path: v.destinationPath, format: 'qcow2' }])),
        keepMacs: true,
      }),
      this.hostName(),
    );
    for (const v of job.volumes) await mkdir(dirname(v.destinationPath), { recursive: true });
    await this.materialize(job, root);
    for (const v of job.volumes) {
      await rename(tmpPathOf(job, v.destinationPath), v.destinationPath);
      created.push(v.destinationPath);
    }
    await this.virsh.define(xml);
    try {
      await this.virsh.start(job.domainName);
    } catch (error) {
      await this.virsh.undefine(job.domainName, { checkpointsMetadata: true }).catch((e: Error) => this.logger.warn(`restore ${job.restoreId}: could not undefine ${job.domainName} again: ${e.message}`));
      throw error;
    }
    created.length = 0;
    this.logger.log(`restore ${job.restoreId}: defined ${job.domainName} here from the backup's definition and started it`);
    return disks;
  }

  /**
   * The old host's part of a quick restore that moved a VM away (forgetDomain): its stale, shut-off
   * definition goes (checkpoint and snapshot metadata with it; the disk files stay). A definition that
   * runs here is left (the VM must never be undefined under a running guest), and so is one placed on
   * another host: with a libvirt shared by both hosts it is the moved VM itself.
   */
  async forget(job: ForgetDomainJobData): Promise<void> {
    const what = `restore ${job.restoreId} moved virtual machine ${job.domainName} to host ${job.movedToHostId}`;
    const here = (await this.virsh.listDomains()).find((d) => d.uuid === job.vmId.toLowerCase());
    if (!here) {
      this.logger.log(`${what}; it is not defined here: nothing to remove`);
      return;
    }
    const placed = (await this.virsh.describeDomain(here.name, { inactive: true })).placementHost;
    if (placed !== null && placed !== this.options.hostName) {
      this.logger.log(`${what}; the definition here is placed on host ${placed} (a libvirt shared with it): left alone`);
      return;
    }
    if (here.state !== 'shutoff') {
      this.logger.warn(`${what}; but it is ${here.state} here: its definition here is left, stop it and undefine it by hand`);
      return;
    }
    await this.virsh.undefine(here.name, { checkpointsMetadata: true, snapshotsMetadata: true });
    this.logger.log(`${what}; removed its definition here (its old disk files stay)`);
  }

  private async createVm(job: RestoreJobData, root: string, created: string[]): Promise<Restored[]> {
    const disks = job.volumes.map((v) => ({ volumeId: v.volumeId, target: v.target, path: v.destinationPath }));
    const exists = (await this.virsh.listDomains()).find((d) => d.uuid === job.targetVmId.toLowerCase());
    if (!exists) {
      const xml = cloneDomainXml(await this.manifestDomainXml(job, root), {
        name: job.domainName,
        uuid: job.targetVmId,
        disks: Object.fromEntries(job.volumes.map((v) => [v.target, { path: v.destinationPath, format: job.quick ? 'qcow2' : v.format }])),
      });
      await this.materialize(job, root);
      for (const v of job.volumes) {
        await rename(tmpPathOf(job, v.destinationPath), v.destinationPath);
        created.push(v.destinationPath);
      }
      await this.virsh.define(xml);
      created.length = 0;
    }
    if (job.quick && (await this.virsh.domainState(job.domainName)).state === 'shutoff') await this.virsh.start(job.domainName);
    return disks;
  }

  /** Whether the domain's disks are already the quick restore's images (backed by this backup's files). */
  private async runsFromBackup(job: RestoreJobData, root: string): Promise<boolean> {
    for (const v of job.volumes) {
      const info = (await this.qemuImg.info(v.destinationPath, { forceShare: true }).catch(() => null)) as ImageInfo | null;
      if (!info || info.backingFilename !== join(root, v.backupFile)) return false;
    }
    return true;
  }

  /** Writes every volume's side file: a flattened copy, or (quick) an empty qcow2 over the backup's file. */
  private async materialize(job: RestoreJobData, root: string): Promise<void> {
    const deadline = Date.now() + job.timeoutSeconds * 1000;
    let total = 0;
    for (const v of job.volumes) total += job.quick ? 0 : await this.chainDataBytes(join(root, v.backupFile));
    let done = 0;
    for (const v of job.volumes) {
      const source = join(root, v.backupFile);
      const tmp = tmpPathOf(job, v.destinationPath);
      await rm(tmp, { force: true });
      if (job.quick) {
        await this.qemuImg.create(tmp, { format: 'qcow2', backingFile: source, backingFormat: 'qcow2' });
        continue;
      }
      const remainingMs = deadline - Date.now();
      if (remainingMs <= 0) throw new Error(`the restore exceeded knib.timeout (${job.timeoutSeconds} s)`);
      const progress = setInterval(() => {
        void allocatedBytes(tmp).then((bytes) =>
          this.report({ type: 'RestoreProgressed', vmId: job.vmId, restoreId: job.restoreId, bytesDone: Math.min(done + bytes, total), bytesTotal: total, at: new Date().toISOString() }).catch(() => undefined),
        );
      }, 1000);
      try {
        // Flattening writes whole disks: with direct I/O and parallel, out-of-order writes (the side file is
        // unusable until renamed anyway) 2 GiB took 1.4-1.5 s to disk, through the page cache 1.3-4.4 s.
        const direct = await supportsDirectIo(dirname(tmp));
        await this.qemuImg.convert(source, tmp, {
          sourceFormat: 'qcow2',
          outputFormat: v.format === 'raw' ? 'raw' : 'qcow2',
          coroutines: 16,
          outOfOrderWrites: true,
          ...(direct && { targetCache: 'none' as const }),
          ...(job.bandwidthBytesPerSec > 0 && { rateLimitBytesPerSec: job.bandwidthBytesPerSec }),
          timeoutMs: remainingMs,
        });
      } catch (error) {
        if (Date.now() >= deadline) throw new Error(`the restore exceeded knib.timeout (${job.timeoutSeconds} s) and was stopped`);
        throw error;
      } finally {
        clearInterval(progress);
      }
      done += await allocatedBytes(tmp);
    }
    if (!job.quick) await this.report({ type: 'RestoreProgressed', vmId: job.vmId, restoreId: job.restoreId, bytesDone: total, bytesTotal: total, at: new Date().toISOString() }).catch(() => undefined);
  }

  /** Bytes the chain holds (what a flattening copy has to write, roughly). */
  private async chainDataBytes(file: string): Promise<number> {
    const chain = (await this.qemuImg.info(file, { backingChain: true })) as ImageInfo[];
    return chain.reduce((n, i) => n + (i.actualSizeBytes ?? 0), 0);
  }
}
