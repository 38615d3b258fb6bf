import { HypervisorError } from './errors';
import { attribute, childElement, childElements, childText, descend, parseXml, XmlElement, xmlEscape } from './xml';

/** Typed views of libvirt's domain, checkpoint and backup XML, and builders for what we send it. */

export interface LibvirtDisk {
  /** Guest device name, e.g. `vda`: the name checkpoints and backups use. */
  target: string;
  bus: string | null;
  /** `disk`, `cdrom`, `floppy`, `lun`. */
  device: string;
  /** `file`, `block`, `network`, `volume`, `dir`, `nvme`, `vhostuser`. */
  type: string;
  /** `<source file=...>` or `<source dev=...>` (or `dir`), null for an empty cdrom or a network disk. */
  sourcePath: string | null;
  /** `<driver type=...>`: the image format, e.g. `qcow2` or `raw`. */
  format: string | null;
  readOnly: boolean;
  shareable: boolean;
  /** `<alias name=...>` (user aliases start with `ua-`). */
  alias: string | null;
  /** `<source index=...>` of a running domain: the node is `libvirt-<index>-format`. */
  sourceIndex: number | null;
  /** Path of the first backing image libvirt reports (`<backingStore><source file=...>`), if any. */
  backingPath: string | null;
}

export interface DomainDescription {
  name: string;
  uuid: string | null;
  /** `kvm` or `qemu` (TCG). */
  type: string | null;
  /** The running domain's id, null when shut off. */
  id: number | null;
  memoryKiB: number | null;
  vcpus: number | null;
  disks: LibvirtDisk[];
  /** The strata host the domain was placed on (see withPlacement), null when it carries no placement. */
  placementHost: string | null;
}

function unitToKiB(value: number, unit: string | null): number {
  const u = (unit ?? 'KiB').toLowerCase();
  const factors: Record<string, number> = {
    b: 1 / 1024, bytes: 1 / 1024, k: 1, kib: 1, kb: 1000 / 1024, m: 1024, mib: 1024, mb: 1e6 / 1024,
    g: 1024 * 1024, gib: 1024 * 1024, gb: 1e9 / 1024, t: 1024 ** 3, tib: 1024 ** 3, tb: 1e12 / 1024,
  };
  const f = factors[u];
  if (f === undefined) throw new HypervisorError(`unknown memory unit ${unit}`);
  return Math.round(value * f);
}

function intOrNull(text: string | null): number | null {
  if (text === null || !/^-?\d+$/.test(text.trim())) return null;
  return Number(text.trim());
}

export function parseDomainDisk(disk: XmlElement): LibvirtDisk | null {
  const targetEl = childElement(disk, 'target');
  const target = attribute(targetEl, 'dev');
  if (!target) return null;
  const source = childElement(disk, 'source');
  const backing = childElement(disk, 'backingStore');
  const backingSource = backing ? childElement(backing, 'source') : undefined;
  return {
    target,
    bus: attribute(targetEl, 'bus'),
    device: attribute(disk, 'device') ?? 'disk',
    type: attribute(disk, 'type') ?? 'file',
    sourcePath: attribute(source, 'file') ?? attribute(source, 'dev') ?? attribute(source, 'dir'),
    format: attribute(childElement(disk, 'driver'), 'type'),
    readOnly: childElement(disk, 'readonly') !== undefined,
    shareable: childElement(disk, 'shareable') !== undefined,
    alias: attribute(childElement(disk, 'alias'), 'name'),
    sourceIndex: intOrNull(attribute(source, 'index')),
    backingPath: attribute(backingSource, 'file') ?? attribute(backingSource, 'dev'),
  };
}

export function parseDomainXml(xml: string): DomainDescription {
  const root = parseXml(xml);
  if (root.name !== 'domain') throw new HypervisorError(`expected <domain>, got <${root.name}>`);
  const name = childText(root, 'name');
  if (!name) throw new HypervisorError('domain XML without <name>');
  const memory = childElement(root, 'memory');
  const memoryValue = memory ? intOrNull(memory.text) : null;
  const devices = childElement(root, 'devices');
  const disks = devices ? childElements(devices, 'disk').map(parseDomainDisk).filter((d): d is LibvirtDisk => d !== null) : [];
  return {
    name,
    uuid: childText(root, 'uuid'),
    type: attribute(root, 'type'),
    id: intOrNull(attribute(root, 'id')),
    memoryKiB: memoryValue === null ? null : unitToKiB(memoryValue, attribute(memory, 'unit')),
    vcpus: intOrNull(childText(root, 'vcpu')),
    disks,
    placementHost: placementHostOf(root),
  };
}

// ---- placement ------------------------------------------------------------------------------------

/** Namespace of the `<metadata>` element that names the strata host a domain was placed on. */
export const PLACEMENT_NS = 'urn:strata:libvirt:placement:1';

const declaresPlacementNs = (el: XmlElement) => Object.entries(el.attributes).some(([k, v]) => (k === 'xmlns' || k.startsWith('xmlns:')) && v === PLACEMENT_NS);

