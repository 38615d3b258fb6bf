import { accessSync, closeSync, constants as fsConstants, openSync, unlinkSync, writeSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CommandFailedError,
  CommandFailure,
  CommandFailureReason,
  HypervisorError,
  ProcessRunnerUnavailableError,
  SecretInArgumentsError,
} from './errors';

/**
 * The only place in strata that spawns processes. Programs get an argument array, never a shell
 * string; secrets go through stdin, an inherited file descriptor or a 0600 file, never argv (argv is
 * world-readable in /proc and `ps`).
 */

export interface RunOptions {
  /** Kill the process after this many milliseconds (SIGTERM, then SIGKILL after `killGraceMs`). */
  timeoutMs?: number;
  /** Delay between SIGTERM and SIGKILL on timeout or cancellation. Default 5000. */
  killGraceMs?: number;
  /** Cancels the command (SIGTERM, then SIGKILL after `killGraceMs`). */
  signal?: AbortSignal;
  /** Written to the process's stdin (then closed). Without it stdin is empty. */
  input?: string | Uint8Array;
  /**
   * Secrets handed over as inherited file descriptors 3, 4, ... in order: the program reads them from
   * `/dev/fd/3` (see `secretFdPath`). Backed by an already-unlinked 0600 file (in /dev/shm when
   * available), so no other process can open it by name. Their values are redacted automatically.
   */
  secretFds?: readonly (string | Uint8Array)[];
  /** Added to (or overriding) the environment inherited from this process. */
  env?: Readonly<Record<string, string>>;
  cwd?: string;
  /**
   * Strings that must never appear in errors or logs (replaced by `***`). A command whose arguments
   * contain one is refused with `SecretInArgumentsError` before anything is spawned.
   */
  redact?: readonly (string | undefined | null)[];
  /** Non-zero exit codes that are answers rather than failures (e.g. 1 for `qemu-img compare`). */
  acceptExitCodes?: readonly number[];
  /** Largest stdout/stderr kept, in bytes. Default 64 MiB. */
  maxBufferBytes?: number;
}

export interface RunResult {
  program: string;
  /** Redacted arguments. */
  args: readonly string[];
  exitCode: number;
  /** Standard output, without its final newline. Not redacted: it is the answer the caller asked for. */
  stdout: string;
  stderr: string;
  durationMs: number;
}

/** What drivers depend on: a fake is enough in unit tests. */
export interface ProcessRunner {
  run(program: string, args: readonly string[], options?: RunOptions): Promise<RunResult>;
}

/** The subset of `Logger` (from @strata/config) the runner writes to. */
export interface RunnerLogger {
  debug(message: string): void;
}

/** Path under which a program finds the n-th entry of `secretFds` (0-based). */
export function secretFdPath(index: number): string {
  return `/dev/fd/${3 + index}`;
}

export const REDACTED = '***';

/** Replaces every occurrence of every secret by `***` (longest first, so overlapping secrets go whole). */
export function redactText(text: string, secrets: readonly (string | undefined | null)[]): string {
  const list = secrets.filter((s): s is string => typeof s === 'string' && s.length > 0).sort((a, b) => b.length - a.length);
  let out = text;
  for (const s of list) out = out.split(s).join(REDACTED);
  return out;
}

// ---- loading execa --------------------------------------------------------------------------------

type ExecaModule = typeof import('execa');

/**
 * A real dynamic `import()`. TypeScript compiles `import()` to `require()` under `module: commonjs`,
 * and execa 9 is ESM-only, so the expression is built at run time where tsc cannot rewrite it.
 * Plain Node (the built app) supports it as is. Inside Jest, `import()` goes through Jest's module
 * registry, which needs Node started with `--experimental-vm-modules`.
 */
const dynamicImport = new Function(
  'specifier',
  // The unique comment defeats V8's compilation cache: identical source compiled again (by the next Jest
  // test file in the same worker) would reuse the first one's import callback, bound to a torn-down
  // test environment ("Test environment has been torn down").
  `return import(specifier); // ${process.pid}-${Date.now()}-${randomBytes(6).toString('hex')}`,
) as (specifier: string) => Promise<unknown>;

