import { randomBytes } from 'node:crypto';
import { accessSync, constants, readFileSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DomainNotFoundError, DomainNotRunningError, VirshError } from '../errors';
import { QemuImgDriver } from '../qemu-img.driver';
import { VirshDriver } from '../virsh.driver';
import { xmlEscape } from '../xml';

/**
 * Test-only: a throw-away domain with no OS (128 MiB, 1 vCPU, one qcow2 disk `vda`) whose disk can be
 * written from the host while it runs (alias `ua-vda` + `qemu:override` share-rw=true, then HMP qemu-io).
 * Not exported from the package index.
 *
 * Its owner is recorded in the domain metadata the way test/support/libvirt does, so that the shared
 * stale-domain cleanup leaves it alone while this process lives and removes it (and its
 * `strata-libvirt-*` directory) once this process is gone.
 */

export const TEST_PREFIX = 'strata-test-';
const OWNER_NS = 'https://strata.invalid/test/libvirt-rig/1';

/** `kvm` when /dev/kvm is usable, else `qemu` (TCG); STRATA_TEST_DOMAIN_TYPE forces one. */
export function domainType(): 'kvm' | 'qemu' {
  const forced = process.env.STRATA_TEST_DOMAIN_TYPE;
  if (forced === 'kvm' || forced === 'qemu') return forced;
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return 'kvm';
  } catch {
    return 'qemu';
  }
}

function processStartTime(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]) || 0;
  } catch {
    return 0;
  }
}

export interface ThrowAwayDomain {
  name: string;
  dir: string;
  diskPath: string;
  type: 'kvm' | 'qemu';
  /** The node the guest disk is attached to (`libvirt-1-format`), from HMP `info block`. */
  nodeName(): Promise<string>;
  /** Writes `length` bytes of `pattern` at `offset` through QEMU (as the guest would), then flushes. */
  write(pattern: number, offset: number, length: number): Promise<void>;
  /** Destroy (if running), undefine with checkpoint metadata, remove the directory. Never throws for "already gone". */
  remove(): Promise<void>;
}

export function throwAwayDomainXml(spec: { name: string; type: 'kvm' | 'qemu'; diskPath: string; memoryMiB: number; ownerDir: string }): string {
  return `<domain type='${spec.type}' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>${xmlEscape(spec.name)}</name>
  <metadata>
    <strata:test xmlns:strata='${OWNER_NS}' pid='${process.pid}' start='${processStartTime(process.pid)}' dir='${xmlEscape(spec.ownerDir)}'/>
  </metadata>
  <memory unit='MiB'>${spec.memoryMiB}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='${xmlEscape(spec.diskPath)}'/>
      <target dev='vda' bus='virtio'/>
      <alias name='ua-vda'/>
    </disk>
    <memballoon model='none'/>
  </devices>
  <qemu:override>
    <qemu:device alias='ua-vda'>
      <qemu:frontend>
        <qemu:property name='share-rw' type='bool' value='true'/>
      </qemu:frontend>
    </qemu:device>
  </qemu:override>
</domain>
`;
}

export async function createThrowAwayDomain(
  virsh: VirshDriver,
  qemuImg: QemuImgDriver,
  options: {
    diskSizeMiB?: number;
    memoryMiB?: number;
    start?: boolean;
    /** Use this qcow2 (e.g. an overlay on a backup) instead of creating an empty one; the caller owns it. */
    existingDisk?: string;
  } = {},
): Promise<ThrowAwayDomain> {
  const name = `${TEST_PREFIX}${randomBytes(5).toString('hex')}`;
  const dir = await mkdtemp(join(tmpdir(), 'strata-libvirt-hv-'));
  const diskPath = options.existingDisk ?? join(dir, 'vda.qcow2');
  const type = domainType();

  const remove = async () => {
    try {
      try {
        await virsh.destroy(name);
      } catch (e) {
        if (!(e instanceof DomainNotFoundError || e instanceof DomainNotRunningError || (e instanceof VirshError && /not running/i.test(e.stderr)))) throw e;
      }
      try {
        await virsh.undefine(name, { checkpointsMetadata: true, snapshotsMetadata: true });
      } catch (e) {
        if (!(e instanceof DomainNotFoundError)) throw e;
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  };

  try {
    if (!options.existingDisk) await qemuImg.create(diskPath, { format: 'qcow2', sizeBytes: (options.diskSizeMiB ?? 64) * 1024 * 1024 });
    await virsh.define(throwAwayDomainXml({ name, type, diskPath, memoryMiB: options.memoryMiB ?? 128, ownerDir: dir }));
    if (options.start ?? true) await virsh.start(name);
  } catch (e) {
    await remove().catch(() => undefined);
    throw e;
  }

  const nodeName = async () => {
    const out = await virsh.qemuMonitorCommand(name, 'info block');
    const line = out.split('\n').find((l) => l.includes(diskPath));
    const m = line ? /^([^:\s]+):/.exec(line) : null;
    if (!m) throw new Error(`no block node for ${diskPath} in: ${out}`);
    return m[1];
  };

  return {
    name,
    dir,
    diskPath,
    type,
    nodeName,
    async write(pattern, offset, length) {
      const node = await nodeName(); // may change across restarts
      const hex = `0x${pattern.toString(16)}`;
      // qemu-io's own BlockBackend caches writes: flush so that readers from outside (-U) see them.
      await virsh.qemuMonitorCommand(name, `qemu-io ${node} "write -P ${hex} ${offset} ${length}"`);
      await virsh.qemuMonitorCommand(name, `qemu-io ${node} "flush"`);
    },
    remove,
  };
}

/** A sparse raw file that receives the same writes as a test disk: what the disk must contain. */
export class ExpectedRawImage {
  constructor(readonly path: string) {}

  static async create(path: string, sizeBytes: number): Promise<ExpectedRawImage> {
    const fh = await open(path, 'wx', 0o600);
    try {
      await fh.truncate(sizeBytes);
    } finally {
      await fh.close();
    }
    return new ExpectedRawImage(path);
  }

  async write(pattern: number, offset: number, length: number): Promise<void> {
    const fh = await open(this.path, 'r+');
    try {
      await fh.write(Buffer.alloc(length, pattern), 0, length, offset);
    } finally {
      await fh.close();
    }
  }
}
