import { mkdir, readFile, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { Logger } from '@strata/config';
import { DomainJobInfo, DomainJobTimeoutError, DomainState, ImageInfo, LibvirtDisk, parseCheckpointXml, QemuImgDriver, VirshDriver } from '@strata/hypervisor';
import { AgentReport, BackupJobData, BackupVolumeSpec } from '@strata/jobs';
import { BackupThrottle } from './backup-throttle';
import { MountedRepository, mountRepository, RepositoryMounter } from './repository-mounter';

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

/**
 * The backed-up disks that get a dirty bitmap in the backup's checkpoint. Only a qcow2 image can hold
 * one (libvirt refuses a bitmap on a raw disk). A VM with any other disk is full-backup-only (the decider
 * never plans an incremental for it), so bitmaps in its qcow2 disks would never be read and would only
 * pile up, one per backup, each costing work on every guest write: its checkpoints then hold no bitmap
 * and only mark the moment of the backup.
 */
export function bitmapTargets(volumes: { target: string }[], disks: { target: string; format: string | null }[]): string[] {
  const qcow2 = new Set(disks.filter((d) => d.format === 'qcow2').map((d) => d.target));
  return volumes.every((v) => qcow2.has(v.target)) ? volumes.map((v) => v.target) : [];
}

/** `targets` get a bitmap, every other disk of the domain `checkpoint='no'` (libvirt accepts a checkpoint without any). */
export function checkpointXml(name: string, targets: string[], allTargets: string[]): string {
  const included = new Set(targets);
  const disks = allTargets.map((t) => (included.has(t) ? `<disk name='${escapeXml(t)}' checkpoint='bitmap'/>` : `<disk name='${escapeXml(t)}' checkpoint='no'/>`));
  return `<domaincheckpoint><name>${escapeXml(name)}</name><disks>${disks.join('')}</disks></domaincheckpoint>`;
}

/**
 * A checkpoint XML recorded earlier, made fit for `checkpoint-create --redefine` on a libvirt that knows
 * only `known`: libvirt refuses to redefine a checkpoint whose `<parent>` it does not know (after the
 * domain was undefined with its checkpoint metadata, it knows none), and the parent link is not needed for
 * an incremental backup, which reads only this checkpoint's own bitmap.
 */
export function redefinableCheckpointXml(xml: string, known: ReadonlySet<string>): string {
  const parent = parseCheckpointXml(xml).parent;
  if (parent === null || known.has(parent)) return xml;
  // The checkpoint's own <parent> comes before its <domain> (whose XML has no top-level <parent>).
  return xml.replace(/<parent>\s*<name>[^<]*<\/name>\s*<\/parent>\s*/, '');
}

/**
 * Test-only failpoint (issue 3, point 9: an agent killed mid-backup). With
 * `STRATA_AGENT_FAILPOINT=hang-after-backup-begin` the executor logs that it got there and then waits for
 * ever, right after `backupBegin` (libvirt's backup job runs, slowed to 64 KiB/s a disk, the new checkpoint
 * exists, the target files are partial), so that a test can SIGKILL the agent at that point. Unset (always,
 * outside tests) it does nothing.
 */
export const FAILPOINT_ENV = 'STRATA_AGENT_FAILPOINT';

interface Plan {
  type: 'FULL' | 'INCREMENTAL';
  fullReason: string | null;
  chainId: string;
  volumes: BackupVolumeSpec[];
}

interface DomainLook {
  state: DomainState;
  /** The active (or last) job, null when libvirt would not say (a shut-off domain). */
  job: DomainJobInfo | null;
  checkpoints: ReadonlySet<string>;
  /** The `disk` devices (not cdroms): targets and image formats. */
  disks: LibvirtDisk[];
}

interface LiveNode {
  nodeName: string;
  file: string;
  bitmaps: { name: string; inconsistent: boolean; recording: boolean }[];
}

interface Manifest {
  type: 'FULL' | 'INCREMENTAL';
  fullReason: string | null;
  volumes: { volumeId: string; storedBytes?: number; virtualSizeBytes?: number }[];
}

const isActiveJob = (type: string | undefined) => type === 'bounded' || type === 'unbounded';

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/**
 * One backup on this host. A retried job (the agent died mid-backup and BullMQ handed the job out again)
 * first reports an attempt that had finished (manifest written, checkpoint there), or else undoes whatever
 * the earlier attempt left (its running libvirt backup job, its new checkpoint and bitmaps, a VM it had
 * started paused, partial files) and starts over. A backup is complete only when its manifest exists,
 * which is written last and atomically.
 */
export class BackupExecutor {
  constructor(
    private readonly virsh: VirshDriver,
    private readonly qemuImg: QemuImgDriver,
    private readonly report: (r: AgentReport) => Promise<void>,
    private readonly hostName: string,
    private readonly logger: Logger,
    /** Mounts NFS, CIFS and CephFS repositories; without it only `local` ones can be used. */
    private readonly mounter: RepositoryMounter | null = null,
  ) {}

  /** Mounts the repository (or finds it mounted) for the backup, and releases it afterwards. */
  async run(job: BackupJobData): Promise<void> {
    let mounted: MountedRepository;
    try {
      mounted = await mountRepository(this.mounter, job.repository);
    } catch (error) {
      const reason = `repository ${job.repository.repositoryId} could not be mounted: ${(error as Error).message}`;
      this.logger.error(`backup ${job.backupId} of ${job.domainName} failed: ${reason}`);
      await this.report({ type: 'BackupFailed', vmId: job.vmId, backupId: job.backupId, reason, cleanedUp: [], checkpointTrusted: true, at: new Date().toISOString() });
      return;
    }
    try {
      await this.backUp(job, mounted.root);
    } finally {
      await mounted.release();
    }
  }

  private async backUp(job: BackupJobData, root: string): Promise<void> {
    const at = () => new Date().toISOString();
    const domain = job.domainName;
    const t0 = Date.now();
    let copyStart = t0;
    let copyEnd = t0;
    await this.report({ type: 'BackupStarted', vmId: job.vmId, backupId: job.backupId, hostName: this.hostName, at: at() });
    const cleanedUp: string[] = [];
    let startedForBackup = false;
    let jobWatch: AbortController | undefined;
    let plan: Plan = { type: job.type, fullReason: null, chainId: job.chainId, volumes: job.volumes };
    try {
      if (await this.reportFinishedAttempt(job, root)) return;
      let look = await this.look(domain);
      if (await this.undoEarlierAttempt(job, root, cleanedUp, look)) look = await this.look(domain);
      const running = look.state !== 'shutoff';
      // Listening for the job's end starts now, well before backup-begin, so that the listener is in place
      // when an incremental of a few MiB ends tens of milliseconds after it began.
      jobWatch = new AbortController();
      const jobEnded = this.virsh.watchJobCompleted(domain, { timeoutMs: job.timeoutSeconds * 1000 + 60_000, signal: jobWatch.signal });
      if (job.type === 'INCREMENTAL') {
        // QMP only now, once no earlier attempt's job runs: asked during one (a throttled copy holding
        // QEMU's disks), query-named-block-nodes can take many seconds.
        const reason = await this.untrustedParent(job, running ? await this.liveNodes(domain) : null, look.checkpoints);
        if (reason) {
          this.logger.warn(`backup ${job.backupId} of ${domain}: ${reason}; taking a full backup instead`);
          // From here on the chain's checkpoints are gone: a failure must not let the next backup trust them.
          plan = {
            type: 'FULL',
            fullReason: 'checkpoint or bitmap not trusted',
            chainId: job.backupId,
            volumes: job.volumes.map((v) => ({ ...v, backingFile: null, targetFile: posix.join(job.vmId, job.backupId, job.backupId, `${v.volumeId}.qcow2`) })),
          };
          await this.removeStrataCheckpoints(job, running);
        }
      }
      // A stopped VM is started paused: the guest runs no instruction, and the backup and its checkpoint
      // go through exactly the same libvirt path as for a running VM, so libvirt's checkpoint view stays right.
      // The marker tells a retry after an agent crash that the VM it finds paused was started here.
      if (!running) {
        await mkdir(join(root, job.vmId), { recursive: true });
        await writeFile(this.startedMarker(job, root), `${domain}\n`);
        await this.virsh.start(domain, { paused: true });
        startedForBackup = true;
      }
      const dir = join(root, dirname(plan.volumes[0].targetFile));
      await mkdir(dir, { recursive: true });
      await Promise.all(
        plan.volumes.map((v) => {
          const file = join(root, v.targetFile);
          if (v.backingFile) return this.qemuImg.create(file, { format: 'qcow2', backingFile: v.backingFile, backingFormat: 'qcow2' });
          return this.qemuImg.create(file, { format: 'qcow2', sizeBytes: v.virtualSizeBytes });
        }),
      );
      const disks = look.disks;
      const allTargets = disks.map((d) => d.target);
      const volumes = plan.volumes.map((v) => ({ target: v.target, file: join(root, v.targetFile) }));
      copyStart = Date.now();
      await this.virsh.backupBegin(
        domain,
        backupXml(volumes, allTargets, plan.type === 'INCREMENTAL' ? job.parentCheckpointName : null),
        checkpointXml(job.checkpointName, bitmapTargets(volumes, disks), allTargets),
      );
      const throttle = job.bandwidthBytesPerSec ? new BackupThrottle(this.virsh, domain, volumes.map((v) => v.target), job.bandwidthBytesPerSec, this.logger) : null;
      await throttle?.start();
      await this.failpoint('hang-after-backup-begin', job, async () => {
        // The test kills the agent next and then checks that the attempt's libvirt job still runs: slowed
        // to a crawl here, it does, however fast the machine's disks (a cgroup read limit alone was not
        // always enough).
        await new BackupThrottle(this.virsh, domain, volumes.map((v) => v.target), 64 * 1024, this.logger).start();
      });
      // The first progress report after a second: a backup done sooner needs none (each is an event).
      let lastReport = Date.now();
      try {
        await this.virsh.waitForJob(domain, {
          // libvirt's job-completed event ends the wait at once; polls are the fall-back when the listener
          // was not registered in time. An incremental ends within a second or so: for two seconds a poll
          // every 50 ms (a missed event then costs at most that; with growing intervals it had cost up to
          // 0.4 s), then less and less (each poll is a virsh process) down to one a second.
          pollIntervalMs: 50,
          growAfterMs: 2000,
          maxPollIntervalMs: 1000,
          wake: jobEnded,
          timeoutMs: job.timeoutSeconds * 1000,
          onProgress: (info) => {
            throttle?.tick();
            if (Date.now() - lastReport < 1000 || info.dataTotal === null) return;
            lastReport = Date.now();
            void this.report({ type: 'BackupProgressed', vmId: job.vmId, backupId: job.backupId, bytesDone: info.dataProcessed ?? 0, bytesTotal: info.dataTotal, at: at() }).catch(() => undefined);
          },
        });
      } catch (error) {
        await throttle?.stop();
        if (error instanceof DomainJobTimeoutError) {
          await this.abortJob(domain).catch(() => undefined); // the clean-up below tries again
          cleanedUp.push('aborted the libvirt backup job');
          throw new Error(`the backup exceeded knib.timeout (${job.timeoutSeconds} s) and was aborted`);
        }
        throw error;
      }
      await throttle?.stop();
      copyEnd = Date.now();
      jobWatch.abort();
      const [checkpoint, infos, domainXml] = await Promise.all([
        this.virsh.checkpointDumpXml(domain, job.checkpointName),
        Promise.all(plan.volumes.map((v) => this.qemuImg.info(join(root, v.targetFile)) as Promise<ImageInfo>)),
        this.virsh.domainXml(domain, { inactive: true }),
      ]);
      const stored = plan.volumes.map((v, i) => ({ volumeId: v.volumeId, storedBytes: infos[i].actualSizeBytes ?? 0, virtualSizeBytes: infos[i].virtualSizeBytes }));
      await this.writeManifest(root, job, plan, stored, domainXml);
      if (startedForBackup) {
        await this.virsh.destroy(domain);
        await rm(this.startedMarker(job, root), { force: true });
      }
      startedForBackup = false;
      await this.report({ type: 'BackupSucceeded', vmId: job.vmId, backupId: job.backupId, backupType: plan.type, fullReason: plan.fullReason, volumes: stored, checkpointXml: checkpoint, at: at() });
      // Where the time went, so that an operator (or a benchmark) can tell strata's own cost from QEMU's copy.
      const s = (ms: number) => (ms / 1000).toFixed(2);
      this.logger.log(
        `backup ${job.backupId} of ${domain}: ${plan.type} done, ${stored.reduce((n, v) => n + v.storedBytes, 0)} bytes stored in ${s(Date.now() - t0)} s (preparing ${s(copyStart - t0)} s, copy ${s(copyEnd - copyStart)} s, finishing ${s(Date.now() - copyEnd)} s)`,
      );
    } catch (error) {
      const reason = (error as Error).message;
      this.logger.error(`backup ${job.backupId} of ${domain} failed: ${reason}`);
      let trusted = await this.cleanUp(job, root, plan, cleanedUp);
      // A fall-back full removed the chain's checkpoints: whatever happened after, the chain is over.
      if (plan.type !== job.type) trusted = false;
      if (startedForBackup) {
        await this.virsh.destroy(domain).catch(() => undefined);
        await rm(this.startedMarker(job, root), { force: true }).catch(() => undefined);
      }
      await this.report({ type: 'BackupFailed', vmId: job.vmId, backupId: job.backupId, reason, cleanedUp, checkpointTrusted: trusted, at: at() });
    } finally {
      jobWatch?.abort();
    }
  }

  /** Why the parent checkpoint cannot be trusted, or null. Redefines libvirt's metadata when only that was lost. */
  private async untrustedParent(job: BackupJobData, live: LiveNode[] | null, known: ReadonlySet<string>): Promise<string | null> {
    const parent = job.parentCheckpointName;
    if (!parent) return 'no parent checkpoint was recorded';
    // The qcow2 bitmap is the truth. A running QEMU keeps persistent bitmaps in memory and writes them to
    // the image only when it closes it, so a running VM is asked through QMP (`live`, null when it is
    // stopped); a stopped one's image header is the truth.
    const images = live ? [] : await Promise.all(job.volumes.map((v) => this.qemuImg.info(v.sourcePath) as Promise<ImageInfo>));
    for (const [i, v] of job.volumes.entries()) {
      if (live) {
        const bitmap = live.find((n) => n.file === v.sourcePath)?.bitmaps.find((b) => b.name === parent);
        if (!bitmap) return `volume ${v.target} has no bitmap ${parent}`;
        // Inconsistent: QEMU found it marked in-use when it opened the image (a crash): its content is unknown.
        if (bitmap.inconsistent) return `bitmap ${parent} of volume ${v.target} is inconsistent`;
        if (!bitmap.recording) return `bitmap ${parent} of volume ${v.target} does not record writes`;
        continue;
      }
      const bitmap = images[i].bitmaps.find((b) => b.name === parent);
      if (!bitmap) return `volume ${v.target} has no bitmap ${parent}`;
      // In a stopped image, in-use means QEMU did not store the bitmap cleanly (a crash): its content is unknown.
      if (bitmap.inUse) return `bitmap ${parent} of volume ${v.target} was not stored cleanly`;
      if (!bitmap.auto) return `bitmap ${parent} of volume ${v.target} does not record writes`;
    }
    if (!known.has(parent)) {
      if (!job.parentCheckpointXml) return `libvirt lost checkpoint ${parent} and no definition was recorded`;
      try {
        await this.virsh.checkpointRedefine(job.domainName, redefinableCheckpointXml(job.parentCheckpointXml, known));
        this.logger.log(`redefined checkpoint ${parent} of ${job.domainName} from the recorded definition`);
      } catch (error) {
        return `checkpoint ${parent} could not be redefined: ${(error as Error).message}`;
      }
    }
    return null;
  }

  /** The qcow2 nodes of a running domain with their dirty bitmaps (QMP query-named-block-nodes). */
  private async liveNodes(domain: string): Promise<LiveNode[]> {
    const nodes = (await this.virsh.qmp(domain, 'query-named-block-nodes', { flat: true })) as {
      'node-name'?: string;
      file?: string;
      drv?: string;
      'dirty-bitmaps'?: { name: string; inconsistent?: boolean; recording?: boolean }[];
    }[];
    return nodes
      .filter((n) => n.file && n['node-name'] && n.drv === 'qcow2')
      .map((n) => ({
        nodeName: n['node-name']!,
        file: n.file!,
        bitmaps: (n['dirty-bitmaps'] ?? []).map((b) => ({ name: b.name, inconsistent: b.inconsistent === true, recording: b.recording !== false })),
      }));
  }

  /**
   * Before a fall-back full: no strata checkpoint or bitmap may stay behind for a later backup to trust,
   * including bitmaps libvirt no longer knows (after it lost its metadata) and bitmaps a crash left in-use.
   */
  private async removeStrataCheckpoints(job: BackupJobData, running: boolean): Promise<void> {
    const checkpoints = (await this.virsh.checkpointList(job.domainName)).filter((c) => c.name.startsWith('strata-')).reverse();
    for (const c of checkpoints) await this.deleteCheckpoint(job, c.name, running);
    const removed = await this.removeBitmaps(job, running, (name) => name.startsWith('strata-'));
    this.logger.log(
      `backup ${job.backupId} of ${job.domainName}: removed checkpoints [${checkpoints.map((c) => c.name).join(', ')}] and left-over bitmaps [${removed.join(', ')}]`,
    );
  }

  /**
   * Deletes a checkpoint and its bitmaps. libvirt deletes bitmaps only of a running domain whose images all
   * have them; otherwise it forgets the checkpoint and the bitmaps are removed here.
   */
  private async deleteCheckpoint(job: BackupJobData, name: string, running: boolean): Promise<void> {
    try {
      await this.virsh.checkpointDelete(job.domainName, name);
    } catch {
      await this.virsh.checkpointDelete(job.domainName, name, { metadataOnly: true });
      await this.removeBitmaps(job, running, (b) => b === name);
    }
  }

  /** Removes the job's volumes' bitmaps whose names match (QMP for a running domain, qemu-img otherwise). */
  private async removeBitmaps(job: BackupJobData, running: boolean, matches: (name: string) => boolean): Promise<string[]> {
    const removed: string[] = [];
    const sources = new Set(job.volumes.map((v) => v.sourcePath));
    if (running) {
      for (const node of (await this.liveNodes(job.domainName)).filter((n) => sources.has(n.file))) {
        for (const b of node.bitmaps.filter((x) => matches(x.name))) {
          await this.virsh.qmp(job.domainName, 'block-dirty-bitmap-remove', { node: node.nodeName, name: b.name });
          removed.push(`${b.name} (${node.file})`);
        }
      }
      return removed;
    }
    for (const file of sources) {
      const info = (await this.qemuImg.info(file)) as ImageInfo;
      for (const b of info.bitmaps.filter((x) => matches(x.name))) {
        await this.qemuImg.bitmap(file, b.name, { op: 'remove' });
        removed.push(`${b.name} (${file})`);
      }
    }
    return removed;
  }

  /** Aborts the domain's active job and waits until libvirt has ended it. */
  private async abortJob(domain: string): Promise<void> {
    await this.virsh.domJobAbort(domain).catch(() => undefined);
    const deadline = Date.now() + 60_000;
    while (isActiveJob((await this.virsh.domJobInfo(domain)).type)) {
      if (Date.now() > deadline) throw new Error(`the libvirt job of ${domain} did not end within 60 s of its abort`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  private startedMarker(job: BackupJobData, root: string): string {
    return join(root, job.vmId, `.started-paused-for-${job.backupId}`);
  }

  private backupDirs(job: BackupJobData, root: string): string[] {
    return [join(root, job.vmId, job.chainId, job.backupId), join(root, job.vmId, job.backupId, job.backupId)];
  }

  /**
   * A retried job whose earlier attempt had finished (manifest written, checkpoint defined, no job running)
   * but died before reporting: report that backup rather than take it again (its files and its checkpoint
   * belong together). Returns whether it did.
   */
  private async reportFinishedAttempt(job: BackupJobData, root: string): Promise<boolean> {
    for (const dir of this.backupDirs(job, root)) {
      let manifest: Manifest;
      try {
        manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Manifest;
      } catch {
        continue;
      }
      // A shut-off domain runs no job (and domjobinfo refuses to answer for it).
      if (isActiveJob((await this.virsh.domJobInfo(job.domainName).catch(() => null))?.type)) return false;
      if (!(await this.virsh.checkpointList(job.domainName)).some((c) => c.name === job.checkpointName)) return false;
      const marker = this.startedMarker(job, root);
      if (await exists(marker)) {
        if ((await this.virsh.domainState(job.domainName)).state === 'paused') await this.virsh.destroy(job.domainName);
        await rm(marker, { force: true });
      }
      const checkpoint = await this.virsh.checkpointDumpXml(job.domainName, job.checkpointName);
      const volumes = manifest.volumes.map((v) => ({ volumeId: v.volumeId, storedBytes: v.storedBytes ?? 0, virtualSizeBytes: v.virtualSizeBytes ?? 0 }));
      await this.report({ type: 'BackupSucceeded', vmId: job.vmId, backupId: job.backupId, backupType: manifest.type, fullReason: manifest.fullReason, volumes, checkpointXml: checkpoint, at: new Date().toISOString() });
      this.logger.log(`backup ${job.backupId} of ${job.domainName}: an earlier attempt had finished (${dir}); reported it`);
      return true;
    }
    return false;
  }

  /**
   * The domain as the backup starts: state, running job, checkpoint names and disks, asked at once (each
   * is a virsh process; one after another they were most of an incremental's fixed cost).
   */
  private async look(domain: string): Promise<DomainLook> {
    const [state, job, checkpoints, disks] = await Promise.all([
      this.virsh.domainState(domain),
      // A shut-off domain runs no job (and domjobinfo refuses to answer for it).
      this.virsh.domJobInfo(domain).catch(() => null),
      this.virsh.checkpointNames(domain),
      this.virsh.domainDisks(domain),
    ]);
    return { state: state.state, job, checkpoints: new Set(checkpoints), disks: disks.filter((d) => d.device === 'disk') };
  }

  /**
   * What an attempt that died left behind, undone; nothing on a first attempt. Returns whether it changed
   * the domain (aborted its job, deleted a checkpoint, stopped it), so that `look` is out of date.
   */
  private async undoEarlierAttempt(job: BackupJobData, root: string, cleanedUp: string[], look: DomainLook): Promise<boolean> {
    const domain = job.domainName;
    let changed = false;
    const undone = (what: string) => {
      cleanedUp.push(what);
      this.logger.warn(`backup ${job.backupId} of ${domain}: ${what}`);
    };
    const dirs = this.backupDirs(job, root);
    const info = look.job;
    if (info && isActiveJob(info.type) && info.operation === 'backup' && (await this.backupJobWritesInto(domain, dirs))) {
      await this.abortJob(domain);
      undone('aborted the libvirt backup job of an earlier attempt');
      changed = true;
    }
    const marker = this.startedMarker(job, root);
    const startedEarlier = await exists(marker);
    const state = look.state;
    if (look.checkpoints.has(job.checkpointName)) {
      // Before stopping a VM the earlier attempt started: libvirt deletes bitmaps of running domains only.
      await this.deleteCheckpoint(job, job.checkpointName, state !== 'shutoff');
      undone(`deleted checkpoint ${job.checkpointName} of an earlier attempt`);
      changed = true;
    }
    if (startedEarlier) {
      if (state === 'paused') {
        await this.virsh.destroy(domain);
        undone('stopped the VM that an earlier attempt had started paused');
        changed = true;
      }
      await rm(marker, { force: true });
    }
    for (const dir of dirs) {
      if (!(await exists(dir))) continue;
      await rm(dir, { recursive: true, force: true });
      undone(`removed the partial files of an earlier attempt (${dir})`);
    }
    await rmdir(join(root, job.vmId, job.backupId)).catch(() => undefined);
    return changed;
  }

  /** Whether the domain's running backup job writes into one of these directories (so it is ours). */
  private async backupJobWritesInto(domain: string, dirs: string[]): Promise<boolean> {
    let xml: string;
    try {
      xml = await this.virsh.backupDumpXml(domain);
    } catch {
      return false;
    }
    const files = [...xml.matchAll(/<target\s[^>]*file=(?:'([^']*)'|"([^"]*)")/g)].map((m) => (m[1] ?? m[2]).replace(/&apos;/g, "'").replace(/&quot;/g, '"').replace(/&amp;/g, '&'));
    return files.some((f) => dirs.some((d) => f.startsWith(`${d}/`)));
  }

  /** Test-only (see FAILPOINT_ENV): does nothing unless the variable names this failpoint. */
  private async failpoint(name: string, job: BackupJobData, beforeWaiting?: () => Promise<void>): Promise<void> {
    if (process.env[FAILPOINT_ENV] !== name) return;
    await beforeWaiting?.();
    this.logger.warn(`failpoint ${name}: backup ${job.backupId} of ${job.domainName} waits here until the agent is killed (test only)`);
    await new Promise<never>(() => undefined);
  }

  /** Returns whether the chain's checkpoints are still trustworthy after the clean-up. */
  private async cleanUp(job: BackupJobData, root: string, plan: Plan, cleanedUp: string[]): Promise<boolean> {
    let trusted = true;
    try {
      const info = await this.virsh.domJobInfo(job.domainName).catch(() => null);
      if (info && isActiveJob(info.type)) {
        await this.abortJob(job.domainName);
        cleanedUp.push('aborted the libvirt backup job');
      }
      if ((await this.virsh.checkpointList(job.domainName)).some((c) => c.name === job.checkpointName)) {
        const running = (await this.virsh.domainState(job.domainName)).state !== 'shutoff';
        await this.deleteCheckpoint(job, job.checkpointName, running);
        cleanedUp.push(`deleted the new checkpoint ${job.checkpointName}`);
      }
    } catch (error) {
      trusted = false;
      cleanedUp.push(`could not remove checkpoint ${job.checkpointName}: ${(error as Error).message}`);
    }
    const dir = join(root, dirname(plan.volumes[0].targetFile));
    // Whatever happens here, the failure must still be reported: a backup left BackingUp blocks the VM's
    // next backups for good.
    try {
      await rm(dir, { recursive: true, force: true });
      await rmdir(dirname(dir)).catch(() => undefined); // the chain directory of a fall-back full, when empty
      cleanedUp.push('removed the partial backup files');
    } catch (error) {
      cleanedUp.push(`could not remove the partial backup files in ${dir}: ${(error as Error).message}`);
    }
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
