import {
  CheckpointNotFoundError,
  CommandFailedError,
  DomainAlreadyRunningError,
  DomainBusyError,
  DomainJobFailedError,
  DomainJobTimeoutError,
  DomainNotFoundError,
  DomainNotRunningError,
  HypervisorError,
  NoActiveJobError,
  OutputParseError,
  VirshError,
} from './errors';
import {
  CheckpointDescription,
  DomainDescription,
  LibvirtDisk,
  parseCheckpointXml,
  parseDomainXml,
} from './libvirt-xml';
import { ProcessRunner, RunOptions, RunResult, withTempFile, withTempFiles } from './process-runner';
import { xmlEscape } from './xml';

/** Typed `virsh` for the host agent: one process per call, argument arrays, output parsed here. */

export const DEFAULT_LIBVIRT_URI = 'qemu:///system';

export interface Version {
  text: string;
  major: number;
  minor: number;
  micro: number;
}

export interface VirshVersion {
  /** The libvirt library virsh uses. */
  library: Version;
  /** The daemon answering on the URI. */
  daemon: Version | null;
  /** Name and version of the running hypervisor, e.g. QEMU 7.2.22. */
  hypervisor: { name: string; version: Version };
}

/** libvirt's virDomainState, by the name of its enum value. */
export type DomainState = 'nostate' | 'running' | 'blocked' | 'paused' | 'shutdown' | 'shutoff' | 'crashed' | 'pmsuspended';

const STATE_BY_NUMBER: readonly DomainState[] = ['nostate', 'running', 'blocked', 'paused', 'shutdown', 'shutoff', 'crashed', 'pmsuspended'];
/** virsh's words for the states (with LC_ALL=C). */
const STATE_BY_TEXT: Record<string, DomainState> = {
  'no state': 'nostate',
  running: 'running',
  idle: 'blocked',
  blocked: 'blocked',
  paused: 'paused',
  'in shutdown': 'shutdown',
  'shut off': 'shutoff',
  crashed: 'crashed',
  pmsuspended: 'pmsuspended',
};

export interface DomainSummary {
  uuid: string;
  name: string;
  state: DomainState;
  /** Numeric reason code of the state (virDomain<State>Reason), null if unknown. */
  stateReason: number | null;
}

export interface DomainStateInfo {
  state: DomainState;
  /** virsh's words for the reason, e.g. `booted`, `destroyed`; null if none. */
  reason: string | null;
}

export interface DomainInfo {
  id: number | null;
  name: string;
  uuid: string;
  state: DomainState;
  cpus: number | null;
  maxMemoryKiB: number | null;
  usedMemoryKiB: number | null;
  persistent: boolean;
  autostart: boolean;
}

export interface CheckpointSummary {
  name: string;
  parent: string | null;
  /** As virsh prints it (`2026-11-22 11:11:26 +0000`), parsed. */
  creationTime: Date | null;
}

export type DomainJobType = 'none' | 'bounded' | 'unbounded' | 'completed' | 'failed' | 'cancelled';
const JOB_TYPES: readonly DomainJobType[] = ['none', 'bounded', 'unbounded', 'completed', 'failed', 'cancelled'];

/** virDomainJobOperation names. */
const JOB_OPERATIONS = [
  'unknown', 'start', 'save', 'restore', 'migration-in', 'migration-out', 'snapshot', 'snapshot-revert', 'dump', 'backup', 'snapshot-delete',
] as const;

export interface DomainJobInfo {
  type: DomainJobType;
  /** `backup`, `migration-out`, ... or null when libvirt did not say. */
  operation: string | null;
  /** Bytes done: `disk_processed` (or `data_processed`). */
  dataProcessed: number | null;
  /** Bytes to do: `disk_total` (or `data_total`). For an incremental backup, only the dirty part. */
  dataTotal: number | null;
  dataRemaining: number | null;
  timeElapsedMs: number | null;
  /** `success` of a completed job (libvirt ≥ 8.?); null when absent. */
  success: boolean | null;
  errorMessage: string | null;
  /** Every raw statistic (`virsh domjobinfo --rawstats`). */
  raw: Readonly<Record<string, string>>;
}

