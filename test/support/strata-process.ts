import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const REPO_ROOT = resolve(__dirname, '../..');
/**
 * Integration tests run the compiled CLI, as operators do; `npm test` builds into dist/ first.
 * STRATA_TEST_DIST points at another build inside the checkout (so node_modules resolves), e.g. `.dist-me`
 * from `npx tsc -p tsconfig.build.json --outDir .dist-me && npx tsc-alias -p tsconfig.build.json --outDir
 * .dist-me`, so that parallel work on one checkout does not rebuild one dist/ under a running suite.
 */
export const DIST = process.env.STRATA_TEST_DIST ? resolve(process.env.STRATA_TEST_DIST) : join(REPO_ROOT, 'dist');
export const STRATA_BIN = process.env.STRATA_TEST_DIST ? join(DIST, 'apps/cli/src/main.js') : join(REPO_ROOT, 'bin/strata');

export function requireBuild(): void {
  if (!existsSync(join(DIST, 'apps/cli/src/main.js'))) {
    throw new Error(`${DIST} is missing: run \`npm run build\` first (npm test does)`);
  }
}

export function testEnv(databaseUrl: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const dir = mkdtempSync(join(tmpdir(), 'strata-test-'));
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    STRATA_DATABASE_URL: databaseUrl,
    STRATA_REDIS_URL: process.env.STRATA_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
    STRATA_MASTER_KEY_FILE: join(dir, 'master.key'),
    STRATA_QUEUE_PREFIX: `t${Math.random().toString(36).slice(2, 10)}`,
    STRATA_LOG_LEVEL: 'info',
    ...extra,
  };
}

export interface StrataProcess {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

export function startStrata(args: string[], env: NodeJS.ProcessEnv): StrataProcess {
  const child = spawn(process.execPath, [STRATA_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, output: () => out, exited };
}

export async function runStrata(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000): Promise<{ code: number | null; output: string; stdout: string }> {
  const child = spawn(process.execPath, [STRATA_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let stdout = '';
  child.stdout.on('data', (d) => {
    out += d;
    stdout += d;
  });
  child.stderr.on('data', (d) => (out += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  clearTimeout(timer);
  return { code, output: out, stdout };
}

export async function until<T>(probe: () => Promise<T | undefined | null | false>, timeoutMs: number, what: string, intervalMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** SIGTERMs each process in turn and waits for it to exit (a suite's afterAll with several agents). */
export async function stopAll(processes: Iterable<StrataProcess>): Promise<void> {
  for (const p of processes) {
    p.child.kill('SIGTERM');
    await p.exited;
  }
}
