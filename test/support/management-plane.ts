import { createTestDatabase, TestDatabase } from './database';
import { requireBuild, runStrata, startStrata, StrataProcess, testEnv, until } from './strata-process';

export interface RunningPlane {
  db: TestDatabase;
  env: NodeJS.ProcessEnv;
  api: StrataProcess;
  endpoint: string;
  admin: { apikey: string; secretkey: string };
  createKeys(role: 'Admin' | 'User', name: string): Promise<{ apikey: string; secretkey: string; userid: string }>;
  stop(): Promise<void>;
}

/** A throw-away database, `strata migrate`, and `strata api` (the whole management plane) on a free port. */
export async function startManagementPlane(extraEnv: Record<string, string> = {}): Promise<RunningPlane> {
  requireBuild();
  const db = await createTestDatabase();
  const env = testEnv(db.url, { STRATA_API_PORT: '0', STRATA_API_HOST: '127.0.0.1', ...extraEnv });
  const migrate = await runStrata(['migrate'], env);
  if (migrate.code !== 0) throw new Error(`strata migrate failed: ${migrate.output}`);
  const api = startStrata(['api'], env);
  const endpoint = await until(async () => /listening on (\S+)/.exec(api.output())?.[1], 30_000, `strata api to listen (output: ${api.output()})`, 50);
  const createKeys = async (role: 'Admin' | 'User', name: string) => {
    const r = await runStrata(['keys', 'create', '--role', role, '--name', name, '--json'], env);
    if (r.code !== 0) throw new Error(`strata keys create failed: ${r.output}`);
    return JSON.parse(r.stdout) as { apikey: string; secretkey: string; userid: string };
  };
  const admin = await createKeys('Admin', 'admin');
  return {
    db,
    env,
    api,
    endpoint,
    admin,
    createKeys,
    async stop() {
      api.child.kill('SIGTERM');
      await api.exited;
      await db.drop();
    },
  };
}
