import { randomBytes, randomUUID } from 'node:crypto';
import { accessSync, constants, mkdtempSync, readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LIBVIRT_URI, run, virsh, isNoDomainError } from './exec';

/**
 * Throw-away libvirt domains for integration tests: no OS, no network, qcow2 disks in a temp directory,
 * every disk with a user alias (`ua-diskN`) and a `qemu:override` that sets `share-rw=true` on its
 * frontend so that HMP `qemu-io` can write to the disk while the guest device holds it.
 */

export const TEST_DOMAIN_PREFIX = 'strata-test-';
/** Temp directories of test domains; distinct from `strata-test-` dirs that other test helpers create. */
export const TEST_DIR_PREFIX = 'strata-libvirt-';
/** Namespace of the `<metadata>` element that records who owns a test domain (read by cleanup). */
export const TEST_METADATA_NS = 'https://strata.invalid/test/libvirt-rig/1';
const QEMU_NS = 'http://libvirt.org/schemas/domain/qemu/1.0';

export type DiskBus = 'virtio' | 'scsi' | 'sata' | 'ide';

export interface TestDiskSpec {
  sizeMiB: number;
  /** Guest target, e.g. `vda`; default `vda`, `vdb`, ... in order. */
  target?: string;
  /** Default: from the target prefix (vd: virtio, sd: scsi, hd: ide). */
  bus?: DiskBus;
  /** Image format; default qcow2. A raw disk cannot hold dirty bitmaps. */
  format?: 'qcow2' | 'raw';
}

/** The process that owns a domain; a domain whose owner is gone is stale. */
export interface DomainOwner {
  pid: number;
  /** Start time of the process (field 22 of /proc/PID/stat), so a reused pid does not count as alive. */
  startTime: number;
}

export interface CreateTestDomainOptions {
  disks: TestDiskSpec[];
  /** Start the domain after defining it. Default false (defined, shut off). */
  running?: boolean;
  /** Override the recorded owner (default: this process). Only for testing stale-domain cleanup. */
  owner?: DomainOwner;
}

export interface TestDisk {
  target: string;
  alias: string;
  bus: DiskBus;
  /** The image file the domain was created with. */
  path: string;
  format: 'qcow2' | 'raw';
  sizeBytes: number;
}

export interface TestDomain {
  readonly name: string;
  readonly uuid: string;
  /** Temp directory with the disk images (and, by convention, expected images); removed by destroy(). */
  readonly dir: string;
  readonly domainType: 'kvm' | 'qemu';
  readonly disks: readonly TestDisk[];
  readonly diskPaths: readonly string[];
  /** QEMU's stdout/stderr log, where HMP qemu-io prints its results. */
  readonly qemuLogPath: string;
  disk(target: string): TestDisk;
  /** True unless the domain is shut off (running, paused, ...). */
  isActive(): Promise<boolean>;
  start(): Promise<void>;
  /** Hard power-off (`virsh destroy`, QEMU exits cleanly on SIGTERM). Flushes every disk first unless flush=false. */
  stop(opts?: { flush?: boolean }): Promise<void>;
  /** Stop, undefine with checkpoint and snapshot metadata, remove the files. Idempotent. */
  destroy(): Promise<void>;
  /**
   * The block node the guest device of `target` is attached to (e.g. `libvirt-1-format`; during a backup job
   * the copy-before-write filter, e.g. `#block275`), from QMP query-block. Cached until start/stop or refresh.
   */
  nodeName(target: string, opts?: { refresh?: boolean }): Promise<string>;
  /** The disk's current source file according to libvirt (`virsh domblklist`). */
  currentSource(target: string): Promise<string>;
  /** Flush QEMU's caches of the disk (HMP `qemu-io <node> "flush"`); no-op when shut off. */
  flush(target?: string): Promise<void>;
  /** Run an HMP command, return its output (throws if virsh fails). */
  hmp(command: string): Promise<string>;
}

/** Domains created by this module instance (one per Jest test file), for afterAll cleanup. */
export const trackedDomains = new Set<TestDomain>();

export function defaultDomainType(): 'kvm' | 'qemu' {
  const forced = process.env.STRATA_TEST_DOMAIN_TYPE;
  if (forced === 'kvm' || forced === 'qemu') return forced;
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return 'kvm';
  } catch {
    return 'qemu';
  }
}

export function qemuLogDir(): string {
  if (process.env.STRATA_TEST_QEMU_LOG_DIR) return process.env.STRATA_TEST_QEMU_LOG_DIR;
  if (LIBVIRT_URI.endsWith('/session')) return join(process.env.HOME ?? '/root', '.cache/libvirt/qemu/log');
  return '/var/log/libvirt/qemu';
}

