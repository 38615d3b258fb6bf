import { DatabaseError, type Pool } from 'pg';
import type { AppendResult, ExpectedRevision, NewEvent } from '../event-store.port';
import { encodePosition } from '../position';

export interface AppendInput {
  streamId: string;
  /** Validated: non-empty, lower-case UUIDs, no duplicates. */
  events: NewEvent[];
  expected: ExpectedRevision;
}

/** What one statement did for one append, before the store turns it into a result or an error. */
export type AppendOutcome =
  | { kind: 'appended'; result: AppendResult }
  /** Some of the ids are stored already (anywhere): nothing inserted, the store classifies the retry. */
  | { kind: 'ids-stored' }
  | { kind: 'expected-mismatch'; head: number | null }
  /** A concurrent append won a unique index (same revision or same event id). */
  | { kind: 'unique-violation' };

/*
 * Several independent appends (distinct streams) in ONE statement, hence one transaction and one round trip:
 *  - `appends.head_revision` and the CASE: each append's expected-revision check. A concurrent append that
 *    wins the race surfaces as a unique violation on (stream_id, stream_revision), since revisions are
 *    always head + 1, head + 2, ...
 *  - `stored`: appends whose ids are (partly) stored already insert nothing.
 *  - the transaction id is assigned by the INSERT, after the snapshot that saw each stream's head. So a
 *    later revision of a stream always gets a larger transaction id than an earlier one, and the global
 *    order (transaction_id, global_position) agrees with every stream's own order.
 *  - rows are inserted in (append, event) order, so within the transaction global_position follows each
 *    stream's revisions too.
 */
const APPEND_SQL = `
WITH appends AS (
  SELECT a.append_no, a.stream_id, a.expected_kind, a.expected_revision,
    (SELECT max(e.stream_revision) FROM events e WHERE e.stream_id = a.stream_id) AS head_revision
  FROM json_to_recordset($1::json) AS a(append_no integer, stream_id text, expected_kind text, expected_revision integer)
),
input AS (
  SELECT i.append_no, i.event_id, i.type, i.data, i.metadata, i.ord
  FROM json_to_recordset($2::json) AS i(append_no integer, event_id uuid, type text, data jsonb, metadata jsonb, ord integer)
),
stored AS (
  -- A scalar subquery, not a join: a join may be planned as a hash join over the whole table, and the
  -- generic plan (sized for a guess of 100 input rows and the table as it was) would keep it forever.
  SELECT i.append_no, count(*) AS ids FROM input i
  WHERE (SELECT true FROM events e WHERE e.event_id = i.event_id)
  GROUP BY i.append_no
),
accepted AS (
  SELECT a.append_no, a.stream_id, a.head_revision FROM appends a
  WHERE NOT EXISTS (SELECT 1 FROM stored s WHERE s.append_no = a.append_no)
    AND CASE a.expected_kind
      WHEN 'any' THEN true
      WHEN 'no_stream' THEN a.head_revision IS NULL
      WHEN 'stream_exists' THEN a.head_revision IS NOT NULL
      ELSE a.head_revision IS NOT DISTINCT FROM a.expected_revision
    END
),
inserted AS (
  INSERT INTO events (stream_id, stream_revision, event_id, type, data, metadata)
  SELECT acc.stream_id, coalesce(acc.head_revision, -1) + i.ord, i.event_id, i.type, i.data, i.metadata
  FROM input i JOIN accepted acc ON acc.append_no = i.append_no
  ORDER BY i.append_no, i.ord
  RETURNING stream_id, stream_revision, transaction_id, global_position
)
SELECT a.head_revision, coalesce(s.ids, 0)::integer AS ids_stored,
  last.stream_revision AS last_revision,
  last.transaction_id::text AS last_position_tx,
  last.global_position::text AS last_position_seq
FROM appends a
LEFT JOIN stored s ON s.append_no = a.append_no
LEFT JOIN LATERAL (
  SELECT ins.stream_revision, ins.transaction_id, ins.global_position FROM inserted ins
  WHERE ins.stream_id = a.stream_id ORDER BY ins.global_position DESC LIMIT 1
) AS last ON true
ORDER BY a.append_no`;

interface AppendRow {
  head_revision: number | null;
  ids_stored: number;
  last_revision: number | null;
  last_position_tx: string | null;
  last_position_seq: string | null;
}

/** Runs the appends (distinct streams) as one statement; one outcome per append, in order. */
export async function executeAppends(pool: Pool, appends: AppendInput[]): Promise<AppendOutcome[]> {
  // Two JSON documents rather than one array per column: one JSON.stringify each, and no array-literal
  // escaping of every event's JSON on the way out.
  const heads = appends.map((a, n) => ({
    append_no: n + 1,
    stream_id: a.streamId,
    expected_kind: typeof a.expected === 'number' ? 'exact' : a.expected,
    expected_revision: typeof a.expected === 'number' ? a.expected : null,
  }));
  const events = appends.flatMap((a, n) =>
    a.events.map((event, e) => ({
      append_no: n + 1,
      event_id: event.id,
      type: event.type,
      data: event.data ?? null,
      metadata: event.metadata ?? {},
      ord: e + 1,
    })),
  );
  let rows: AppendRow[];
  try {
    ({ rows } = await pool.query<AppendRow>({
      name: 'strata_es_append_v3',
      text: APPEND_SQL,
      values: [JSON.stringify(heads), JSON.stringify(events)],
    }));
  } catch (error) {
    // Alone, a lost race is an outcome; in a batch it fails the batch and each append is retried alone.
    if (appends.length === 1 && isUniqueViolation(error)) return [{ kind: 'unique-violation' }];
    throw error;
  }
  return rows.map(toOutcome);
}

function toOutcome(row: AppendRow): AppendOutcome {
  if (row.last_revision !== null && row.last_position_tx !== null && row.last_position_seq !== null) {
    return {
      kind: 'appended',
      result: { nextExpectedRevision: row.last_revision, position: encodePosition(row.last_position_tx, row.last_position_seq) },
    };
  }
  if (row.ids_stored > 0) return { kind: 'ids-stored' };
  return { kind: 'expected-mismatch', head: row.head_revision };
}

function isUniqueViolation(error: unknown): boolean {
  return (
    error instanceof DatabaseError &&
    error.code === '23505' &&
    (error.constraint === 'events_stream_revision_key' || error.constraint === 'events_event_id_key')
  );
}
