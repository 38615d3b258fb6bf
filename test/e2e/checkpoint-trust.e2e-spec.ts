import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ApiClient } from '../support/api-client';
import { createTestDomain, ExpectedDisks, run, TestDomain, useLibvirtCleanup, virsh, writePattern, writeScattered } from '../support/libvirt';
import { agentEnv, assignWhenListed, createBackupCatalog, okCaller, waitHostUp } from '../support/backup-fixture';
import { RunningPlane, startManagementPlane } from '../support/management-plane';
import { startStrata, StrataProcess, until } from '../support/strata-process';

interface Backup {
  id: string;
  type: string;
  status: string;
  chainid: string;
  parentid?: string;
  chainposition: number;
  fullreason?: string;
}

const UNTRUSTED = 'checkpoint or bitmap not trusted';

/** Persistent bitmaps of a qcow2 image (read it only while nothing holds it open). */
async function imageBitmaps(path: string): Promise<{ name: string; flags: string[] }[]> {
  const info = JSON.parse((await run('qemu-img', ['info', '--output=json', path])).stdout) as { 'format-specific'?: { data?: { bitmaps?: { name: string; flags: string[] }[] } } };
  return info['format-specific']?.data?.bitmaps ?? [];
}

async function checkpointNames(domain: TestDomain): Promise<string[]> {
  const r = await virsh(['checkpoint-list', domain.name, '--name']);
  return r.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .sort();
}

/** A process that exists and is not a zombie. */
function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** libvirtd restarted the way it runs here (scripts/ensure-services.sh): systemd when it is init, else `libvirtd -d`. */
async function restartLibvirtd(): Promise<void> {
  const systemd = existsSync('/run/systemd/system') && readFileSync('/proc/1/comm', 'utf8').trim() === 'systemd';
  if (systemd) {
    await run('systemctl', ['restart', 'libvirtd']);
  } else {
    const pidFile = ['/var/run/libvirtd.pid', '/run/libvirtd.pid'].find((f) => existsSync(f));
    if (!pidFile) throw new Error('libvirtd runs without systemd and without a pid file: cannot restart it');
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    process.kill(pid, 'SIGTERM');
    await until(async () => !processAlive(pid), 30_000, `libvirtd (pid ${pid}) to exit`, 100);
    const child = spawn('libvirtd', ['-d'], { detached: true, stdio: 'ignore' });
    child.unref();
  }
  await until(async () => (await virsh(['version'], { allowFailure: true }).catch(() => null))?.code === 0, 60_000, 'libvirtd to answer `virsh version`', 200);
}

/**
 * Checkpoint trust (issue 3, point 8): before an incremental the agent checks libvirt's checkpoint and the
 * qcow2 bitmap. Lost libvirt metadata with an intact bitmap: the checkpoint is redefined and the backup
 * stays incremental. A missing or crash-damaged bitmap: a full with the reason, and no stale strata
 * bitmap or checkpoint left behind. One domain goes through every case in turn; every backup's chain,
 * read through its top file, equals the disks as they were when it was taken.
 */