export function processStartTime(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm)": state is field 3, starttime is field 22.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const v = Number(fields[19]);
    return Number.isFinite(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

export function currentOwner(): DomainOwner {
  return { pid: process.pid, startTime: processStartTime(process.pid) ?? 0 };
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;').replace(/"/g, '&quot;');
}

function busFor(target: string): DiskBus {
  if (target.startsWith('vd')) return 'virtio';
  if (target.startsWith('sd')) return 'scsi';
  if (target.startsWith('hd')) return 'ide';
  throw new Error(`cannot derive a bus from disk target '${target}': pass bus`);
}

function defaultTarget(i: number): string {
  if (i >= 26) throw new Error('at most 26 disks without explicit targets');
  return `vd${String.fromCharCode(97 + i)}`;
}

export interface DomainXmlSpec {
  name: string;
  uuid: string;
  domainType: 'kvm' | 'qemu';
  dir: string;
  owner: DomainOwner;
  disks: readonly TestDisk[];
}

export function buildTestDomainXml(spec: DomainXmlSpec): string {
  const disks = spec.disks
    .map(
      (d) => `    <disk type='file' device='disk'>
      <driver name='qemu' type='${d.format}'/>
      <source file='${xmlEscape(d.path)}'/>
      <target dev='${xmlEscape(d.target)}' bus='${d.bus}'/>
      <alias name='${xmlEscape(d.alias)}'/>
    </disk>`,
    )
    .join('\n');
  const overrides = spec.disks
    .map(
      (d) => `    <qemu:device alias='${xmlEscape(d.alias)}'>
      <qemu:frontend>
        <qemu:property name='share-rw' type='bool' value='true'/>
      </qemu:frontend>
    </qemu:device>`,
    )
    .join('\n');
  return `<domain type='${spec.domainType}' xmlns:qemu='${QEMU_NS}'>
  <name>${xmlEscape(spec.name)}</name>
  <uuid>${spec.uuid}</uuid>
  <description>strata throw-away test domain (test/support/libvirt); safe to delete</description>
  <metadata>
    <strata:test xmlns:strata='${TEST_METADATA_NS}' pid='${spec.owner.pid}' start='${spec.owner.startTime}' dir='${xmlEscape(spec.dir)}'/>
  </metadata>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
${disks}
    <memballoon model='none'/>
  </devices>
  <qemu:override>
${overrides}
  </qemu:override>
</domain>
`;
}

interface QueryBlockEntry {
  device?: string;
  qdev?: string;
  inserted?: { 'node-name'?: string; file?: string };
}

class LibvirtTestDomain implements TestDomain {
  readonly diskPaths: readonly string[];
  readonly qemuLogPath: string;
  private readonly nodeCache = new Map<string, string>();
  private destroyed?: Promise<void>;

  constructor(
    readonly name: string,
    readonly uuid: string,
    readonly dir: string,
    readonly domainType: 'kvm' | 'qemu',
    readonly disks: readonly TestDisk[],
  ) {
    this.diskPaths = disks.map((d) => d.path);
    this.qemuLogPath = join(qemuLogDir(), `${name}.log`);
  }

  disk(target: string): TestDisk {
    const d = this.disks.find((x) => x.target === target);
    if (!d) throw new Error(`${this.name} has no disk '${target}' (has ${this.disks.map((x) => x.target).join(', ')})`);
    return d;
  }

  async isActive(): Promise<boolean> {
    const r = await virsh(['domstate', this.name]);
    return r.stdout.trim() !== 'shut off';
  }

  async start(): Promise<void> {
    this.nodeCache.clear();
    await virsh(['start', this.name]);
  }

  async stop(opts: { flush?: boolean } = {}): Promise<void> {
    if (!(await this.isActive())) return;
    if (opts.flush !== false) await this.flush();
    this.nodeCache.clear();
    await virsh(['destroy', this.name]);
  }

  destroy(): Promise<void> {
    this.destroyed ??= destroyDomainByName(this.name, this.dir).finally(() => trackedDomains.delete(this));
    return this.destroyed;
  }

  async hmp(command: string): Promise<string> {
    const r = await virsh(['qemu-monitor-command', this.name, '--hmp', command]);
    return r.stdout;
  }

  async nodeName(target: string, opts: { refresh?: boolean } = {}): Promise<string> {
    const cached = this.nodeCache.get(target);
    if (cached && !opts.refresh) return cached;
    const alias = this.disk(target).alias;
    const r = await virsh(['qemu-monitor-command', this.name, JSON.stringify({ execute: 'query-block' })]);
    const entries = (JSON.parse(r.stdout) as { return: QueryBlockEntry[] }).return;
    const prefix = `/machine/peripheral/${alias}`;
    const entry = entries.find((e) => e.qdev === prefix || e.qdev?.startsWith(`${prefix}/`));
    const node = entry?.inserted?.['node-name'];
    if (!node) {
      throw new Error(`no block node attached to ${alias} (${target}) of ${this.name}; query-block: ${r.stdout.trim()}`);
    }
    this.nodeCache.set(target, node);
    return node;
  }

  async currentSource(target: string): Promise<string> {
    const r = await virsh(['domblklist', this.name, '--details']);
    for (const line of r.stdout.split('\n')) {
      const cols = line.trim().split(/\s+/);
      // Type Device Target Source
      if (cols.length >= 4 && cols[2] === target && cols[3] !== '-') return cols.slice(3).join(' ');
    }
    return this.disk(target).path;
  }

  async flush(target?: string): Promise<void> {
    if (!(await this.isActive())) return;
    const targets = target ? [target] : this.disks.map((d) => d.target);
    for (const t of targets) {
      const node = await this.nodeName(t);
      let out = await this.hmp(`qemu-io ${node} "flush"`);
      if (/Cannot find device|Permission conflict/i.test(out)) {
        out = await this.hmp(`qemu-io ${await this.nodeName(t, { refresh: true })} "flush"`);
      }
      if (out.trim()) throw new Error(`flush of ${t} on ${this.name} failed: ${out.trim()}`);
    }
  }
}

/** Stop (if running) and undefine a domain with its checkpoint and snapshot metadata; remove its test dir. */
export async function destroyDomainByName(name: string, dir?: string): Promise<void> {
  const state = await virsh(['domstate', name], { allowFailure: true });
  if (state.code === 0) {
    if (state.stdout.trim() !== 'shut off') {
      const r = await virsh(['destroy', name], { allowFailure: true });
      if (r.code !== 0 && !isNoDomainError(r) && !/not running/i.test(r.stderr)) {
        throw new Error(`virsh destroy ${name} failed: ${r.stderr.trim()}`);
      }
    }
    const r = await virsh(['undefine', name, '--checkpoints-metadata', '--snapshots-metadata'], { allowFailure: true });
    if (r.code !== 0 && !isNoDomainError(r)) throw new Error(`virsh undefine ${name} failed: ${r.stderr.trim()}`);
  } else if (!isNoDomainError(state)) {
    throw new Error(`virsh domstate ${name} failed: ${state.stderr.trim()}`);
  }
  if (dir && isTestDir(dir)) await rm(dir, { recursive: true, force: true });
}

/** Only directories this rig created are ever removed. */
export function isTestDir(dir: string): boolean {
  const base = dir.split('/').filter(Boolean).pop() ?? '';
  return dir.startsWith('/') && base.startsWith(TEST_DIR_PREFIX) && !dir.includes('..');
}

export async function createTestDomain(opts: CreateTestDomainOptions): Promise<TestDomain> {
  if (opts.disks.length === 0) throw new Error('a test domain needs at least one disk');
  const name = `${TEST_DOMAIN_PREFIX}${randomBytes(5).toString('hex')}`;
  const uuid = randomUUID();
  const dir = mkdtempSync(join(process.env.STRATA_TEST_LIBVIRT_DIR ?? tmpdir(), TEST_DIR_PREFIX));
  const disks: TestDisk[] = opts.disks.map((spec, i) => {
    if (!Number.isInteger(spec.sizeMiB) || spec.sizeMiB <= 0) throw new Error(`bad disk size ${spec.sizeMiB}`);
    const target = spec.target ?? defaultTarget(i);
    return {
      target,
      alias: `ua-disk${i}`,
      bus: spec.bus ?? busFor(target),
      path: join(dir, `disk${i}-${target}.${spec.format === 'raw' ? 'img' : 'qcow2'}`),
      format: spec.format ?? 'qcow2',
      sizeBytes: spec.sizeMiB * 1024 * 1024,
    };
  });
  const domain = new LibvirtTestDomain(name, uuid, dir, defaultDomainType(), disks);
  trackedDomains.add(domain);
  try {
    for (const d of disks) await run('qemu-img', ['create', '-q', '-f', d.format, d.path, String(d.sizeBytes)]);
    const xmlPath = join(dir, 'domain.xml');
    const xml = buildTestDomainXml({ name, uuid, domainType: domain.domainType, dir, owner: opts.owner ?? currentOwner(), disks });
    await writeFile(xmlPath, xml);
    await virsh(['define', xmlPath]);
    if (opts.running) await domain.start();
  } catch (e) {
    await domain.destroy().catch(() => undefined);
    throw e;
  }
  return domain;
}
