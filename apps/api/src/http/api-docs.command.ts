import type { CommandDefinition, ParamSpec, ParamType, PagingParams } from './command-definition';
import type { CommandRegistry } from './command-registry';
import { ApiError } from './api-error';
import { echo } from './safe-text';

/**
 * `listApis`: the command catalogue CloudMonkey's `sync` reads, filtered by what the caller may use
 * (a User sees neither Admin-only commands nor Admin-only parameters).
 */

/** CloudStack's listApis type names; an enum travels as a string. */
const WIRE_TYPE: Record<ParamType, string> = {
  string: 'string',
  uuid: 'uuid',
  boolean: 'boolean',
  integer: 'integer',
  long: 'long',
  date: 'date',
  list: 'list',
  map: 'map',
  enum: 'string',
};

function describeParam(p: ParamSpec): Record<string, unknown> {
  const description = p.enum ? `${p.description} (one of ${p.enum.join(', ')})` : p.description;
  const out: Record<string, unknown> = { name: p.name, type: WIRE_TYPE[p.type], required: !!p.required, description };
  if (p.type === 'string' || p.maxLength !== undefined) out.length = p.maxLength ?? 255;
  return out;
}

export function createListApisCommand(registry: CommandRegistry): CommandDefinition {
  return {
    name: 'listApis',
    description: 'Lists the API commands the caller may use, with their parameters',
    isAsync: false,
    adminOnly: false,
    responseObject: 'api',
    params: [{ name: 'name', type: 'string', description: 'Only the command with this name' }],
    async handle(params, ctx) {
      const { page, pagesize, keyword } = params as unknown as PagingParams;
      const isAdmin = ctx.user.role === 'Admin';
      const wanted = typeof params.name === 'string' ? params.name.toLowerCase() : undefined;
      const needle = keyword?.toLowerCase();

      const visible = registry
        .all()
        .filter(({ definition: d }) => isAdmin || !d.adminOnly)
        .filter(({ definition: d }) => wanted === undefined || d.name.toLowerCase() === wanted)
        .filter(
          ({ definition: d }) =>
            needle === undefined || d.name.toLowerCase().includes(needle) || d.description.toLowerCase().includes(needle),
        )
        .sort((a, b) => a.definition.name.localeCompare(b.definition.name));

      if (wanted !== undefined && visible.length === 0) {
        throw ApiError.paramError(
          `Unable to execute API command listapis due to invalid value. Invalid parameter name value="${echo(String(params.name))}": no such API command`,
        );
      }

      const items = visible.slice((page - 1) * pagesize, page * pagesize).map(({ definition: d, params: specs }) => ({
        name: d.name,
        description: d.description,
        isasync: d.isAsync,
        params: specs.filter((p) => isAdmin || !p.adminOnly).map(describeParam),
        response: [{ name: d.responseObject }],
      }));
      return { kind: 'list', name: 'api', items, count: visible.length };
    },
  };
}