describe('checkpoint trust before an incremental (real libvirt, real processes)', () => {
  useLibvirtCleanup();
  let plane: RunningPlane;
  let api: ApiClient;
  let agent: StrataProcess;
  let domain: TestDomain;
  let expected: ExpectedDisks;
  let repoDir: string;
  let volumeIds: Record<string, string>;
  /** The backup the next incremental continues from. */
  let head: Backup;
  let labels = 0;
  const hostName = `strata-e2e-${randomBytes(3).toString('hex')}`;

  const ok = okCaller(() => api);
  const backupOf = async (id: string) => ((await ok('listBackups', { id })).backup as Backup[])[0];
  const hostUp = () => waitHostUp(api, hostName);

  /** A backup through the API whose content must equal the disks now. */
  async function backup(): Promise<Backup> {
    const label = `b${++labels}`;
    await expected.snapshot(label);
    await hostUp();
    const started = await ok('createBackup', { virtualmachineid: domain.uuid, name: label });
    const job = await api.waitForJob(started.jobid as string, 120_000);
    if (job.jobstatus !== 1) throw new Error(`backup ${label} failed: ${JSON.stringify(job.jobresult)} (agent: ${agent.output().slice(-3000)})`);
    const b = await backupOf(started.id as string);
    expect(b.status).toBe('BackedUp');
    for (const target of ['vda', 'vdb']) {
      const top = join(repoDir, domain.uuid, b.chainid, b.id, `${volumeIds[target]}.qcow2`);
      const result = await expected.get(target).compareWith(top, label, { format: 'qcow2' });
      expect({ backup: label, target, ...result }).toMatchObject({ equal: true });
    }
    const manifest = JSON.parse(await readFile(join(repoDir, domain.uuid, b.chainid, b.id, 'manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({ backupId: b.id, type: b.type, chainId: b.chainid });
    return b;
  }

  async function incremental(): Promise<Backup> {
    const b = await backup();
    expect(b).toMatchObject({ type: 'INCREMENTAL', parentid: head.id, chainid: head.chainid, chainposition: head.chainposition + 1 });
    head = b;
    return b;
  }

  /** A fall-back full: the agent could not trust the parent. */
  async function untrustedFull(): Promise<Backup> {
    const b = await backup();
    expect(b).toMatchObject({ type: 'FULL', fullreason: UNTRUSTED, chainid: b.id, chainposition: 0 });
    expect(b.parentid).toBeUndefined();
    head = b;
    return b;
  }

  /** Only the checkpoint of backup `b` and its bitmaps exist: no stale strata checkpoint or bitmap (VM stopped). */
  async function onlyCheckpointOf(b: Backup): Promise<void> {
    expect(await domain.isActive()).toBe(false); // the images can be read from outside
    expect(await checkpointNames(domain)).toEqual([`strata-${b.id}`]);
    for (const disk of domain.disks) {
      const bitmaps = await imageBitmaps(disk.path);
      expect({ disk: disk.target, bitmaps }).toEqual({ disk: disk.target, bitmaps: [{ name: `strata-${b.id}`, flags: ['auto'], granularity: expect.any(Number) }] });
    }
  }

  async function ensureRunning(): Promise<void> {
    if (!(await domain.isActive())) await domain.start();
  }

  /** SIGKILL of the domain's QEMU after a flush: the data is on disk, the bitmaps stay marked in-use. */
  async function killQemu(): Promise<void> {
    await domain.flush();
    const pid = Number((await readFile(`/var/run/libvirt/qemu/${domain.name}.pid`, 'utf8')).trim());
    process.kill(pid, 'SIGKILL');
    await until(async () => !(await domain.isActive()), 30_000, 'libvirt to see QEMU die', 100);
  }

  beforeAll(async () => {
    plane = await startManagementPlane();
    api = new ApiClient(new URL(plane.endpoint).origin, plane.admin.apikey, plane.admin.secretkey);
    const catalog = await createBackupCatalog(api, 'trust-zone', 16);
    repoDir = catalog.repoDir;
    agent = startStrata(['agent'], agentEnv(plane, hostName, 'trust-zone'));
    domain = await createTestDomain({ disks: [{ sizeMiB: 64 }, { sizeMiB: 32 }], running: true });
    expected = await ExpectedDisks.forDomain(domain);
    volumeIds = await assignWhenListed(api, domain.uuid, catalog.offeringId, () => agent.output());
    await writePattern(domain, 'vda', { offset: 0, length: 2 << 20, pattern: 0x11 }, { expected });
    await writePattern(domain, 'vdb', { offset: 1 << 20, length: 1 << 20, pattern: 0x22 }, { expected });
    head = await backup();
    expect(head).toMatchObject({ type: 'FULL', fullreason: 'first backup' });
  });

  afterAll(async () => {
    agent?.child.kill('SIGTERM');
    await agent?.exited;
    await domain?.destroy();
    await plane?.stop();
  });

  it('(a) libvirt forgot the parent checkpoint (checkpoint-delete --metadata): redefined, the backup stays incremental', async () => {
    await writeScattered(domain, 'vda', { seed: 'a1', count: 8 }, { expected });
    await writeScattered(domain, 'vdb', { seed: 'a2', count: 4 }, { expected });
    const parent = `strata-${head.id}`;
    await virsh(['checkpoint-delete', domain.name, parent, '--metadata']);
    expect(await checkpointNames(domain)).not.toContain(parent);
    const b = await incremental();
    expect(await checkpointNames(domain)).toEqual([parent, `strata-${b.id}`].sort());
    expect(agent.output()).toContain(`redefined checkpoint ${parent}`);
  });

  it('(b) the domain was undefined with its checkpoint metadata and defined again: redefined, incremental', async () => {
    if (head.chainposition === 0) {
      // The parent must have a parent of its own, which libvirt will not know either.
      await writeScattered(domain, 'vdb', { seed: 'b0', count: 2 }, { expected });
      await incremental();
    }
    await domain.stop();
    const xml = (await virsh(['dumpxml', domain.name, '--inactive'])).stdout;
    await virsh(['undefine', domain.name, '--checkpoints-metadata']);
    const file = join(domain.dir, 'redefine.xml');
    await writeFile(file, xml);
    await virsh(['define', file]);
    expect(await checkpointNames(domain)).toEqual([]);
    await writeScattered(domain, 'vda', { seed: 'b1', count: 6 }, { expected }); // offline writes, recorded in the bitmaps
    const parent = `strata-${head.id}`;
    const b = await incremental(); // of the stopped VM: its image headers are the truth
    expect(await domain.isActive()).toBe(false);
    // libvirt knew none of the chain: the parent was redefined without its own (unknown) parent.
    expect(await checkpointNames(domain)).toEqual([parent, `strata-${b.id}`].sort());
  });

  it('(c) libvirtd restarted under a running VM: incremental', async () => {
    await ensureRunning();
    await writeScattered(domain, 'vdb', { seed: 'c1', count: 6 }, { expected });
    await restartLibvirtd();
    // libvirtd reconnects to the running QEMU in the background; the monitor answers once it has.
    await until(async () => (await domain.hmp('info status').catch(() => '')).includes('running'), 60_000, 'libvirtd to reconnect to the domain', 200);
    await writeScattered(domain, 'vda', { seed: 'c2', count: 6 }, { expected });
    await incremental();
  });

  it('(d) the parent bitmap was removed from an image of the stopped VM: full with the reason, nothing stale left', async () => {
    await domain.stop();
    await writePattern(domain, 'vdb', { offset: 4 << 20, length: 1 << 20, pattern: 0x44 }, { expected });
    const parent = `strata-${head.id}`;
    expect((await imageBitmaps(domain.disk('vda').path)).map((b) => b.name)).toContain(parent);
    await run('qemu-img', ['bitmap', '--remove', domain.disk('vda').path, parent]);
    await onlyCheckpointOf(await untrustedFull());
    expect(agent.output()).toContain(`volume vda has no bitmap ${parent}`);
  });

  it('(e) the parent bitmap is in-use after QEMU was killed: full with the reason, nothing stale left, and the chain goes on', async () => {
    await ensureRunning();
    await writeScattered(domain, 'vda', { seed: 'e1', count: 4 }, { expected });
    await incremental(); // from the fall-back full of (d)
    // Stored cleanly by a normal stop, then in-use in the image again while QEMU has it open.
    await domain.stop();
    await domain.start();
    await writeScattered(domain, 'vda', { seed: 'e2', count: 6 }, { expected });
    await writeScattered(domain, 'vdb', { seed: 'e3', count: 3 }, { expected });
    await killQemu();
    const parent = `strata-${head.id}`;
    for (const disk of domain.disks) {
      expect((await imageBitmaps(disk.path)).find((b) => b.name === parent)?.flags).toContain('in-use');
    }
    await onlyCheckpointOf(await untrustedFull()); // of the stopped (crashed) VM
    expect(agent.output()).toMatch(new RegExp(`bitmap ${parent} of volume vd[ab] was not stored cleanly`));

    await domain.start();
    await writeScattered(domain, 'vdb', { seed: 'e4', count: 4 }, { expected });
    await incremental();
  });

  it('(f) QEMU was killed and the VM started again: the parent bitmap is inconsistent in the running QEMU; full, nothing stale left', async () => {
    // The head's bitmap, stored by a clean stop, in-use again, then the crash.
    await domain.stop();
    await domain.start();
    await writeScattered(domain, 'vda', { seed: 'f1', count: 4 }, { expected });
    await killQemu();
    const parent = `strata-${head.id}`;
    // libvirt also forgets the chain's first checkpoint: its bitmap stays in the images, known to nobody.
    await virsh(['checkpoint-delete', domain.name, `strata-${head.chainid}`, '--metadata']);
    await domain.start(); // QEMU loads the in-use bitmaps as inconsistent
    await writeScattered(domain, 'vdb', { seed: 'f2', count: 4 }, { expected });
    const b = await untrustedFull(); // of the running VM: asked through QMP
    expect(agent.output()).toMatch(new RegExp(`bitmap ${parent} of volume vd[ab] is inconsistent`));
    await domain.stop();
    await onlyCheckpointOf(b);
  });
});
