import { spawn } from 'node:child_process';

/** Debian's python3-cs lives in the system Python, not in whatever python3 is first on PATH. */
export const SYSTEM_PYTHON = process.env.STRATA_TEST_PYTHON ?? '/usr/bin/python3';

export interface CsResult {
  code: number | null;
  stdout: string;
  stderr: string;
  json: Record<string, unknown> | null;
}

/** Runs `python3 -m cs COMMAND key=value...` with the endpoint and keys in the environment, as operators do. */
export async function cs(endpoint: string, apiKey: string, secretKey: string, command: string, params: Record<string, string> = {}, flags: string[] = []): Promise<CsResult> {
  const args = ['-m', 'cs', '--quiet', ...flags, command, ...Object.entries(params).map(([k, v]) => `${k}=${v}`)];
  const child = spawn(SYSTEM_PYTHON, args, {
    env: { PATH: process.env.PATH, HOME: '/nonexistent', CLOUDSTACK_ENDPOINT: endpoint, CLOUDSTACK_KEY: apiKey, CLOUDSTACK_SECRET: secretKey, CLOUDSTACK_TIMEOUT: '30' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  let json: Record<string, unknown> | null = null;
  try {
    json = JSON.parse(stdout) as Record<string, unknown>;
  } catch {
    json = null;
  }
  return { code, stdout, stderr, json };
}