export interface WaitForJobOptions {
  /** Default 250 ms. */
  pollIntervalMs?: number;
  /**
   * Grow the interval by half after each poll up to this: short jobs are seen to end soon, long ones
   * cost few processes. Default: no growth.
   */
  maxPollIntervalMs?: number;
  /** Polls at `pollIntervalMs` for this long before the interval starts to grow; default 0. */
  growAfterMs?: number;
  /** Give up waiting (the job goes on) after this long; default: wait forever. */
  timeoutMs?: number;
  signal?: AbortSignal;
  onProgress?: (info: DomainJobInfo) => void;
  /**
   * Resolves when the job may have ended (see watchJobCompleted): the wait then asks at once instead of at
   * its next poll. Polling goes on regardless, so a missed or early wake-up costs nothing but time.
   */
  wake?: Promise<unknown>;
}

/** virDomainBlockJobType names, by number and by virsh's words. */
const BLOCK_JOB_TYPES = ['unknown', 'pull', 'copy', 'commit', 'active-commit', 'backup'] as const;
const BLOCK_JOB_WORDS: Record<string, string> = {
  'block pull': 'pull',
  'block copy': 'copy',
  'block commit': 'commit',
  'active block commit': 'active-commit',
  backup: 'backup',
};

export interface BlockJobInfo {
  /** `pull`, `copy`, `commit`, `active-commit`, `backup` (or virsh's words for another kind). */
  type: string;
  cur: number;
  end: number;
  /** Bytes per second, 0 = unlimited. */
  bandwidth: number | null;
}

export interface VirshDriverOptions {
  /** Per-call timeout for virsh commands. Default 60 s. */
  timeoutMs?: number;
}

function parseVersion(text: string): Version {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(text);
  if (!m) throw new HypervisorError(`not a version: ${text}`);
  return { text, major: Number(m[1]), minor: Number(m[2]), micro: Number(m[3] ?? 0) };
}

function lines(text: string): string[] {
  return text.split('\n').map((l) => l.replace(/\r$/, ''));
}

function keyValues(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of lines(text)) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    out.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  return out;
}

/** `2026-11-22 11:11:26 +0000` */
const CREATION_TIME = /(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}) ([+-]\d{2})(\d{2})/;

function parseCreationTime(text: string): Date | null {
  const m = CREATION_TIME.exec(text);
  if (!m) return null;
  const d = new Date(`${m[1]}T${m[2]}${m[3]}:${m[4]}`);
  return Number.isNaN(d.getTime()) ? null : d;
}

function numberOrNull(v: string | undefined): number | null {
  if (v === undefined || !/^-?\d+(\.\d+)?$/.test(v)) return null;
  return Number(v);
}

/** Parses `virsh domjobinfo --rawstats` output. */
export function parseDomJobInfo(text: string): DomainJobInfo {
  const kv = keyValues(text);
  const typeText = kv.get('Job type');
  if (typeText === undefined) throw new OutputParseError('virsh', 'domjobinfo --rawstats', text);
  const typeNumber = numberOrNull(typeText);
  const type = typeNumber !== null ? JOB_TYPES[typeNumber] : (typeText.toLowerCase() as DomainJobType);
  if (!type || !JOB_TYPES.includes(type)) throw new OutputParseError('virsh', `unknown job type ${typeText}`, text);
  const raw: Record<string, string> = {};
  for (const [k, v] of kv) if (k !== 'Job type') raw[k] = v;
  const op = numberOrNull(raw.operation);
  const num = (...keys: string[]) => {
    for (const k of keys) {
      const v = numberOrNull(raw[k]);
      if (v !== null) return v;
    }
    return null;
  };
  return {
    type,
    operation: op === null ? null : (JOB_OPERATIONS[op] ?? String(op)),
    dataProcessed: num('disk_processed', 'data_processed'),
    dataTotal: num('disk_total', 'data_total'),
    dataRemaining: num('disk_remaining', 'data_remaining'),
    timeElapsedMs: num('time_elapsed'),
    success: raw.success === undefined ? null : raw.success === '1',
    errorMessage: raw.errmsg ?? null,
    raw,
  };
}