let execaModule: Promise<ExecaModule> | undefined;

export function loadExeca(): Promise<ExecaModule> {
  execaModule ??= (dynamicImport('execa') as Promise<ExecaModule>).catch((e: unknown) => {
    execaModule = undefined;
    const message = e instanceof Error ? e.message : String(e);
    if (/experimental-vm-modules|dynamic import callback/i.test(message)) {
      throw new ProcessRunnerUnavailableError(
        'execa (ESM-only) cannot be imported: this Jest run lacks NODE_OPTIONS=--experimental-vm-modules ' +
          '(see libs/hypervisor/README.md); unit tests should pass a fake ProcessRunner instead',
      );
    }
    throw new ProcessRunnerUnavailableError(`cannot load execa: ${message}`);
  });
  return execaModule;
}

// ---- secret files ---------------------------------------------------------------------------------

function secretDir(): string {
  try {
    accessSync('/dev/shm', fsConstants.W_OK);
    return '/dev/shm';
  } catch {
    return tmpdir();
  }
}

/** Opens a read-only descriptor on an already-deleted 0600 file holding `content`. */
function anonymousSecretFd(content: string | Uint8Array): number {
  const path = join(secretDir(), `.strata-secret-${process.pid}-${randomBytes(12).toString('hex')}`);
  // O_EXCL + 0600: nobody else can have created it or read it.
  const w = openSync(path, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
  try {
    const buf = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    let off = 0;
    while (off < buf.length) off += writeSync(w, buf, off, buf.length - off);
  } finally {
    closeSync(w);
  }
  try {
    return openSync(path, fsConstants.O_RDONLY);
  } finally {
    unlinkSync(path);
  }
}

/**
 * Runs `fn` with the path of a 0600 file (in a 0700 directory) that holds `content`, and removes it
 * afterwards whatever happens. For secrets (`--object secret,file=`, `credentials=`) and for XML
 * documents that tools read from files.
 */
export async function withTempFile<T>(content: string | Uint8Array, fn: (path: string) => Promise<T>, options: { name?: string; dir?: string } = {}): Promise<T> {
  return withTempFiles([{ name: options.name ?? 'data', content }], ([p]) => fn(p), options);
}

/** Several files in one private temp directory (see `withTempFile`). */
export async function withTempFiles<T>(
  files: readonly { name: string; content: string | Uint8Array }[],
  fn: (paths: string[]) => Promise<T>,
  options: { dir?: string } = {},
): Promise<T> {
  for (const f of files) {
    if (!/^[A-Za-z0-9._-]+$/.test(f.name) || f.name.startsWith('.')) throw new HypervisorError(`bad temp file name ${f.name}`);
  }
  const dir = await mkdtemp(join(options.dir ?? tmpdir(), 'strata-tmp-'));
  try {
    const paths: string[] = [];
    for (const f of files) {
      const p = join(dir, f.name);
      await writeFile(p, f.content, { mode: 0o600, flag: 'wx' });
      paths.push(p);
    }
    return await fn(paths);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// ---- the runner -----------------------------------------------------------------------------------

const DEFAULT_KILL_GRACE_MS = 5_000;
/** After SIGKILL, how long we wait for grandchildren to release stdout/stderr before giving up on them. */
const STREAM_ABANDON_MS = 2_000;
const STDOUT_IN_ERRORS = 4_000;

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}...` : text;
}

export interface ExecaProcessRunnerOptions {
  logger?: RunnerLogger;
  /** Environment added to every command (e.g. `{ LC_ALL: 'C' }`), before per-call `env`. */
  env?: Readonly<Record<string, string>>;
}

export class ExecaProcessRunner implements ProcessRunner {
  constructor(private readonly options: ExecaProcessRunnerOptions = {}) {}

  async run(program: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const secretValues = (options.secretFds ?? []).map((s) => (typeof s === 'string' ? s : Buffer.from(s).toString('utf8')));
    const redact = [...(options.redact ?? []), ...secretValues];
    const shownArgs = args.map((a) => redactText(a, redact));
    if (shownArgs.some((a, i) => a !== args[i]) || redactText(program, redact) !== program) {
      throw new SecretInArgumentsError(redactText(program, redact));
    }
    const { execa } = await loadExeca();
    const shown = `${program} ${shownArgs.join(' ')}`;
    this.options.logger?.debug(`run: ${shown}`);

    const grace = options.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
    const fds: number[] = [];
    let abandon: NodeJS.Timeout | undefined;
    try {
      for (const s of options.secretFds ?? []) fds.push(anonymousSecretFd(s));
      const subprocess = execa(program, [...args], {
        reject: false,
        shell: false,
        env: { ...this.options.env, ...options.env },
        extendEnv: true,
        cwd: options.cwd,
        input: options.input ?? '',
        // Inherited descriptors: execa passes any integer fd to spawn, its types only list 0-9.
        stdio: ['pipe', 'pipe', 'pipe', ...(fds as unknown as 3[])],
        timeout: options.timeoutMs && options.timeoutMs > 0 ? options.timeoutMs : undefined,
        cancelSignal: options.signal,
        forceKillAfterDelay: grace,
        maxBuffer: options.maxBufferBytes ?? 64 * 1024 * 1024,
        encoding: 'utf8',
        stripFinalNewline: true,
      });
      // A killed program's own children can keep stdout/stderr open forever: stop waiting for them.
      const giveUpOnStreams = () => {
        abandon ??= setTimeout(() => {
          subprocess.stdout?.destroy();
          subprocess.stderr?.destroy();
        }, grace + STREAM_ABANDON_MS);
      };
      if (options.timeoutMs && options.timeoutMs > 0) {
        const t = setTimeout(giveUpOnStreams, options.timeoutMs);
        void subprocess.finally(() => clearTimeout(t)).catch(() => undefined);
      }
      options.signal?.addEventListener('abort', giveUpOnStreams, { once: true });
      const r = await subprocess;
      options.signal?.removeEventListener('abort', giveUpOnStreams);

      const stdout = typeof r.stdout === 'string' ? r.stdout : '';
      const stderr = typeof r.stderr === 'string' ? r.stderr : '';
      const durationMs = Math.round(r.durationMs);
      const accepted = r.exitCode !== undefined && (r.exitCode === 0 || (options.acceptExitCodes ?? []).includes(r.exitCode));
      if (accepted && !r.timedOut && !r.isCanceled && !r.isMaxBuffer) {
        this.options.logger?.debug(`done: ${shown} (exit ${r.exitCode}, ${durationMs} ms)`);
        return { program, args: shownArgs, exitCode: r.exitCode as number, stdout, stderr, durationMs };
      }
      let reason: CommandFailureReason;
      if (r.timedOut) reason = 'timeout';
      else if (r.isCanceled) reason = 'canceled';
      else if (r.isMaxBuffer) reason = 'max-buffer';
      else if (r.exitCode === undefined && r.signal) reason = 'signal';
      else if (r.exitCode === undefined) reason = 'spawn';
      else reason = 'exit';
      const failure: CommandFailure = {
        program,
        args: shownArgs,
        exitCode: r.exitCode ?? null,
        // For a spawn failure there is no stderr: the system's reason (e.g. `spawn virsh ENOENT`) stands in.
        stderr: redactText((reason === 'spawn' ? r.originalMessage ?? r.code ?? '' : stderr).trim(), redact),
        stdout: redactText(clip(stdout.trim(), STDOUT_IN_ERRORS), redact),
        timedOut: r.timedOut,
        canceled: r.isCanceled,
        signal: r.signal ?? null,
        reason,
        durationMs,
      };
      const error = new CommandFailedError(failure);
      this.options.logger?.debug(`failed: ${error.message}`);
      throw error;
    } finally {
      if (abandon) clearTimeout(abandon);
      for (const fd of fds) closeSync(fd);
    }
  }
}