function placementHostOf(root: XmlElement): string | null {
  const metadata = childElement(root, 'metadata');
  const placement = metadata?.children.find(declaresPlacementNs);
  return attribute(placement, 'host');
}

/**
 * The definition marked as placed on strata host `hostName` (replacing an earlier mark). A VM that a
 * quick restore moved to another host carries the new host's name, so that agents sharing one libvirt
 * (STRATA_AGENT_SHARED_LIBVIRT) each report only their own domains, and the old host can tell that a
 * definition it finds is no longer its own.
 */
export function withPlacement(xml: string, hostName: string): string {
  const element = `<strata:placement xmlns:strata='${PLACEMENT_NS}' host='${xmlEscape(hostName)}'/>`;
  const ns = PLACEMENT_NS.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  let out = xml.replace(new RegExp(`\\s*<([A-Za-z_][\\w.-]*:)?placement\\b[^>]*=(['"])${ns}\\2[^>]*?(/>|>[\\s\\S]*?</([A-Za-z_][\\w.-]*:)?placement>)`, 'g'), '');
  if (/<metadata\s*\/>/.test(out)) out = out.replace(/<metadata\s*\/>/, `<metadata>${element}</metadata>`);
  else if (/<metadata>/.test(out)) out = out.replace(/<metadata>/, `<metadata>${element}`);
  else out = out.replace(/(<\/name>)/, `$1<metadata>${element}</metadata>`);
  if (parseDomainXml(out).placementHost !== hostName) throw new HypervisorError(`could not mark the definition of ${parseDomainXml(xml).name} as placed on host ${hostName}`);
  return out;
}

// ---- checkpoints ----------------------------------------------------------------------------------

export interface CheckpointDisk {
  name: string;
  /** `bitmap` (tracked) or `no`. */
  checkpoint: string;
  /** Name of the qcow2 persistent bitmap (libvirt names it after the checkpoint). */
  bitmap: string | null;
  /** Only with `checkpoint-dumpxml --size`. */
  sizeBytes: number | null;
}

export interface CheckpointDescription {
  name: string;
  description: string | null;
  parent: string | null;
  /** Seconds since the epoch, as libvirt records it. */
  creationTime: number | null;
  disks: CheckpointDisk[];
  /** Whether the XML carries the `<domain>` definition (needed by `--redefine` for validation). */
  hasDomain: boolean;
}

export function parseCheckpointXml(xml: string): CheckpointDescription {
  const root = parseXml(xml);
  if (root.name !== 'domaincheckpoint') throw new HypervisorError(`expected <domaincheckpoint>, got <${root.name}>`);
  const name = childText(root, 'name');
  if (!name) throw new HypervisorError('checkpoint XML without <name>');
  const parent = childElement(root, 'parent');
  const disksEl = childElement(root, 'disks');
  return {
    name,
    description: childText(root, 'description'),
    parent: parent ? childText(parent, 'name') : null,
    creationTime: intOrNull(childText(root, 'creationTime')),
    disks: (disksEl ? childElements(disksEl, 'disk') : []).map((d) => ({
      name: attribute(d, 'name') ?? '',
      checkpoint: attribute(d, 'checkpoint') ?? 'bitmap',
      bitmap: attribute(d, 'bitmap'),
      sizeBytes: intOrNull(attribute(d, 'size')),
    })),
    hasDomain: childElement(root, 'domain') !== undefined,
  };
}

export interface CheckpointSpec {
  name: string;
  description?: string;
  /** Disks to track (by target, e.g. `vda`); others get `checkpoint='no'`. Omit to let libvirt choose. */
  disks?: readonly { name: string; checkpoint?: 'bitmap' | 'no'; bitmap?: string }[];
}

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;

/** Checkpoint and bitmap names end up in qcow2 headers and QMP commands: keep them plain. */
export function assertSafeCheckpointName(name: string): void {
  if (!SAFE_NAME.test(name) || name.length > 200) throw new HypervisorError(`unsafe checkpoint name ${JSON.stringify(name)}`);
}

export function buildCheckpointXml(spec: CheckpointSpec): string {
  assertSafeCheckpointName(spec.name);
  const lines = ['<domaincheckpoint>', `  <name>${xmlEscape(spec.name)}</name>`];
  if (spec.description) lines.push(`  <description>${xmlEscape(spec.description)}</description>`);
  if (spec.disks) {
    lines.push('  <disks>');
    for (const d of spec.disks) {
      const bitmap = d.bitmap ? ` bitmap='${xmlEscape(d.bitmap)}'` : '';
      lines.push(`    <disk name='${xmlEscape(d.name)}' checkpoint='${d.checkpoint ?? 'bitmap'}'${bitmap}/>`);
    }
    lines.push('  </disks>');
  }
  lines.push('</domaincheckpoint>');
  return lines.join('\n') + '\n';
}

// ---- backups --------------------------------------------------------------------------------------

export interface PushBackupDisk {
  /** Target of the disk (`vda`). */
  name: string;
  /** Absolute path of the (pre-created, with `reuseExternal`) target file. */
  targetFile: string;
  /** Format of the target file. Default qcow2. */
  format?: string;
}

