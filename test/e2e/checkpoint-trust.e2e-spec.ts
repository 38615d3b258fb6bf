import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run, TestDomain, useLibvirtCleanup, virsh, writePattern, writeScattered } from '../support/libvirt';
import { BackupRow, createBackupCatalog, readManifest, takeBackup, useBackupRig, waitHostUp } from '../support/backup-fixture';
import { until } from '../support/strata-process';

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
  const rig = useBackupRig({ zoneName: 'trust-zone', disks: [{ sizeMiB: 64 }, { sizeMiB: 32 }], catalog: (api, zoneName) => createBackupCatalog(api, zoneName, 16) });
  /** The backup the next incremental continues from. */
  let head: BackupRow;
  let labels = 0;

  /** A backup through the API whose content must equal the disks now. */
  async function backup(): Promise<BackupRow> {
    const label = `b${++labels}`;
    await waitHostUp(rig.api, rig.hostName);
    const b = await takeBackup(rig, label);
    expect(await readManifest(rig, b)).toMatchObject({ backupId: b.id, type: b.type, chainId: b.chainid });
    return b;
  }

  async function incremental(): Promise<BackupRow> {
    const b = await backup();
    expect(b).toMatchObject({ type: 'INCREMENTAL', parentid: head.id, chainid: head.chainid, chainposition: head.chainposition + 1 });
    head = b;
    return b;
  }

  /** A fall-back full: the agent could not trust the parent. */
  async function untrustedFull(): Promise<BackupRow> {
    const b = await backup();
    expect(b).toMatchObject({ type: 'FULL', fullreason: UNTRUSTED, chainid: b.id, chainposition: 0 });
    expect(b.parentid).toBeUndefined();
    head = b;
    return b;
  }

  /** Only the checkpoint of backup `b` and its bitmaps exist: no stale strata checkpoint or bitmap (VM stopped). */
  async function onlyCheckpointOf(b: BackupRow): Promise<void> {
    expect(await rig.domain.isActive()).toBe(false); // the images can be read from outside
    expect(await checkpointNames(rig.domain)).toEqual([`strata-${b.id}`]);
    for (const disk of rig.domain.disks) {
      const bitmaps = await imageBitmaps(disk.path);
      expect({ disk: disk.target, bitmaps }).toEqual({ disk: disk.target, bitmaps: [{ name: `strata-${b.id}`, flags: ['auto'], granularity: expect.any(Number) }] });
    }
  }

  async function ensureRunning(): Promise<void> {
    if (!(await rig.domain.isActive())) await rig.domain.start();
  }

  /** SIGKILL of the domain's QEMU after a flush: the data is on disk, the bitmaps stay marked in-use. */
  async function killQemu(): Promise<void> {
    await rig.domain.flush();
    const pid = Number((await readFile(`/var/run/libvirt/qemu/${rig.domain.name}.pid`, 'utf8')).trim());
    process.kill(pid, 'SIGKILL');
    await until(async () => !(await rig.domain.isActive()), 30_000, 'libvirt to see QEMU die', 100);
  }

  beforeAll(async () => {
    await writePattern(rig.domain, 'vda', { offset: 0, length: 2 << 20, pattern: 0x11 }, { expected: rig.expected });
    await writePattern(rig.domain, 'vdb', { offset: 1 << 20, length: 1 << 20, pattern: 0x22 }, { expected: rig.expected });
    head = await backup();
    expect(head).toMatchObject({ type: 'FULL', fullreason: 'first backup' });
  });

  it('(a) libvirt forgot the parent checkpoint (checkpoint-delete --metadata): redefined, the backup stays incremental', async () => {
    await writeScattered(rig.domain, 'vda', { seed: 'a1', count: 8 }, { expected: rig.expected });
    await writeScattered(rig.domain, 'vdb', { seed: 'a2', count: 4 }, { expected: rig.expected });
    const parent = `strata-${head.id}`;
    await virsh(['checkpoint-delete', rig.domain.name, parent, '--metadata']);
    expect(await checkpointNames(rig.domain)).not.toContain(parent);
    const b = await incremental();
    expect(await checkpointNames(rig.domain)).toEqual([parent, `strata-${b.id}`].sort());
    expect(rig.agent.output()).toContain(`redefined checkpoint ${parent}`);
  });

  it('(b) the domain was undefined with its checkpoint metadata and defined again: redefined, incremental', async () => {
    if (head.chainposition === 0) {
      // The parent must have a parent of its own, which libvirt will not know either.
      await writeScattered(rig.domain, 'vdb', { seed: 'b0', count: 2 }, { expected: rig.expected });
      await incremental();
    }
    await rig.domain.stop();
    const xml = (await virsh(['dumpxml', rig.domain.name, '--inactive'])).stdout;
    await virsh(['undefine', rig.domain.name, '--checkpoints-metadata']);
    const file = join(rig.domain.dir, 'redefine.xml');
    await writeFile(file, xml);
    await virsh(['define', file]);
    expect(await checkpointNames(rig.domain)).toEqual([]);
    await writeScattered(rig.domain, 'vda', { seed: 'b1', count: 6 }, { expected: rig.expected }); // offline writes, recorded in the bitmaps
    const parent = `strata-${head.id}`;
    const b = await incremental(); // of the stopped VM: its image headers are the truth
    expect(await rig.domain.isActive()).toBe(false);
    // libvirt knew none of the chain: the parent was redefined without its own (unknown) parent.
    expect(await checkpointNames(rig.domain)).toEqual([parent, `strata-${b.id}`].sort());
  });

  it('(c) libvirtd restarted under a running VM: incremental', async () => {
    await ensureRunning();
    await writeScattered(rig.domain, 'vdb', { seed: 'c1', count: 6 }, { expected: rig.expected });
    await restartLibvirtd();
    // libvirtd reconnects to the running QEMU in the background; the monitor answers once it has.
    await until(async () => (await rig.domain.hmp('info status').catch(() => '')).includes('running'), 60_000, 'libvirtd to reconnect to the domain', 200);
    await writeScattered(rig.domain, 'vda', { seed: 'c2', count: 6 }, { expected: rig.expected });
    await incremental();
  });

  it('(d) the parent bitmap was removed from an image of the stopped VM: full with the reason, nothing stale left', async () => {
    await rig.domain.stop();
    await writePattern(rig.domain, 'vdb', { offset: 4 << 20, length: 1 << 20, pattern: 0x44 }, { expected: rig.expected });
    const parent = `strata-${head.id}`;
    expect((await imageBitmaps(rig.domain.disk('vda').path)).map((b) => b.name)).toContain(parent);
    await run('qemu-img', ['bitmap', '--remove', rig.domain.disk('vda').path, parent]);
    await onlyCheckpointOf(await untrustedFull());
    expect(rig.agent.output()).toContain(`volume vda has no bitmap ${parent}`);
  });

  it('(e) the parent bitmap is in-use after QEMU was killed: full with the reason, nothing stale left, and the chain goes on', async () => {
    await ensureRunning();
    await writeScattered(rig.domain, 'vda', { seed: 'e1', count: 4 }, { expected: rig.expected });
    await incremental(); // from the fall-back full of (d)
    // Stored cleanly by a normal stop, then in-use in the image again while QEMU has it open.
    await rig.domain.stop();
    await rig.domain.start();
    await writeScattered(rig.domain, 'vda', { seed: 'e2', count: 6 }, { expected: rig.expected });
    await writeScattered(rig.domain, 'vdb', { seed: 'e3', count: 3 }, { expected: rig.expected });
    await killQemu();
    const parent = `strata-${head.id}`;
    for (const disk of rig.domain.disks) {
      expect((await imageBitmaps(disk.path)).find((b) => b.name === parent)?.flags).toContain('in-use');
    }
    await onlyCheckpointOf(await untrustedFull()); // of the stopped (crashed) VM
    expect(rig.agent.output()).toMatch(new RegExp(`bitmap ${parent} of volume vd[ab] was not stored cleanly`));

    await rig.domain.start();
    await writeScattered(rig.domain, 'vdb', { seed: 'e4', count: 4 }, { expected: rig.expected });
    await incremental();
  });

  it('(f) QEMU was killed and the VM started again: the parent bitmap is inconsistent in the running QEMU; full, nothing stale left', async () => {
    // The head's bitmap, stored by a clean stop, in-use again, then the crash.
    await rig.domain.stop();
    await rig.domain.start();
    await writeScattered(rig.domain, 'vda', { seed: 'f1', count: 4 }, { expected: rig.expected });
    await killQemu();
    const parent = `strata-${head.id}`;
    // libvirt also forgets the chain's first checkpoint: its bitmap stays in the images, known to nobody.
    await virsh(['checkpoint-delete', rig.domain.name, `strata-${head.chainid}`, '--metadata']);
    await rig.domain.start(); // QEMU loads the in-use bitmaps as inconsistent
    await writeScattered(rig.domain, 'vdb', { seed: 'f2', count: 4 }, { expected: rig.expected });
    const b = await untrustedFull(); // of the running VM: asked through QMP
    expect(rig.agent.output()).toMatch(new RegExp(`bitmap ${parent} of volume vd[ab] is inconsistent`));
    await rig.domain.stop();
    await onlyCheckpointOf(b);
  });
});
