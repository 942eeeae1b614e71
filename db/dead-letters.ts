import { dlqEntries } from "./schema";
import type { Database } from "./types";

export type NewDeadLetter = Omit<
  typeof dlqEntries.$inferInsert,
  "id" | "createdAt" | "replayCount"
>;

export interface DeadLetterStore {
  record(entry: NewDeadLetter): Promise<void>;
}

/** Guarda cada mensaje muerto una sola vez (stream, secuencia y clave del mensaje), aunque se registre dos veces. */
export function createDeadLetterStore(db: Database): DeadLetterStore {
  return {
    async record(entry) {
      await db.insert(dlqEntries).values(entry).onConflictDoNothing();
    },
  };
}
