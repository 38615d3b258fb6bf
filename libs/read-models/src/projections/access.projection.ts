import { RecordedEvent } from '@strata/event-store';
import { ApiUserCreated, AsyncJobEvent } from '@strata/domain';
import { Projection, SqlExecutor } from './projection';

export const apiUsersProjection: Projection = {
  name: 'api-users',
  handles: ['ApiUserCreated'],
  async apply(recorded: RecordedEvent, sql: SqlExecutor) {
    const d = recorded.data as ApiUserCreated['data'];
    await sql.query(
      `INSERT INTO api_users (id, name, role, api_key, encrypted_secret_key, created) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING`,
      [d.userId, d.name, d.role, d.apiKey, d.encryptedSecretKey, d.createdAt],
    );
  },
};

export const asyncJobsProjection: Projection = {
  name: 'async-jobs',
  handles: ['AsyncJobCreated', 'AsyncJobProgressed', 'AsyncJobSucceeded', 'AsyncJobFailed'],
  async apply(recorded: RecordedEvent, sql: SqlExecutor) {
    const event = { type: recorded.type, data: recorded.data } as AsyncJobEvent;
    switch (event.type) {
      case 'AsyncJobCreated': {
        const d = event.data;
        await sql.query(
          `INSERT INTO async_jobs (id, command, user_id, instance_type, instance_id, status, result_code, progress, created)
           VALUES ($1, $2, $3, $4, $5, 0, 0, 0, $6) ON CONFLICT (id) DO NOTHING`,
          [d.jobId, d.command, d.userId, d.instanceType, d.instanceId, d.createdAt],
        );
        return;
      }
      case 'AsyncJobProgressed':
        await sql.query(`UPDATE async_jobs SET progress = $2, bytes_done = COALESCE($3, bytes_done), bytes_total = COALESCE($4, bytes_total) WHERE id = $1`, [
          event.data.jobId,
          event.data.progress,
          event.data.bytesDone,
          event.data.bytesTotal,
        ]);
        return;
      case 'AsyncJobSucceeded':
        await sql.query(`UPDATE async_jobs SET status = 1, result_code = 0, progress = 100, result_type = $2, result = $3, completed = $4 WHERE id = $1`, [
          event.data.jobId,
          event.data.resultType,
          JSON.stringify(event.data.result),
          event.data.completedAt,
        ]);
        return;
      case 'AsyncJobFailed':
        await sql.query(`UPDATE async_jobs SET status = 2, result_code = $2, result_type = 'object', result = $3, completed = $4 WHERE id = $1`, [
          event.data.jobId,
          event.data.errorCode,
          JSON.stringify({ errorcode: event.data.errorCode, errortext: event.data.errorText }),
          event.data.completedAt,
        ]);
        return;
    }
  },
};
