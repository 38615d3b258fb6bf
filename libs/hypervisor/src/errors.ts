/**
 * Typed errors of the hypervisor layer. Every error that carries process output has been redacted
 * before it was built (see `ProcessRunner`): messages, args and stderr never contain a secret.
 */

export class HypervisorError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** Why a command did not succeed. */
export type CommandFailureReason =
  /** it ran and exited with a code that is not accepted */
  | 'exit'
  /** it ran longer than the timeout and was killed */
  | 'timeout'
  /** the AbortSignal fired and it was killed */
  | 'canceled'
  /** it was killed by a signal nobody asked for */
  | 'signal'
  /** it could not be started (program not found, not executable, bad cwd) */
  | 'spawn'
  /** it wrote more output than we buffer */
  | 'max-buffer';

export interface CommandFailure {
  program: string;
  /** Arguments with every redacted string replaced by `***`. */
  args: readonly string[];
  /** Exit code, or null when the process was killed by a signal or never started. */
  exitCode: number | null;
  /** Trimmed and redacted standard error (for a spawn failure: the system's reason). */
  stderr: string;
  /** Trimmed, redacted and shortened standard output (some tools report errors there). */
  stdout: string;
  timedOut: boolean;
  canceled: boolean;
  /** The signal that ended the process, e.g. `SIGKILL`, or null. */
  signal: string | null;
  reason: CommandFailureReason;
  durationMs: number;
}

function describe(f: CommandFailure): string {
  const cmd = [f.program, ...f.args].join(' ');
  switch (f.reason) {
    case 'timeout':
      return `${cmd} timed out after ${f.durationMs} ms${f.signal ? ` (killed with ${f.signal})` : ''}`;
    case 'canceled':
      return `${cmd} was canceled${f.signal ? ` (killed with ${f.signal})` : ''}`;
    case 'signal':
      return `${cmd} was killed by ${f.signal ?? 'a signal'}`;
    case 'spawn':
      return `${cmd} could not be started`;
    case 'max-buffer':
      return `${cmd} produced too much output`;
    default:
      return `${cmd} failed with exit code ${f.exitCode}`;
  }
}

/** A command that did not succeed. Subclasses say what the failure means (domain not found, ...). */
export class CommandFailedError extends HypervisorError implements CommandFailure {
  readonly program: string;
  readonly args: readonly string[];
  readonly exitCode: number | null;
  readonly stderr: string;
  readonly stdout: string;
  readonly timedOut: boolean;
  readonly canceled: boolean;
  readonly signal: string | null;
  readonly reason: CommandFailureReason;
  readonly durationMs: number;

  constructor(failure: CommandFailure, message?: string) {
    const detail = failure.stderr || (failure.reason === 'exit' ? failure.stdout : '');
    super(message ?? `${describe(failure)}${detail ? `: ${detail}` : ''}`);
    this.program = failure.program;
    this.args = failure.args;
    this.exitCode = failure.exitCode;
    this.stderr = failure.stderr;
    this.stdout = failure.stdout;
    this.timedOut = failure.timedOut;
    this.canceled = failure.canceled;
    this.signal = failure.signal;
    this.reason = failure.reason;
    this.durationMs = failure.durationMs;
  }

  /** The failure fields alone (to build a more specific error from this one). */
  failure(): CommandFailure {
    return {
      program: this.program,
      args: this.args,
      exitCode: this.exitCode,
      stderr: this.stderr,
      stdout: this.stdout,
      timedOut: this.timedOut,
      canceled: this.canceled,
      signal: this.signal,
      reason: this.reason,
      durationMs: this.durationMs,
    };
  }
}

/** A secret (a `redact` string) was found in a command's arguments, where every local user could read it. */
export class SecretInArgumentsError extends HypervisorError {
  constructor(readonly program: string) {
    super(`refusing to run ${program}: a secret would appear in its arguments (pass it on stdin, a file descriptor or a 0600 file)`);
  }
}

