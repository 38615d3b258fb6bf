import { CONFIG_VARIABLES, ConfigError, StrataConfig, loadConfig, redactUrl } from './config';

/** Runs loadConfig and returns the ConfigError it must throw. */
function refusal(env: NodeJS.ProcessEnv): ConfigError {
  try {
    loadConfig(env);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error(`accepted ${JSON.stringify(env)}`);
}

function expectRefused(env: NodeJS.ProcessEnv, variable: string): ConfigError {
  const error = refusal(env);
  expect(error.name).toBe('ConfigError');
  expect(error.message).toContain(variable);
  expect(error.message).not.toMatch(/[\r\n]/);
  return error;
}

describe('loadConfig', () => {
  const documented: StrataConfig = {
    databaseUrl: 'postgres://postgres@127.0.0.1:5432/strata',
    redisUrl: 'redis://127.0.0.1:6379',
    eventStore: 'postgres',
    esdbUrl: null,
    apiHost: '0.0.0.0',
    apiPort: 8080,
    masterKeyFile: '/var/lib/strata/master.key',
    queuePrefix: 'strata',
    logLevel: 'info',
  };

  it('answers the documented defaults for an empty environment', () => expect(loadConfig({})).toEqual(documented));

  it('treats an empty variable as unset', () => {
    const empty = Object.fromEntries(CONFIG_VARIABLES.map((v) => [v.name, '']));
    expect(loadConfig(empty)).toEqual(documented);
  });

  it('documents every variable it reads, with the default it uses', () => {
    expect(CONFIG_VARIABLES.map((v) => v.name)).toEqual([
      'STRATA_DATABASE_URL',
      'STRATA_REDIS_URL',
      'STRATA_EVENT_STORE',
      'STRATA_ESDB_URL',
      'STRATA_API_HOST',
      'STRATA_API_PORT',
      'STRATA_MASTER_KEY_FILE',
      'STRATA_QUEUE_PREFIX',
      'STRATA_LOG_LEVEL',
    ]);
    for (const v of CONFIG_VARIABLES) expect(v.description.length).toBeGreaterThan(0);
  });

  it('reads every variable', () => {
    expect(
      loadConfig({
        STRATA_DATABASE_URL: 'postgresql://strata:s3cret@db.example:6432/strata_prod',
        STRATA_REDIS_URL: 'rediss://:pw@redis.example:6380/2',
        STRATA_EVENT_STORE: 'esdb',
        STRATA_ESDB_URL: 'esdb+discover://admin:changeit@esdb.example:2113?tls=false',
        STRATA_API_HOST: '127.0.0.1',
        STRATA_API_PORT: '65535',
        STRATA_MASTER_KEY_FILE: '/etc/strata/master.key',
        STRATA_QUEUE_PREFIX: 'strata_test.1',
        STRATA_LOG_LEVEL: 'debug',
      }),
    ).toEqual({
      databaseUrl: 'postgresql://strata:s3cret@db.example:6432/strata_prod',
      redisUrl: 'rediss://:pw@redis.example:6380/2',
      eventStore: 'esdb',
      esdbUrl: 'esdb+discover://admin:changeit@esdb.example:2113?tls=false',
      apiHost: '127.0.0.1',
      apiPort: 65535,
      masterKeyFile: '/etc/strata/master.key',
      queuePrefix: 'strata_test.1',
      logLevel: 'debug',
    });
  });

  it('takes esdb:// as well as esdb+discover://', () =>
    expect(loadConfig({ STRATA_EVENT_STORE: 'esdb', STRATA_ESDB_URL: 'esdb://localhost:2113?tls=false' }).esdbUrl).toBe('esdb://localhost:2113?tls=false'));

  it('reads process.env by default', () => {
    const saved = process.env.STRATA_QUEUE_PREFIX;
    process.env.STRATA_QUEUE_PREFIX = 'from_process_env';
    try {
      expect(loadConfig().queuePrefix).toBe('from_process_env');
    } finally {
      if (saved === undefined) delete process.env.STRATA_QUEUE_PREFIX;
      else process.env.STRATA_QUEUE_PREFIX = saved;
    }
  });

  describe('refuses a bad value with one line naming the variable', () => {
    it.each([
      ['STRATA_DATABASE_URL', 'not a url'],
      ['STRATA_DATABASE_URL', '127.0.0.1:5432/strata'],
      ['STRATA_DATABASE_URL', 'mysql://root@127.0.0.1/strata'],
      ['STRATA_DATABASE_URL', 'postgres://db:99999/strata'],
      ['STRATA_REDIS_URL', '127.0.0.1:6379'],
      ['STRATA_REDIS_URL', 'http://127.0.0.1:6379'],
      ['STRATA_REDIS_URL', 'redis://[::1:6379'],
      ['STRATA_API_PORT', '70000'],
      ['STRATA_API_PORT', '65536'],
      ['STRATA_API_PORT', 'abc'],
      ['STRATA_API_PORT', '-1'],
      ['STRATA_API_PORT', '80.5'],
      ['STRATA_API_PORT', ' 8080'],
      ['STRATA_EVENT_STORE', 'mysql'],
      ['STRATA_EVENT_STORE', 'Postgres'],
      ['STRATA_MASTER_KEY_FILE', 'master.key'],
      ['STRATA_MASTER_KEY_FILE', './var/lib/strata/master.key'],
      ['STRATA_MASTER_KEY_FILE', '~/master.key'],
      ['STRATA_QUEUE_PREFIX', 'strata:prod'],
      ['STRATA_QUEUE_PREFIX', 'strata prod'],
      ['STRATA_QUEUE_PREFIX', 'strata-prod'],
      ['STRATA_QUEUE_PREFIX', 'x'.repeat(65)],
      ['STRATA_QUEUE_PREFIX', 'strata\nprod'],
      ['STRATA_LOG_LEVEL', 'verbose'],
      ['STRATA_LOG_LEVEL', 'INFO'],
      ['STRATA_LOG_LEVEL', 'info\nwarn'],
    ])('%s=%j', (variable, value) => {
      expectRefused({ [variable]: value }, variable);
    });

    it('STRATA_ESDB_URL with a wrong protocol', () => void expectRefused({ STRATA_EVENT_STORE: 'esdb', STRATA_ESDB_URL: 'http://esdb.example:2113' }, 'STRATA_ESDB_URL'));

    it('STRATA_ESDB_URL without a scheme, even with the postgres event store', () => void expectRefused({ STRATA_ESDB_URL: 'esdb.example:2113' }, 'STRATA_ESDB_URL'));

    it('STRATA_EVENT_STORE=esdb without STRATA_ESDB_URL', () => {
      const error = expectRefused({ STRATA_EVENT_STORE: 'esdb' }, 'STRATA_ESDB_URL');
      expect(error.message).toContain('STRATA_EVENT_STORE=esdb');
    });

    it('says what it got and what it takes', () => {
      const error = expectRefused({ STRATA_API_PORT: '70000' }, 'STRATA_API_PORT');
      expect(error.message).toContain('0-65535');
      expect(error.message).toContain('70000');
      expect(expectRefused({ STRATA_EVENT_STORE: 'mysql' }, 'STRATA_EVENT_STORE').message).toMatch(/postgres, esdb.*mysql/);
      expect(expectRefused({ STRATA_REDIS_URL: 'http://x' }, 'STRATA_REDIS_URL').message).toMatch(/redis or rediss.*http/);
    });
  });

  describe('never prints a database password', () => {
    const password = 'Sup3rS3cret';
    it.each([
      `postgres://strata:${password}@db.example:badport/strata`,
      `postgres://strata:${password}@db.example:99999/strata`,
      `postgres://strata:${password}@[::1/strata`,
      `mysql://strata:${password}@db.example/strata`,
      `postgres://strata:pa@${password}@db.example:x/strata`,
      `postgres://strata:${password}@x@db.example:x/strata`,
      `postgres://strata:pa ${password}@db.example:x/strata`,
      `postgres://strata:pa/${password}@db.example:x/strata`,
      `postgres://:${password}@db.example:x/strata`,
    ])('%s', (url) => {
      const error = expectRefused({ STRATA_DATABASE_URL: url }, 'STRATA_DATABASE_URL');
      expect(error.message).not.toContain(password);
      expect(error.message).not.toContain(password.slice(2));
    });

    it('nor a Redis or EventStoreDB one', () => {
      expect(expectRefused({ STRATA_REDIS_URL: `redis://:${password}@redis:x` }, 'STRATA_REDIS_URL').message).not.toContain(password);
      expect(expectRefused({ STRATA_EVENT_STORE: 'esdb', STRATA_ESDB_URL: `esdb://admin:${password}@esdb:x` }, 'STRATA_ESDB_URL').message).not.toContain(password);
    });
  });
});

describe('redactUrl', () => {
  it('hides the password and keeps the rest', () => expect(redactUrl('postgres://strata:s3cret@db:5432/strata')).toBe('postgres://strata:****@db:5432/strata'));

  it('hides a password that holds "@"', () => expect(redactUrl('postgres://strata:p@ss@w0rd@db:5432/strata')).toBe('postgres://strata:****@db:5432/strata'));

  it('hides a password with an empty user', () => expect(redactUrl('redis://:s3cret@redis:6379')).toBe('redis://:****@redis:6379'));

  it('leaves a URL without a password alone', () => {
    expect(redactUrl('postgres://postgres@127.0.0.1:5432/strata')).toBe('postgres://postgres@127.0.0.1:5432/strata');
    expect(redactUrl('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
  });

  it('hides every URL of a message and keeps the words around them', () =>
    expect(redactUrl('connect postgres://a:one@db1/x failed, then postgres://b:two@db2/x failed; mail ops@example.com')).toBe(
      'connect postgres://a:****@db1/x failed, then postgres://b:****@db2/x failed; mail ops@example.com',
    ));
});
