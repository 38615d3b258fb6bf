import { InvalidStreamNameError } from './event-store.errors';

const CATEGORY = /^[a-zA-Z][a-zA-Z0-9]*$/;
const STREAM = /^[a-zA-Z][a-zA-Z0-9]*-.+$/s;

/** `<category>-<id>`; EventStoreDB splits categories at the first `-`, so the category has none. */
export function streamName(category: string, id: string): string {
  if (!CATEGORY.test(category) || id.length === 0) throw new InvalidStreamNameError(`${category}-${id}`);
  return `${category}-${id}`;
}

export function streamCategory(streamId: string): string {
  const dash = streamId.indexOf('-');
  return dash < 0 ? streamId : streamId.slice(0, dash);
}

/** Adapters refuse other names, which also keeps EventStoreDB's `$` system streams out of reach. */
export function assertStreamName(streamId: string): void {
  if (typeof streamId !== 'string' || !STREAM.test(streamId)) throw new InvalidStreamNameError(String(streamId));
}
