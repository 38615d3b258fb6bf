import { type DynamicModule, type INestApplication, type InjectionToken, type LoggerService, type LogLevel, Module, type ModuleMetadata, type Provider } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { Express } from 'express';
import type { Server } from 'node:http';
import { ApiController } from './api.controller';
import { API_COMMANDS, API_USER_DIRECTORY } from './api-http.tokens';
import { ApiRequestHandler } from './api-request-handler';
import type { ApiUserDirectory, CommandDefinition } from './command-definition';
import { CommandRegistry } from './command-registry';
import { hardenApiHttpServer } from './http-server-hardening';

/** A value, or a factory when it needs injected services (repositories, the event store, ...). */
export type ValueOrFactory<T> =
  | { useValue: T }
  | { useFactory: (...deps: never[]) => T | Promise<T>; inject?: InjectionToken[] };

export interface ApiHttpModuleOptions {
  /** modules exporting what the factories inject */
  imports?: ModuleMetadata['imports'];
  /** the commands; a factory may return arrays of arrays, one per source */
  commands: ValueOrFactory<ReadonlyArray<CommandDefinition | readonly CommandDefinition[]>>;
  users: ValueOrFactory<ApiUserDirectory>;
}

function provider(token: string, source: ValueOrFactory<unknown>): Provider {
  return 'useValue' in source
    ? { provide: token, useValue: source.useValue }
    : { provide: token, useFactory: source.useFactory as (...deps: unknown[]) => unknown, inject: source.inject ?? [] };
}

/**
 * The API protocol layer as a Nest module: `/client/api`, the command registry and the request
 * pipeline. The app that imports it must be created with `bodyParser: false` (the pipeline reads
 * form bodies itself, byte for byte, for the signature) and should pass its HTTP server to
 * `hardenApiHttpServer`; `createApiHttpApp` does both.
 */
@Module({})
export class ApiHttpModule {
  static forRoot(options: ApiHttpModuleOptions): DynamicModule {
    return {
      module: ApiHttpModule,
      imports: options.imports ?? [],
      controllers: [ApiController],
      providers: [provider(API_COMMANDS, options.commands), provider(API_USER_DIRECTORY, options.users), CommandRegistry, ApiRequestHandler],
      exports: [CommandRegistry],
    };
  }
}

export interface ApiHttpAppOptions {
  /** Nest's logger setting; default: Nest's console logger with every level */
  logger?: LoggerService | LogLevel[] | false;
}

/**
 * A Nest application serving the API (not yet listening: call `app.listen(port)`), with Nest's body
 * parsers off, Express's fingerprinting header and ETags off, and the HTTP server hardened.
 */
export async function createApiHttpApp(
  commands: ReadonlyArray<CommandDefinition | readonly CommandDefinition[]>,
  users: ApiUserDirectory,
  options: ApiHttpAppOptions = {},
): Promise<INestApplication> {
  const app = await NestFactory.create(
    ApiHttpModule.forRoot({ commands: { useValue: commands }, users: { useValue: users } }),
    { bodyParser: false, abortOnError: false, ...(options.logger !== undefined ? { logger: options.logger } : {}) },
  );
  configureApiHttpApp(app);
  return app;
}

/** What `createApiHttpApp` does to an app created elsewhere (with `bodyParser: false`). */
export function configureApiHttpApp(app: INestApplication): void {
  const express = app.getHttpAdapter().getInstance() as Express;
  express.disable('x-powered-by');
  express.set('etag', false);
  hardenApiHttpServer(app.getHttpServer() as Server);
}