/** The process library could not be loaded (e.g. Jest without --experimental-vm-modules). */
export class ProcessRunnerUnavailableError extends HypervisorError {}

/** A tool answered something we could not understand. */
export class OutputParseError extends HypervisorError {
  constructor(
    readonly program: string,
    what: string,
    readonly output: string,
  ) {
    super(`cannot parse the output of ${program} (${what}): ${output.length > 300 ? `${output.slice(0, 300)}...` : output}`);
  }
}

export class XmlParseError extends HypervisorError {
  constructor(
    message: string,
    readonly position: number,
  ) {
    super(`invalid XML at offset ${position}: ${message}`);
  }
}

// ---- virsh ---------------------------------------------------------------------------------------

/** `virsh` failed for a reason not typed more precisely (see `args` for the command). */
export class VirshError extends CommandFailedError {}

/** libvirt does not know the domain (`error: failed to get domain 'x'`). */
export class DomainNotFoundError extends VirshError {
  constructor(
    readonly domain: string,
    failure: CommandFailure,
  ) {
    super(failure, `domain ${domain} not found: ${failure.stderr}`);
  }
}

/** libvirt does not know the checkpoint (`Domain checkpoint not found`). */
export class CheckpointNotFoundError extends VirshError {
  constructor(
    readonly domain: string,
    readonly checkpoint: string | null,
    failure: CommandFailure,
  ) {
    super(failure, `checkpoint ${checkpoint ?? '(unknown)'} of domain ${domain} not found: ${failure.stderr}`);
  }
}

/** The operation needs a running domain (`domain is not running`). */
export class DomainNotRunningError extends VirshError {
  constructor(
    readonly domain: string,
    failure: CommandFailure,
  ) {
    super(failure, `domain ${domain} is not running: ${failure.stderr}`);
  }
}

/** `Domain is already active` (start of a running domain). */
export class DomainAlreadyRunningError extends VirshError {
  constructor(
    readonly domain: string,
    failure: CommandFailure,
  ) {
    super(failure, `domain ${domain} is already running: ${failure.stderr}`);
  }
}

/** `no job is active on the domain` (domjobabort without a job). */
export class NoActiveJobError extends VirshError {
  constructor(
    readonly domain: string,
    failure: CommandFailure,
  ) {
    super(failure, `no job is active on domain ${domain}: ${failure.stderr}`);
  }
}

/** Another job (backup, migration, blockjob) holds the domain or disk (`already in use`, `job ... is running`). */
export class DomainBusyError extends VirshError {
  constructor(
    readonly domain: string,
    failure: CommandFailure,
  ) {
    super(failure, `domain ${domain} is busy with another job: ${failure.stderr}`);
  }
}

/** A domain job (backup) ended without success; `info` holds the final statistics libvirt gave. */
export class DomainJobFailedError extends HypervisorError {
  constructor(
    readonly domain: string,
    readonly info: { type: string; errorMessage: string | null },
  ) {
    super(`job on domain ${domain} ended ${info.type}${info.errorMessage ? `: ${info.errorMessage}` : ''}`);
  }
}

/** Waiting for a domain job took longer than allowed (the job itself is left alone). */
export class DomainJobTimeoutError extends HypervisorError {
  constructor(
    readonly domain: string,
    readonly timeoutMs: number,
  ) {
    super(`job on domain ${domain} still running after ${timeoutMs} ms`);
  }
}

// ---- qemu-img --------------------------------------------------------------------------------------

export class QemuImgError extends CommandFailedError {}

/** The image is held open by another process (`Failed to get "write" lock`); use force-share or stop it. */
export class ImageLockedError extends QemuImgError {
  constructor(
    readonly path: string,
    failure: CommandFailure,
  ) {
    super(failure, `image ${path} is locked by another process: ${failure.stderr}`);
  }
}

/** `Could not open '...': No such file or directory`. */
export class ImageNotFoundError extends QemuImgError {
  constructor(
    readonly path: string,
    failure: CommandFailure,
  ) {
    super(failure, `image ${path} not found: ${failure.stderr}`);
  }
}
