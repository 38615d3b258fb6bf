import { ProcessRunner, RunOptions, RunResult } from './process-runner';

/**
 * Runs every program through `setpriv --pdeathsig KILL --` (util-linux), so the kernel kills it the
 * moment the process that started it dies. For long jobs of an agent (compression): an agent killed with
 * SIGKILL leaves no orphaned `qemu-img convert` behind that would keep writing a side file, and keep
 * running uncounted while its job is handed out again. setpriv execs the program, so its pid, its
 * cmdline, exit code and output are the program's own.
 */
export class DieWithParentRunner implements ProcessRunner {
  constructor(
    private readonly inner: ProcessRunner,
    private readonly setpriv = 'setpriv',
  ) {}

  run(program: string, args: readonly string[], options?: RunOptions): Promise<RunResult> {
    return this.inner.run(this.setpriv, ['--pdeathsig', 'KILL', '--', program, ...args], options).then(
      (r) => ({ ...r, program, args: r.args.slice(4) }),
    );
  }
}
