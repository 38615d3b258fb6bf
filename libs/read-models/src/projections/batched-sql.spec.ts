import { BatchedSqlExecutor, sqlLiteral } from './batched-sql';

describe('batched SQL for projections', () => {
  it('writes parameters as escaped literals', () => {
    expect(sqlLiteral("it's")).toBe("'it''s'");
    expect(sqlLiteral('back\\slash')).toBe(" E'back\\\\slash'");
    expect(sqlLiteral(null)).toBe('NULL');
    expect(sqlLiteral(undefined)).toBe('NULL');
    expect(sqlLiteral(true)).toBe('true');
    expect(sqlLiteral(42)).toBe('42');
    expect(sqlLiteral(new Date('2026-11-22T10:00:00Z'))).toBe("'2026-11-22T10:00:00.000Z'");
    expect(sqlLiteral({ a: "x'y" })).toBe(`'{"a":"x''y"}'`);
    expect(() => sqlLiteral(Number.NaN)).toThrow();
  });

  it('renders $n (including $10 and repeats) and runs everything as one query', async () => {
    const batch = new BatchedSqlExecutor();
    await batch.query('INSERT INTO t VALUES ($1, $2, $10, $1)', [1, "a'b", 3, 4, 5, 6, 7, 8, 9, null]);
    await batch.query('UPDATE t SET x = $1', ['; DROP TABLE t; --']);
    const sent: string[] = [];
    await batch.flush({ query: async (sql: string) => sent.push(sql) });
    expect(sent).toEqual(["INSERT INTO t VALUES (1, 'a''b', NULL, 1);\nUPDATE t SET x = '; DROP TABLE t; --'"]);
    expect(batch.size).toBe(0);
  });

  it('refuses a statement that refers to a missing parameter', async () => {
    await expect(new BatchedSqlExecutor().query('SELECT $2', [1])).rejects.toThrow('$2');
  });
});
