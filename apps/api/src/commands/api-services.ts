import { DataSource, SelectQueryBuilder, ObjectLiteral } from 'typeorm';
import { CommandHandler, HandleResult, SecretBox } from '@strata/application';
import { DomainEvent } from '@strata/domain';
import { EventStore } from '@strata/event-store';
import { ProjectionWaiter, ZoneView } from '@strata/read-models';
import { PagingParams } from '../http/command-definition';

/** What command implementations use: the event store to change things, read models to answer. */
export interface ApiServices {
  store: EventStore;
  handler: CommandHandler;
  db: DataSource;
  waiter: ProjectionWaiter;
  secrets: SecretBox;
  newId: () => string;
}

/** Read-your-writes: answer only once the read models show the change (or after a few seconds). */
export async function projected<E extends DomainEvent>(services: ApiServices, result: HandleResult<E>): Promise<void> {
  if (result.append) await services.waiter.waitFor(result.append.position, 5000);
}

export interface Page<T> {
  items: T[];
  count: number;
}

/** Applies page/pagesize/keyword (keyword matches `name`) and returns the page and the total. */
export async function page<T extends ObjectLiteral>(qb: SelectQueryBuilder<T>, params: Record<string, unknown>, keywordColumn = 'name'): Promise<Page<T>> {
  const { page: p, pagesize, keyword } = params as unknown as PagingParams;
  if (keyword) qb.andWhere(`${qb.alias}.${keywordColumn} ILIKE :keyword`, { keyword: `%${keyword.replace(/[\\%_]/g, '\\$&')}%` });
  const [items, count] = await qb
    .orderBy(`${qb.alias}.created`, 'ASC')
    .addOrderBy(`${qb.alias}.id`, 'ASC')
    .skip((p - 1) * pagesize)
    .take(pagesize)
    .getManyAndCount();
  return { items, count };
}

/** Names of the given zones, by id (for answers that show `zonename`). */
export async function zoneNamesById(services: ApiServices, ids: string[]): Promise<Map<string, string>> {
  if (ids.length === 0) return new Map();
  const zones = await services.db.getRepository(ZoneView).createQueryBuilder('z').where('z.id IN (:...ids)', { ids }).getMany();
  return new Map(zones.map((z) => [z.id, z.name]));
}
