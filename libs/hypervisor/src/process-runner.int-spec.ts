import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { CommandFailedError, SecretInArgumentsError } from './errors';
import { ExecaProcessRunner, loadExeca, redactText, secretFdPath, withTempFile, withTempFiles } from './process-runner';

/** Real processes through execa 9 (ESM, loaded with a real dynamic import). */
describe('ExecaProcessRunner', () => {
  const runner = new ExecaProcessRunner();

  it('loads execa with a real dynamic import', async () => {
    const m = await loadExeca();
    expect(typeof m.execa).toBe('function');
  });

  it('passes arguments as they are, never through a shell', async () => {
    const r = await runner.run('printf', ['%s|', '$(id)', 'a;b', '`x`', "'q'", '*']);
    expect(r.stdout).toBe("$(id)|a;b|`x`|'q'|*|");
    expect(r.exitCode).toBe(0);
  });

  it('writes input to stdin and adds environment variables', async () => {
    const r = await runner.run('sh', ['-c', 'cat; printf " %s" "$STRATA_X"'], { input: 'from stdin', env: { STRATA_X: 'from env' } });
    expect(r.stdout).toBe('from stdin from env');
  });

  it('turns a non-zero exit into CommandFailedError with trimmed stderr', async () => {
    const e = await runner.run('sh', ['-c', 'echo "  bad thing  " >&2; exit 3']).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(CommandFailedError);
    const f = e as CommandFailedError;
    expect(f.program).toBe('sh');
    expect(f.args).toEqual(['-c', 'echo "  bad thing  " >&2; exit 3']);
    expect(f.exitCode).toBe(3);
    expect(f.stderr).toBe('bad thing');
    expect(f.timedOut).toBe(false);
    expect(f.reason).toBe('exit');
    expect(f.message).toContain('exit code 3');
  });

  it('accepts listed non-zero exit codes', async () => {
    const r = await runner.run('sh', ['-c', 'exit 1'], { acceptExitCodes: [1] });
    expect(r.exitCode).toBe(1);
  });

  it('reports a program that cannot be started', async () => {
    const e = (await runner.run('strata-no-such-program', ['x']).catch((x: unknown) => x)) as CommandFailedError;
    expect(e).toBeInstanceOf(CommandFailedError);
    expect(e.reason).toBe('spawn');
    expect(e.exitCode).toBeNull();
    expect(e.stderr).toContain('ENOENT');
  });

  it('redacts secrets from errors and logs', async () => {
    const secret = 'hunter2-very-secret';
    const logged: string[] = [];
    const r = new ExecaProcessRunner({ logger: { debug: (m) => logged.push(m) } });
    const e = (await r
      .run('sh', ['-c', 'read s; echo "auth failed for $s" >&2; echo "out $s"; exit 5'], { input: `${secret}\n`, redact: [secret] })
      .catch((x: unknown) => x)) as CommandFailedError;
    expect(e).toBeInstanceOf(CommandFailedError);
    expect(e.stderr).toBe('auth failed for ***');
    expect(e.stdout).toBe('out ***');
    for (const text of [e.message, e.stack ?? '', JSON.stringify(e), ...logged]) expect(text).not.toContain(secret);
  });

  it('refuses to put a secret in the arguments', async () => {
    await expect(runner.run('echo', ['--password=abc123secret'], { redact: ['abc123secret'] })).rejects.toBeInstanceOf(SecretInArgumentsError);
    const e = (await runner.run('echo', ['abc123secret'], { redact: ['abc123secret'] }).catch((x: unknown) => x)) as Error;
    expect(e.message).not.toContain('abc123secret');
  });

  it('hands secrets over as file descriptors that no other process can open by name', async () => {
    const secret = 'fd-secret-Zq9';
    const before = readdirSync('/dev/shm').filter((n) => n.startsWith('.strata-secret-'));
    // the program reads the secret twice from /dev/fd/3 and shows its own command line
    const r = await runner.run(
      'sh',
      ['-c', `cat ${secretFdPath(0)}; echo; cat ${secretFdPath(0)}; echo; cat ${secretFdPath(1)}; echo; tr '\\0' ' ' < /proc/$$/cmdline`],
      { secretFds: [secret, 'second'] },
    );
    const [a, b, c, cmdline] = r.stdout.split('\n');
    expect([a, b, c]).toEqual([secret, secret, 'second']);
    expect(cmdline).not.toContain(secret);
    expect(readdirSync('/dev/shm').filter((n) => n.startsWith('.strata-secret-'))).toEqual(before);
  });

  it('kills a command that runs past its timeout', async () => {
    const t0 = Date.now();
    const e = (await runner.run('sleep', ['30'], { timeoutMs: 200 }).catch((x: unknown) => x)) as CommandFailedError;
    expect(e).toBeInstanceOf(CommandFailedError);
    expect(e.timedOut).toBe(true);
    expect(e.reason).toBe('timeout');
    expect(e.exitCode).toBeNull();
    expect(e.signal).toBe('SIGTERM');
    expect(Date.now() - t0).toBeLessThan(3_000);
  });

  it('sends SIGKILL after the grace period when SIGTERM is ignored', async () => {
    const t0 = Date.now();
    const e = (await runner
      .run('sh', ['-c', 'trap "" TERM; while :; do sleep 0.05; done'], { timeoutMs: 200, killGraceMs: 300 })
      .catch((x: unknown) => x)) as CommandFailedError;
    expect(e.timedOut).toBe(true);
    expect(e.signal).toBe('SIGKILL');
    // the shell's last `sleep` child holds stdout for up to 50 ms more; the runner does not wait for grandchildren forever
    expect(Date.now() - t0).toBeLessThan(4_000);
  });

  it('does not hang on a grandchild that keeps the output pipes open', async () => {
    const t0 = Date.now();
    const e = (await runner
      .run('sh', ['-c', 'trap "" TERM; sleep 4 & wait'], { timeoutMs: 200, killGraceMs: 200 })
      .catch((x: unknown) => x)) as CommandFailedError;
    expect(e).toBeInstanceOf(CommandFailedError);
    expect(e.timedOut).toBe(true);
    expect(Date.now() - t0).toBeLessThan(5_000);
  });

  it('cancels a command through an AbortSignal', async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 150);
    const e = (await runner.run('sleep', ['30'], { signal: ac.signal }).catch((x: unknown) => x)) as CommandFailedError;
    expect(e).toBeInstanceOf(CommandFailedError);
    expect(e.canceled).toBe(true);
    expect(e.reason).toBe('canceled');
  });

  it('writes temp files 0600 in a 0700 directory and removes them, also on failure', async () => {
    let seen = '';
    await withTempFile('<xml/>', async (p) => {
      seen = p;
      expect(statSync(p).mode & 0o777).toBe(0o600);
      expect(statSync(dirname(p)).mode & 0o777).toBe(0o700);
      const r = await runner.run('cat', [p]);
      expect(r.stdout).toBe('<xml/>');
    });
    expect(existsSync(dirname(seen))).toBe(false);
    await expect(
      withTempFiles([{ name: 'a.xml', content: 'a' }, { name: 'b.xml', content: 'b' }], async (paths) => {
        seen = paths[1];
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(existsSync(dirname(seen))).toBe(false);
  });

  it('redactText replaces longest secrets first', () => {
    expect(redactText('pass=abcdef abc', ['abc', 'abcdef'])).toBe('pass=*** ***');
    expect(redactText('nothing', ['', undefined, null])).toBe('nothing');
  });
});
