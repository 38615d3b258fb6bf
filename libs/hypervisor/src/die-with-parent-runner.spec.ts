import { DieWithParentRunner } from './die-with-parent-runner';
import { ProcessRunner, RunOptions } from './process-runner';

describe('DieWithParentRunner', () => {
  it('runs the program through setpriv --pdeathsig KILL and answers as the program', async () => {
    const calls: { program: string; args: readonly string[]; options?: RunOptions }[] = [];
    const inner: ProcessRunner = {
      async run(program, args, options) {
        calls.push({ program, args, options });
        return { program, args, exitCode: 0, stdout: 'out', stderr: '', durationMs: 5 };
      },
    };
    const signal = new AbortController().signal;
    const r = await new DieWithParentRunner(inner).run('qemu-img', ['convert', '-c', 'a', 'b'], { timeoutMs: 1000, signal });
    expect(calls).toEqual([{ program: 'setpriv', args: ['--pdeathsig', 'KILL', '--', 'qemu-img', 'convert', '-c', 'a', 'b'], options: { timeoutMs: 1000, signal } }]);
    expect(r).toEqual({ program: 'qemu-img', args: ['convert', '-c', 'a', 'b'], exitCode: 0, stdout: 'out', stderr: '', durationMs: 5 });
  });
});
