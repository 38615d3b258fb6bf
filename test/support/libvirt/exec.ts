import { execFile } from 'node:child_process';

/**
 * The one place the libvirt test rig spawns processes: argument arrays through `execFile`, never a shell.
 * Test-only; production code uses libs/hypervisor.
 */

/** libvirt connection used by every virsh call of the rig. */
export const LIBVIRT_URI = process.env.STRATA_TEST_LIBVIRT_URI ?? 'qemu:///system';

export interface RunResult {
  stdout: string;
  stderr: string;
  /** Exit code; -1 when the process was killed or could not be started. */
  code: number;
}

export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly args: readonly string[],
    readonly result: RunResult,
    detail?: string,
  ) {
    super(
      `${command} ${args.join(' ')} failed (exit ${result.code})${detail ? `: ${detail}` : ''}` +
        `${result.stderr.trim() ? `\nstderr: ${result.stderr.trim()}` : ''}` +
        `${result.stdout.trim() ? `\nstdout: ${result.stdout.trim()}` : ''}`,
    );
    this.name = 'CommandError';
  }
}

export interface RunOptions {
  timeoutMs?: number;
  /** Resolve with the result instead of throwing when the exit code is not 0. */
  allowFailure?: boolean;
}

export function run(command: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeout = opts.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    execFile(
      command,
      [...args],
      { timeout, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (error, stdout, stderr) => {
        let code = 0;
        let detail: string | undefined;
        if (error) {
          const e = error as NodeJS.ErrnoException & { code?: number | string; killed?: boolean; signal?: string };
          if (typeof e.code === 'number') {
            code = e.code;
          } else {
            code = -1;
            detail = e.killed ? `killed after ${timeout} ms (${e.signal ?? 'signal'})` : e.message;
          }
        }
        const result: RunResult = { stdout: String(stdout), stderr: String(stderr), code };
        if (code !== 0 && (!opts.allowFailure || code === -1)) {
          reject(new CommandError(command, args, result, detail));
        } else {
          resolve(result);
        }
      },
    );
  });
}

export function virsh(args: readonly string[], opts?: RunOptions): Promise<RunResult> {
  return run('virsh', ['-c', LIBVIRT_URI, ...args], opts);
}

/** True when virsh failed because the domain does not exist (any more). */
export function isNoDomainError(r: RunResult | CommandError): boolean {
  const text = r instanceof CommandError ? r.message : r.stderr;
  return /failed to get domain|Domain not found|no domain with matching/i.test(text);
}

/** The backing file an image names (`qemu-img info -U`, so a running VM's image can be read), or null. */
export async function backingFile(path: string): Promise<string | null> {
  const r = await run('qemu-img', ['info', '-U', '--output=json', path]);
  return (JSON.parse(r.stdout) as { 'backing-filename'?: string })['backing-filename'] ?? null;
}
