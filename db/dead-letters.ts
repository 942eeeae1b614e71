import { and, eq } from "drizzle-orm";
import { dlqEntries } from "./schema";
import type { Database } from "./types";

export type NewDeadLetter = Omit<
  typeof dlqEntries.$inferInsert,
  "id" | "createdAt" | "replayCount"
>;

/** Lo que hace falta de una entrada ya guardada para terminar su DLQ. */
export interface RecordedDeadLetter {
  error: string;
  errorKind: "permanent" | "transient";
  deliveries: number;
}

export interface DeadLetterStore {
  record(entry: NewDeadLetter): Promise<void>;
  /** La entrada de este mensaje (stream, secuencia y clave), si su DLQ empezó. */
  find?(
    stream: string,
    streamSequence: number,
    messageKey: string,
  ): Promise<RecordedDeadLetter | undefined>;
}

/** Guarda cada mensaje muerto una sola vez (stream, secuencia y clave del mensaje), aunque se registre dos veces. */
export function createDeadLetterStore(db: Database): DeadLetterStore {
  return {
    async record(entry) {
      await db.insert(dlqEntries).values(entry).onConflictDoNothing();
    },
    async find(stream, streamSequence, messageKey) {
      const [row] = await db
        .select({
          error: dlqEntries.error,
          errorKind: dlqEntries.errorKind,
          deliveries: dlqEntries.deliveries,
        })
        .from(dlqEntries)
        .where(
          and(
            eq(dlqEntries.stream, stream),
            eq(dlqEntries.streamSequence, streamSequence),
            eq(dlqEntries.messageKey, messageKey),
          ),
        );
      if (!row) return undefined;
      return { ...row, errorKind: row.errorKind === "permanent" ? "permanent" : "transient" };
    },
  };
}
