import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ExpectedDisks,
  createTestDomain,
  destroyStaleTestDomains,
  listTestDomains,
  useLibvirtCleanup,
  virsh,
  writePattern,
  writeRandom,
  writeScattered,
  type TestDomain,
} from '../support/libvirt';

const MiB = 1024 * 1024;
const KiB = 1024;

/** The pid of a process that has exited: the owner of a "killed" test run. */
function deadPid(): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = execFile('true', [], (err) => (err ? reject(err) : resolve(child.pid!)));
  });
}

async function domainNames(): Promise<string[]> {
  return (await virsh(['list', '--all', '--name'])).stdout.split('\n').map((l) => l.trim()).filter(Boolean);
}

describe('libvirt test rig', () => {
  useLibvirtCleanup();

  describe('a running 2-disk domain', () => {
    let dom: TestDomain;
    let expected: ExpectedDisks;

    beforeAll(async () => {
      dom = await createTestDomain({ disks: [{ sizeMiB: 64 }, { sizeMiB: 64 }], running: true });
      expected = await ExpectedDisks.forDomain(dom);
    });

    it('is defined with aliases and share-rw overrides, running, and has block nodes per disk', async () => {
      expect(dom.name).toMatch(/^strata-test-[0-9a-f]{10}$/);
      expect(dom.disks.map((d) => [d.target, d.alias])).toEqual([['vda', 'ua-disk0'], ['vdb', 'ua-disk1']]);
      expect(dom.diskPaths.every((p) => existsSync(p))).toBe(true);
      expect(await dom.isActive()).toBe(true);
      expect((await virsh(['domuuid', dom.name])).stdout.trim()).toBe(dom.uuid);
      const xml = (await virsh(['dumpxml', dom.name])).stdout;
      expect(xml).toContain(`<domain type='${existsSync('/dev/kvm') ? 'kvm' : 'qemu'}'`);
      expect(xml.match(/<qemu:property name='share-rw' type='bool' value='true'\/>/g)).toHaveLength(2);
      const a = await dom.nodeName('vda');
      const b = await dom.nodeName('vdb');
      expect(a).toMatch(/^libvirt-\d+-format$/);
      expect(b).toMatch(/^libvirt-\d+-format$/);
      expect(a).not.toBe(b);
      expect(await dom.hmp('info block')).toContain(`${a}: ${dom.disk('vda').path} (qcow2)`);
    });

    it('writes while running, then equals its shadow; an earlier snapshot differs', async () => {
      const opts = { expected };
      await writePattern(dom, 'vda', { offset: 0, length: 64 * KiB, pattern: 0x11 }, opts);
      await writePattern(dom, 'vda', { offset: MiB + 512, length: 4 * KiB, pattern: 0x22 }, opts); // unaligned
      await writePattern(dom, 'vda', { offset: 63 * MiB, length: MiB, pattern: 0x33 }, opts); // last MiB
      await writePattern(dom, 'vdb', { offset: 4 * MiB, length: 128 * KiB, pattern: 0x44 }, opts);
      const data = await writeRandom(dom, 'vdb', { offset: 8 * MiB, length: 256 * KiB, seed: 'rig' }, opts);
      expect(data).toHaveLength(256 * KiB);
      const scattered = await writeScattered(dom, 'vdb', { seed: 'rig', count: 6 }, opts);
      expect(scattered).toHaveLength(6);
      await expected.snapshot('before-last');

      await writePattern(dom, 'vda', { offset: 2 * MiB, length: 64 * KiB, pattern: 0x55 }, opts);
      await writePattern(dom, 'vdb', { offset: 32 * MiB + 4 * KiB, length: 8 * KiB, pattern: 0x66 }, opts);
      await expected.snapshot('final');

      // Live: flush, then read with -U.
      const live = await expected.compareDomain(dom, 'final');
      expect(live.vda).toEqual({ equal: true, message: 'Images are identical.' });
      expect(live.vdb.equal).toBe(true);

      await dom.stop();
      expect(await dom.isActive()).toBe(false);
      for (const d of dom.disks) {
        const img = expected.get(d.target);
        expect(await img.compareWith(d.path, 'final')).toEqual({ equal: true, message: 'Images are identical.' });
        expect(await img.compareWith(d.path)).toMatchObject({ equal: true });
      }
      expect(await expected.get('vda').compareWith(dom.disk('vda').path, 'before-last')).toEqual({
        equal: false,
        message: `Content mismatch at offset ${2 * MiB}!`,
      });
      expect(await expected.get('vdb').compareWith(dom.disk('vdb').path, 'before-last')).toEqual({
        equal: false,
        message: `Content mismatch at offset ${32 * MiB + 4 * KiB}!`,
      });
    });

    it('writes to the stopped domain with qemu-io on the image', async () => {
      expect(await dom.isActive()).toBe(false);
      await writePattern(dom, 'vda', { offset: 10 * MiB, length: 64 * KiB, pattern: 0x77 }, { expected });
      await writeRandom(dom, 'vdb', { offset: 20 * MiB + 512, length: 3 * KiB, seed: 'offline' }, { expected });
      await expected.snapshot('offline');
      const r = await expected.compareDomain(dom, 'offline');
      expect(r.vda.equal && r.vdb.equal).toBe(true);
      expect((await expected.get('vda').compareWith(dom.disk('vda').path, 'final')).equal).toBe(false);
    });

    it('finds the block nodes again after a restart and keeps writing', async () => {
      await dom.start();
      await writePattern(dom, 'vdb', { offset: 40 * MiB, length: 64 * KiB, pattern: 0x88 }, { expected });
      await dom.stop();
      const r = await expected.compareDomain(dom);
      expect(r.vda.equal && r.vdb.equal).toBe(true);
    });

    it('reports failed writes instead of ignoring them, and leaves the model alone', async () => {
      const pastEnd = { offset: 64 * MiB, length: 64 * KiB, pattern: 0x99 };
      await expect(writePattern(dom, 'vda', pastEnd, { expected })).rejects.toThrow(/failed/);
      await dom.start();
      await expect(writePattern(dom, 'vda', pastEnd, { expected })).rejects.toThrow(/write failed/);
      await expect(writePattern(dom, 'vdz', pastEnd)).rejects.toThrow(/no disk 'vdz'/);
      expect((await expected.compareDomain(dom)).vda.equal).toBe(true);
    });

    it('writes during a pull-mode backup go through the copy-before-write filter (the export keeps the old data)', async () => {
      expect(await dom.isActive()).toBe(true);
      const formatNode = await dom.nodeName('vda');
      await expected.snapshot('backup-begin');
      const socket = join(dom.dir, 'nbd.sock');
      const backupXml = join(dom.dir, 'backup.xml');
      await writeFile(
        backupXml,
        `<domainbackup mode='pull'>
  <server transport='unix' socket='${socket}'/>
  <disks>
    <disk name='vda' backup='yes' type='file'><scratch file='${join(dom.dir, 'scratch-vda.qcow2')}'/></disk>
    <disk name='vdb' backup='no'/>
  </disks>
</domainbackup>`,
      );
      await virsh(['backup-begin', dom.name, backupXml]);
      try {
        // The cached format node is now below the filter (permission conflict): the rig looks the node up again.
        await writePattern(dom, 'vda', { offset: 2 * MiB, length: 64 * KiB, pattern: 0xab }, { expected });
        expect(await dom.nodeName('vda')).not.toBe(formatNode);
        const exported = `nbd+unix:///vda?socket=${socket}`;
        expect(await expected.get('vda').compareWith(exported, 'backup-begin', { format: 'raw' })).toMatchObject({ equal: true });
        expect(await expected.get('vda').compareWith(exported, undefined, { format: 'raw' })).toMatchObject({ equal: false });
        expect((await expected.compareDomain(dom)).vda.equal).toBe(true);
      } finally {
        await virsh(['domjobabort', dom.name]);
      }
      await writePattern(dom, 'vda', { offset: 3 * MiB, length: 64 * KiB, pattern: 0xcd }, { expected });
      expect(await dom.nodeName('vda')).toBe(formatNode);
      expect((await expected.compareDomain(dom)).vda.equal).toBe(true);
    });

    it('destroy removes the domain and its files, and is idempotent', async () => {
      await dom.destroy();
      await dom.destroy();
      expect(await domainNames()).not.toContain(dom.name);
      expect(existsSync(dom.dir)).toBe(false);
    });
  });

  it('removes stale test domains of dead processes and keeps live ones', async () => {
    const pid = await deadPid();
    const stale = await createTestDomain({ disks: [{ sizeMiB: 16 }], running: true, owner: { pid, startTime: 1 } });
    const live = await createTestDomain({ disks: [{ sizeMiB: 16 }] });
    const listed = await listTestDomains();
    expect(listed.find((d) => d.name === stale.name)).toEqual({ name: stale.name, owner: { pid, startTime: 1 }, dir: stale.dir });

    const removed = await destroyStaleTestDomains();
    expect(removed).toContain(stale.name);
    expect(removed).not.toContain(live.name);
    const names = await domainNames();
    expect(names).not.toContain(stale.name);
    expect(names).toContain(live.name);
    expect(existsSync(stale.dir)).toBe(false);
    expect(existsSync(live.disk('vda').path)).toBe(true);
    await stale.destroy(); // already gone: no error
  });
});