/** Rows of a virsh table (after the `----` line), for known first-column values. */
function tableRows(text: string): string[] {
  const ls = lines(text);
  const dash = ls.findIndex((l) => /^-{3,}\s*$/.test(l.trim()));
  return (dash >= 0 ? ls.slice(dash + 1) : ls).filter((l) => l.trim() !== '');
}

export class VirshDriver {
  private readonly timeoutMs: number;

  constructor(
    readonly uri: string = DEFAULT_LIBVIRT_URI,
    private readonly runner: ProcessRunner,
    options: VirshDriverOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 60_000;
  }

  /** Runs `virsh -c URI <args>` and types well-known failures. `domain`/`checkpoint` name the subject for errors. */
  async exec(args: readonly string[], subject: { domain?: string; checkpoint?: string } = {}, options: RunOptions = {}): Promise<RunResult> {
    try {
      return await this.runner.run('virsh', ['--quiet', '-c', this.uri, ...args], {
        timeoutMs: this.timeoutMs,
        ...options,
        env: { LC_ALL: 'C', LANG: 'C', ...options.env },
      });
    } catch (e) {
      throw e instanceof CommandFailedError ? this.typed(e, subject) : e;
    }
  }

  private typed(e: CommandFailedError, subject: { domain?: string; checkpoint?: string }): Error {
    if (e.reason !== 'exit') return e;
    const f = e.failure();
    const text = f.stderr;
    const domain = subject.domain ?? '(unknown)';
    if (/failed to get domain|Domain not found|no domain with matching/i.test(text)) return new DomainNotFoundError(domain, f);
    if (/Domain checkpoint not found|no domain checkpoint with matching/i.test(text)) return new CheckpointNotFoundError(domain, subject.checkpoint ?? null, f);
    if (/domain is not running/i.test(text)) return new DomainNotRunningError(domain, f);
    if (/Domain is already active|domain is already running/i.test(text)) return new DomainAlreadyRunningError(domain, f);
    if (/no job is active/i.test(text)) return new NoActiveJobError(domain, f);
    if (/cannot acquire state change lock|another job|job .* is already running|already in use|active block job|block job .* active|existing job/i.test(text)) {
      return new DomainBusyError(domain, f);
    }
    return new VirshError(f);
  }

  // ---- host ---------------------------------------------------------------------------------------

  async version(): Promise<VirshVersion> {
    const r = await this.exec(['version', '--daemon']);
    const kv = keyValues(r.stdout);
    const library = /libvirt\s+(\S+)/.exec(kv.get('Using library') ?? '');
    const daemon = kv.get('Running against daemon');
    const hv = /^(\S+)\s+(\S+)/.exec(kv.get('Running hypervisor') ?? '');
    if (!library || !hv) throw new OutputParseError('virsh', 'version', r.stdout);
    return {
      library: parseVersion(library[1]),
      daemon: daemon ? parseVersion(daemon) : null,
      hypervisor: { name: hv[1], version: parseVersion(hv[2]) },
    };
  }

  // ---- domains ------------------------------------------------------------------------------------

