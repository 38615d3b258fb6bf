/** Every TypeORM read-model entity (filled in with the read models). */
export const READ_MODEL_ENTITIES: Function[] = [];
