import { Inject, Injectable, Optional } from '@nestjs/common';
import { createListApisCommand } from './api-docs.command';
import { API_COMMANDS } from './api-http.tokens';
import type { CommandDefinition, ParamSpec } from './command-definition';

/** `keyword`, `page` and `pagesize`, which every `list*` command takes (API.md). */
export const MAX_PAGE_SIZE = 500;
export const PAGING_PARAMS: readonly ParamSpec[] = [
  { name: 'keyword', type: 'string', description: 'List by keyword' },
  { name: 'page', type: 'integer', min: 1, default: 1, description: 'The page to list, from 1' },
  {
    name: 'pagesize',
    type: 'integer',
    min: 1,
    max: MAX_PAGE_SIZE,
    default: MAX_PAGE_SIZE,
    description: `Items per page, at most ${MAX_PAGE_SIZE}`,
  },
];

export const isListCommand = (name: string) => /^list/i.test(name);

/** A command together with every parameter it takes, paging included. */
export interface RegisteredCommand {
  readonly definition: CommandDefinition;
  readonly params: readonly ParamSpec[];
}

function withPaging(definition: CommandDefinition): readonly ParamSpec[] {
  if (!isListCommand(definition.name)) return definition.params;
  const declared = new Set(definition.params.map((p) => p.name.toLowerCase()));
  return [...definition.params, ...PAGING_PARAMS.filter((p) => !declared.has(p.name))];
}

/**
 * Every command of the API, found by case-insensitive name. Several modules can contribute: the
 * `API_COMMANDS` provider may hold arrays of arrays, and `register()` adds more at start-up
 * (e.g. from a module's `onModuleInit`). `listApis` is built in, since it describes this registry.
 */
@Injectable()
export class CommandRegistry {
  private readonly byName = new Map<string, RegisteredCommand>();

  constructor(@Optional() @Inject(API_COMMANDS) commands?: ReadonlyArray<CommandDefinition | readonly CommandDefinition[]>) {
    this.register(createListApisCommand(this));
    for (const item of commands ?? []) {
      if (Array.isArray(item)) this.register(...item);
      else this.register(item as CommandDefinition);
    }
  }

  register(...commands: CommandDefinition[]): void {
    for (const definition of commands) {
      const key = definition.name.toLowerCase();
      // A second definition under the same name is a wiring mistake; failing at start-up beats answering
      // with whichever came last.
      if (this.byName.has(key)) throw new Error(`API command ${definition.name} is registered twice`);
      const names = new Set<string>();
      for (const p of definition.params) {
        if (names.has(p.name.toLowerCase())) throw new Error(`API command ${definition.name} declares ${p.name} twice`);
        names.add(p.name.toLowerCase());
      }
      this.byName.set(key, { definition, params: withPaging(definition) });
    }
  }

  find(name: string): RegisteredCommand | undefined {
    return this.byName.get(name.toLowerCase());
  }

  all(): RegisteredCommand[] {
    return [...this.byName.values()];
  }
}
