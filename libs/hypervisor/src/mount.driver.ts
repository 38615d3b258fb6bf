import { readFile } from 'node:fs/promises';
import { CommandFailedError, CommandFailure, HypervisorError } from './errors';
import { ProcessRunner, RunOptions } from './process-runner';

/** Typed `mount`/`umount` for the host agent's repository mounts: argument arrays, typed errors, no shell. */

export interface MountRequest {
  /** `-t` file system type (`nfs`, `cifs`, `ceph`, `tmpfs`); null for a bind mount. */
  fsType: string | null;
  /** What is mounted: `host:/path`, `//host/share`, `mon:/path`, a directory for a bind mount. */
  source: string;
  /** Where: an absolute directory that exists. */
  target: string;
  /** `-o` items, joined with commas into one argument. */
  options: readonly string[];
  bind?: boolean;
}

/** One line of /proc/self/mountinfo. */
export interface MountEntry {
  mountPoint: string;
  fsType: string;
  source: string;
  /** Propagation tags (`shared:1`, `master:2`); empty for a private mount. */
  propagation: string[];
}

export class MountError extends CommandFailedError {}

/** `umount` of something that is not mounted. */
export class NotMountedError extends MountError {
  constructor(
    readonly target: string,
    failure: CommandFailure,
  ) {
    super(failure, `${target} is not mounted: ${failure.stderr}`);
  }
}

/** `umount` while files on it are open (`target is busy`). */
export class MountBusyError extends MountError {
  constructor(
    readonly target: string,
    failure: CommandFailure,
  ) {
    super(failure, `${target} is busy: ${failure.stderr}`);
  }
}

// A single argv entry must never turn into an option or a second argument, whatever the caller checked.
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u0020\u007f]/;
const FS_TYPE = /^[a-z0-9][a-z0-9._-]{0,31}$/;

function checkArgument(what: string, value: string): void {
  if (value === '' || value.length > 4096 || UNSAFE.test(value) || value.startsWith('-')) {
    throw new HypervisorError(`refusing to mount: bad ${what} ${JSON.stringify(value.slice(0, 80))}`);
  }
}

/** `mount`'s arguments for a request: `-t TYPE -o OPTIONS -- SOURCE TARGET` (or `--bind -o OPTIONS -- SOURCE TARGET`). */
export function mountArgs(request: MountRequest): string[] {
  checkArgument('source', request.source);
  checkArgument('target', request.target);
  if (!request.target.startsWith('/')) throw new HypervisorError(`refusing to mount: target ${JSON.stringify(request.target)} is not an absolute path`);
  for (const o of request.options) {
    if (o.includes(',')) throw new HypervisorError('refusing to mount: a mount option holds a comma');
    checkArgument('mount option', o);
  }
  const args: string[] = [];
  if (request.bind) {
    args.push('--bind');
  } else {
    if (request.fsType === null || !FS_TYPE.test(request.fsType)) throw new HypervisorError(`refusing to mount: bad file system type ${JSON.stringify(request.fsType)}`);
    args.push('-t', request.fsType);
  }
  if (request.options.length > 0) args.push('-o', request.options.join(','));
  // `--`: nothing after it is taken as an option, whatever it looks like.
  args.push('--', request.source, request.target);
  return args;
}

/** `\040`-style octal escapes of /proc/self/mountinfo. */
function unescapeMountInfo(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parses /proc/self/mountinfo (proc(5)); lines it cannot read are skipped. */
export function parseMountInfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(' ');
    const dash = fields.indexOf('-');
    if (dash < 6 || fields.length < dash + 3) continue;
    out.push({
      mountPoint: unescapeMountInfo(fields[4]),
      propagation: fields.slice(6, dash),
      fsType: fields[dash + 1],
      source: unescapeMountInfo(fields[dash + 2]),
    });
  }
  return out;
}

export interface MountDriverOptions {
  /** Per-call timeout; a hung NFS server must not hang the agent. Default 120 s. */
  timeoutMs?: number;
  /** Where the mount table is read. Default /proc/self/mountinfo. */
  mountInfoPath?: string;
}

export class MountDriver {
  private readonly timeoutMs: number;
  private readonly mountInfoPath: string;

  constructor(
    private readonly runner: ProcessRunner,
    options: MountDriverOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 120_000;
    this.mountInfoPath = options.mountInfoPath ?? '/proc/self/mountinfo';
  }

  /**
   * Mounts. Secrets never go in `request` (they would be in argv, readable by every local user): CIFS
   * takes `credentials=<0600 file>`, CephFS `secretfile=<0600 file>`. `redact` lists strings that must
   * not appear in arguments or errors (the runner refuses to run a command holding one).
   */
  async mount(request: MountRequest, options: { redact?: readonly string[] } = {}): Promise<void> {
    await this.exec('mount', mountArgs(request), request.target, { redact: options.redact });
  }

  /** Unmounts `target`; `lazy` detaches it now and cleans up once nothing uses it any more. */
  async unmount(target: string, options: { lazy?: boolean } = {}): Promise<void> {
    checkArgument('target', target);
    await this.exec('umount', [...(options.lazy ? ['-l'] : []), '--', target], target, {});
  }

  /** The mount table of this process's namespace. */
  async mounts(): Promise<MountEntry[]> {
    return parseMountInfo(await readFile(this.mountInfoPath, 'utf8'));
  }

  /** The mount on top at `target` (the one a path lookup sees), or null when `target` is no mount point. */
  async mountAt(target: string): Promise<MountEntry | null> {
    const entries = (await this.mounts()).filter((m) => m.mountPoint === target);
    return entries.length ? entries[entries.length - 1] : null;
  }

  /** Makes an existing mount point shared, so mounts below it reach mount namespaces that copied it. */
  async makeShared(target: string): Promise<void> {
    checkArgument('target', target);
    await this.exec('mount', ['--make-shared', '--', target], target, {});
  }

  private async exec(program: 'mount' | 'umount', args: string[], target: string, options: RunOptions): Promise<void> {
    try {
      await this.runner.run(program, args, { timeoutMs: this.timeoutMs, ...options, env: { LC_ALL: 'C', LANG: 'C' } });
    } catch (e) {
      if (!(e instanceof CommandFailedError) || e.reason !== 'exit') throw e;
      const f = e.failure();
      if (program === 'umount' && /not mounted|not found/i.test(f.stderr)) throw new NotMountedError(target, f);
      if (/target is busy|device is busy/i.test(f.stderr)) throw new MountBusyError(target, f);
      throw new MountError(f);
    }
  }
}