  /** Every domain (running or not) with uuid, name and state. */
  async listDomains(): Promise<DomainSummary[]> {
    const [list, stats] = await Promise.all([this.exec(['list', '--all', '--uuid', '--name']), this.exec(['domstats', '--state'])]);
    const states = new Map<string, { state: DomainState; reason: number | null }>();
    let current: string | null = null;
    for (const line of lines(stats.stdout)) {
      const m = /^Domain: '(.*)'\s*$/.exec(line);
      if (m) {
        current = m[1];
        states.set(current, { state: 'nostate', reason: null });
        continue;
      }
      const kv = /^\s+state\.(state|reason)=(\d+)\s*$/.exec(line);
      if (kv && current !== null) {
        const entry = states.get(current)!;
        if (kv[1] === 'state') entry.state = STATE_BY_NUMBER[Number(kv[2])] ?? 'nostate';
        else entry.reason = Number(kv[2]);
      }
    }
    const out: DomainSummary[] = [];
    for (const line of lines(list.stdout)) {
      const m = /^([0-9a-fA-F-]{36})\s+(.+)$/.exec(line.trim());
      if (!m) continue;
      const s = states.get(m[2]);
      // A domain defined between the two calls has no stats yet: ask for it alone.
      const state = s ?? (await this.domainState(m[2]).then((x) => ({ state: x.state, reason: null })).catch(() => undefined));
      if (!state) continue; // vanished in between
      out.push({ uuid: m[1].toLowerCase(), name: m[2], state: state.state, stateReason: state.reason });
    }
    return out;
  }

  async domainState(domain: string): Promise<DomainStateInfo> {
    const r = await this.exec(['domstate', '--domain', domain, '--reason'], { domain });
    const m = /^(.+?)(?: \((.*)\))?$/.exec(r.stdout.trim());
    const state = m ? STATE_BY_TEXT[m[1]] : undefined;
    if (!m || !state) throw new OutputParseError('virsh', 'domstate', r.stdout);
    return { state, reason: m[2] ?? null };
  }

  async domainInfo(domain: string): Promise<DomainInfo> {
    const r = await this.exec(['dominfo', '--domain', domain], { domain });
    const kv = keyValues(r.stdout);
    const state = STATE_BY_TEXT[kv.get('State') ?? ''];
    const name = kv.get('Name');
    const uuid = kv.get('UUID');
    if (!state || !name || !uuid) throw new OutputParseError('virsh', 'dominfo', r.stdout);
    const kib = (k: string) => numberOrNull(/^(\d+)/.exec(kv.get(k) ?? '')?.[1]);
    return {
      id: numberOrNull(kv.get('Id')),
      name,
      uuid,
      state,
      cpus: numberOrNull(kv.get('CPU(s)')),
      maxMemoryKiB: kib('Max memory'),
      usedMemoryKiB: kib('Used memory'),
      persistent: kv.get('Persistent') === 'yes',
      autostart: kv.get('Autostart') === 'enable',
    };
  }

  async domainXml(domain: string, options: { inactive?: boolean } = {}): Promise<string> {
    const r = await this.exec(['dumpxml', '--domain', domain, ...(options.inactive ? ['--inactive'] : [])], { domain });
    return r.stdout;
  }

  async describeDomain(domain: string, options: { inactive?: boolean } = {}): Promise<DomainDescription> {
    return parseDomainXml(await this.domainXml(domain, options));
  }

  /** The domain's disks from `virsh dumpxml` (live definition unless `inactive`). */
  async domainDisks(domain: string, options: { inactive?: boolean } = {}): Promise<LibvirtDisk[]> {
    return (await this.describeDomain(domain, options)).disks;
  }

  /** Defines (or redefines) a persistent domain; returns its name. */
  async define(xml: string): Promise<string> {
    const name = parseDomainXml(xml).name;
    await withTempFile(xml, (file) => this.exec(['define', '--file', file], { domain: name }), { name: 'domain.xml' });
    return name;
  }

  /**
   * Attaches a file-backed disk: to the persistent definition, and to the running domain too when it runs.
   * `target` is the guest device (`vdb`).
   */
  async attachDisk(domain: string, disk: { path: string; target: string; format: string; bus?: string }, options: { live: boolean }): Promise<void> {
    const xml = `<disk type='file' device='disk'><driver name='qemu' type='${xmlEscape(disk.format)}'/><source file='${xmlEscape(disk.path)}'/><target dev='${xmlEscape(disk.target)}' bus='${xmlEscape(disk.bus ?? 'virtio')}'/></disk>`;
    await withTempFile(xml, (file) => this.exec(['attach-device', '--domain', domain, '--file', file, '--config', ...(options.live ? ['--live'] : [])], { domain }), { name: 'disk.xml' });
  }