export interface PushBackupSpec {
  /** Checkpoint the backup is incremental from; null/absent for a full backup. */
  incremental?: string | null;
  disks: readonly PushBackupDisk[];
  /** Disks (targets) of the domain that are not backed up, listed with `backup='no'`. */
  excludedDisks?: readonly string[];
}

/** `<domainbackup mode='push'>` with file targets. */
export function buildPushBackupXml(spec: PushBackupSpec): string {
  if (spec.disks.length === 0) throw new HypervisorError('a backup needs at least one disk');
  const lines = ["<domainbackup mode='push'>"];
  if (spec.incremental) {
    assertSafeCheckpointName(spec.incremental);
    lines.push(`  <incremental>${xmlEscape(spec.incremental)}</incremental>`);
  }
  lines.push('  <disks>');
  for (const d of spec.disks) {
    if (!d.targetFile.startsWith('/')) throw new HypervisorError(`backup target must be an absolute path: ${d.targetFile}`);
    lines.push(`    <disk name='${xmlEscape(d.name)}' backup='yes' type='file'>`);
    lines.push(`      <target file='${xmlEscape(d.targetFile)}'/>`);
    lines.push(`      <driver type='${xmlEscape(d.format ?? 'qcow2')}'/>`);
    lines.push('    </disk>');
  }
  for (const name of spec.excludedDisks ?? []) lines.push(`    <disk name='${xmlEscape(name)}' backup='no'/>`);
  lines.push('  </disks>', '</domainbackup>');
  return lines.join('\n') + '\n';
}

export interface BackupDescription {
  mode: string;
  incremental: string | null;
  disks: { name: string; backup: boolean; type: string | null; targetFile: string | null; format: string | null }[];
}

export function parseBackupXml(xml: string): BackupDescription {
  const root = parseXml(xml);
  if (root.name !== 'domainbackup') throw new HypervisorError(`expected <domainbackup>, got <${root.name}>`);
  const disksEl = childElement(root, 'disks');
  return {
    mode: attribute(root, 'mode') ?? 'push',
    incremental: childText(root, 'incremental'),
    disks: (disksEl ? childElements(disksEl, 'disk') : []).map((d) => ({
      name: attribute(d, 'name') ?? '',
      backup: attribute(d, 'backup') !== 'no',
      type: attribute(d, 'type'),
      targetFile: attribute(descend(d, ['target']), 'file'),
      format: attribute(descend(d, ['driver']), 'type'),
    })),
  };
}

export interface DomainCloneSpec {
  name: string;
  uuid: string;
  /** The new image of each disk kept, by target device. Disks (device `disk`) not named here are dropped. */
  disks: Record<string, { path: string; format: string }>;
  /** The same VM on a new host rather than a new VM: its network interfaces keep their MAC addresses. */
  keepMacs?: boolean;
}

/**
 * A backed-up domain's definition (`virsh dumpxml --inactive`) made into a new domain: new name and uuid,
 * its kept disks on new images (without the old backing chains), the others removed, and no MAC addresses
 * so that libvirt gives the clone its own. Works on libvirt's own regular output; the result is checked by
 * parsing it again.
 */
export function cloneDomainXml(xml: string, spec: DomainCloneSpec): string {
  const before = parseDomainXml(xml);
  let out = xml.replace(/<name>[^<]*<\/name>/, `<name>${xmlEscape(spec.name)}</name>`);
  out = /<uuid>[^<]*<\/uuid>/.test(out) ? out.replace(/<uuid>[^<]*<\/uuid>/, `<uuid>${xmlEscape(spec.uuid)}</uuid>`) : out.replace(/(<name>[^<]*<\/name>)/, `$1<uuid>${xmlEscape(spec.uuid)}</uuid>`);
  if (!spec.keepMacs) out = out.replace(/\s*<mac address=(['"])[^'"]*\1\s*\/>/g, '');
  out = out.replace(/(\s*)<disk\b[\s\S]*?<\/disk>/g, (block: string) => {
    const disk = parseDomainDisk(parseXml(block.trim()));
    if (!disk || disk.device !== 'disk') return block;
    const target = spec.disks[disk.target];
    if (!target) return '';
    return block
      .replace(/<backingStore\b[^>]*\/>|<backingStore\b[\s\S]*<\/backingStore>/g, '')
      .replace(/<driver\b([^>]*?)\btype=(['"])[^'"]*\2/, `<driver$1type='${xmlEscape(target.format)}'`)
      .replace(/<source\b[^>]*?(\/?)>/, (_m: string, close: string) => `<source file='${xmlEscape(target.path)}'${close}>`)
      .replace(/<disk\b([^>]*?)\btype=(['"])[^'"]*\2/, `<disk$1type='file'`);
  });
  const after = parseDomainXml(out);
  const kept = after.disks.filter((d) => d.device === 'disk');
  if (after.name !== spec.name || after.uuid?.toLowerCase() !== spec.uuid.toLowerCase() || kept.length !== Object.keys(spec.disks).length || kept.some((d) => spec.disks[d.target]?.path !== d.sourcePath)) {
    throw new HypervisorError(`could not rewrite the definition of ${before.name} for ${spec.name}`);
  }
  return out;
}
