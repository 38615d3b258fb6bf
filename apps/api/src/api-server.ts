import { INestApplication } from '@nestjs/common';
import { createLogger, StrataConfig } from '@strata/config';
import { ProjectionWaiter } from '@strata/read-models';
import { SecretBox, CommandHandler, newId } from '@strata/application';
import { EventStore } from '@strata/event-store';
import { DataSource } from 'typeorm';
import { catalogCommands } from './commands';
import { createApiHttpApp } from './http';
import { ReadModelApiUserDirectory } from './users/api-user-directory';

export interface ApiServerDeps {
  config: StrataConfig;
  store: EventStore;
  db: DataSource;
  handler: CommandHandler;
  secrets: SecretBox;
}

export interface ApiServer {
  app: INestApplication;
  url: string;
  stop(): Promise<void>;
}

/** The HTTP API on STRATA_API_HOST:STRATA_API_PORT (port 0 picks a free one, for tests). */
export async function startApiServer(deps: ApiServerDeps): Promise<ApiServer> {
  const logger = createLogger('api', deps.config.logLevel);
  const waiter = new ProjectionWaiter(deps.config.databaseUrl, deps.store);
  await waiter.start();
  const commands = catalogCommands({ store: deps.store, handler: deps.handler, db: deps.db, waiter, secrets: deps.secrets, newId });
  const app = await createApiHttpApp(commands, new ReadModelApiUserDirectory(deps.db, deps.secrets), {
    logger: { log: logger.log, error: logger.error, warn: logger.warn, debug: logger.debug, verbose: logger.debug },
  });
  await app.listen(deps.config.apiPort, deps.config.apiHost);
  const address = app.getHttpServer().address() as { port: number };
  const host = deps.config.apiHost === '0.0.0.0' ? '127.0.0.1' : deps.config.apiHost;
  const url = `http://${host}:${address.port}/client/api`;
  logger.log(`listening on ${url}`);
  return {
    app,
    url,
    async stop() {
      await app.close();
      await waiter.stop();
    },
  };
}