  async undefine(
    domain: string,
    options: { checkpointsMetadata?: boolean; snapshotsMetadata?: boolean; managedSave?: boolean; nvram?: boolean } = {},
  ): Promise<void> {
    const args = ['undefine', '--domain', domain];
    if (options.checkpointsMetadata) args.push('--checkpoints-metadata');
    if (options.snapshotsMetadata) args.push('--snapshots-metadata');
    if (options.managedSave) args.push('--managed-save');
    if (options.nvram) args.push('--nvram');
    await this.exec(args, { domain });
  }

  async start(domain: string, options: { paused?: boolean } = {}): Promise<void> {
    await this.exec(['start', '--domain', domain, ...(options.paused ? ['--paused'] : [])], { domain });
  }

  /** Hard power-off. QEMU gets SIGTERM first (it closes its images, storing persistent bitmaps). */
  async destroy(domain: string, options: { graceful?: boolean } = {}): Promise<void> {
    await this.exec(['destroy', '--domain', domain, ...(options.graceful ? ['--graceful'] : [])], { domain });
  }

  /** Asks the guest to shut down (ACPI / agent); returns at once. */
  async shutdown(domain: string, options: { mode?: 'acpi' | 'agent' | 'initctl' | 'signal' | 'paravirt' } = {}): Promise<void> {
    await this.exec(['shutdown', '--domain', domain, ...(options.mode ? ['--mode', options.mode] : [])], { domain });
  }

  async suspend(domain: string): Promise<void> {
    await this.exec(['suspend', '--domain', domain], { domain });
  }

  async resume(domain: string): Promise<void> {
    await this.exec(['resume', '--domain', domain], { domain });
  }

  // ---- checkpoints --------------------------------------------------------------------------------

  /** Names of a domain's checkpoints, parents before children: one virsh call, where checkpointList takes two. */
  async checkpointNames(domain: string): Promise<string[]> {
    const names = await this.exec(['checkpoint-list', '--domain', domain, '--name', '--topological'], { domain });
    return lines(names.stdout).map((l) => l.trim()).filter((l) => l !== '');
  }

  /** Checkpoints of a domain, parents before children. */
  async checkpointList(domain: string): Promise<CheckpointSummary[]> {
    const known = await this.checkpointNames(domain);
    if (known.length === 0) return [];
    const table = await this.exec(['checkpoint-list', '--domain', domain, '--parent'], { domain });
    const rows = new Map<string, { parent: string | null; creationTime: Date | null }>();
    const byLength = [...known].sort((a, b) => b.length - a.length);
    for (const row of tableRows(table.stdout)) {
      const text = row.trim();
      const name = byLength.find((n) => text.startsWith(n) && (text.length === n.length || /\s/.test(text[n.length])));
      if (!name) continue;
      const rest = text.slice(name.length);
      const time = CREATION_TIME.exec(rest);
      const parent = time ? rest.slice(time.index + time[0].length).trim() : '';
      rows.set(name, { parent: parent === '' ? null : parent, creationTime: parseCreationTime(rest) });
    }
    return known.map((name) => ({ name, parent: rows.get(name)?.parent ?? null, creationTime: rows.get(name)?.creationTime ?? null }));
  }

  /** The checkpoint's XML, with the `<domain>` definition unless `noDomain` (what `--redefine` wants back). */
  async checkpointDumpXml(domain: string, name: string, options: { noDomain?: boolean; size?: boolean } = {}): Promise<string> {
    const args = ['checkpoint-dumpxml', '--domain', domain, '--checkpointname', name];
    if (options.noDomain) args.push('--no-domain');
    if (options.size) args.push('--size');
    return (await this.exec(args, { domain, checkpoint: name })).stdout;
  }

