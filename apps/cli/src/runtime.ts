import { DataSource } from 'typeorm';
import { CommandHandler, newId, SecretBox } from '@strata/application';
import { Logger, StrataConfig } from '@strata/config';
import { createEventStore, EventStore } from '@strata/event-store';
import { createDataSource } from '@strata/read-models';

/** The connections every management-plane process opens, closed in reverse order. */
export interface Runtime {
  config: StrataConfig;
  store: EventStore;
  db: DataSource;
  handler: CommandHandler;
  close(): Promise<void>;
}

export async function openRuntime(config: StrataConfig, applicationName: string): Promise<Runtime> {
  const db = createDataSource(config.databaseUrl, { applicationName });
  await db.initialize();
  const store = createEventStore(config);
  return {
    config,
    store,
    db,
    handler: new CommandHandler(store, newId),
    async close() {
      await store.close();
      await db.destroy();
    },
  };
}

export class MasterKeyMismatchError extends Error {
  override readonly name = 'MasterKeyMismatchError';
}

/**
 * Loads the master key and checks it is the one this database's secrets were encrypted with (the first
 * process to use a database records its fingerprint).
 */
export async function openSecrets(config: StrataConfig, db: DataSource): Promise<SecretBox> {
  const secrets = SecretBox.fromFile(config.masterKeyFile);
  await db.query(`INSERT INTO master_key_fingerprint (id, fingerprint) VALUES (1, $1) ON CONFLICT (id) DO NOTHING`, [secrets.fingerprint]);
  const rows: { fingerprint: string }[] = await db.query(`SELECT fingerprint FROM master_key_fingerprint WHERE id = 1`);
  if (rows[0].fingerprint !== secrets.fingerprint) {
    throw new MasterKeyMismatchError(`the master key in ${config.masterKeyFile} is not the key this database's secrets were encrypted with`);
  }
  return secrets;
}

/** Runs `stop` on SIGTERM/SIGINT once, then exits. */
export function onShutdown(logger: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.log(`${signal} received, shutting down`);
    stop()
      .then(() => process.exit(0))
      .catch((error: Error) => {
        logger.error(`shutdown failed: ${error.message}`);
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => handler('SIGTERM'));
  process.on('SIGINT', () => handler('SIGINT'));
}