  async checkpoint(domain: string, name: string): Promise<CheckpointDescription> {
    return parseCheckpointXml(await this.checkpointDumpXml(domain, name, { noDomain: true }));
  }

  /** Creates a checkpoint on its own (outside a backup). */
  async checkpointCreate(domain: string, xml: string, options: { quiesce?: boolean } = {}): Promise<void> {
    const name = parseCheckpointXml(xml).name;
    await withTempFile(
      xml,
      (file) => this.exec(['checkpoint-create', '--domain', domain, '--xmlfile', file, ...(options.quiesce ? ['--quiesce'] : [])], { domain, checkpoint: name }),
      { name: 'checkpoint.xml' },
    );
  }

  /**
   * Gives libvirt back the metadata of a checkpoint it lost (`checkpoint-create --redefine`), from XML
   * recorded earlier (`checkpointDumpXml`). The qcow2 bitmap must still exist; `validate` makes libvirt
   * check that it does (`--redefine-validate`, running domain only).
   */
  async checkpointRedefine(domain: string, xml: string, options: { validate?: boolean } = {}): Promise<void> {
    const name = parseCheckpointXml(xml).name;
    await withTempFile(
      xml,
      (file) =>
        this.exec(['checkpoint-create', '--domain', domain, '--xmlfile', file, '--redefine', ...(options.validate ? ['--redefine-validate'] : [])], {
          domain,
          checkpoint: name,
        }),
      { name: 'checkpoint.xml' },
    );
  }

  /** Deletes a checkpoint; with `metadataOnly` libvirt forgets it but the qcow2 bitmaps stay. */
  async checkpointDelete(domain: string, name: string, options: { metadataOnly?: boolean; children?: boolean } = {}): Promise<void> {
    const args = ['checkpoint-delete', '--domain', domain, '--checkpointname', name];
    if (options.metadataOnly) args.push('--metadata');
    if (options.children) args.push('--children');
    await this.exec(args, { domain, checkpoint: name });
  }

  // ---- backups and jobs ---------------------------------------------------------------------------

  /**
   * Starts a backup job (`virsh backup-begin`), optionally creating a checkpoint at the same instant.
   * With `reuseExternal` (default true) libvirt writes into target files the caller created (e.g. a
   * qcow2 whose backing file is the parent backup) instead of creating them. Returns when the job runs;
   * follow it with `waitForJob`.
   */
  async backupBegin(domain: string, backupXml: string, checkpointXml: string | null, options: { reuseExternal?: boolean } = {}): Promise<void> {
    const files = [{ name: 'backup.xml', content: backupXml }];
    if (checkpointXml !== null) files.push({ name: 'checkpoint.xml', content: checkpointXml });
    await withTempFiles(files, ([backupFile, checkpointFile]) => {
      const args = ['backup-begin', '--domain', domain, '--backupxml', backupFile];
      if (checkpointFile) args.push('--checkpointxml', checkpointFile);
      if (options.reuseExternal ?? true) args.push('--reuse-external');
      return this.exec(args, { domain });
    });
  }

  /** XML of the running backup job (`virsh backup-dumpxml`). */
  async backupDumpXml(domain: string): Promise<string> {
    return (await this.exec(['backup-dumpxml', '--domain', domain], { domain })).stdout;
  }

  /**
   * Statistics of the domain's active job, or with `completed` of the last finished one (libvirt drops
   * those once read unless `keepCompleted`; `anyStats` includes failed jobs).
   */
  async domJobInfo(domain: string, options: { completed?: boolean; keepCompleted?: boolean; anyStats?: boolean } = {}): Promise<DomainJobInfo> {
    const args = ['domjobinfo', '--domain', domain, '--rawstats'];
    if (options.completed) args.push('--completed');
    if (options.completed && options.keepCompleted) args.push('--keep-completed');
    if (options.completed && options.anyStats) args.push('--anystats');
    const r = await this.exec(args, { domain });
    return parseDomJobInfo(r.stdout);
  }

  /**
   * Polls until the domain's active job ends, then returns its completed statistics (consuming them).
   * Throws DomainJobFailedError when it failed or was cancelled, DomainJobTimeoutError after
   * `timeoutMs` (the job is left running: abort it with domJobAbort if that is what you want).
   * Returns a `none` info when the job ended and libvirt kept no statistics (someone else read them).
   */
  async waitForJob(domain: string, options: WaitForJobOptions = {}): Promise<DomainJobInfo> {
    let interval = options.pollIntervalMs ?? 250;
    const maxInterval = Math.max(interval, options.maxPollIntervalMs ?? interval);
    const started = Date.now();
    const deadline = options.timeoutMs !== undefined ? Date.now() + options.timeoutMs : Infinity;
    let wake = options.wake?.then(
      () => true,
      () => true,
    );
    for (;;) {
      if (options.signal?.aborted) throw options.signal.reason instanceof Error ? options.signal.reason : new HypervisorError('waitForJob aborted');
      const info = await this.domJobInfo(domain);
      if (info.type === 'bounded' || info.type === 'unbounded') {
        options.onProgress?.(info);
      } else {
        const done = await this.domJobInfo(domain, { completed: true, anyStats: true });
        if (done.type === 'failed' || done.type === 'cancelled' || done.success === false) {
          throw new DomainJobFailedError(domain, { type: done.type === 'completed' ? 'failed' : done.type, errorMessage: done.errorMessage });
        }
        return done;
      }
      if (Date.now() >= deadline) throw new DomainJobTimeoutError(domain, options.timeoutMs ?? 0);
      let timer: NodeJS.Timeout | undefined;
      const sleep = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), Math.min(interval, Math.max(0, deadline - Date.now())))));
      const woken = await Promise.race(wake ? [sleep, wake] : [sleep]);
      clearTimeout(timer);
      // A wake-up is used once: the next poll after it waits its normal interval.
      if (woken) wake = undefined;
      if (Date.now() - started >= (options.growAfterMs ?? 0)) interval = Math.min(maxInterval, Math.ceil(interval * 1.5));
    }
  }

  /**
   * Listens for the domain's next job-completed event (`virsh event --event job-completed`) until it comes,
   * `timeoutMs` passes or `signal` aborts. Started before a job, it tells the moment the job ends without
   * polling: a backup of a few MiB takes tens of milliseconds, and each poll is a virsh process. Resolves
   * whether the event came; never rejects. The listener registers a few milliseconds after the call, so a
   * caller must still poll (waitForJob's `wake` does).
   */
  async watchJobCompleted(domain: string, options: { timeoutMs: number; signal?: AbortSignal }): Promise<boolean> {
    const seconds = String(Math.max(1, Math.ceil(options.timeoutMs / 1000)));
    try {
      // Under `setpriv --pdeathsig KILL`: a listener outlives its agent otherwise (SIGKILLed, it cannot stop
      // it), for as long as its timeout, hours for a backup.
      const r = await this.runner.run('setpriv', ['--pdeathsig', 'KILL', '--', 'virsh', '--quiet', '-c', this.uri, 'event', '--domain', domain, '--event', 'job-completed', '--timeout', seconds], {
        timeoutMs: options.timeoutMs + 5000,
        signal: options.signal,
        killGraceMs: 1000,
        env: { LC_ALL: 'C', LANG: 'C' },
      });
      return /event 'job-completed' for domain/.test(r.stdout);
    } catch {
      return false;
    }
  }

  async domJobAbort(domain: string): Promise<void> {
    await this.exec(['domjobabort', '--domain', domain], { domain });
  }

  // ---- block jobs ---------------------------------------------------------------------------------

  /**
   * Starts pulling the backing chain of a disk into its top image (quick restore consolidation).
   * `base` keeps that image and below; `keepRelative` keeps relative backing names.
   */
  async blockPull(domain: string, disk: string, options: { base?: string; keepRelative?: boolean; bandwidthBytesPerSec?: number } = {}): Promise<void> {
    const args = ['blockpull', '--domain', domain, '--path', disk];
    if (options.base) args.push('--base', options.base);
    if (options.keepRelative) args.push('--keep-relative');
    if (options.bandwidthBytesPerSec !== undefined) args.push('--bandwidth', String(Math.floor(options.bandwidthBytesPerSec)), '--bytes');
    await this.exec(args, { domain });
  }

  /** The disk's block job, or null when none runs. */
  async blockJobInfo(domain: string, disk: string): Promise<BlockJobInfo | null> {
    const r = await this.exec(['blockjob', '--domain', domain, '--path', disk, '--info', '--raw', '--bytes'], { domain });
    const text = r.stdout.trim();
    if (text === '' || /No current block job/i.test(text)) return null;
    // ` type=Block Pull\n bandwidth=0\n cur=123\n end=456` (bandwidth in bytes/s with --bytes)
    const kv = new Map<string, string>();
    for (const line of lines(text)) {
      const m = /^\s*([a-z_]+)=(.*)$/.exec(line);
      if (m) kv.set(m[1], m[2].trim());
    }
    const cur = numberOrNull(kv.get('cur'));
    const end = numberOrNull(kv.get('end'));
    if (cur === null || end === null) throw new OutputParseError('virsh', 'blockjob --info --raw', text);
    const typeText = kv.get('type') ?? 'unknown';
    const typeNumber = numberOrNull(typeText);
    return {
      type: typeNumber !== null ? (BLOCK_JOB_TYPES[typeNumber] ?? typeText) : (BLOCK_JOB_WORDS[typeText.toLowerCase()] ?? typeText),
      cur,
      end,
      bandwidth: numberOrNull(kv.get('bandwidth')),
    };
  }

  /** Changes the speed limit of the disk's running block job (0 = unlimited). */
  async blockJobSetBandwidth(domain: string, disk: string, bytesPerSec: number): Promise<void> {
    if (!Number.isSafeInteger(bytesPerSec) || bytesPerSec < 0) throw new HypervisorError(`bad bandwidth ${bytesPerSec}`);
    await this.exec(['blockjob', '--domain', domain, '--path', disk, '--bandwidth', String(bytesPerSec), '--bytes'], { domain });
  }

  async blockJobAbort(domain: string, disk: string): Promise<void> {
    await this.exec(['blockjob', '--domain', domain, '--path', disk, '--abort'], { domain });
  }

  // ---- monitor (tests and diagnostics) ------------------------------------------------------------

  /** An HMP command through libvirt (`virsh qemu-monitor-command --hmp`). Test and diagnostics only. */
  async qemuMonitorCommand(domain: string, hmpCommand: string): Promise<string> {
    return (await this.exec(['qemu-monitor-command', '--domain', domain, '--hmp', '--cmd', hmpCommand], { domain })).stdout;
  }

  /** A QMP command; returns its `return` value. Test and diagnostics only. */
  async qmp(domain: string, command: string, args?: Record<string, unknown>): Promise<unknown> {
    const payload = JSON.stringify(args === undefined ? { execute: command } : { execute: command, arguments: args });
    const r = await this.exec(['qemu-monitor-command', '--domain', domain, '--cmd', payload], { domain });
    let parsed: unknown;
    try {
      parsed = JSON.parse(r.stdout);
    } catch {
      throw new OutputParseError('virsh', `qemu-monitor-command ${command}`, r.stdout);
    }
    if (parsed && typeof parsed === 'object' && 'error' in parsed) {
      const err = (parsed as { error: { desc?: string } }).error;
      throw new HypervisorError(`QMP ${command} failed: ${err?.desc ?? JSON.stringify(err)}`);
    }
    return (parsed as { return?: unknown }).return;
  }
}
